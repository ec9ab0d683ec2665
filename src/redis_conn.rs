//! How the Redis stores connect: a client and a self-healing connection,
//! set up the same way for every store.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Data Redis has not acknowledged after this long closes the connection
/// (`TCP_USER_TIMEOUT`, Linux): a Redis gone without a word (its host
/// replaced behind the address, a partition that lost the connection's
/// state) is noticed within seconds instead of the kernel's 15 minutes of
/// retransmissions, and the connection is made again. A Redis that is
/// merely slow or paused still acknowledges what it is sent.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(3);

/// A client for `url` and a connection that comes back by itself after a
/// failure, made lazily (nothing is sent before the first command).
/// Errors name what is wrong with `url`. Must be called inside a Tokio
/// runtime.
pub(crate) fn connect(url: &str) -> Result<(redis::Client, ConnectionManager), String> {
    let info = url
        .into_connection_info()
        .map_err(|e| format!("redis url: {e}"))?;
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let info = {
        let tcp = info.tcp_settings().clone().set_user_timeout(USER_TIMEOUT);
        info.set_tcp_settings(tcp)
    };
    let client = redis::Client::open(info).map_err(|e| format!("redis url: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| format!("redis: {e}"))?;
    Ok((client, manager))
}

/// Runs `op`, a Redis operation the circuit breaker let through with
/// `ticket`, waiting at most `timeout`: the breaker hears how it went, and
/// a failure is counted in `errors` (Redis answered with an error) or
/// `timeouts` (it did not answer in time). The error says which, for the
/// store's `StoreError` or log.
pub(crate) async fn guarded<T>(
    ticket: crate::breaker::Ticket,
    timeout: Duration,
    op: impl Future<Output = redis::RedisResult<T>>,
    errors: &AtomicU64,
    timeouts: &AtomicU64,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(v)) => {
            ticket.success();
            Ok(v)
        }
        Ok(Err(e)) => {
            ticket.failure();
            errors.fetch_add(1, Relaxed);
            Err(format!("redis: {e}"))
        }
        Err(_) => {
            ticket.failure();
            timeouts.fetch_add(1, Relaxed);
            Err(format!("redis: no answer within {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_set_to_give_up_on_a_silent_peer() {
        let (client, _) = connect("redis://127.0.0.1:1/0").unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(
            client.get_connection_info().tcp_settings().user_timeout(),
            Some(USER_TIMEOUT)
        );
        assert!(connect("nope://x").unwrap_err().starts_with("redis url:"));
    }
}

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
            tracing::debug!(breaker = ticket.name(), error = %e, "redis call failed");
            ticket.failure();
            errors.fetch_add(1, Relaxed);
            Err(format!("redis: {e}"))
        }
        Err(_) => {
            tracing::debug!(breaker = ticket.name(), ?timeout, "redis call timed out");
            ticket.failure();
            timeouts.fetch_add(1, Relaxed);
            Err(format!("redis: no answer within {timeout:?}"))
        }
    }
}

/// Runs `op` if `breaker` lets it through (refused at once while it is
/// open), with [`guarded`]'s timeout and counting.
pub(crate) async fn through<T>(
    breaker: &crate::breaker::CircuitBreaker,
    timeout: Duration,
    op: impl Future<Output = redis::RedisResult<T>>,
    errors: &AtomicU64,
    timeouts: &AtomicU64,
) -> Result<T, String> {
    let Some(ticket) = breaker.try_call() else {
        return Err("redis: circuit open".to_owned());
    };
    guarded(ticket, timeout, op, errors, timeouts).await
}

/// A replica's id on an invalidation channel, or a counter's random
/// first value: std's per-process random hash keys over the time.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A message on an invalidation channel: the sender's id (so it can
/// ignore its own), a kind, and its argument: `{id:x}|{kind}|{arg}`.
pub(crate) fn frame(id: u64, kind: &str, arg: &str) -> String {
    format!("{id:x}|{kind}|{arg}")
}

/// A [`frame`] read back: (id, kind, argument).
pub(crate) fn unframe(msg: &str) -> Option<(u64, &str, &str)> {
    let mut parts = msg.splitn(3, '|');
    let id = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((id, parts.next()?, parts.next()?))
}

/// How often a subscriber checks that its connection still answers, and
/// the longest it waits for that, for a connection, or for a subscription:
/// a connection that died without a word (a partition, a paused Redis)
/// must not leave the replica deaf for good.
const PING_EVERY: Duration = Duration::from_secs(1);

/// What a [`subscribe`] loop does with its channel.
pub(crate) trait Listener: Send {
    /// Subscribed: for the first time, or `again` after a lost or silent
    /// connection (messages published meanwhile were missed).
    fn subscribed(&mut self, again: bool);
    /// A message arrived.
    fn message(&mut self, payload: &[u8]);
    /// A session ended with an error (it subscribes again).
    fn failed(&mut self) {}
}

/// Listens on `channel` until `stop` turns true or its sender goes:
/// checks the connection every second, and subscribes again (after 20 ms,
/// doubling up to 2 s) after a lost or silent one.
pub(crate) async fn subscribe(
    client: redis::Client,
    channel: &str,
    mut listener: impl Listener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    let silent = || {
        redis::RedisError::from((
            redis::ErrorKind::Io,
            "the subscription connection stopped answering",
        ))
    };
    let mut backoff = Duration::from_millis(20);
    let mut again = false;
    loop {
        let session = async {
            let mut pubsub = tokio::time::timeout(2 * PING_EVERY, client.get_async_pubsub())
                .await
                .map_err(|_| silent())??;
            tokio::time::timeout(2 * PING_EVERY, pubsub.subscribe(channel))
                .await
                .map_err(|_| silent())??;
            backoff = Duration::from_millis(20);
            listener.subscribed(again);
            let (mut sink, mut messages) = pubsub.split();
            let mut check = tokio::time::interval(PING_EVERY);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.tick().await;
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        listener.message(msg.get_payload_bytes());
                    }
                    _ = check.tick() => {
                        match tokio::time::timeout(PING_EVERY, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => return Err(e),
                            Err(_) => return Err(silent()),
                        }
                    }
                }
            }
            redis::RedisResult::Ok(())
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = session => {
                if r.is_err() {
                    listener.failed();
                }
            }
        }
        again = true;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
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

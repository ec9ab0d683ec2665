//! How the Redis stores connect: one server or a Redis Cluster, a
//! self-healing connection, set up the same way for every store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

/// Data Redis has not acknowledged after this long closes the connection
/// (`TCP_USER_TIMEOUT`, Linux): a Redis gone without a word (its host
/// replaced behind the address, a partition that lost the connection's
/// state) is noticed within seconds instead of the kernel's 15 minutes of
/// retransmissions, and the connection is made again. A Redis that is
/// merely slow or paused still acknowledges what it is sent.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a Redis store keeps its data: one Redis server, or a Redis
/// Cluster (Valkey's too) reached through some of its nodes.
///
/// Every store's constructor takes `impl Into<RedisTarget>`: a URL
/// (`redis://host:port/db`) is one server; several URLs separated by
/// commas (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`) are a cluster's
/// seed nodes, from which the store learns the rest of the cluster. A
/// cluster known by a single seed is [`RedisTarget::cluster`]. (A comma
/// in a password is written `%2C`.)
///
/// ```
/// use tower_perf::RedisTarget;
///
/// assert_eq!(RedisTarget::from("redis://127.0.0.1:6379"), RedisTarget::server("redis://127.0.0.1:6379"));
/// assert_eq!(
///     RedisTarget::from("redis://127.0.0.1:7000,redis://127.0.0.1:7001"),
///     RedisTarget::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]),
/// );
/// ```
///
/// On a cluster each store keeps the keys one operation touches in one
/// hash slot (see each store's documentation for its layout), follows
/// `MOVED`/`ASK` redirections, finds a promoted replica by itself after
/// a failover (the circuit breaker answers meanwhile), scans every master
/// for the purges that scan, and broadcasts invalidations and task
/// cancels by sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`: each channel
/// lives on the node serving its slot, so a message crosses no other
/// node). A subscriber whose node fails over or whose slot migrates
/// subscribes again and treats what it may have missed as the
/// single-server subscriber does (the caches empty their memory). On a
/// cluster without sharded pub/sub (before Redis 7) the stores say so in
/// a warning and use classic pub/sub, which a cluster forwards to every
/// node; the subscriber then listens on one seed at a time and moves to
/// the next when it fails: give several seeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server, by its URL.
    Server(String),
    /// A Redis Cluster, by the URLs of some of its nodes.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// One Redis server at `url`.
    pub fn server(url: impl Into<String>) -> Self {
        Self::Server(url.into())
    }

    /// A Redis Cluster known by `seeds`, the URLs of some of its nodes.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        Self::Cluster(seeds.into_iter().map(Into::into).collect())
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl From<&str> for RedisTarget {
    fn from(text: &str) -> Self {
        if text.contains(',') {
            Self::cluster(text.split(',').map(str::trim).filter(|s| !s.is_empty()))
        } else {
            Self::server(text.trim())
        }
    }
}

impl From<String> for RedisTarget {
    fn from(text: String) -> Self {
        Self::from(text.as_str())
    }
}

impl From<&String> for RedisTarget {
    fn from(text: &String) -> Self {
        Self::from(text.as_str())
    }
}

impl From<&RedisTarget> for RedisTarget {
    fn from(target: &RedisTarget) -> Self {
        target.clone()
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(url) => f.write_str(url),
            Self::Cluster(seeds) => write!(f, "cluster {}", seeds.join(",")),
        }
    }
}

/// A connection to one server or to a cluster: commands and scripts are
/// sent the same way to both (a cluster routes each by its keys' slot).
#[derive(Clone)]
pub(crate) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection, Sharded),
}

/// What a store knows of whether its cluster has sharded pub/sub (Redis
/// 7, Valkey) on every node, and since when: shared by the store's
/// publisher and subscriber, asked again after [`REDETECT`].
pub(crate) type Sharded = Arc<std::sync::Mutex<Option<(bool, std::time::Instant)>>>;

/// How long a store trusts what it knows of its cluster's sharded
/// pub/sub: replicas that started before an upgrade (or a downgrade)
/// agree again with those started after within this.
pub(crate) const REDETECT: Duration = Duration::from_secs(30);

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(c) => c.req_packed_command(cmd),
            Self::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(c) => c.get_db(),
            Self::Cluster(c, _) => c.get_db(),
        }
    }
}

/// A node `SCAN` walks: the server, one of a cluster's masters, or the
/// master of the slot a key hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScanNode {
    Server,
    Master(String, u16),
    SlotOf(String),
}

impl Conn {
    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(..))
    }

    /// Whether invalidations and cancels go by sharded pub/sub: on a
    /// cluster every node of which has it (`PUBSUB SHARDNUMSUB`, which
    /// the client asks of every node, answered; a node without it, or an
    /// ACL that refuses it, says no). Known for [`REDETECT`]; when asking
    /// again fails, what was known holds (a node down must not stop the
    /// broadcasts), and with nothing known the error is returned.
    pub(crate) async fn sharded(&self) -> redis::RedisResult<bool> {
        use redis::{ErrorKind, ServerErrorKind};
        let Self::Cluster(c, known) = self else {
            return Ok(false);
        };
        let lock = || {
            known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let before = {
            let mut known = lock();
            let before = *known;
            match before {
                Some((has, at)) if at.elapsed() < REDETECT => return Ok(has),
                // Due: this caller asks; the others keep what was known
                // meanwhile.
                Some((has, _)) => *known = Some((has, std::time::Instant::now())),
                None => {}
            }
            before
        };
        let asked = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .query_async::<Value>(&mut c.clone())
            .await;
        let has = match asked {
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::NoPerm)
                ) =>
            {
                false
            }
            Err(e) => match before {
                Some((has, _)) => return Ok(has),
                None => return Err(e),
            },
        };
        *lock() = Some((has, std::time::Instant::now()));
        match (before.map(|(h, _)| h), has) {
            (Some(true) | None, false) => tracing::warn!(
                "tower-perf: this Redis Cluster has no sharded pub/sub on every node (Redis 7 or Valkey have it; an ACL may refuse PUBSUB SHARDNUMSUB): invalidations go by classic pub/sub, which every node forwards to every other"
            ),
            (Some(false), true) => tracing::info!(
                "tower-perf: every node of this Redis Cluster now has sharded pub/sub: invalidations switch to it"
            ),
            _ => {}
        }
        Ok(has)
    }

    /// Publishes `message` on `channel` (`SPUBLISH` where [`sharded`](Self::sharded));
    /// the listeners that heard (on a cluster by classic pub/sub, the
    /// receiving node's only).
    pub(crate) async fn publish(
        &mut self,
        channel: &str,
        message: &str,
    ) -> redis::RedisResult<u64> {
        let command = if self.sharded().await? {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        redis::cmd(command)
            .arg(channel)
            .arg(message)
            .query_async(self)
            .await
    }

    /// How many listen on `channel`. A cluster's `PUBLISH` and `SPUBLISH`
    /// count only the receiving node's subscribers (the message goes on
    /// to the others over the cluster bus): this asks every node
    /// (`PUBSUB NUMSUB`, or `SHARDNUMSUB` where [`sharded`](Self::sharded))
    /// and adds up.
    #[cfg(feature = "tasks")]
    pub(crate) async fn listeners(&mut self, channel: &str) -> redis::RedisResult<u64> {
        let kind = if self.sharded().await? {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg(kind)
            .arg(channel)
            .query_async(self)
            .await?;
        Ok(counts.iter().map(|(_, n)| n).sum())
    }

    /// The nodes a scan over every key must walk: the server, or each of
    /// the cluster's masters as `CLUSTER SLOTS` on a master names them now
    /// (a replica's view may lag a failover).
    pub(crate) async fn scan_nodes(&mut self) -> redis::RedisResult<Vec<ScanNode>> {
        let Self::Cluster(c, _) = self else {
            return Ok(vec![ScanNode::Server]);
        };
        let slots = c
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await?;
        let ranges: Vec<Vec<Value>> = redis::from_redis_value(slots)?;
        let mut masters = Vec::new();
        for range in ranges {
            // [start, end, [host, port, id, ...], replicas...]
            let Some(master) = range.into_iter().nth(2) else {
                continue;
            };
            let node: Vec<Value> = redis::from_redis_value(master)?;
            let mut node = node.into_iter();
            let (Some(host), Some(port)) = (node.next(), node.next()) else {
                continue;
            };
            let host: String = redis::from_redis_value(host)?;
            let port: u16 = redis::from_redis_value(port)?;
            let node = ScanNode::Master(host, port);
            if !masters.contains(&node) {
                masters.push(node);
            }
        }
        Ok(masters)
    }

    /// The node holding `key`'s slot (the server itself, for a server).
    pub(crate) fn node_of(&self, key: &str) -> ScanNode {
        match self {
            Self::Server(_) => ScanNode::Server,
            Self::Cluster(..) => ScanNode::SlotOf(key.to_owned()),
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count` step on `node`: the
    /// next cursor (0 at the end) and the keys found.
    pub(crate) async fn scan_step(
        &mut self,
        node: &ScanNode,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> redis::RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let Self::Cluster(c, _) = self else {
            return cmd.query_async(self).await;
        };
        let route = match node {
            ScanNode::Master(host, port) => SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            },
            ScanNode::SlotOf(key) => {
                SingleNodeRoutingInfo::SpecificNode(redis::cluster_routing::Route::with_key(
                    key.as_bytes(),
                    redis::cluster_routing::SlotAddr::Master,
                ))
            }
            ScanNode::Server => return cmd.query_async(c).await,
        };
        let answer = c.route_command(cmd, RoutingInfo::SingleNode(route)).await?;
        Ok(redis::from_redis_value(answer)?)
    }
}

/// What a subscriber listens through: the server, or each seed of a
/// cluster (tried in turn when one fails) for classic pub/sub, and on a
/// cluster the seeds and store's connection for sharded pub/sub.
#[derive(Clone)]
pub(crate) struct Listeners {
    pub(crate) clients: Vec<redis::Client>,
    cluster: Option<Conn>,
}

/// A client for `url` with the connection settings every store uses.
fn client(url: &str) -> Result<redis::Client, String> {
    let info = url
        .into_connection_info()
        .map_err(|e| format!("redis url: {e}"))?;
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let info = {
        let tcp = info.tcp_settings().clone().set_user_timeout(USER_TIMEOUT);
        info.set_tcp_settings(tcp)
    };
    redis::Client::open(info).map_err(|e| format!("redis url: {e}"))
}

/// Clients to listen through and a connection that comes back by itself
/// after a failure, made lazily (nothing is sent before the first
/// command), to `target`: a server or a cluster. Errors name what is
/// wrong with it. Must be called inside a Tokio runtime.
pub(crate) fn connect(target: &RedisTarget) -> Result<(Listeners, Conn), String> {
    match target {
        RedisTarget::Server(url) => {
            let client = client(url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| format!("redis: {e}"))?;
            let listeners = Listeners {
                clients: vec![client],
                cluster: None,
            };
            Ok((listeners, Conn::Server(manager)))
        }
        RedisTarget::Cluster(seeds) => {
            if seeds.is_empty() {
                return Err("redis cluster: no seed node given".to_owned());
            }
            let clients = seeds
                .iter()
                .map(|s| client(s))
                .collect::<Result<Vec<_>, _>>()?;
            let infos = clients
                .iter()
                .map(|c| c.get_connection_info().clone())
                .collect::<Vec<_>>();
            let builder = redis::cluster::ClusterClientBuilder::new(infos)
                .overall_response_timeout(Some(Duration::from_secs(2)))
                // Redirections (`MOVED`, `ASK`) and a topology that
                // changed count as retries: enough for a failover's
                // moves, short waits (the store's own timeout bounds a
                // call; the breaker answers while a master is missing).
                .retries(6)
                .min_retry_wait(5)
                .max_retry_wait(100);
            #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
            let builder = builder.tcp_settings(
                redis::io::tcp::TcpSettings::default().set_user_timeout(USER_TIMEOUT),
            );
            let cluster = builder.build().map_err(|e| format!("redis cluster: {e}"))?;
            // The config's timeouts replace the builder's: set them here.
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(Duration::from_millis(500))
                .set_response_timeout(Duration::from_secs(1));
            let conn = Conn::Cluster(
                cluster.get_pending_async_connection_with_config(config),
                Sharded::default(),
            );
            let listeners = Listeners {
                clients,
                cluster: Some(conn.clone()),
            };
            Ok((listeners, conn))
        }
    }
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

/// The error a subscriber's session ends with when its connection stops
/// answering or its subscription was lost.
fn silent() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "the subscription connection stopped answering",
    ))
}

/// `op`, or [`silent`] if it takes longer than `wait`.
async fn within<T>(
    wait: Duration,
    op: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(wait, op).await.map_err(|_| silent())?
}

/// A session's connection checks: every [`PING_EVERY`], the first one
/// second after it subscribed.
async fn checks() -> tokio::time::Interval {
    let mut check = tokio::time::interval(PING_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    check
}

/// Listens on `channel` until `stop` turns true or its sender goes:
/// checks the connection every second, and subscribes again (after 20 ms,
/// doubling up to 2 s) after a lost or silent one. On a cluster with
/// sharded pub/sub, through the node serving the channel's slot (found
/// again after a failover or a migration); otherwise by classic pub/sub
/// through the next of the clients (a cluster's seeds: classic pub/sub
/// reaches every node, so any one of them hears every message).
///
/// When the cluster's answer on sharded pub/sub changes (an upgrade), the
/// subscriber switches kinds, and starts afresh once more
/// `2 × REDETECT` later: a publisher may take that long to switch too,
/// and what it sent meanwhile by the other kind went unheard.
pub(crate) async fn subscribe(
    listeners: Listeners,
    channel: &str,
    mut listener: impl Listener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut again = false;
    let mut turn = 0usize;
    let mut kind: Option<bool> = None;
    let mut afresh_at: Option<tokio::time::Instant> = None;
    loop {
        let session = async {
            let sharded = match &listeners.cluster {
                Some(conn) => within(2 * PING_EVERY, conn.sharded()).await?,
                None => false,
            };
            if kind.is_some_and(|k| k != sharded) {
                afresh_at = Some(tokio::time::Instant::now() + 2 * REDETECT);
            }
            kind = Some(sharded);
            let end = switch(listeners.cluster.as_ref(), sharded, afresh_at);
            if sharded {
                let clients = &listeners.clients;
                sharded_session(clients, channel, &mut listener, again, &mut backoff, end).await
            } else {
                let Some(client) = listeners.clients.get(turn % listeners.clients.len().max(1))
                else {
                    return Ok(());
                };
                turn = turn.wrapping_add(1);
                classic_session(client, channel, &mut listener, again, &mut backoff, end).await
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = session => {
                if r.is_err() {
                    listener.failed();
                }
            }
        }
        if afresh_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
            afresh_at = None;
        }
        again = true;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Resolves when a session of kind `sharded` must end: the cluster's
/// answer on sharded pub/sub changed, or `afresh_at` came. Never, on a
/// server.
async fn switch(conn: Option<&Conn>, sharded: bool, afresh_at: Option<tokio::time::Instant>) {
    let Some(conn) = conn else {
        return std::future::pending().await;
    };
    loop {
        let next = tokio::time::Instant::now() + REDETECT;
        tokio::time::sleep_until(afresh_at.map_or(next, |at| at.min(next))).await;
        if afresh_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
            return;
        }
        if conn.sharded().await.is_ok_and(|now| now != sharded) {
            return;
        }
    }
}

/// One classic subscription through `client`, until it breaks or `end`
/// resolves.
async fn classic_session(
    client: &redis::Client,
    channel: &str,
    listener: &mut impl Listener,
    again: bool,
    backoff: &mut Duration,
    end: impl Future<Output = ()>,
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let mut pubsub = within(2 * PING_EVERY, client.get_async_pubsub()).await?;
    within(2 * PING_EVERY, pubsub.subscribe(channel)).await?;
    listener.subscribed(again);
    let (mut sink, mut messages) = pubsub.split();
    let mut check = checks().await;
    let mut end = std::pin::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => return Ok(()),
            msg = messages.next() => {
                let Some(msg) = msg else { return Err(silent()) };
                listener.message(msg.get_payload_bytes());
            }
            _ = check.tick() => {
                within(PING_EVERY, sink.ping::<redis::Value>()).await?;
                // Lasted a check: the next failure starts from a short
                // wait again.
                *backoff = Duration::from_millis(20);
            }
        }
    }
}

/// One sharded subscription (`SSUBSCRIBE`) on a cluster known by the
/// seeds of `clients`, until it breaks or `end` resolves. The cluster
/// client subscribes again by itself after a failover, and a migrated
/// slot's node unsubscribes its listeners: either may have lost messages,
/// so either ends the session (the next one subscribes `again`). Every
/// second a read of the channel's slot checks its node still answers.
async fn sharded_session(
    clients: &[redis::Client],
    channel: &str,
    listener: &mut impl Listener,
    again: bool,
    backoff: &mut Duration,
    end: impl Future<Output = ()>,
) -> redis::RedisResult<()> {
    use redis::PushKind;
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let seeds: Vec<redis::ConnectionInfo> = clients
        .iter()
        .map(|c| c.get_connection_info().clone())
        .collect();
    let builder = redis::cluster::ClusterClientBuilder::new(seeds)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .retries(2);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let builder =
        builder.tcp_settings(redis::io::tcp::TcpSettings::default().set_user_timeout(USER_TIMEOUT));
    let config = redis::cluster::ClusterConfig::new()
        .set_connection_timeout(Duration::from_millis(500))
        .set_response_timeout(PING_EVERY);
    let client = builder.build()?;
    let mut conn = within(
        2 * PING_EVERY,
        client.get_async_connection_with_config(config),
    )
    .await?;
    within(2 * PING_EVERY, conn.ssubscribe(channel)).await?;
    listener.subscribed(again);
    let mut confirmed = false;
    let mut check = checks().await;
    let mut end = std::pin::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => return Ok(()),
            push = pushes.recv() => {
                let Some(push) = push else { return Err(silent()) };
                // (`Disconnection` comes from any of the client's node
                // connections: the channel's own is watched by the check.)
                match push.kind {
                    PushKind::SMessage => {
                        if let Some(Value::BulkString(payload)) = push.data.get(1) {
                            listener.message(payload);
                        }
                    }
                    PushKind::SSubscribe if !confirmed => confirmed = true,
                    PushKind::SSubscribe | PushKind::SUnsubscribe => return Err(silent()),
                    _ => {}
                }
            }
            _ = check.tick() => {
                let mut read = redis::cmd("EXISTS");
                read.arg(channel);
                within(PING_EVERY, read.query_async::<u64>(&mut conn)).await?;
                *backoff = Duration::from_millis(20);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_set_to_give_up_on_a_silent_peer() {
        let (clients, conn) = connect(&"redis://127.0.0.1:1/0".into()).unwrap();
        assert!(!conn.is_cluster());
        #[cfg(target_os = "linux")]
        assert_eq!(
            clients.clients[0]
                .get_connection_info()
                .tcp_settings()
                .user_timeout(),
            Some(USER_TIMEOUT)
        );
        let bad = connect(&"nope://x".into()).err().expect("refused");
        assert!(bad.starts_with("redis url:"), "{bad}");
    }

    #[tokio::test]
    async fn a_list_of_urls_is_a_cluster_and_every_seed_is_checked() {
        let target = RedisTarget::from(" redis://127.0.0.1:7000, redis://127.0.0.1:7001,");
        assert_eq!(
            target,
            RedisTarget::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
        );
        let (clients, conn) = connect(&target).unwrap();
        assert!(conn.is_cluster());
        assert_eq!(clients.clients.len(), 2);
        let bad = RedisTarget::cluster(["redis://127.0.0.1:7000", "nope://x"]);
        let bad = connect(&bad).err().expect("refused");
        assert!(bad.starts_with("redis url:"), "{bad}");
        let none = RedisTarget::cluster(Vec::<String>::new());
        let none = connect(&none).err().expect("refused");
        assert!(none.contains("no seed"), "{none}");
    }
}

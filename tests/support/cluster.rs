//! A Redis Cluster of a test's own: six `redis-server`s (three masters,
//! three replicas) on free loopback ports, joined by `redis-cli --cluster
//! create`, with the node timeout a test asks for (one second where a
//! test kills a master, so its replica takes over within a few seconds;
//! five where nothing should fail over, so a busy machine's stalls don't
//! look like deaths). Every server stops when the
//! cluster is dropped, or when the test process exits however it ends
//! (each runs under a shell that kills it when its stdin closes).

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;

use super::redis::{free_port, wait_for_ping};

/// One node: its port and the shell that runs it.
struct Node {
    port: u16,
    pid: String,
    shell: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Closing stdin makes the shell kill its server.
        self.stdin.take();
        let _ = Command::new("kill").args(["-9", &self.pid]).status();
        let _ = self.shell.wait();
    }
}

pub struct OwnCluster {
    nodes: Vec<Node>,
    dir: std::path::PathBuf,
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared cluster's node timeout: long, so a stall of this busy
/// machine never looks like a dead master.
pub const SHARED_NODE_TIMEOUT_MS: u64 = 5000;

/// The cluster the tests share: `REDIS_CLUSTER_URL` when set (seed URLs,
/// comma-separated), otherwise an [`OwnCluster`] this test process starts
/// the first time it is asked for, which stops when the process exits.
/// Tests that kill or reshard start clusters of their own.
pub fn cluster_url() -> String {
    if let Ok(url) = std::env::var("REDIS_CLUSTER_URL") {
        return url;
    }
    static OWN: OnceLock<(String, Mutex<OwnCluster>)> = OnceLock::new();
    OWN.get_or_init(|| {
        // A runtime of its own: the first caller's may be a
        // current-thread one, busy with this call.
        let cluster = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(OwnCluster::start(SHARED_NODE_TIMEOUT_MS))
        })
        .join()
        .expect("the tests' cluster started");
        (cluster.url(), Mutex::new(cluster))
    })
    .0
    .clone()
}

/// A connection for the tests' own reads and writes: one server's, or a
/// cluster's (several comma-separated URLs).
#[derive(Clone)]
pub enum Admin {
    One(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

pub async fn admin(url: &str) -> Admin {
    if url.contains(',') {
        let seeds: Vec<&str> = url.split(',').collect();
        Admin::Cluster(
            redis::cluster::ClusterClient::new(seeds)
                .unwrap()
                .get_async_connection()
                .await
                .expect("the tests' cluster"),
        )
    } else {
        Admin::One(
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .expect("the tests' Redis"),
        )
    }
}

impl ConnectionLike for Admin {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::One(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::One(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::One(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection to one node (not cluster-aware: admin commands).
pub async fn node(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("node {port}: {e}"))
}

impl OwnCluster {
    /// Starts six nodes, each declaring another dead after
    /// `node_timeout_ms` without an answer, and joins them; waits until
    /// every node says the cluster is `ok`.
    pub async fn start(node_timeout_ms: u64) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-perf-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            let n = spawn_node(&dir, node_timeout_ms);
            wait_for_ping(n.port).await;
            // The server answering is this node's, not another process's
            // that took the port first (then this one could not bind it:
            // try another port).
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut node(n.port).await)
                .await
                .unwrap();
            if info.contains(&format!("process_id:{}\r", n.pid)) {
                nodes.push(n);
            }
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools) on PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes, dir };
        for n in &cluster.nodes {
            cluster.wait_ok(n.port, Duration::from_secs(20)).await;
        }
        // Every replica has synced with its master.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut synced = 0;
            for n in &cluster.nodes {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut node(n.port).await)
                    .await
                    .unwrap();
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    synced += 1;
                }
            }
            if synced == cluster.nodes.len() {
                break;
            }
            assert!(Instant::now() < deadline, "replicas did not sync");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
    }

    /// Seed URLs: every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The seeds as one comma-separated string (the URL form of a
    /// cluster).
    pub fn url(&self) -> String {
        self.seeds().join(",")
    }

    /// Ports of the nodes still running.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The masters: port → node id, as a running node sees them.
    pub async fn masters(&self) -> HashMap<u16, String> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut node(self.nodes[0].port).await)
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let mut f = l.split(' ');
                let id = f.next()?.to_owned();
                let addr = f.next()?;
                let port = addr.split(['@', ':']).nth(1)?.parse().ok()?;
                Some((port, id))
            })
            .collect()
    }

    /// The port of the master serving `slot` now.
    pub async fn master_of_slot(&self, slot: u16) -> u16 {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut node(self.nodes[0].port).await)
            .await
            .unwrap();
        for r in ranges {
            let (start, end, master): (u16, u16, (String, u16)) = match r {
                redis::Value::Array(items) => {
                    let mut it = items.into_iter();
                    (
                        redis::from_redis_value(it.next().unwrap()).unwrap(),
                        redis::from_redis_value(it.next().unwrap()).unwrap(),
                        {
                            let node: Vec<redis::Value> =
                                redis::from_redis_value(it.next().unwrap()).unwrap();
                            let mut n = node.into_iter();
                            (
                                redis::from_redis_value(n.next().unwrap()).unwrap(),
                                redis::from_redis_value(n.next().unwrap()).unwrap(),
                            )
                        },
                    )
                }
                other => panic!("CLUSTER SLOTS: {other:?}"),
            };
            if (start..=end).contains(&slot) {
                return master.1;
            }
        }
        panic!("slot {slot} is not served");
    }

    /// The slot `key` hashes to.
    pub async fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut node(self.nodes[0].port).await)
            .await
            .unwrap()
    }

    /// Kills the node on `port` (SIGKILL: no goodbye to the cluster) and
    /// forgets it here.
    pub fn kill(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster");
        self.nodes.remove(i);
    }

    /// Waits until `port` reports `cluster_state:ok` and every slot is
    /// served by a master that answers.
    pub async fn wait_ok(&self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let info: Option<String> = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut node(port).await)
                .await
                .ok();
            if info.is_some_and(|i| i.contains("cluster_state:ok")) {
                return;
            }
            assert!(Instant::now() < deadline, "cluster not ok on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts moving `slot` from its master to `to`: `IMPORTING` on the
    /// target, `MIGRATING` on the source, then moves `first` of its keys.
    /// Until [`finish_migration`](Self::finish_migration), the keys moved
    /// answer with `ASK` on the source.
    pub async fn begin_migration(&self, slot: u16, to: u16, first: usize) -> u16 {
        let from = self.master_of_slot(slot).await;
        let ids = self.masters().await;
        let (from_id, to_id) = (ids[&from].clone(), ids[&to].clone());
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query_async(&mut node(to).await)
            .await
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query_async(&mut node(from).await)
            .await
            .unwrap();
        self.move_keys(slot, from, to, first).await;
        from
    }

    /// Moves the rest of `slot`'s keys from `from` to `to` and gives the
    /// slot to `to` on every master.
    pub async fn finish_migration(&self, slot: u16, from: u16, to: u16) {
        self.move_keys(slot, from, to, usize::MAX).await;
        let to_id = self.masters().await[&to].clone();
        for port in self.masters().await.keys() {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query_async(&mut node(*port).await)
                .await
                .unwrap();
        }
    }

    async fn move_keys(&self, slot: u16, from: u16, to: u16, mut count: usize) {
        let mut src = node(from).await;
        while count > 0 {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(count.min(100))
                .query_async(&mut src)
                .await
                .unwrap();
            if keys.is_empty() {
                return;
            }
            count = count.saturating_sub(keys.len());
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut src)
                .await
                .unwrap();
        }
    }
}

/// Starts one cluster node under a guarding shell; its bus on another
/// free port (the default, port + 10000, may be past 65535).
fn spawn_node(dir: &std::path::Path, node_timeout_ms: u64) -> Node {
    let (port, bus) = (free_port(), free_port());
    let script = format!(
        "redis-server --port {port} --cluster-port {bus} --bind 127.0.0.1 \
         --cluster-enabled yes --cluster-config-file nodes-{port}.conf \
         --cluster-node-timeout {node_timeout_ms} --dir '{}' --save '' --appendonly no \
         >/dev/null 2>&1 & r=$!; echo $r; read _; kill -9 $r",
        dir.display()
    );
    let mut shell = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let stdin = shell.stdin.take();
    let mut pid = String::new();
    std::io::BufReader::new(shell.stdout.take().expect("piped stdout"))
        .read_line(&mut pid)
        .expect("the server's pid");
    Node {
        port,
        pid: pid.trim().to_owned(),
        shell,
        stdin,
    }
}

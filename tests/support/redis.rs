//! A Redis for the tests: the one at `REDIS_URL` (or one started for the
//! test process when it is not set), or a `redis-server` a
//! test starts on a port of its own (outage tests kill, pause and restart
//! it), and a proxy that can turn connections into black holes.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The Redis the tests share: `REDIS_URL` when set (CI sets it), otherwise
/// a `redis-server` this test process starts on a free port the first time
/// it is asked for, and which goes when the process exits. A missing
/// `redis-server` fails loudly, naming the Debian package.
pub fn redis_url() -> String {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return url;
    }
    static OWN: OnceLock<String> = OnceLock::new();
    OWN.get_or_init(start_for_this_process).clone()
}

/// Starts `redis-server` under a shell that kills it when this process's
/// end of the shell's stdin closes (at exit, however the process ends).
/// The server is identified by its process id (`INFO server`), so a
/// server another test started on the same free port in between is never
/// mistaken for it: the start is tried again on another port.
fn start_for_this_process() -> String {
    static STDIN: OnceLock<Mutex<Vec<ChildStdin>>> = OnceLock::new();
    let probe = Command::new("redis-server").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "REDIS_URL is not set and redis-server is not installed: install the Debian package \
         redis-server (or set REDIS_URL to a Redis the tests may use)"
    );
    for _ in 0..5 {
        let port = free_port();
        let (stdin, pid) = spawn_guarded(port);
        // Kept open until the process exits (a failed attempt's shell
        // stops its server too, when the process exits).
        STDIN
            .get_or_init(|| Mutex::new(Vec::new()))
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stdin);
        if answers_as(port, &pid) {
            return format!("redis://127.0.0.1:{port}");
        }
    }
    panic!("could not start a redis-server of the tests' own (5 attempts)");
}

/// `sh` running `redis-server` on `port` until its stdin closes; the
/// server's process id.
// The shell is never waited for: it exits (stopping redis-server) when
// this process's end of its stdin closes.
#[allow(clippy::zombie_processes)]
fn spawn_guarded(port: u16) -> (ChildStdin, String) {
    use std::io::BufRead;
    let script = format!(
        "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & \
         r=$!; echo $r; read _; kill $r"
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let stdin = child.stdin.take().expect("piped stdin");
    let mut pid = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut pid)
        .expect("the shell says the server's pid");
    (stdin, pid.trim().to_owned())
}

/// Whether the Redis answering on `port` within 10 s is process `pid`.
fn answers_as(port: u16, pid: &str) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reply = Vec::new();
            let mut buf = [0u8; 4096];
            if c.write_all(b"INFO server\r\n").is_ok() {
                // A bulk string: read until the whole reply is in.
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    reply.extend_from_slice(&buf[..n]);
                    if reply.ends_with(b"\r\n\r\n") || reply.len() > 64 * 1024 {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&reply);
                if let Some(line) = text.lines().find(|l| l.starts_with("process_id:")) {
                    return line["process_id:".len()..].trim() == pid;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A key prefix no other test (or run) uses.
pub fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tower-perf-test:{test}:{}:{nanos}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port free now and never handed out before by this process
/// (the kernel may give a port just released to the next caller, before
/// the server meant for it binds it).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A redis-server of this test's own, on `port`; killed when dropped.
pub struct OwnRedis {
    pub child: Child,
}

/// Waits (up to 10 s) until the Redis on `port` answers `PING`.
pub async fn wait_for_ping(port: u16) {
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = redis::Client::open(url.as_str()) {
            if let Ok(mut conn) = c.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl OwnRedis {
    pub async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        wait_for_ping(port).await;
        Self { child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnRedis {
    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([signal, pid.as_str()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }
}

/// A TCP proxy to `127.0.0.1:upstream` whose connections can be cut
/// silently: after [`BlackHole::cut`], every connection open so far keeps
/// its socket but carries nothing more either way (a peer gone without a
/// word, as after a partition or a host replaced behind an address); new
/// connections work.
pub struct BlackHole {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    dead_below: Arc<AtomicUsize>,
}

impl BlackHole {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let dead_below = Arc::new(AtomicUsize::new(0));
        let (acc, dead) = (Arc::clone(&accepted), Arc::clone(&dead_below));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let me = acc.fetch_add(1, Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, me, Arc::clone(&dead)));
                tokio::spawn(pump(sr, cw, me, Arc::clone(&dead)));
            }
        });
        Self {
            port,
            accepted,
            dead_below,
        }
    }

    /// Every connection open now goes silent for good.
    pub fn cut(&self) {
        self.dead_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    me: usize,
    dead_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if me < dead_below.load(Ordering::SeqCst) {
            // Swallowed: the socket stays open, nothing gets through.
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

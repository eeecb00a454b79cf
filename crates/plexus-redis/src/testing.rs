//! A real `redis-server` for tests: started on a free loopback port, stopped when dropped, and
//! stopped by a watchdog when the test process exits without dropping it (statics are never
//! dropped). Needs `redis-server` on `PATH` (`scripts/test.sh` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server without persistence on a free port and waits until it answers.
    pub fn start() -> std::io::Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        RedisServer::start_on(port)
    }

    /// Starts a server on `port` (to restart one on the same port).
    pub fn start_on(port: u16) -> std::io::Result<RedisServer> {
        RedisServer::spawn(port, "--save '' --appendonly no")
    }

    /// Starts a server that writes every command to an append-only file in `dir` (fsync
    /// always), so a restart on the same port and directory loses nothing.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> std::io::Result<RedisServer> {
        RedisServer::spawn(
            port,
            &format!(
                "--save '' --appendonly yes --appendfsync always --dir '{}'",
                dir.display()
            ),
        )
    }

    fn spawn(port: u16, persistence: &str) -> std::io::Result<RedisServer> {
        let test_pid = std::process::id();
        // The watchdog shell kills redis when the test process is gone.
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 {persistence} --protected-mode no & \
             pid=$!; trap 'kill $pid 2>/dev/null; exit 0' TERM INT; \
             while kill -0 {test_pid} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.2; done; kill $pid 2>/dev/null"
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "redis-server did not start (is it installed?)",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now (the watchdog kills redis, then exits).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A key prefix no other engine in this process uses.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

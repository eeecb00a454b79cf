//! Helpers shared by the tests that run the `plexus` binary.
#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Upper bound for anything these helpers wait for; never a pass condition.
pub const WAIT: Duration = Duration::from_secs(20);

/// The binary under test, with a clean environment: the test's own `PLEXUS_…` variables must
/// not configure it.
pub fn plexus() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plexus"));
    clean_env(&mut command);
    command
}

/// Removes the test's own `PLEXUS_…` variables from a command's environment and quiets the log.
pub fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("PLEXUS_") {
            command.env_remove(key);
        }
    }
    command.env("PLEXUS_LOG", "warn");
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to a loopback port over a plain socket; the status and the body, or
/// `None` when nothing answers.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Polls `ready` until it holds; fails the test after [`WAIT`].
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Until `port` answers `GET /health` with 200.
pub fn wait_healthy(port: u16) {
    wait_for("the server's /health", || {
        http(port, "GET", "/health", &[], "").is_some_and(|(s, _)| s == 200)
    });
}

/// A child process that is killed when the test ends, passed or failed.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system's temporary directory (no tempfile dependency).
pub fn tempdir(name: &str) -> std::path::PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let unique = RandomState::new().hash_one(Instant::now());
    let dir = std::env::temp_dir().join(format!("plexus-{name}-{}-{unique}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! `plexus sub --since` and `--history` with the real binary against `plexus serve`: the
//! recovered (or history) publications are printed first, then the live ones, and stderr says
//! whether the recovery worked.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{free_port, plexus};

/// Upper bound for anything the test waits for; never a pass condition.
const WAIT: Duration = Duration::from_secs(20);

/// Every channel open, with history and recovery, spelled out so that the test does not depend
/// on the development defaults.
const CONFIG: &str = r#"
[server]
dev_mode = true

[[namespaces]]
name = "all"
channels = "*"
subscribe = "anyone"
publish = "anyone"
history_size = 100
history_ttl_ms = 300000
recovery = true
"#;

/// `plexus serve` with [`CONFIG`], once it accepts connections.
struct Serve {
    child: Child,
    url: String,
    config: std::path::PathBuf,
}

impl Serve {
    fn start() -> Serve {
        let port = free_port();
        let config = std::env::temp_dir().join(format!("plexus-cli-sub-{port}.toml"));
        std::fs::write(&config, CONFIG).unwrap();
        let child = plexus()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("plexus serve starts");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Serve {
            child,
            url: format!("ws://127.0.0.1:{port}/ws"),
            config,
        }
    }

    /// `plexus pub`; returns its `{"offset", "epoch"}`.
    fn publish(&self, channel: &str, data: &str) -> Value {
        let out = plexus()
            .args(["pub", "--url", &self.url, "--channel", channel, data])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn sub(&self, args: &[&str]) -> Command {
        let mut command = plexus();
        command.args(["sub", "--url", &self.url]).args(args);
        command
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Ends a child process when a failed assertion leaves it running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
}

/// The offsets of the publications a `plexus sub` printed.
fn offsets(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            v["offset"].as_u64().unwrap()
        })
        .collect()
}

/// Runs a command to its end, within the limit.
fn finish(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

/// Waits for a child to end, within the limit; kills it when it does not.
fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the command did not end in time");
        }
    }
}

#[test]
fn sub_since_and_history_print_the_past_first_then_the_live_publications() {
    let serve = Serve::start();
    let mut epoch = String::new();
    for n in 1..=3 {
        let at = serve.publish("demo", &format!(r#"{{"n":{n}}}"#));
        assert_eq!(at["offset"], n);
        epoch = at["epoch"].as_str().unwrap().to_owned();
    }

    // OFFSET alone: the channel's current epoch.
    let out = finish(serve.sub(&["--channel", "demo", "--since", "1", "--count", "2"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(offsets(&out.stdout), [2, 3]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recovered 2 publications of demo after offset 1"),
        "{stderr}"
    );

    // OFFSET:EPOCH.
    let since = format!("2:{epoch}");
    let out = finish(serve.sub(&["--channel", "demo", "--since", &since, "--count", "1"]));
    assert_eq!(offsets(&out.stdout), [3]);

    // History on subscribe.
    let out = finish(serve.sub(&["--channel", "demo", "--history", "2", "--count", "2"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(offsets(&out.stdout), [2, 3]);

    // Another epoch: nothing recovered, said on stderr, then the live publications.
    let mut child = serve
        .sub(&["--channel", "demo", "--since", "1:gone", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let note = lines.recv_timeout(WAIT).expect("a note on stderr");
    assert!(
        note.contains("could not recover demo after offset 1 (epoch_changed)"),
        "{note}"
    );
    assert!(note.contains("live from offset 3"), "{note}");
    serve.publish("demo", r#"{"n":4}"#);
    let out = wait_output(child);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(offsets(&out.stdout), [4]);

    // A bad position is refused by the argument parser.
    let out = finish(serve.sub(&["--channel", "demo", "--since", "x:y"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an offset"));
}

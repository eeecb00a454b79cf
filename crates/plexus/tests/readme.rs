//! The README's "Quick start" and "Standalone server" sections, run as a new user runs them: each
//! `sh` block of the section, in order, with `sh -e`, in a fresh directory, with the binary under
//! test first on the `PATH`. A block whose last command is `plexus serve` or `plexus sub` keeps
//! running, as in its own terminal; the others run to their end and must succeed. Then the
//! outputs the README promises are checked.
//!
//! What differs from a user's terminal, and why:
//! - `cargo run --release --` is the `plexus` binary (the workspace's default member, checked
//!   below); the test runs the binary it was built with rather than a release build;
//! - `cargo install --path crates/plexus --locked` is not run (it would build a release binary);
//!   the test checks that it names the crate of the `plexus` binary instead;
//! - the server listens on a free port, not 8000: `PLEXUS_SERVER_LISTEN` and `PLEXUS_URL` say
//!   which, and `localhost:8000` in a command becomes that port.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;

mod common;

use common::{WAIT, clean_env, free_port, http, plexus, tempdir, wait_for, wait_healthy};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `sh` blocks of the README section `## {title}`, in order.
fn sh_blocks(title: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let heading = format!("\n## {title}\n");
    let start = readme.find(&heading).expect("the README has the section") + heading.len();
    let section = readme[start..].split("\n## ").next().unwrap();
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == "```sh" {
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push(block.join("\n") + "\n");
        }
    }
    assert!(!blocks.is_empty(), "no sh block under ## {title}");
    blocks
}

/// What a block is, from its last command.
#[derive(Debug, PartialEq)]
enum Kind {
    /// `cargo install …`: not run (see the top of this file).
    Install,
    /// `plexus serve`: runs until the test ends.
    Server,
    /// `plexus sub --channel C`: runs while the later blocks publish.
    Subscriber { channel: String },
    /// Runs to its end.
    Command,
}

/// `cargo run --release -- ARGS` is `plexus ARGS` (the workspace's default member).
fn as_binary(block: &str) -> String {
    block.replace("cargo run --release -- ", "plexus ")
}

fn kind(block: &str) -> Kind {
    let block = as_binary(block);
    let last = block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim())
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    if last.starts_with("cargo install") {
        Kind::Install
    } else if last.starts_with("plexus serve") {
        Kind::Server
    } else if last.starts_with("plexus sub ") {
        let channel = last
            .split_whitespace()
            .skip_while(|w| *w != "--channel")
            .nth(1)
            .expect("plexus sub --channel C");
        Kind::Subscriber {
            channel: channel.to_owned(),
        }
    } else {
        Kind::Command
    }
}

/// A README section run in a fresh directory against a server on a free port.
struct Section {
    dir: PathBuf,
    port: u16,
    /// Background blocks, killed with their process group at the end.
    running: Vec<Child>,
}

impl Section {
    fn new(name: &str) -> Section {
        Section {
            dir: tempdir(name),
            port: free_port(),
            running: Vec::new(),
        }
    }

    /// `sh -ec BLOCK` as the user would type it, in its own process group.
    fn shell(&self, block: &str) -> Command {
        let block = as_binary(block).replace("localhost:8000", &format!("localhost:{}", self.port));
        let bin = Path::new(env!("CARGO_BIN_EXE_plexus")).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut command = Command::new("sh");
        clean_env(&mut command);
        command
            // -e: a command that fails fails the block, as a user would notice.
            .arg("-ec")
            .arg(block)
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("PLEXUS_SERVER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PLEXUS_URL", format!("ws://127.0.0.1:{}/ws", self.port))
            .process_group(0);
        command
    }

    /// Runs the section's blocks; returns the subscriber's stdout and the last block's output.
    fn run(&mut self, blocks: &[String], api_key: impl Fn(&Path) -> Option<String>) -> Outputs {
        let mut subscriber = None;
        let mut stdout = Vec::new();
        for block in blocks {
            match kind(block) {
                Kind::Install => check_install(block),
                Kind::Server => {
                    let child = self
                        .shell(block)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    self.running.push(child);
                    wait_healthy(self.port);
                }
                Kind::Subscriber { channel } => {
                    // Its stderr notes the connection's loss when the test ends.
                    let mut child = self
                        .shell(block)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    let lines = line_reader(child.stdout.take().unwrap());
                    self.running.push(child);
                    let key = api_key(&self.dir);
                    let headers: Vec<(&str, &str)> =
                        key.iter().map(|k| ("x-api-key", k.as_str())).collect();
                    wait_for("the subscriber", || {
                        http(self.port, "POST", "/api/channels", &headers, "{}")
                            .is_some_and(|(_, body)| body.contains(&format!("\"{channel}\"")))
                    });
                    subscriber = Some((self.running.len() - 1, lines));
                }
                Kind::Command => {
                    let out = self.shell(block).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{block}\nfailed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    stdout.push(String::from_utf8(out.stdout).unwrap());
                }
            }
        }
        let (index, lines) = subscriber.expect("the section has a subscriber");
        Outputs {
            commands: stdout,
            subscriber: lines,
            subscriber_index: index,
        }
    }

    fn subscriber_exit(&mut self, outputs: &Outputs) -> std::process::ExitStatus {
        let child = &mut self.running[outputs.subscriber_index];
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the subscriber did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        for child in &mut self.running {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Outputs {
    /// The stdout of each block that ran to its end, in order.
    commands: Vec<String>,
    subscriber: mpsc::Receiver<String>,
    subscriber_index: usize,
}

impl Outputs {
    /// The subscriber's next printed publication.
    fn publication(&self) -> Value {
        let line = self
            .subscriber
            .recv_timeout(WAIT)
            .expect("the subscriber prints a publication");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

fn line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `cargo install --path P --locked` installs the `plexus` binary: P is its crate.
fn check_install(block: &str) {
    let words: Vec<&str> = block.split_whitespace().collect();
    assert!(words.contains(&"--locked"), "{block}");
    let path = words
        .iter()
        .skip_while(|w| **w != "--path")
        .nth(1)
        .expect("cargo install --path");
    let manifest = std::fs::read_to_string(repo_root().join(path).join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[[bin]]\nname = \"plexus\""),
        "{path} is the crate of the plexus binary"
    );
    assert!(repo_root().join("Cargo.lock").exists(), "--locked needs it");
}

#[test]
fn cargo_run_runs_the_plexus_binary() {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("default-members = [\"crates/plexus\"]"),
        "`cargo run` in the README runs the plexus binary"
    );
}

#[test]
fn the_quick_start_runs_as_written() {
    let blocks = sh_blocks("Quick start");
    let kinds: Vec<Kind> = blocks.iter().map(|b| kind(b)).collect();
    assert_eq!(
        kinds,
        [
            Kind::Server,
            Kind::Subscriber {
                channel: "demo".into()
            },
            Kind::Command
        ],
        "{blocks:#?}"
    );
    let mut section = Section::new("readme-quick-start");
    // Development mode: the API needs no key.
    let outputs = section.run(&blocks, |_| None);

    let printed: Vec<Value> = outputs.commands[0]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(printed.len(), 3, "{printed:?}");
    assert_eq!(printed[0]["offset"], 1, "pub prints the offset");
    assert_eq!(printed[1]["offset"], 2);
    assert_eq!(printed[2], json!([1, 2, 3]), "call echo prints its result");

    let first = outputs.publication();
    assert_eq!(first["data"], json!({"text": "hi"}), "{first}");
    assert_eq!(first["channel"], "demo");
    assert_eq!(outputs.publication()["data"], json!("bye"));
    assert!(section.subscriber_exit(&outputs).success(), "--count 2");
}

#[test]
fn the_standalone_section_runs_as_written() {
    let blocks = sh_blocks("Standalone server");
    let kinds: Vec<Kind> = blocks.iter().map(|b| kind(b)).collect();
    assert_eq!(
        kinds,
        [
            Kind::Install,
            Kind::Server,
            Kind::Subscriber {
                channel: "chat:lobby".into()
            },
            Kind::Command
        ],
        "{blocks:#?}"
    );
    assert!(
        Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "the README publishes with curl: install it (apt-get install curl)"
    );
    let mut section = Section::new("readme-standalone");
    // The test waits for the subscriber through the API, with the key of the generated file.
    let outputs = section.run(&blocks, |dir| {
        let out = plexus()
            .current_dir(dir)
            .args(["config", "get", "api.key", "--config", "plexus.toml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    });

    let answer: Value = serde_json::from_str(&outputs.commands[0])
        .unwrap_or_else(|e| panic!("{}: {e}", outputs.commands[0]));
    assert_eq!(answer["result"]["offset"], 1, "curl prints the offset");
    let publication = outputs.publication();
    assert_eq!(publication["channel"], "chat:lobby", "{publication}");
    assert_eq!(publication["data"], json!({"text": "hello"}));
}

//! The standalone walk-through of `docs/configuration.md`, as a new user runs it, with the real
//! binary: `config init`, edit a secret, `config check`, `serve --config`, `token`,
//! `sub --token`, publish with an HTTP POST to `/api/publish`; the subscriber prints it. Also
//! the configuration's precedence and error reports as the binary shows them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::{Running, free_port, http, plexus, tempdir, wait_for, wait_healthy};

const SECRET: &str = "my-own-secret-that-is-long-enough-0123456789";

fn run(command: &mut Command) -> Output {
    command.output().expect("plexus runs")
}

fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)], port: u16) -> Running {
    let mut command = plexus();
    command
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let server = Running(command.spawn().expect("plexus serve starts"));
    wait_healthy(port);
    server
}

fn terminate(mut server: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.0.wait().unwrap();
    assert!(exit.success(), "plexus serve exits 0 on SIGTERM: {exit:?}");
}

#[test]
fn a_new_user_walks_through_the_standalone_setup() {
    let dir = tempdir("walkthrough");
    let port = free_port();

    // 1. plexus config init > plexus.toml, then edit a secret (and the port, for the test).
    let init = run(plexus().args(["config", "init"]));
    assert!(init.status.success());
    let text = String::from_utf8(init.stdout).unwrap();
    let edited: String = text
        .lines()
        .map(|line| match line {
            l if l.starts_with("hmac_secret = ") => format!("hmac_secret = \"{SECRET}\""),
            l if l.starts_with("listen = ") => format!("listen = \"127.0.0.1:{port}\""),
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("plexus.toml"), edited + "\n").unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("config init writes an API key")
        .to_owned();

    // plexus config check plexus.toml
    let check = run(plexus()
        .current_dir(&dir)
        .args(["config", "check", "plexus.toml"]));
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("plexus.toml: ok"), "{out}");

    // 2. plexus serve --config plexus.toml
    let server = serve(&dir, &["--config", "plexus.toml"], &[], port);

    // 3. plexus token --config plexus.toml --user alice (signed with the edited secret).
    let token = run(plexus().current_dir(&dir).args([
        "token",
        "--config",
        "plexus.toml",
        "--user",
        "alice",
    ]));
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let by_secret = run(plexus().args([
        "token",
        "--secret",
        SECRET,
        "--user",
        "alice",
        "--expires-in",
        "never",
    ]));
    assert!(by_secret.status.success());

    // 4. plexus sub --token … --channel chat:lobby
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut sub = plexus()
        .args([
            "sub",
            "--url",
            &url,
            "--token",
            &token,
            "--channel",
            "chat:lobby",
            "--count",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let auth = ("x-api-key", key.as_str());
    wait_for("the subscriber", || {
        http(port, "POST", "/api/channels", &[auth], "{}")
            .is_some_and(|(_, body)| body.contains("chat:lobby"))
    });

    // 5. curl -X POST /api/publish with the API key.
    let (status, body) = http(
        port,
        "POST",
        "/api/publish",
        &[auth],
        r#"{"channel":"chat:lobby","data":{"text":"hello"}}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"offset\":1"), "{body}");

    // The subscriber prints the publication and (with --count 1) exits.
    let mut line = String::new();
    BufReader::new(sub.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(r#""data":{"text":"hello"}"#), "{line}");
    assert!(sub.wait().unwrap().success());

    // Without the key the API refuses; without a token the subscriber is refused.
    let (status, _) = http(
        port,
        "POST",
        "/api/publish",
        &[],
        r#"{"channel":"chat:lobby","data":1}"#,
    )
    .unwrap();
    assert_eq!(status, 401);
    let anonymous = run(plexus().args([
        "sub",
        "--url",
        &url,
        "--channel",
        "chat:lobby",
        "--count",
        "1",
    ]));
    assert!(
        !anonymous.status.success(),
        "an anonymous subscriber is refused"
    );

    // Metrics are on in the generated file.
    let (status, metrics) = http(port, "GET", "/metrics", &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("plexus_api_requests_total{method=\"publish\"} 1"),
        "{metrics}"
    );

    terminate(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempdir("walkthrough");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    std::fs::write(
        dir.join("plexus.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{file_port}\"\n[client]\nanonymous = true\n"),
    )
    .unwrap();

    let env_listen = format!("127.0.0.1:{env_port}");
    let server = serve(
        &dir,
        &["--config", "plexus.toml"],
        &[("PLEXUS_SERVER_LISTEN", &env_listen)],
        env_port,
    );
    assert!(
        http(file_port, "GET", "/health", &[], "").is_none(),
        "the environment wins over the file"
    );
    terminate(server);

    let flag_listen = format!("127.0.0.1:{flag_port}");
    let server = serve(
        &dir,
        &[
            "--config",
            "plexus.toml",
            "--listen",
            &flag_listen,
            "--api-key",
            "flag-key-0123456789",
        ],
        &[
            ("PLEXUS_SERVER_LISTEN", &env_listen),
            ("PLEXUS_API_KEY", "env-key-0123456789"),
        ],
        flag_port,
    );
    assert!(
        http(env_port, "GET", "/health", &[], "").is_none(),
        "the flag wins over the environment"
    );
    let (status, _) = http(
        flag_port,
        "POST",
        "/api/info",
        &[("x-api-key", "flag-key-0123456789")],
        "",
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = http(
        flag_port,
        "POST",
        "/api/info",
        &[("x-api-key", "env-key-0123456789")],
        "",
    )
    .unwrap();
    assert_eq!(status, 401);
    terminate(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn configuration_problems_are_reported_with_their_location() {
    let dir = tempdir("walkthrough");
    std::fs::write(
        dir.join("bad.toml"),
        "[server]\nlisen = \"x\"\n[client]\nmax_subscriptions = \"many\"\n",
    )
    .unwrap();
    let check = run(plexus()
        .current_dir(&dir)
        .args(["config", "check", "bad.toml"]));
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("bad.toml:2:1: `server.lisen`: unknown key `lisen` (did you mean `listen`?)"),
        "{err}"
    );
    assert!(err.contains("bad.toml:4:1: `client.max_subscriptions`: expected a non-negative integer, found string"), "{err}");
    assert!(err.contains("bad.toml: 2 problems"), "{err}");

    // serve refuses to start, with the same report and the environment's problems too.
    let serve = run(plexus()
        .current_dir(&dir)
        .args(["serve", "--config", "bad.toml"])
        .env("PLEXUS_API_KEYY", "x"));
    assert_eq!(serve.status.code(), Some(2));
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(err.contains("bad.toml:2:1"), "{err}");
    assert!(
        err.contains("environment variable PLEXUS_API_KEYY: not a setting"),
        "{err}"
    );
    assert!(err.contains("3 configuration problems"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

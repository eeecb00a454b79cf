//! `plexus sub`, `pub` and `call --credentials JSON` against a server whose connect hook reads
//! the credentials: the user they name is the one the server sees, and refused credentials end
//! the command with the hook's error.

use plexus_core::{
    Access, AuthRequest, ChannelMatch, CommandContext, Error, ErrorCode, Identity, Namespace,
    Payload,
};
use plexus_server::{RunningServer, Server};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

mod common;

use common::plexus;

/// Upper bound for anything the test waits for; never a pass condition.
const WAIT: Duration = Duration::from_secs(20);

/// The hook: `{"login": L, "password": "open sesame"}` authenticates user L; anything else is
/// refused with the application's code 1403.
async fn check(request: AuthRequest) -> Result<Identity, Error> {
    let credentials: Value = request
        .credentials
        .as_ref()
        .and_then(Payload::as_json_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    match (&credentials["login"], &credentials["password"]) {
        (Value::String(login), Value::String(password)) if password == "open sesame" => {
            Ok(Identity::new(login.as_str()))
        }
        _ => Err(Error::new(ErrorCode(1403), "wrong login or password")),
    }
}

/// Authenticated users only (no anonymous connections), a `whoami` command, one open room.
async fn server() -> RunningServer {
    Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .anonymous(false)
        .auth_hook(check)
        .namespace(
            Namespace::new("rooms", ChannelMatch::Prefix("room:".into()))
                .subscribe(Access::Anyone)
                .publish(Access::Anyone),
        )
        .command("whoami", |ctx: CommandContext| async move {
            Ok(Payload::json(&json!({"user": ctx.user.as_deref()})).unwrap())
        })
        .build()
        .start()
        .await
        .expect("server starts")
}

const ANN: &str = r#"{"login":"ann","password":"open sesame"}"#;

async fn run(args: Vec<String>) -> Output {
    let child = plexus()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waited = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    match waited {
        Ok(output) => output.unwrap().unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            panic!("the command did not end in time");
        }
    }
}

fn args(url: &str, list: &[&str]) -> Vec<String> {
    let (command, rest) = list.split_first().unwrap();
    [command, "--url", url]
        .into_iter()
        .chain(rest.iter().copied())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn call_pub_and_sub_authenticate_with_credentials() {
    let server = server().await;
    let url = server.ws_url();

    let out = run(args(&url, &["call", "--credentials", ANN, "whoami"])).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!({"user": "ann"})
    );

    // A subscriber with credentials receives what a publisher with credentials sends, and the
    // publication names the publisher's user.
    let mut sub = plexus()
        .args(args(
            &url,
            &[
                "sub",
                "--credentials",
                ANN,
                "--channel",
                "room:1",
                "--count",
                "1",
            ],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.node().hub().subscriber_count("room:1") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bob = r#"{"login":"bob","password":"open sesame"}"#;
    let out = run(args(
        &url,
        &[
            "pub",
            "--credentials",
            bob,
            "--channel",
            "room:1",
            r#"{"text":"hi"}"#,
        ],
    ))
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["offset"],
        1
    );
    let stdout = sub.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(WAIT, line).await.unwrap().unwrap();
    let publication: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(publication["data"], json!({"text": "hi"}), "{line}");
    assert_eq!(publication["publisher"]["user"], "bob", "{line}");
    assert!(sub.wait().unwrap().success());
}

#[tokio::test]
async fn refused_or_missing_credentials_end_the_command() {
    let server = server().await;
    let url = server.ws_url();

    // The hook's refusal, with its own code; the connection was refused (exit 2).
    let wrong = r#"{"login":"ann","password":"guess"}"#;
    let out = run(args(&url, &["call", "--credentials", wrong, "whoami"])).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["code"], 1403, "{error}");
    assert_eq!(error["close_code"], 4502, "{error}");

    // Without credentials this server has nobody to let in.
    let out = run(args(&url, &["call", "whoami"])).await;
    assert!(!out.status.success(), "{out:?}");

    // Credentials that are not JSON are refused before connecting.
    let out = run(args(
        &url,
        &["call", "--credentials", "{login:ann}", "whoami"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--credentials") && stderr.contains("not JSON"),
        "{stderr}"
    );
}

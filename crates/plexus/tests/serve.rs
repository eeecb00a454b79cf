//! The README's first command, as a new user runs it: `plexus serve` in development mode, a
//! client that publishes and receives, then SIGTERM: clients get 4000 and the process exits 0.
//! Also what it prints first: the startup summary names the demo page, and a busy port is
//! reported at once, before the summary.

use futures_util::{SinkExt, StreamExt};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{free_port, plexus};

const WAIT: Duration = Duration::from_secs(20);

async fn health(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("no error")
}

#[tokio::test]
async fn serve_in_development_mode_then_shut_down_on_sigterm() {
    let port = free_port();
    let mut child = plexus()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plexus starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        if let Some(body) = health(port).await {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never answered /health"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    let hello = next_text(&mut ws).await;
    assert!(hello.to_text().unwrap().contains("\"push\":\"hello\""));
    assert!(
        hello.to_text().unwrap().contains("\"auth\":\"optional\""),
        "development mode is anonymous"
    );
    ws.send(Message::text(
        r#"{"id":1,"op":"subscribe","params":{"channel":"demo"}}
{"id":2,"op":"publish","params":{"channel":"demo","data":{"text":"hi"}}}"#,
    ))
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains("\"push\":\"pub\"") {
        if let Message::Text(t) = next_text(&mut ws).await {
            seen.push_str(t.as_str());
        }
    }
    assert!(seen.contains(r#""data":{"text":"hi"}"#), "{seen}");
    // Development mode keeps history: a later subscriber can ask for the recent publications.
    ws.send(Message::text(
        r#"{"id":3,"op":"subscribe","params":{"channel":"demo-history","history":5}}"#,
    ))
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains(r#""id":3"#) {
        if let Message::Text(t) = next_text(&mut ws).await {
            seen.push_str(t.as_str());
        }
    }
    ws.send(Message::text(
        r#"{"id":4,"op":"publish","params":{"channel":"demo-history","data":"kept"}}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        r#"{"id":5,"op":"history","params":{"channel":"demo-history","limit":5}}"#,
    ))
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains(r#""id":5"#) {
        if let Message::Text(t) = next_text(&mut ws).await {
            seen.push_str(t.as_str());
        }
    }
    assert!(
        seen.contains(r#""data":"kept""#) && seen.contains(r#""publications":[{"#),
        "{seen}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let close = loop {
        match next_text(&mut ws).await {
            Message::Close(frame) => break frame.expect("a close code"),
            _ => continue,
        }
    };
    assert_eq!(u16::from(close.code), 4000);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// The lines a child writes to stderr, as they come; `None` once it closed stderr.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn the_startup_summary_names_the_demo_page() {
    let port = free_port();
    let mut child = plexus()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PLEXUS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plexus starts");
    let lines = stderr_lines(&mut child);
    let mut seen = Vec::new();
    let demo = loop {
        let line = lines.recv_timeout(WAIT).expect("a startup line in time");
        if let Some((_, url)) = line.split_once("demo page: ") {
            break url.trim().to_owned();
        }
        assert!(
            !line.contains("plexus listening"),
            "no demo page line in {seen:#?}"
        );
        seen.push(line);
    };
    assert_eq!(demo, format!("http://127.0.0.1:{port}/"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_busy_port_fails_at_once_before_the_summary() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let mut child = plexus()
        .args(["serve", "--listen", &addr.to_string()])
        .env("PLEXUS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plexus starts");
    let lines = stderr_lines(&mut child);
    let mut stderr = Vec::new();
    while let Ok(line) = lines.recv_timeout(WAIT) {
        stderr.push(line);
    }
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(2), "{stderr:#?}");
    let stderr = stderr.join("\n");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on {addr}: ")),
        "the error comes first: {stderr}"
    );
    assert!(stderr.contains("--listen ADDR"), "{stderr}");
    assert!(
        !stderr.contains("authentication:") && !stderr.contains("development mode"),
        "nothing is summarised before the error: {stderr}"
    );
    drop(busy);
}

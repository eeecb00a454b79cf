//! Sockety against the real server over TCP, TLS and WebSocket (plain and TLS): requests,
//! fast replies, files, streams both ways, hundreds of concurrent requests, pushes of
//! subscribed channels, calls from the server, bad input, and the go-away of a graceful
//! shutdown; and the native client over `wss://`.

mod support;

use bytes::Bytes;
use plexus_client::sockety::{self, Draft, OutFile, Reply};
use plexus_client::{Client, ClientConfig};
use plexus_core::{CommandContext, Error, ErrorCode, Payload};
use plexus_server::RunningServer;
use plexus_server::sockety::{Answer, Request, SocketyConfig};
use plexus_server::tls::TlsConfig;
use std::path::PathBuf;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Certs {
    _dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, in files.
fn certs() -> Certs {
    let dir = std::env::temp_dir().join(format!("plexus-tls-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    Certs {
        _dir: dir,
        cert: cert_path,
        key: key_path,
    }
}

/// A development server with Sockety on TCP, TLS and `/sockety`, TLS on the HTTP listener, a
/// command `echo`, a command `fail` (an application error 1234), and Sockety actions `files`
/// (names and sizes of the files, then the files back) and `stream` (the stream back).
async fn server(certs: &Certs) -> RunningServer {
    let config = SocketyConfig {
        listen: Some(any_port()),
        tls_listen: Some(any_port()),
        memory_file_bytes: 1024,
        ..SocketyConfig::default()
    };
    let mut builder = dev(any_port());
    // Hundreds of requests at once: above the default request rate's burst.
    builder.limits_mut().requests_burst = 10_000;
    start(
        builder
            .tls(TlsConfig::new(&certs.cert, &certs.key))
            .sockety(config)
            .command("echo", |ctx: CommandContext| async move { Ok(ctx.payload) })
            .command("fail", |_ctx: CommandContext| async move {
                Err::<Payload, _>(Error::new(ErrorCode(1234), "no"))
            })
            .sockety_action("files", |mut request: Request| async move {
                let files = std::mem::take(&mut request.message.files);
                let sizes: Vec<String> = files
                    .iter()
                    .map(|f| format!("{}:{}:{}", f.name, f.size, f.is_spooled()))
                    .collect();
                let mut draft = Draft::response().data(sizes.join(","));
                for file in files {
                    draft = draft.file(file.into_outgoing());
                }
                Answer::Respond(draft)
            })
            .sockety_action("stream", |mut request: Request| async move {
                match request.message.stream.take() {
                    Some(stream) => Answer::Respond(Draft::response().stream(stream)),
                    None => Answer::Fast(sockety::fast::BAD_REQUEST),
                }
            }),
    )
    .await
}

fn urls(server: &RunningServer) -> Vec<String> {
    vec![
        format!("tcp://{}", server.sockety_addr().unwrap()),
        format!(
            "tls://localhost:{}",
            server.sockety_tls_addr().unwrap().port()
        ),
        format!("wss://localhost:{}/sockety", server.local_addr().port()),
    ]
}

fn options(certs: &Certs) -> sockety::Options {
    sockety::Options {
        ca_file: Some(certs.cert.clone()),
        ..sockety::Options::default()
    }
}

#[tokio::test]
async fn every_transport_carries_requests_fast_replies_files_and_streams() {
    let certs = certs();
    let server = server(&certs).await;
    for url in urls(&server) {
        let (peer, _incoming) = sockety::connect(&url, options(&certs)).await.unwrap();
        // A command: data in, data out.
        let reply = peer
            .request(Draft::new("echo").data("\"hi\""))
            .await
            .unwrap();
        assert_eq!(reply.into_data().unwrap(), Bytes::from("\"hi\""), "{url}");
        // Errors are fast replies: unknown action, an application's own code.
        let reply = peer.request(Draft::new("nope")).await.unwrap();
        assert!(matches!(reply, Reply::Fast(2)), "{url}: {reply:?}");
        let reply = peer.request(Draft::new("fail")).await.unwrap();
        assert!(matches!(reply, Reply::Fast(1234)), "{url}: {reply:?}");
        // Files both ways: a small one in memory, a large one spooled, both back intact.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let reply = peer
            .request(
                Draft::new("files")
                    .file(OutFile::from_bytes("a.txt", &b"12345"[..]))
                    .file(OutFile::from_bytes("big.bin", big.clone())),
            )
            .await
            .unwrap();
        let Reply::Response(mut response) = reply else {
            panic!("{url}: a response")
        };
        assert_eq!(
            &response.data[..],
            b"a.txt:5:false,big.bin:200000:true",
            "{url}"
        );
        let back = response.files.pop().unwrap();
        assert_eq!((back.name.clone(), back.size), ("big.bin".into(), 200_000));
        assert_eq!(back.bytes().await.unwrap(), big, "{url}");
        // A stream both ways.
        let (writer, reader) = sockety::stream(4096);
        let reply = peer
            .request(Draft::new("stream").stream(reader))
            .await
            .unwrap();
        let Reply::Response(mut response) = reply else {
            panic!("{url}: a response")
        };
        let mut echoed = response.stream.take().expect("a stream back");
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let feeder = tokio::spawn({
            let sent = sent.clone();
            async move {
                for chunk in sent.chunks(1000) {
                    writer.send(Bytes::copy_from_slice(chunk)).await.unwrap();
                }
            }
        });
        assert_eq!(echoed.read_to_end(1 << 20).await.unwrap(), sent, "{url}");
        feeder.await.unwrap();
        // Hundreds of concurrent requests.
        let calls: Vec<_> = (0..300)
            .map(|i| {
                let peer = peer.clone();
                tokio::spawn(async move {
                    let data = format!("{i}");
                    let reply = peer.request(Draft::new("echo").data(data.clone())).await;
                    assert_eq!(reply.unwrap().into_data().unwrap(), Bytes::from(data));
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    }
}

#[tokio::test]
async fn subscribed_channels_push_and_the_server_calls_clients() {
    let certs = certs();
    let server = server(&certs).await;
    let url = format!("tcp://{}", server.sockety_addr().unwrap());
    let (peer, mut incoming) = sockety::connect(&url, options(&certs)).await.unwrap();
    let reply = peer
        .request(Draft::new("plexus.subscribe").data(r#"{"channel":"news"}"#))
        .await
        .unwrap();
    let subscribed: serde_json::Value =
        serde_json::from_slice(&reply.into_data().unwrap()).unwrap();
    assert_eq!(subscribed["offset"], 0);
    // A publication by the native protocol reaches the Sockety subscriber as a `push`.
    let native = Client::connect(ClientConfig::new(server.ws_url()).tls_ca_file(&certs.cert))
        .await
        .unwrap();
    native
        .publish("news", Payload::json(&serde_json::json!({"n": 1})).unwrap())
        .await
        .unwrap();
    let push = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(push.action, "push");
    assert!(!push.expects_response);
    let push: serde_json::Value = serde_json::from_slice(&push.data).unwrap();
    assert_eq!(push["channel"], "news");
    assert_eq!(push["data"]["n"], 1);
    // The server calls the client, which answers.
    let api = server.sockety().unwrap();
    let conn = api.connections()[0];
    let call = tokio::spawn(async move {
        api.call(conn, Draft::new("ping").data("?"), Duration::from_secs(10))
            .await
    });
    let ping = incoming.recv().await.unwrap();
    assert_eq!((ping.action.as_str(), &ping.data[..]), ("ping", &b"?"[..]));
    ping.respond(Draft::response().data("pong")).await.unwrap();
    let answer = call.await.unwrap().unwrap();
    assert_eq!(answer.into_data().unwrap(), Bytes::from("pong"));
}

#[tokio::test]
async fn bad_input_gets_a_reason_and_a_close_and_disturbs_nobody() {
    let certs = certs();
    let server = server(&certs).await;
    let addr = server.sockety_addr().unwrap();
    let (peer, _incoming) = sockety::connect(&format!("tcp://{addr}"), options(&certs))
        .await
        .unwrap();
    let cases: &[(&str, &[u8])] = &[
        ("a bad header byte", &[0x42]),
        ("an unknown packet type", &[0xE3, 0xF0]),
        (
            "a packet over the size bound",
            &[0xE3, 0xEC, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        ("data with nothing in progress", &[0xE3, 0xE0, 0x01, 0x00]),
        // A message whose id is not a version-4 UUID.
        (
            "an invalid UUID",
            &[
                0xE3, 0x21, 0x13, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x61,
            ],
        ),
    ];
    // A second message on a channel whose message is not finished (it announced data).
    let mut busy = vec![0xE3];
    let header = plexus_sockety::wire::Header {
        id: plexus_sockety::new_id(),
        parent: None,
        action: "echo".into(),
        data_size: 5,
        files: vec![],
    };
    plexus_sockety::wire::encode_start(&mut busy, &header, false, true);
    let again = busy[1..].to_vec();
    busy.extend_from_slice(&again);
    let cases: Vec<(&str, &[u8])> = cases
        .iter()
        .copied()
        .chain([("a second message on a busy channel", &busy[..])])
        .collect();
    for (name, bytes) in cases {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
            .await
            .expect("the server closes")
            .unwrap();
        assert_eq!(got.last(), Some(&0xB0), "{name}: go-away last");
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("\"code\":4500"), "{name}: {text}");
    }
    // The well-behaved connection lives on.
    let reply = peer.request(Draft::new("echo").data("1")).await.unwrap();
    assert_eq!(reply.into_data().unwrap(), Bytes::from("1"));
}

#[tokio::test]
async fn a_graceful_shutdown_says_go_away_and_answers_the_running_requests() {
    let certs = certs();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Mutex::new(Some(rx));
    let slow = std::sync::Arc::new(tokio::sync::Notify::new());
    let running = slow.clone();
    let server = start(
        dev(any_port())
            .sockety(SocketyConfig {
                listen: Some(any_port()),
                ..SocketyConfig::default()
            })
            .command("slow", move |_ctx: CommandContext| {
                let rx = rx.lock().unwrap().take();
                let running = running.clone();
                async move {
                    running.notify_one();
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    Ok(Payload::json(&"finished").unwrap())
                }
            }),
    )
    .await;
    let url = format!("tcp://{}", server.sockety_addr().unwrap());
    let (peer, _incoming) = sockety::connect(&url, options(&certs)).await.unwrap();
    let call = tokio::spawn({
        let peer = peer.clone();
        async move { peer.request(Draft::new("slow")).await }
    });
    slow.notified().await;
    let shutdown = tokio::spawn(server.shutdown());
    // The client hears go-away, then the running request's answer, then the close.
    for _ in 0..200 {
        if peer.peer_going_away() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peer.peer_going_away(), "go-away came");
    tx.send(()).unwrap();
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.into_data().unwrap(), Bytes::from("\"finished\""));
    assert!(shutdown.await.unwrap(), "every session ended in time");
    peer.closed().await;
}

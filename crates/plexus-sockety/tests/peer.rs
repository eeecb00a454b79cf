//! Two connections' ends over an in-process byte pipe (and, where the socket matters, real
//! TCP): what one sends, the other receives, for every kind of message.

use bytes::Bytes;
use plexus_sockety::{Config, Draft, Message, OutFile, Peer, Reply, fast, start, stream};
use tokio::sync::mpsc;

fn pair(
    server: Config,
    client: Config,
) -> (
    (Peer, mpsc::Receiver<Message>),
    (Peer, mpsc::Receiver<Message>),
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    (start(ar, aw, server), start(br, bw, client))
}

/// Answers every request: `echo` with its data, files and stream, `count` with the number of
/// files, anything else with fast reply 2.
fn serve(mut incoming: mpsc::Receiver<Message>) {
    tokio::spawn(async move {
        while let Some(mut message) = incoming.recv().await {
            tokio::spawn(async move {
                match message.action.as_str() {
                    "echo" => {
                        let mut draft = Draft::response().data(message.data.clone());
                        for file in std::mem::take(&mut message.files) {
                            draft = draft.file(file.into_outgoing());
                        }
                        if let Some(stream) = message.stream.take() {
                            draft = draft.stream(stream);
                        }
                        message.respond(draft).await.unwrap();
                    }
                    "sizes" => {
                        let sizes: Vec<String> = message
                            .files
                            .iter()
                            .map(|f| format!("{}={}:{}", f.name, f.size, f.is_spooled()))
                            .collect();
                        message
                            .respond(Draft::response().data(sizes.join(",")))
                            .await
                            .unwrap();
                    }
                    _ => message.fast_reply(fast::NOT_IMPLEMENTED).await.unwrap(),
                }
            });
        }
    });
}

#[tokio::test]
async fn requests_get_responses_and_fast_replies() {
    let ((_server, incoming), (client, _)) = pair(Config::default(), Config::default());
    serve(incoming);
    let reply = client.request(Draft::new("echo").data("hi")).await.unwrap();
    assert_eq!(reply.into_data().unwrap(), Bytes::from_static(b"hi"));
    let reply = client.request(Draft::new("nope")).await.unwrap();
    assert!(matches!(reply, Reply::Fast(2)), "{reply:?}");
}

#[tokio::test]
async fn files_go_both_ways_and_large_ones_are_spooled() {
    let config = Config {
        memory_file_bytes: 1000,
        ..Config::default()
    };
    let ((_server, incoming), (client, _)) = pair(config, Config::default());
    serve(incoming);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let reply = client
        .request(
            Draft::new("sizes")
                .file(OutFile::from_bytes("small.txt", &b"12345"[..]))
                .file(OutFile::from_bytes("big.bin", big.clone())),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.into_data().unwrap(),
        Bytes::from_static(b"small.txt=5:false,big.bin=300000:true")
    );
    let reply = client
        .request(
            Draft::new("echo")
                .data("d")
                .file(OutFile::from_bytes("big.bin", big.clone())),
        )
        .await
        .unwrap();
    let Reply::Response(mut response) = reply else {
        panic!("a response")
    };
    assert_eq!(&response.data[..], b"d");
    let file = response.files.remove(0);
    assert_eq!((file.name.as_str(), file.size), ("big.bin", 300_000));
    assert_eq!(file.bytes().await.unwrap(), big);
}

#[tokio::test]
async fn streams_go_both_ways() {
    let ((_server, incoming), (client, _)) = pair(Config::default(), Config::default());
    serve(incoming);
    let (writer, reader) = stream(1024);
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request(Draft::new("echo").stream(reader)).await }
    });
    let Reply::Response(mut response) = request.await.unwrap().unwrap() else {
        panic!("a response")
    };
    let mut echoed = response.stream.take().expect("a stream in the response");
    for i in 0..50u32 {
        writer
            .send(Bytes::from(format!("chunk {i};")))
            .await
            .unwrap();
    }
    drop(writer);
    let all = echoed.read_to_end(1 << 20).await.unwrap();
    let expected: String = (0..50).map(|i| format!("chunk {i};")).collect();
    assert_eq!(String::from_utf8(all).unwrap(), expected);
    assert!(!echoed.is_aborted());
}

#[tokio::test]
async fn a_message_over_the_bounds_is_refused_and_the_connection_goes_on() {
    let server = Config {
        max_data_bytes: 10,
        max_files: 1,
        ..Config::default()
    };
    let ((_server, incoming), (client, _)) = pair(server, Config::default());
    serve(incoming);
    let reply = client
        .request(Draft::new("echo").data(vec![0u8; 11]))
        .await
        .unwrap();
    assert!(
        matches!(reply, Reply::Fast(plexus_sockety::TOO_LARGE)),
        "{reply:?}"
    );
    let reply = client
        .request(
            Draft::new("echo")
                .file(OutFile::from_bytes("a", &b"1"[..]))
                .file(OutFile::from_bytes("b", &b"2"[..])),
        )
        .await
        .unwrap();
    assert!(
        matches!(reply, Reply::Fast(plexus_sockety::TOO_LARGE)),
        "{reply:?}"
    );
    let reply = client
        .request(Draft::new("echo").data(vec![1u8; 10]))
        .await
        .unwrap();
    assert_eq!(
        reply.into_data().unwrap().len(),
        10,
        "the bound itself is accepted"
    );
}

#[tokio::test]
async fn a_protocol_error_closes_with_a_reason_and_go_away() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let config = Config {
        farewell: true,
        ..Config::default()
    };
    let (server, _incoming) = start(ar, aw, config);
    // A header, then an unknown packet type.
    b.write_all(&[0xE3, 0xF0]).await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got[0], 0xE3, "the server's header first");
    assert_eq!(*got.last().unwrap(), 0xB0, "go-away last");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("\"code\":4500"), "{text}");
    assert!(text.contains("unknown packet type"), "{text}");
    assert_eq!(server.closed().await.code, 4500);
}

#[tokio::test]
async fn go_away_refuses_new_requests_and_answers_the_running_ones() {
    let ((server, mut incoming), (client, _)) = pair(Config::default(), Config::default());
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.request(Draft::new("slow")).await }
    });
    let first = incoming.recv().await.unwrap();
    server.go_away().await.unwrap();
    // The client hears go-away (a heartbeat-free wait: the reply comes after it on the wire).
    first.respond(Draft::response().data("done")).await.unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap().into_data().unwrap(),
        Bytes::from("done")
    );
    assert!(client.peer_going_away());
    assert_eq!(
        client.request(Draft::new("x")).await.unwrap_err(),
        plexus_sockety::PeerError::GoneAway
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_and_heartbeats_keep_a_quiet_one_alive() {
    use std::time::Duration;
    let quiet = Config {
        timeout: Duration::from_millis(2000),
        ..Config::default()
    };
    let ((server, _i), (client, _j)) = pair(quiet.clone(), quiet);
    // Both sides write heartbeats after 1.5 s of silence: neither times out.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert!(!server.is_closed() && !client.is_closed());
    // A peer that sends nothing at all (not even its header) is dropped after the timeout.
    let (a, _b) = tokio::io::duplex(1024);
    let (ar, aw) = tokio::io::split(a);
    let (lonely, _k) = start(
        ar,
        aw,
        Config {
            timeout: Duration::from_millis(200),
            ..Config::default()
        },
    );
    assert_eq!(lonely.closed().await.code, 4002);
}

/// Every channel busy with a running stream: new messages, whole or streamed, wait for a free
/// channel (their senders wait), none is refused, and the streams' own parts still go out.
#[tokio::test]
async fn a_thousand_requests_half_of_them_streamed_wait_for_three_channels() {
    let server = Config {
        channels: 7,
        ..Config::default()
    };
    let client = Config {
        channels: 3,
        ..Config::default()
    };
    let ((_server, incoming), (client, _)) = pair(server, client);
    serve(incoming);
    let mut calls = Vec::new();
    for i in 0..1000 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            // Every other request is whole (a channel just while it is written).
            let draft = Draft::new("echo").data(format!("{i}"));
            let draft = if i % 2 == 0 {
                let (writer, reader) = stream(64);
                tokio::spawn(async move {
                    writer.send(Bytes::from(format!("{i}"))).await.unwrap();
                });
                draft.stream(reader)
            } else {
                draft
            };
            let Reply::Response(mut response) = client.request(draft).await.unwrap() else {
                panic!("a response")
            };
            assert_eq!(response.data, Bytes::from(format!("{i}")));
            if let Some(mut s) = response.stream.take() {
                assert_eq!(s.read_to_end(10).await.unwrap(), format!("{i}").as_bytes());
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
}

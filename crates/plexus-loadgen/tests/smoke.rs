//! The load generator's smoke test (seconds, part of the test command): every scenario, tiny
//! counts, well under a second each, against
//! - an in-process Plexus server, in both native encodings, with figures checked for sanity
//!   (every delivery counted, latencies present, no errors);
//! - tiny in-process Socket.IO v4 and plain-WebSocket servers written below, so the peer
//!   dialects' client code (Engine.IO open, connect, ping/pong, events with acks; plain
//!   broadcast and echo) runs too. The real peers (Node) run only in the manual comparison,
//!   `scripts/bench/compare.sh`.

use futures_util::{SinkExt, StreamExt};
use plexus_loadgen::scenario::channels::ChannelsArgs;
use plexus_loadgen::scenario::connect::ConnectArgs;
use plexus_loadgen::scenario::fanout::FanoutArgs;
use plexus_loadgen::scenario::idle::IdleArgs;
use plexus_loadgen::scenario::rpc::RpcArgs;
use plexus_loadgen::scenario::{self, Rate, Target};
use plexus_loadgen::{Connector, Dialect, Outcome};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_websockets::{Message, ServerBuilder};

fn target(addr: SocketAddr, dialect: Dialect) -> Target {
    Target::new(
        dialect.name(),
        dialect,
        Connector::new(addr, 2).expect("loopback"),
    )
    .with_server_pid(Some(std::process::id()))
    .with_connect_concurrency(8)
}

fn fanout_args(rate: Rate) -> FanoutArgs {
    FanoutArgs {
        subscribers: 5,
        publishers: 2,
        rate,
        window: 2,
        payload_bytes: 64,
        duration_s: 0.3,
        warmup_s: 0.1,
        messages: 0,
        drain_s: 2.0,
        channel: "smoke.fanout".into(),
        publish_addr: None,
    }
}

fn rpc_args() -> RpcArgs {
    RpcArgs {
        clients: 3,
        rate_per_client: 0.0,
        payload_bytes: 64,
        duration_s: 0.3,
        warmup_s: 0.1,
    }
}

fn connect_args() -> ConnectArgs {
    ConnectArgs {
        connections: 20,
        concurrency: 4,
    }
}

fn idle_args() -> IdleArgs {
    IdleArgs {
        connections: 30,
        concurrency: 8,
        subscribe: false,
        settle_s: 0.1,
    }
}

fn figure(o: &Outcome, name: &str) -> f64 {
    o.figure(name)
        .unwrap_or_else(|| panic!("{} has no {name}:\n{}", o.scenario, o.to_table()))
}

/// Every publication of the measured phase reached every subscriber, and latencies exist.
fn check_deliveries(o: &Outcome) {
    assert_eq!(o.errors, 0, "{}", o.to_table());
    let expected = figure(o, "expected_deliveries");
    assert!(expected > 0.0, "{}", o.to_table());
    assert_eq!(figure(o, "deliveries"), expected, "{}", o.to_table());
    assert!(figure(o, "deliveries_per_s") > 0.0);
    assert!(figure(o, "latency_p50_ms") > 0.0);
    assert!(figure(o, "latency_p99_ms") >= figure(o, "latency_p50_ms"));
    assert!(figure(o, "latency_max_ms") >= figure(o, "latency_p99_ms"));
    assert!(figure(o, "server_cpu_pct") >= 0.0);
    let back: Outcome = serde_json::from_str(&o.to_json_line()).unwrap();
    assert_eq!(
        back.figures.keys().collect::<Vec<_>>(),
        o.figures.keys().collect::<Vec<_>>()
    );
}

fn check_rpc(o: &Outcome) {
    assert_eq!(o.errors, 0, "{}", o.to_table());
    assert!(figure(o, "calls") > 0.0, "{}", o.to_table());
    assert!(figure(o, "calls_per_s") > 0.0);
    assert_eq!(figure(o, "latency_samples"), figure(o, "calls"));
    assert!(figure(o, "latency_p50_ms") > 0.0);
}

fn check_connect(o: &Outcome, n: usize) {
    assert_eq!(o.errors, 0, "{}", o.to_table());
    assert_eq!(figure(o, "connections"), n as f64);
    assert!(figure(o, "connects_per_s") > 0.0);
    assert_eq!(figure(o, "latency_samples"), n as f64);
}

fn check_idle(o: &Outcome, n: usize) {
    assert_eq!(o.errors, 0, "{}", o.to_table());
    assert_eq!(figure(o, "connections"), n as f64);
    assert!(figure(o, "server_rss_after_bytes") > 0.0);
    assert!(o.figure("rss_per_conn_bytes").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_scenarios_against_plexus() -> anyhow::Result<()> {
    let server = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse()?)
        .dev_mode()
        .command("echo", |ctx: plexus_core::CommandContext| async move {
            Ok(ctx.payload)
        })
        .build()
        .start()
        .await?;
    let addr = server.local_addr();
    // Development mode serves Socket.IO too: the same scenarios through Plexus's dialect.
    for dialect in [
        Dialect::NativeJson,
        Dialect::NativeMsgpack,
        Dialect::SocketioPlexus,
    ] {
        let t = target(addr, dialect);
        let fanout = scenario::fanout::run(&t, &fanout_args(Rate::Max)).await?;
        check_deliveries(&fanout);
        assert!(fanout.notes.iter().any(|n| n.contains("paced")));
        check_deliveries(&scenario::fanout::run(&t, &fanout_args(Rate::PerSecond(60.0))).await?);
        // Publishers on their own connector (another node in a cluster; here the same server).
        let through = FanoutArgs {
            publish_addr: Some(addr),
            ..fanout_args(Rate::Max)
        };
        check_deliveries(&scenario::fanout::run(&t, &through).await?);
        let channels = ChannelsArgs {
            connections: 6,
            publishers: 1,
            personal_rate: 40.0,
            shared_rate: 10.0,
            payload_bytes: 64,
            duration_s: 0.3,
            warmup_s: 0.1,
            drain_s: 2.0,
        };
        check_deliveries(&scenario::channels::run(&t, &channels).await?);
        check_rpc(&scenario::rpc::run(&t, &rpc_args()).await?);
        check_connect(&scenario::connect::run(&t, &connect_args()).await?, 20);
        let mut idle = idle_args();
        idle.subscribe = true;
        check_idle(&scenario::idle::run(&t, &idle).await?, 30);
    }
    // A rate above the server's announced per-connection limit is refused, not attempted.
    let mut too_fast = fanout_args(Rate::PerSecond(1000.0));
    too_fast.publishers = 1;
    let t = target(addr, Dialect::NativeJson);
    let e = scenario::fanout::run(&t, &too_fast).await.unwrap_err();
    assert!(e.to_string().contains("limit"), "{e:#}");
    server.shutdown().await;
    Ok(())
}

/// A tiny Socket.IO v4 server over WebSocket: `join` (ack "ok"), `pub` (to the room's
/// members, then an empty ack), `echo` (ack with the argument). It pings each client once
/// right after connecting and counts the pongs.
struct MiniSocketIo {
    addr: SocketAddr,
    pongs: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
}

type Rooms = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>>;

async fn mini_socketio() -> MiniSocketIo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pongs = Arc::new(AtomicU64::new(0));
    let connects = Arc::new(AtomicU64::new(0));
    let rooms: Rooms = Arc::default();
    let (p, c) = (pongs.clone(), connects.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (rooms, pongs, connects) = (rooms.clone(), p.clone(), c.clone());
            tokio::spawn(async move {
                let (request, mut ws) = ServerBuilder::new().accept(stream).await.unwrap();
                let query = request.uri().query().unwrap_or("");
                assert!(request.uri().path().starts_with("/socket.io/"));
                assert!(query.contains("EIO=4") && query.contains("transport=websocket"));
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                let open = r#"0{"sid":"mini","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
                ws.send(Message::text(open.to_owned())).await.unwrap();
                loop {
                    tokio::select! {
                        Some(out) = rx.recv() => {
                            if ws.send(Message::text(out)).await.is_err() { return; }
                        }
                        message = ws.next() => {
                            let Some(Ok(message)) = message else { return };
                            let Some(text) = message.as_text() else { continue };
                            let reply = sio_handle(text, &tx, &rooms, &pongs, &connects);
                            for out in reply {
                                if ws.send(Message::text(out)).await.is_err() { return; }
                            }
                        }
                    }
                }
            });
        }
    });
    MiniSocketIo {
        addr,
        pongs,
        connects,
    }
}

fn sio_handle(
    text: &str,
    me: &mpsc::UnboundedSender<String>,
    rooms: &Rooms,
    pongs: &AtomicU64,
    connects: &AtomicU64,
) -> Vec<String> {
    if text == "3" {
        pongs.fetch_add(1, Ordering::Relaxed);
        return vec![];
    }
    if text == "40" {
        connects.fetch_add(1, Ordering::Relaxed);
        // Accept, then ping at once so the client's pong path runs.
        return vec![r#"40{"sid":"s"}"#.into(), "2".into()];
    }
    let Some(rest) = text.strip_prefix("42") else {
        return vec![];
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = &rest[..digits];
    let args: Vec<serde_json::Value> = serde_json::from_str(&rest[digits..]).unwrap();
    match args[0].as_str().unwrap() {
        "join" => {
            let room = args[1].as_str().unwrap().to_owned();
            rooms
                .lock()
                .unwrap()
                .entry(room)
                .or_default()
                .push(me.clone());
            vec![format!(r#"43{id}["ok"]"#)]
        }
        "pub" => {
            let room = args[1].as_str().unwrap();
            let out = format!(r#"42["pub",{}]"#, args[2]);
            if let Some(members) = rooms.lock().unwrap().get(room) {
                for m in members {
                    let _ = m.send(out.clone());
                }
            }
            vec![format!("43{id}[]")]
        }
        "echo" => vec![format!("43{id}[{}]", args[1])],
        other => panic!("unexpected event {other}"),
    }
}

/// A tiny plain-WebSocket server: `/echo` echoes; what a `/broadcast?pub=1` client sends goes
/// to every `/broadcast` client.
async fn mini_ws() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receivers: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let receivers = receivers.clone();
            tokio::spawn(async move {
                let (request, mut ws) = ServerBuilder::new().accept(stream).await.unwrap();
                let path = request.uri().path().to_owned();
                let publisher = request.uri().query() == Some("pub=1");
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                if path == "/broadcast" && !publisher {
                    receivers.lock().unwrap().push(tx);
                }
                loop {
                    tokio::select! {
                        Some(out) = rx.recv() => {
                            if ws.send(Message::text(out)).await.is_err() { return; }
                        }
                        message = ws.next() => {
                            let Some(Ok(message)) = message else { return };
                            let Some(text) = message.as_text() else { continue };
                            if path == "/echo" {
                                if ws.send(Message::text(text.to_owned())).await.is_err() { return; }
                            } else if publisher {
                                for r in receivers.lock().unwrap().iter() {
                                    let _ = r.send(text.to_owned());
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_client_against_a_mini_server() -> anyhow::Result<()> {
    let server = mini_socketio().await;
    let t = target(server.addr, Dialect::Socketio);
    check_deliveries(&scenario::fanout::run(&t, &fanout_args(Rate::Max)).await?);
    check_deliveries(&scenario::fanout::run(&t, &fanout_args(Rate::PerSecond(200.0))).await?);
    let channels = ChannelsArgs {
        connections: 6,
        publishers: 2,
        personal_rate: 100.0,
        shared_rate: 20.0,
        payload_bytes: 64,
        duration_s: 0.3,
        warmup_s: 0.1,
        drain_s: 2.0,
    };
    check_deliveries(&scenario::channels::run(&t, &channels).await?);
    check_rpc(&scenario::rpc::run(&t, &rpc_args()).await?);
    check_idle(&scenario::idle::run(&t, &idle_args()).await?, 30);
    // Every connection that read on answered the ping it got right after connecting.
    let (pongs, connects) = (
        server.pongs.load(Ordering::Relaxed),
        server.connects.load(Ordering::Relaxed),
    );
    assert!(connects > 0);
    assert_eq!(pongs, connects);
    // The connect scenario only opens connections (and reads nothing after the hello).
    check_connect(&scenario::connect::run(&t, &connect_args()).await?, 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websocket_client_against_a_mini_server() -> anyhow::Result<()> {
    let addr = mini_ws().await;
    let t = target(addr, Dialect::Ws);
    check_deliveries(&scenario::fanout::run(&t, &fanout_args(Rate::Max)).await?);
    check_rpc(&scenario::rpc::run(&t, &rpc_args()).await?);
    check_connect(&scenario::connect::run(&t, &connect_args()).await?, 20);
    check_idle(&scenario::idle::run(&t, &idle_args()).await?, 30);
    // Plain WebSocket has no channels: many-channels says so instead of measuring nonsense.
    let channels = ChannelsArgs {
        connections: 2,
        publishers: 1,
        personal_rate: 10.0,
        shared_rate: 1.0,
        payload_bytes: 64,
        duration_s: 0.1,
        warmup_s: 0.0,
        drain_s: 0.1,
    };
    assert!(scenario::channels::run(&t, &channels).await.is_err());
    Ok(())
}

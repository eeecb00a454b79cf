//! Plezi's Redis formats through `plexus serve` (`[plezi_bus]`, docs/endpoints.md): a Ruby
//! process's raw Plezi 0.16 publication on a Redis channel reaches the subscribers of the Plexus
//! channel of that name, and a Plezi 0.12 YAML broadcast on the global channel reaches an
//! endpoint's connections as a dispatched event — on a real `redis-server`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{free_port, plexus};

const WAIT: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// Keeps publishing `payload` on `channel` until `received` sees it (the node subscribes to the
/// bus as it starts; a publication before that reaches nobody, as on Redis).
async fn publish_until<F: std::future::Future<Output = Value>>(
    url: &str,
    channel: &str,
    payload: &[u8],
    received: F,
) -> Value {
    let mut received = Box::pin(received);
    loop {
        plexus_redis::external::publish_external(url, channel, payload, WAIT)
            .await
            .expect("publish");
        if let Ok(value) = tokio::time::timeout(Duration::from_millis(200), &mut received).await {
            return value;
        }
    }
}

#[tokio::test]
async fn plezi_bus_messages_reach_plexus_connections() {
    let redis = plexus_redis::testing::RedisServer::start().expect("redis-server starts");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("plexus-plezi-bus-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plexus.toml");
    std::fs::write(
        &config,
        format!(
            r#"engine = "redis"
[server]
listen = "127.0.0.1:{port}"
[redis]
url = "{}"
prefix = "plezi-bus-test"
[client]
anonymous = true
[[namespaces]]
name = "all"
channels = "*"
subscribe = "anyone"
publish = "anyone"
[plezi_bus]
raw_channels = ["news*"]
global_channel = "app_redis_channel"
[[endpoints]]
path = "/app"
name = "ChatController"
mode = "dispatch"
"#,
            redis.url()
        ),
    )
    .unwrap();
    let mut child = plexus()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plexus starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut native, mut app) = loop {
        let native = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await;
        let app = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/app")).await;
        if let (Ok((native, _)), Ok((app, _))) = (native, app) {
            break (native, app);
        }
        assert!(tokio::time::Instant::now() < deadline, "the server listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(next_json(&mut native).await["push"], "hello");
    native
        .send(Message::text(
            json!({"id": 1, "op": "subscribe", "params": {"channel": "news:today"}}).to_string(),
        ))
        .await
        .unwrap();
    loop {
        if next_json(&mut native).await["id"] == 1 {
            break;
        }
    }

    // Plezi 0.16: a raw string on Redis channel `news:today`.
    let notice = publish_until(&redis.url(), "news:today", b"extra! extra!", async {
        loop {
            let v = next_json(&mut native).await;
            if v["push"] == "notice" {
                return v;
            }
        }
    })
    .await;
    assert_eq!(notice["channel"], "news:today");
    assert_eq!(notice["data"], "extra! extra!");

    // Plezi 0.12: a YAML broadcast to the controller `ChatController` on the global channel.
    let yaml = "---\n:method: :chat\n:data:\n- :text: hello from ruby\n  :n: 3\n:type: ChatController\n:target: \n:server: 2b3f5d1c-9a7e-4a0e-8f11-2f6e0c9d1a44\n";
    let event = publish_until(&redis.url(), "app_redis_channel", yaml.as_bytes(), async {
        next_json(&mut app).await
    })
    .await;
    assert_eq!(
        event,
        json!({"text": "hello from ruby", "n": 3, "event": "chat"})
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

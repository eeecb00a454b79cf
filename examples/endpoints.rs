//! Two endpoints (`docs/endpoints.md`): a raw one that shouts back what it gets, text and
//! binary, and an auto-dispatch one with a `chat` event broadcast to its other connections, a
//! `ping` answered with `pong`, and a 404 for anything else — the protocol Plezi's
//! `PleziClient` speaks.
//!
//! Run: `cargo run -p plexus-examples --example endpoints`, then
//! `websocat ws://127.0.0.1:8003/shout` (type a line), or from a browser console:
//! `ws = new WebSocket("ws://127.0.0.1:8003/chat"); ws.onmessage = (e) => console.log(e.data);`
//! `ws.send(JSON.stringify({event: "ping", _EID_: 1}))`.

use plexus_server::Server;
use plexus_server::endpoint::{Endpoint, RawMessage};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let shout = Endpoint::raw("shout").on_message(|ws, message| async move {
        match message {
            RawMessage::Text(text) => ws.send_text(text.to_uppercase()),
            RawMessage::Binary(bytes) => ws.send_binary(bytes),
        };
    });
    let chat = Endpoint::dispatch("chat")
        .on_open(|ws| async move {
            ws.send_json(&json!({"event": "welcome", "id": ws.id().to_string()}));
        })
        .on("chat", |ws, message| async move {
            // To every other connection of this endpoint, on every node.
            if let Err(e) = ws.broadcast(Some("chat"), Value::Object(message)).await {
                return Some(json!({"event": "error", "message": e.to_string()}));
            }
            None
        })
        .on("ping", |_ws, _message| async move {
            Some(json!({"event": "pong"}))
        })
        .on_shutdown(|ws| async move {
            ws.send_json(&json!({"event": "bye"}));
        });
    let server = Server::builder()
        .listen("127.0.0.1:8003".parse().unwrap())
        .anonymous(true)
        .endpoint("/shout", shout)
        .endpoint("/chat", chat)
        .build();
    let running = server.start().await?;
    println!(
        "endpoints on ws://{0}/shout (raw) and ws://{0}/chat (auto-dispatch)",
        running.local_addr()
    );
    running.wait_for_signal().await;
    Ok(())
}

//! A small chat server: log in with a name, join rooms, talk; the room hears joins.
//!
//! Clients send `connect` with credentials `{"name": "ann"}`, then `call join {"room": "lobby"}`
//! (the server subscribes the connection to `room:lobby` and announces it), then
//! `call say {"room": "lobby", "text": "hi"}`. Rooms are channels; nobody may publish to them
//! directly, so every message goes through `say` and carries the sender's name.
//!
//! Run: `cargo run -p plexus-examples --example chat_server` listens on `127.0.0.1:8002`
//! (WebSocket at `ws://127.0.0.1:8002/ws`); another address as the argument:
//! `cargo run -p plexus-examples --example chat_server -- 127.0.0.1:9000`.
//!
//! Follow a room from a terminal with the CLI (it logs in with the same credentials):
//! `cargo run -- sub --url ws://127.0.0.1:8002/ws --credentials '{"name":"ann"}' --channel room:lobby`.
//! Writing takes `join` then `say` on one connection, so it needs a program (the Rust or
//! TypeScript client), not one-shot CLI calls.

use plexus_core::{
    Access, ChannelMatch, CommandContext, Error, ErrorCode, Identity, Namespace, Payload,
};
use plexus_server::Server;
use serde_json::{Value, json};

fn field(ctx: &CommandContext, name: &str) -> Result<String, Error> {
    let v: Value = ctx
        .payload
        .to_value()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::bad_request(format!("`{name}` is required")))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8002".into());
    let Ok(listen) = arg.parse::<std::net::SocketAddr>() else {
        eprintln!("{arg}: not an address; usage: chat_server [IP:PORT] (default 127.0.0.1:8002)");
        std::process::exit(2);
    };
    let server = Server::builder()
        .listen(listen)
        .auth_hook(|req: plexus_core::AuthRequest| async move {
            let creds: Value = req.credentials.and_then(|c| c.to_value().ok()).unwrap_or_default();
            match creds["name"].as_str() {
                Some(name) if !name.is_empty() && name.len() <= 32 => Ok(Identity::new(name)),
                _ => Err(Error::new(ErrorCode::AUTH_FAILED, "send credentials {\"name\": \"…\"}")),
            }
        })
        // Members may read rooms; only the `say` command writes to them.
        .namespace(Namespace::new("rooms", ChannelMatch::Prefix("room:".into())).subscribe(Access::Authenticated))
        .command("join", |ctx: CommandContext| async move {
            let room = format!("room:{}", field(&ctx, "room")?);
            ctx.node.subscribe_connection(ctx.conn, &room).await?;
            let who = ctx.user.as_deref().unwrap_or("?");
            ctx.node.publish(&room, Payload::json(&json!({"event": "joined", "name": who})).unwrap()).await?;
            Ok(Payload::json(&json!({"room": room})).unwrap())
        })
        .command("say", |ctx: CommandContext| async move {
            let room = format!("room:{}", field(&ctx, "room")?);
            if !ctx.node.is_subscribed(ctx.conn, &room) {
                return Err(Error::permission_denied("join the room first"));
            }
            let message = json!({"event": "message", "name": ctx.user.as_deref(), "text": field(&ctx, "text")?});
            let position = ctx.node.publish(&room, Payload::json(&message).unwrap()).await?;
            Ok(Payload::json(&json!({"offset": position.offset})).unwrap())
        })
        .build();
    let running = server.start().await?;
    println!("chat server on {}", running.ws_url());
    running.wait_for_signal().await;
    Ok(())
}

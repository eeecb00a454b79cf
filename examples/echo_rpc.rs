//! An RPC server with one command, `echo`, and a middleware that counts calls.
//!
//! Run: `cargo run -p plexus-examples --example echo_rpc`, then call it:
//! `cargo run -- call --url ws://127.0.0.1:8001/ws echo '{"hello":"world"}'`.

use plexus_core::{CommandContext, Error, Payload};
use plexus_server::Server;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let calls = Arc::new(AtomicU64::new(0));
    let server = Server::builder()
        .listen("127.0.0.1:8001".parse().unwrap())
        .anonymous(true)
        // Global middleware: runs before every command; it could also reject the call.
        .middleware(move |ctx: CommandContext| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                println!("call #{n}: {} from {}", ctx.method, ctx.conn);
                Ok(ctx)
            }
        })
        .command("echo", |ctx: CommandContext| async move { Ok(ctx.payload) })
        .command("add", |ctx: CommandContext| async move {
            let [a, b]: [f64; 2] = ctx
                .payload
                .to_value()
                .map_err(|e| Error::bad_request(e.to_string()))?;
            Ok(Payload::json(&(a + b)).expect("a number is JSON"))
        })
        .build();
    let running = server.start().await?;
    println!("echo RPC server on {}", running.ws_url());
    running.wait_for_signal().await;
    Ok(())
}

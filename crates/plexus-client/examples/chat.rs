//! A terminal chat room: every line you type is published to the room, and everything said in
//! the room is printed — first the room's last 20 messages (where the server keeps history),
//! then the live ones, with who comes and goes (where it tracks presence).
//!
//! ```sh
//! plexus serve &
//! cargo run -p plexus-client --example chat -- lobby alice
//! cargo run -p plexus-client --example chat -- lobby bob     # in another terminal
//! ```

use plexus_client::{Client, ClientConfig, Payload, SubscribeOptions, SubscriptionEvent};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let room = args.next().unwrap_or_else(|| "lobby".into());
    let name = args.next().unwrap_or_else(|| "anonymous".into());
    let url = std::env::var("PLEXUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:8000/ws".into());

    let client = Client::connect(ClientConfig::new(url)).await?;
    let mut sub = client
        .subscribe(room.as_str(), SubscribeOptions::default().history(20))
        .await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    println!("in #{room} as {name}; type a line to send it");

    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(text) = line? else { break };
                let message = Payload::json(&json!({"from": name, "text": text}))?;
                if let Err(e) = client.publish(room.as_str(), message).await {
                    eprintln!("not sent: {e}");
                }
            }
            Some(event) = sub.next() => match event {
                SubscriptionEvent::Publication(p) => {
                    let m: serde_json::Value = p.payload.to_value().unwrap_or_default();
                    println!("<{}> {}", m["from"].as_str().unwrap_or("?"), m["text"].as_str().unwrap_or(""));
                }
                SubscriptionEvent::Join(j) => println!("* {} joined", j.user.unwrap_or(j.conn)),
                SubscriptionEvent::Leave(l) => println!("* {} left", l.user.unwrap_or(l.conn)),
                _ => {}
            },
        }
    }
    client.disconnect().await;
    Ok(())
}

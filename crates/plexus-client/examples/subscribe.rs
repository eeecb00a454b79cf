//! Subscribe to a channel and print its publications, riding out lost connections and server
//! restarts.
//!
//! ```sh
//! plexus serve &                                   # a development server on 127.0.0.1:8000
//! cargo run -p plexus-client --example subscribe -- news
//! plexus pub --channel news '{"text":"hello"}'      # in another terminal
//! ```
//!
//! When the connection drops, the client reconnects by itself and subscribes again from the last
//! publication it printed. Where the channel's namespace keeps history with recovery
//! (`history_size`, `history_ttl_ms` and `recovery = true` in the server's configuration), the
//! publications made meanwhile are printed first, then the live ones; otherwise it says that
//! they could not be recovered, and why (`not_available` without history, `epoch_changed` after
//! a restart of the in-memory engine). `PLEXUS_URL` overrides the endpoint.

use plexus_client::{Client, ClientConfig, Event, SubscribeOptions, SubscriptionEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = std::env::args().nth(1).unwrap_or_else(|| "news".into());
    let url = std::env::var("PLEXUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:8000/ws".into());

    let client = Client::connect(ClientConfig::new(url)).await?;
    let mut events = client.events();
    let mut sub = client
        .subscribe(channel, SubscribeOptions::default())
        .await?;
    println!(
        "subscribed to {} at offset {}",
        sub.channel(),
        sub.position().offset
    );

    loop {
        tokio::select! {
            Some(event) = sub.next() => match event {
                SubscriptionEvent::Publication(p) => {
                    println!("#{} {:?}", p.offset, p.payload);
                }
                SubscriptionEvent::Subscribed(s) => match s.recovered {
                    Some(true) => println!("subscribed again; the missed publications follow"),
                    Some(false) => println!(
                        "subscribed again at offset {}; missed publications lost ({})",
                        s.position.offset,
                        s.reason.as_deref().unwrap_or("?")
                    ),
                    None => println!("subscribed again at offset {}", s.position.offset),
                },
                SubscriptionEvent::Lagged { missed } => println!("{missed} publications dropped"),
                SubscriptionEvent::Unsubscribed(reason) => {
                    println!("subscription ended: {reason:?}");
                    break;
                }
                _ => {}
            },
            Some(event) = events.next() => match event {
                Event::Disconnected { code, reason, will_reconnect } => {
                    println!("disconnected ({code:?}, {reason}); reconnecting: {will_reconnect}");
                }
                Event::Connected { reconnected: true, .. } => println!("reconnected"),
                _ => {}
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}

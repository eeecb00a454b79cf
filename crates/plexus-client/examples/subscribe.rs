//! Subscribe to a channel and print its publications, riding out server restarts.
//!
//! ```sh
//! plexus serve &                                   # a development server on 127.0.0.1:8000
//! cargo run -p plexus-client --example subscribe -- news
//! plexus pub --channel news '{"text":"hello"}'      # in another terminal
//! ```
//!
//! Stop the server and start it again: the client reconnects by itself, subscribes again, and
//! says so. `PLEXUS_URL` overrides the endpoint.

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
                SubscriptionEvent::Subscribed(s) => {
                    println!("subscribed again at offset {} (epoch {})", s.position.offset, s.position.epoch);
                }
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

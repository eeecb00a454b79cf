//! Durable messages: a user's inbox, delivered on every connect until handled.
//!
//! A standalone server with a user (see `docs/configuration.md` for the walk-through):
//!
//! ```sh
//! plexus config init > plexus.toml && plexus serve --config plexus.toml &
//! export PLEXUS_TOKEN=$(plexus token --config plexus.toml --user alice)
//! cargo run -p plexus-client --example mail          # once, so that alice has an inbox; Ctrl-C
//! KEY=$(grep '^key' plexus.toml | cut -d'"' -f2)     # the API key `config init` wrote
//! curl -X POST http://127.0.0.1:8000/api/send_durable -H "X-API-Key: $KEY" \
//!   -d '{"user": "alice", "data": {"invoice": 1182}}'
//! cargo run -p plexus-client --example mail          # prints the invoice, and acknowledges it
//! cargo run -p plexus-client --example mail          # nothing: it was acknowledged
//! ```
//!
//! Each [`Mail`](plexus_client::Mail) is acknowledged once the loop body that handled it drops
//! it (`MailAck::OnDrop`, the default); what was not handled when the program stopped comes
//! again on the next connection.

use plexus_client::{Client, ClientConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("PLEXUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:8000/ws".into());
    let token = std::env::var("PLEXUS_TOKEN")?;
    let client = Client::connect(ClientConfig::new(url).token(token)).await?;
    let mut mailbox = client.mail().expect("the first call takes the mailbox");
    println!(
        "connected as {}; waiting for mail (Ctrl-C to stop)",
        client.connection().and_then(|c| c.user).unwrap_or_default()
    );
    loop {
        tokio::select! {
            mail = mailbox.next() => {
                let Some(mail) = mail else { break };
                println!("#{} sent at {} ms: {:?}", mail.seq, mail.sent_ms, mail.payload);
                // Handled: dropping `mail` here acknowledges it.
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}

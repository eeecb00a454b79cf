//! Call a command (RPC) on the server, with a timeout, and tell the server's errors apart by
//! code.
//!
//! ```sh
//! plexus serve &                   # registers an `echo` command
//! cargo run -p plexus-client --example call -- echo '{"hello":"world"}'
//! cargo run -p plexus-client --example call -- no_such_method
//! ```

use plexus_client::{Client, ClientConfig, ErrorCode, Payload, RequestOptions};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let method = args.next().unwrap_or_else(|| "echo".into());
    let data = args.next().unwrap_or_else(|| "null".into());
    let url = std::env::var("PLEXUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:8000/ws".into());

    let client = Client::connect(ClientConfig::new(url)).await?;
    let options = RequestOptions::default().timeout(Duration::from_secs(5));
    match client
        .call_with(method.as_str(), Payload::from_json_str(&data)?, options)
        .await
    {
        Ok(result) => println!("{}", result.as_json_str().unwrap_or("<binary>")),
        Err(e) if e.code() == Some(ErrorCode::METHOD_NOT_FOUND) => {
            eprintln!("the server has no `{method}` command");
        }
        Err(e) if e.is_timeout() => eprintln!("no answer within 5 s"),
        Err(e) => eprintln!("failed: {e}"),
    }
    client.disconnect().await;
    Ok(())
}

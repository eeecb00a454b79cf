//! `plexus`: the server and its command-line tools.

mod cli_client;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plexus_server::Server;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "Plexus real-time messaging server and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without a configuration it runs in development mode: anonymous
    /// connections, every channel open.
    Serve(ServeArgs),
    /// Subscribe to a channel and print one JSON line per publication.
    Sub(cli_client::SubArgs),
    /// Publish to a channel over a client connection.
    Pub(cli_client::PubArgs),
    /// Call a command (RPC) and print its result.
    Call(cli_client::CallArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PLEXUS_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PLEXUS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let server = Server::builder()
        .listen(args.listen)
        .dev_mode()
        .command("echo", |ctx: plexus_core::CommandContext| async move {
            Ok(ctx.payload)
        })
        .build();
    let running = server
        .start()
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    running.wait_for_signal().await;
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Sub(args) => cli_client::sub(args).await,
        Command::Pub(args) => cli_client::publish(args).await,
        Command::Call(args) => cli_client::call(args).await,
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

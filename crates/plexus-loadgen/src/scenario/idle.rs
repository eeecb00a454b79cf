//! Idle memory: N connections that do nothing but answer heartbeats. Figure: the server's
//! resident memory (VmRSS) after they opened, minus before, divided by N.

use super::{Target, secs};
use crate::client::{Client, Role};
use crate::report::Outcome;
use crate::sys::rss_bytes;
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct IdleArgs {
    /// Idle connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Also subscribe each connection to a channel of its own.
    #[arg(long)]
    pub subscribe: bool,
    /// Seconds to wait after the last connection opened before reading the server's memory.
    #[arg(long, default_value_t = 3.0)]
    pub settle_s: f64,
}

async fn keepalive(mut client: Client, mut stop: watch::Receiver<bool>) -> bool {
    let mut events = Vec::new();
    let dropped = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break false,
            read = client.recv(&mut events) => if !matches!(read, Ok(true)) { break true },
        }
        events.clear();
        if client.flush_control().await.is_err() {
            break true;
        }
    };
    if !dropped {
        client.close().await;
    }
    dropped
}

pub async fn run(target: &Target, args: &IdleArgs) -> Result<Outcome> {
    let Some(pid) = target.server_pid else {
        bail!("idle memory needs the server's process id (--server-pid)");
    };
    if args.connections == 0 {
        bail!("idle needs at least one connection");
    }
    if args.subscribe && !target.dialect.has_channels() {
        bail!("the {} dialect has no channels", target.dialect.name());
    }
    let mut outcome = target.outcome("idle", args);
    let own_pid = std::process::id();
    let before = rss_bytes(pid).context("the server's memory")?;
    let own_before = rss_bytes(own_pid)?;
    let (stop, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut failures = 0u64;
    let mut first_error = None;
    let mut opened = futures_util::stream::iter(0..args.connections)
        .map(|i| async move {
            let mut client = Client::open(&target.connector, target.dialect, Role::Idle).await?;
            if args.subscribe {
                client.subscribe(&format!("bench.idle.{i}")).await?;
            }
            anyhow::Ok(client)
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(client) = opened.next().await {
        match client {
            Ok(client) => {
                tasks.spawn(keepalive(client, stop_rx.clone()));
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    drop(opened);
    let open_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(secs(args.settle_s)).await;
    let after = rss_bytes(pid).context("the server's memory")?;
    let own_after = rss_bytes(own_pid)?;
    let held = tasks.len();

    let _ = stop.send(true);
    let mut drops = 0u64;
    while let Some(dropped) = tasks.join_next().await {
        drops += u64::from(dropped?);
    }
    outcome.set("connections", held as f64);
    outcome.set("open_s", open_s);
    outcome.set("server_rss_before_bytes", before as f64);
    outcome.set("server_rss_after_bytes", after as f64);
    if held > 0 {
        outcome.set(
            "rss_per_conn_bytes",
            (after as f64 - before as f64) / held as f64,
        );
        outcome.set(
            "loadgen_rss_per_conn_bytes",
            (own_after as f64 - own_before as f64) / held as f64,
        );
    }
    if pid == own_pid {
        outcome.note("the server runs in the load generator's process: its figure includes the clients' memory");
    }
    if let Some(e) = first_error {
        outcome.note(format!("{failures} connections failed; the first: {e}"));
    }
    if drops > 0 {
        outcome.note(format!("the server dropped {drops} idle connections"));
    }
    outcome.errors = failures + drops;
    Ok(outcome.finish())
}

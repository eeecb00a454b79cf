//! Connect rate: N new connections, K at a time, each complete with its handshake and hello
//! (Plexus `hello` push; Engine.IO open and Socket.IO connect; the WebSocket upgrade alone for
//! plain WebSocket). They stay open until the last one is up, then close. Figures: connections
//! per second and time to open one.

use super::{Meters, Target};
use crate::client::{Client, Role};
use crate::report::Outcome;
use crate::stats::Latencies;
use anyhow::{Result, bail};
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

pub async fn run(target: &Target, args: &ConnectArgs) -> Result<Outcome> {
    if args.connections == 0 {
        bail!("connect needs at least one connection");
    }
    let mut outcome = target.outcome("connect", args);
    let latencies = Latencies::new();
    let meters = Meters::start(target);
    let start = Instant::now();
    let mut recorder = latencies.recorder(0);
    let mut clients = Vec::with_capacity(args.connections);
    let mut failures = 0u64;
    let mut first_error = None;
    let mut opened = futures_util::stream::iter(0..args.connections)
        .map(|_| async {
            let t = Instant::now();
            let client = Client::open(&target.connector, target.dialect, Role::Idle).await;
            (t.elapsed(), client)
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some((took, client)) = opened.next().await {
        match client {
            Ok(client) => {
                recorder.record(took.as_micros() as u64);
                clients.push(client);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    drop(opened);
    let elapsed = start.elapsed().as_secs_f64();
    recorder.flush();
    meters.finish(&mut outcome, "connects", clients.len() as f64);
    outcome.set("connections", clients.len() as f64);
    outcome.set("connects_per_s", clients.len() as f64 / elapsed.max(1e-9));
    outcome.set_latency(latencies.summary());
    if let Some(e) = first_error {
        outcome.note(format!("{failures} connections failed; the first: {e}"));
    }
    outcome.errors = failures;
    futures_util::stream::iter(clients)
        .for_each_concurrent(256, Client::close)
        .await;
    Ok(outcome.finish())
}

//! RPC: C clients each calling `echo` with a payload, one call at a time, as fast as answers
//! come (or at a given rate per client). Figures: calls per second and round-trip latency.

use super::{Meters, Target, instant_us, next_send, open_many, pacing, secs};
use crate::client::{Client, Event, Role};
use crate::report::Outcome;
use crate::stamp::{Stamp, now_us};
use crate::stats::{Latencies, Recorder};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct RpcArgs {
    /// Concurrent clients, each with one call in flight.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Calls per second per client (0: as fast as answers come). A Plexus client never
    /// exceeds the rate its server announces.
    #[arg(long, default_value_t = 0.0)]
    pub rate_per_client: f64,
    /// Size of each call's JSON payload, in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Seconds of measured calls.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds of calls before the measured phase.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
}

/// How long one call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct CallerStats {
    calls: u64,
    errors: u64,
    dropped: bool,
}

struct CallerPlan {
    index: u32,
    interval: Option<Duration>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    payload_bytes: usize,
}

async fn caller(mut client: Client, plan: CallerPlan, mut recorder: Recorder) -> CallerStats {
    let measure_from_us = instant_us(plan.measure_from);
    let mut stats = CallerStats::default();
    let mut events = Vec::new();
    let mut next_at = plan.start;
    let mut seq = 0u64;
    'calls: while Instant::now() < plan.end {
        tokio::time::sleep_until(next_at.into()).await;
        let t = now_us();
        let data = Stamp {
            t,
            s: seq,
            p: plan.index,
        }
        .to_json(plan.payload_bytes);
        seq += 1;
        let id = match client.call_echo(&data).await {
            Ok(id) => id,
            Err(_) => {
                stats.dropped = true;
                break;
            }
        };
        let answered = tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                if !matches!(client.recv(&mut events).await, Ok(true)) {
                    return None;
                }
                if client.flush_control().await.is_err() {
                    return None;
                }
                for event in events.drain(..) {
                    if let Event::Reply { id: got, result } = event
                        && (got == id || id.is_none())
                    {
                        return Some(result);
                    }
                }
            }
        })
        .await;
        let measured = t >= measure_from_us;
        match answered {
            Ok(Some(Ok(_))) => {
                if measured {
                    stats.calls += 1;
                    recorder.record(now_us().saturating_sub(t));
                }
            }
            Ok(Some(Err(_))) => stats.errors += u64::from(measured),
            Ok(None) | Err(_) => {
                stats.dropped = true;
                break 'calls;
            }
        }
        next_at = next_send(next_at, plan.interval);
    }
    recorder.flush();
    if !stats.dropped {
        client.close().await;
    }
    stats
}

pub async fn run(target: &Target, args: &RpcArgs) -> Result<Outcome> {
    if args.clients == 0 {
        bail!("RPC needs at least one client");
    }
    let mut outcome = target.outcome("rpc", args);
    let latencies = Latencies::new();
    let clients = open_many(target, args.clients, Role::Caller, |_| Vec::new()).await?;
    let wanted = (args.rate_per_client > 0.0).then_some(args.rate_per_client);
    let start = Instant::now();
    let measure_from = start + secs(args.warmup_s);
    let end = measure_from + secs(args.duration_s);
    let mut tasks = JoinSet::new();
    let mut paced = None;
    for (i, client) in clients.into_iter().enumerate() {
        let interval = pacing(wanted, client.requests_per_second())?;
        if wanted.is_none() && interval.is_some() {
            paced = interval;
        }
        let plan = CallerPlan {
            index: i as u32,
            interval,
            start,
            measure_from,
            end,
            payload_bytes: args.payload_bytes,
        };
        tasks.spawn(caller(client, plan, latencies.recorder(i)));
    }
    if let Some(interval) = paced {
        let per_client = 1.0 / interval.as_secs_f64();
        outcome.note(format!(
            "clients paced by the server's announced per-connection request rate: at most {per_client:.0} calls/s each, {:.0} in all",
            per_client * args.clients as f64
        ));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let meters = Meters::start(target);
    let (mut calls, mut errors, mut drops) = (0u64, 0u64, 0u64);
    while let Some(stats) = tasks.join_next().await {
        let stats = stats?;
        calls += stats.calls;
        errors += stats.errors;
        drops += u64::from(stats.dropped);
    }
    let elapsed = end.duration_since(measure_from).as_secs_f64();
    meters.finish(&mut outcome, "calls", calls as f64);
    outcome.set("calls", calls as f64);
    outcome.set("calls_per_s", calls as f64 / elapsed.max(1e-9));
    outcome.set_latency(latencies.summary());
    if drops > 0 {
        outcome.note(format!("{drops} clients were dropped or timed out"));
    }
    outcome.errors = errors + drops;
    Ok(outcome.finish())
}

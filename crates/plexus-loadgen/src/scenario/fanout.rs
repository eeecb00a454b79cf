//! Fan-out: S subscribers on one channel, P publishers, at a fixed rate or as fast as every
//! subscriber keeps up. Figures: deliveries per second and publish-to-receive latency.

use super::publish::{self, MAX_WINDOW, PublisherPlan, Route, Tracker};
use super::{Meters, Rate, Target, open_many, pacing, secs};
use crate::client::Role;
use crate::conn::Connector;
use crate::report::Outcome;
use crate::stats::Latencies;
use anyhow::{Result, bail};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct FanoutArgs {
    /// Subscriber connections, all on one channel.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publisher connections (a Plexus connection may publish at most the rate its server
    /// announces, 100/s by default).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Publications per second over all publishers, or `max`: as fast as every subscriber
    /// keeps up (each publisher waits until its publication `s - window` reached everyone).
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// With `--rate max`: publications of one publisher in flight.
    #[arg(long, default_value_t = 4)]
    pub window: u64,
    /// Size of each publication's JSON payload, in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Seconds of measured publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds of publishing before the measured phase.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Publications in all, at most (0: no cap).
    #[arg(long, default_value_t = 0)]
    pub messages: u64,
    /// Seconds to wait for the last deliveries once publishing stopped.
    #[arg(long, default_value_t = 5.0)]
    pub drain_s: f64,
    #[arg(long, default_value = "bench.fanout")]
    pub channel: String,
    /// Connect the publishers to this server instead (HOST:PORT on loopback): fan-out through
    /// two nodes of one cluster, subscribers on `--addr`, publishers here.
    #[arg(long)]
    pub publish_addr: Option<std::net::SocketAddr>,
}

pub async fn run(target: &Target, args: &FanoutArgs) -> Result<Outcome> {
    if args.subscribers == 0 || args.publishers == 0 {
        bail!("fan-out needs at least one subscriber and one publisher");
    }
    let mut outcome = target.outcome("fanout", args);
    let window = (args.rate == Rate::Max).then(|| args.window.clamp(1, MAX_WINDOW));
    let tracker = Tracker::new(args.publishers, window.is_some());
    let latencies = Latencies::new();
    let (stop, stop_rx) = watch::channel(false);

    let subscribers = open_many(target, args.subscribers, Role::Subscriber, |_| {
        vec![args.channel.clone()]
    })
    .await?;
    let mut subscriber_tasks = JoinSet::new();
    for (i, client) in subscribers.into_iter().enumerate() {
        subscriber_tasks.spawn(publish::subscriber(
            client,
            tracker.clone(),
            latencies.recorder(i),
            stop_rx.clone(),
        ));
    }
    let publish_target = match args.publish_addr {
        Some(addr) => Target {
            connector: Arc::new(Connector::new(addr, 1)?),
            ..target.clone()
        },
        None => target.clone(),
    };
    let publishers = open_many(&publish_target, args.publishers, Role::Publisher, |_| {
        Vec::new()
    })
    .await?;

    let per_publisher = match args.rate {
        Rate::Max => None,
        Rate::PerSecond(r) => Some(r / args.publishers as f64),
    };
    let start = Instant::now();
    let measure_from = start + secs(args.warmup_s);
    let end = measure_from + secs(args.duration_s);
    tracker.measure_from(measure_from);
    let cap = match args.messages {
        0 => u64::MAX,
        m => m.div_ceil(args.publishers as u64),
    };
    let channel: Arc<str> = Arc::from(args.channel.as_str());
    let deliveries = args.subscribers as u64;
    let mut publisher_tasks = JoinSet::new();
    let mut paced_cap = 0.0;
    for (i, client) in publishers.into_iter().enumerate() {
        let interval = pacing(per_publisher, client.requests_per_second())?;
        if let (Rate::Max, Some(i)) = (args.rate, interval) {
            paced_cap += 1.0 / i.as_secs_f64();
        }
        let channel = channel.clone();
        let route: Route = Box::new(move |_| (channel.clone(), deliveries));
        let plan = PublisherPlan {
            index: i as u32,
            interval,
            window,
            start,
            measure_from,
            end,
            cap,
            payload_bytes: args.payload_bytes,
            route,
        };
        publisher_tasks.spawn(publish::publisher(client, plan, tracker.clone()));
    }
    if paced_cap > 0.0 {
        outcome.note(format!(
            "publishers paced by the server's announced per-connection request rate: at most {paced_cap:.0} publications/s ({:.0} deliveries/s) offered",
            paced_cap * deliveries as f64
        ));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let meters = Meters::start(target);
    let (mut published, mut expected, mut errors, mut stalls) = (0u64, 0u64, 0u64, 0u64);
    let mut publisher_drops = 0u64;
    while let Some(stats) = publisher_tasks.join_next().await {
        let stats = stats?;
        published += stats.published;
        expected += stats.expected;
        errors += stats.errors;
        stalls += stats.stalls;
        publisher_drops += u64::from(stats.dropped);
    }
    let published_for_s = measure_from.elapsed().as_secs_f64();
    let (delivered, delivering_for_s) = tracker
        .drain(expected, secs(args.drain_s), measure_from)
        .await;
    meters.finish(&mut outcome, "deliveries", delivered as f64);

    let _ = stop.send(true);
    let mut subscriber_drops = 0u64;
    while let Some(dropped) = subscriber_tasks.join_next().await {
        subscriber_drops += u64::from(dropped?);
    }

    outcome.set("published", published as f64);
    outcome.set(
        "publish_per_s",
        published as f64 / published_for_s.max(1e-9),
    );
    outcome.set("expected_deliveries", expected as f64);
    outcome.set("deliveries", delivered as f64);
    if expected > 0 {
        outcome.set("delivered_pct", 100.0 * delivered as f64 / expected as f64);
    }
    if delivering_for_s > 0.0 {
        outcome.set("deliveries_per_s", delivered as f64 / delivering_for_s);
    }
    outcome.set_latency(latencies.summary());
    outcome.set("stalls", stalls as f64);
    outcome.set("subscriber_drops", subscriber_drops as f64);
    if stalls > 0 {
        outcome.note(format!(
            "{stalls} publications had not reached every subscriber after 1 s"
        ));
    }
    if subscriber_drops + publisher_drops > 0 {
        outcome.note(format!(
            "the server dropped {subscriber_drops} subscribers and {publisher_drops} publishers"
        ));
    }
    outcome.errors = errors + subscriber_drops + publisher_drops;
    Ok(outcome.finish())
}

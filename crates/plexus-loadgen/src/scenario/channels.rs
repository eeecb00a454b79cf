//! Many channels: N connections, each subscribed to a channel of its own and to one shared
//! channel; publishers publish to the personal channels in turn and, at a lower rate, to the
//! shared one. Figures: deliveries per second and publish-to-receive latency.

use super::publish::{self, PublisherPlan, Route, Tracker};
use super::{Meters, Target, open_many, pacing, secs};
use crate::client::Role;
use crate::report::Outcome;
use crate::stats::Latencies;
use anyhow::{Result, bail};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct ChannelsArgs {
    /// Subscriber connections, each on its own channel plus the shared one.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Publications per second to the personal channels, over all publishers.
    #[arg(long, default_value_t = 500.0)]
    pub personal_rate: f64,
    /// Publications per second to the shared channel, over all publishers.
    #[arg(long, default_value_t = 10.0)]
    pub shared_rate: f64,
    /// Size of each publication's JSON payload, in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Seconds of measured publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds of publishing before the measured phase.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Seconds to wait for the last deliveries once publishing stopped.
    #[arg(long, default_value_t = 5.0)]
    pub drain_s: f64,
}

fn personal(i: usize) -> String {
    format!("bench.c.{i}")
}

const SHARED: &str = "bench.shared";

pub async fn run(target: &Target, args: &ChannelsArgs) -> Result<Outcome> {
    if !target.dialect.has_channels() {
        bail!(
            "the {} dialect has no channels; many-channels needs Plexus or Socket.IO",
            target.dialect.name()
        );
    }
    if args.connections == 0 || args.publishers == 0 {
        bail!("many-channels needs at least one connection and one publisher");
    }
    let total_rate = args.personal_rate + args.shared_rate;
    if total_rate <= 0.0 {
        bail!("give a positive --personal-rate or --shared-rate");
    }
    let mut outcome = target.outcome("channels", args);
    let tracker = Tracker::new(args.publishers, false);
    let latencies = Latencies::new();
    let (stop, stop_rx) = watch::channel(false);

    let subscribers = open_many(target, args.connections, Role::Subscriber, |i| {
        vec![personal(i), SHARED.to_owned()]
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
    let publishers = open_many(target, args.publishers, Role::Publisher, |_| Vec::new()).await?;

    let start = Instant::now();
    let measure_from = start + secs(args.warmup_s);
    let end = measure_from + secs(args.duration_s);
    tracker.measure_from(measure_from);
    let per_publisher = total_rate / args.publishers as f64;
    let shared_share = args.shared_rate / total_rate;
    let (n, p) = (args.connections, args.publishers);
    let shared: Arc<str> = Arc::from(SHARED);
    let mut publisher_tasks = JoinSet::new();
    for (j, client) in publishers.into_iter().enumerate() {
        let interval = pacing(Some(per_publisher), client.requests_per_second())?;
        // Publisher j sends a shared publication whenever its credit reaches one, and
        // otherwise the next personal channel of its turn: j, j + P, j + 2P…
        let (mut credit, mut turn) = (0.0f64, 0usize);
        let shared = shared.clone();
        let route: Route = Box::new(move |_| {
            credit += shared_share;
            if credit >= 1.0 {
                credit -= 1.0;
                return (shared.clone(), n as u64);
            }
            let i = (j + turn * p) % n;
            turn += 1;
            (Arc::from(personal(i)), 1)
        });
        let plan = PublisherPlan {
            index: j as u32,
            interval,
            window: None,
            start,
            measure_from,
            end,
            cap: u64::MAX,
            payload_bytes: args.payload_bytes,
            route,
        };
        publisher_tasks.spawn(publish::publisher(client, plan, tracker.clone()));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let meters = Meters::start(target);
    let (mut published, mut expected, mut errors, mut drops) = (0u64, 0u64, 0u64, 0u64);
    while let Some(stats) = publisher_tasks.join_next().await {
        let stats = stats?;
        published += stats.published;
        expected += stats.expected;
        errors += stats.errors;
        drops += u64::from(stats.dropped);
    }
    let published_for_s = measure_from.elapsed().as_secs_f64();
    let (delivered, delivering_for_s) = tracker
        .drain(expected, secs(args.drain_s), measure_from)
        .await;
    meters.finish(&mut outcome, "deliveries", delivered as f64);
    let _ = stop.send(true);
    while let Some(dropped) = subscriber_tasks.join_next().await {
        drops += u64::from(dropped?);
    }

    outcome.set("channels", (args.connections + 1) as f64);
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
    if drops > 0 {
        outcome.note(format!("the server dropped {drops} connections"));
    }
    outcome.errors = errors + drops;
    Ok(outcome.finish())
}

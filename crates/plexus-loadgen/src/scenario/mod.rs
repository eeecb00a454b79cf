//! The scenarios, and what they share: the target server, opening many connections, pacing,
//! and CPU meters.
//!
//! Every scenario is bounded: a warmup and a measured phase of fixed length, a bounded drain,
//! timeouts on every wait. Figures count only what was sent in the measured phase.

pub mod channels;
pub mod connect;
pub mod fanout;
pub mod idle;
mod publish;
pub mod rpc;

use crate::client::{Client, Dialect, Role};
use crate::conn::Connector;
use crate::report::Outcome;
use crate::sys::CpuMeter;
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server under load.
#[derive(Clone)]
pub struct Target {
    /// The label in results (`plexus-json`, `socketio`…).
    pub name: String,
    pub dialect: Dialect,
    pub connector: Arc<Connector>,
    /// The server's process id, to read its CPU time and resident memory.
    pub server_pid: Option<u32>,
    /// Connections opened at once while a scenario sets up.
    pub connect_concurrency: usize,
}

impl Target {
    pub fn new(name: impl Into<String>, dialect: Dialect, connector: Connector) -> Target {
        Target {
            name: name.into(),
            dialect,
            connector: Arc::new(connector),
            server_pid: None,
            connect_concurrency: 64,
        }
    }

    pub fn with_server_pid(mut self, pid: Option<u32>) -> Target {
        self.server_pid = pid;
        self
    }

    pub fn with_connect_concurrency(mut self, n: usize) -> Target {
        self.connect_concurrency = n.max(1);
        self
    }

    pub(crate) fn outcome(&self, scenario: &str, params: &impl Serialize) -> Outcome {
        Outcome::new(scenario, &self.name, self.dialect.name(), params)
    }
}

/// Opens `n` connections in `role`, `target.connect_concurrency` at a time, each subscribed to
/// `channels(i)`. Any failure fails the whole setup.
pub(crate) async fn open_many<F>(
    target: &Target,
    n: usize,
    role: Role,
    channels: F,
) -> Result<Vec<Client>>
where
    F: Fn(usize) -> Vec<String>,
{
    let opened: Vec<Result<Client>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let list = channels(i);
            async move {
                let mut client = Client::open(&target.connector, target.dialect, role)
                    .await
                    .with_context(|| format!("opening connection {i}"))?;
                for channel in &list {
                    client.subscribe(channel).await?;
                }
                Ok(client)
            }
        })
        .buffered(target.connect_concurrency)
        .collect()
        .await;
    opened.into_iter().collect()
}

/// How fast to publish or call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// As fast as the flow control allows.
    Max,
    /// This many per second.
    PerSecond(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
            _ => Err(format!("`{s}` is neither `max` nor a positive rate")),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The share of a server's announced per-connection request rate the load generator uses, so
/// that timer jitter never trips the limit.
pub const SERVER_RATE_SHARE: f64 = 0.95;

/// The interval between requests of one connection: `wanted` per second, never above what
/// the server announced. `None`: no pacing. Fails when `wanted` is above the server's limit
/// (use more connections instead).
pub(crate) fn pacing(wanted: Option<f64>, announced: Option<u32>) -> Result<Option<Duration>> {
    let cap = announced.map(|rps| f64::from(rps) * SERVER_RATE_SHARE);
    let rate = match (wanted, cap) {
        (Some(w), Some(c)) if w > c => bail!(
            "{w:.1} requests/s on one connection is above the server's limit ({} /s announced); use more connections",
            announced.unwrap_or(0)
        ),
        (Some(w), _) => Some(w),
        (None, c) => c,
    };
    Ok(rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r)))
}

/// The next send time after `at`: one interval later, without bursting to catch up more than
/// a few intervals when the sender fell behind.
pub(crate) fn next_send(at: Instant, interval: Option<Duration>) -> Instant {
    match interval {
        None => at,
        Some(i) => (at + i).max(Instant::now().checked_sub(i * 4).unwrap_or(at)),
    }
}

/// Microseconds since the stamp epoch of an instant.
pub(crate) fn instant_us(at: Instant) -> u64 {
    at.saturating_duration_since(crate::stamp::epoch())
        .as_micros() as u64
}

pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// CPU time of the server, of the load generator and of the whole machine over a scenario's
/// measured phase.
pub(crate) struct Meters {
    server: Option<CpuMeter>,
    loadgen: Option<CpuMeter>,
    machine_busy_s: Option<f64>,
}

impl Meters {
    pub(crate) fn start(target: &Target) -> Meters {
        Meters {
            server: target.server_pid.and_then(CpuMeter::start),
            loadgen: CpuMeter::start(std::process::id()),
            machine_busy_s: crate::sys::machine_busy_seconds().ok(),
        }
    }

    /// Adds `server_cpu_pct`, `loadgen_cpu_pct`, `<work>_per_server_cpu_s` (how much of the
    /// work one second of server CPU did: the figure to compare when the machine is shared or
    /// the load generator is the bottleneck) and `other_cpu_pct` (CPU the rest of the machine
    /// used meanwhile, in percent of one CPU: noise from other processes).
    pub(crate) fn finish(&self, outcome: &mut Outcome, work_name: &str, work: f64) {
        let mut ours = 0.0;
        let mut wall_s = None;
        if let Some((cpu, wall)) = self.server.as_ref().and_then(CpuMeter::read) {
            outcome.set("server_cpu_pct", 100.0 * cpu / wall.max(1e-9));
            if cpu > 0.0 {
                outcome.set(&format!("{work_name}_per_server_cpu_s"), work / cpu);
            }
            ours += cpu;
        }
        if let Some((cpu, wall)) = self.loadgen.as_ref().and_then(CpuMeter::read) {
            outcome.set("loadgen_cpu_pct", 100.0 * cpu / wall.max(1e-9));
            // In-process servers (tests) are already counted.
            if self.server.as_ref().map(|s| s.pid()) != Some(std::process::id()) {
                ours += cpu;
            }
            wall_s = Some(wall);
        }
        if let (Some(start), Ok(end), Some(wall)) = (
            self.machine_busy_s,
            crate::sys::machine_busy_seconds(),
            wall_s,
        ) {
            let other = (end - start - ours).max(0.0);
            outcome.set("other_cpu_pct", 100.0 * other / wall.max(1e-9));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("250".parse::<Rate>().unwrap(), Rate::PerSecond(250.0));
        assert!("-1".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!(serde_json::to_string(&Rate::Max).unwrap(), r#""max""#);
    }

    #[test]
    fn pacing_respects_the_announced_limit() {
        assert_eq!(pacing(None, None).unwrap(), None);
        assert_eq!(
            pacing(Some(10.0), None).unwrap(),
            Some(Duration::from_millis(100))
        );
        let capped = pacing(None, Some(100)).unwrap().unwrap();
        assert!(capped > Duration::from_millis(10), "{capped:?}");
        assert!(pacing(Some(500.0), Some(100)).is_err());
        assert_eq!(
            pacing(Some(50.0), Some(100)).unwrap(),
            Some(Duration::from_millis(20))
        );
    }
}

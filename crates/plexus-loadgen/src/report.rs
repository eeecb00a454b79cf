//! A scenario's result: one JSON line for machines, a small table for people.

use crate::stats::Summary;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The result of one scenario run against one server.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// `fanout`, `channels`, `rpc`, `connect` or `idle`.
    pub scenario: String,
    /// The server's label (for example `plexus-json`, `socketio`).
    pub target: String,
    pub dialect: String,
    /// The scenario's parameters, as given on the command line.
    pub params: BTreeMap<String, Value>,
    /// The measured figures; each name carries its unit (`_per_s`, `_ms`, `_bytes`, `_pct`).
    pub figures: BTreeMap<String, f64>,
    /// Requests answered with an error, connections that failed or were dropped.
    pub errors: u64,
    /// What a reader must know to interpret the figures (caps, skipped parts).
    pub notes: Vec<String>,
    /// Seconds since the Unix epoch when the run ended.
    pub unix_time: u64,
}

impl Outcome {
    pub fn new(scenario: &str, target: &str, dialect: &str, params: &impl Serialize) -> Outcome {
        let params = match serde_json::to_value(params) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        Outcome {
            scenario: scenario.into(),
            target: target.into(),
            dialect: dialect.into(),
            params,
            ..Outcome::default()
        }
    }

    pub fn set(&mut self, name: &str, value: f64) {
        if value.is_finite() {
            self.figures.insert(name.into(), value);
        }
    }

    pub fn figure(&self, name: &str) -> Option<f64> {
        self.figures.get(name).copied()
    }

    /// Adds `latency_p50_ms`, `latency_p99_ms`, `latency_max_ms`, `latency_mean_ms` and
    /// `latency_samples`.
    pub fn set_latency(&mut self, summary: Option<Summary>) {
        if let Some(s) = summary {
            self.set("latency_p50_ms", s.p50_ms);
            self.set("latency_p99_ms", s.p99_ms);
            self.set("latency_max_ms", s.max_ms);
            self.set("latency_mean_ms", s.mean_ms);
            self.set("latency_samples", s.count as f64);
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn finish(mut self) -> Outcome {
        self.unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an outcome serializes")
    }

    /// The parameters as `k=v k=v`.
    pub fn params_line(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A small table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} · {} ({}) · {}",
            self.scenario,
            self.target,
            self.dialect,
            self.params_line()
        );
        let width = self.figures.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in &self.figures {
            let _ = writeln!(out, "  {name:<width$}  {:>14}", format_value(*value));
        }
        let _ = writeln!(out, "  {:<width$}  {:>14}", "errors", self.errors);
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

/// A figure for people: integers without decimals, small values with three significant
/// digits.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_round_trips() {
        #[derive(Serialize)]
        struct P {
            subscribers: usize,
            rate: String,
        }
        let mut o = Outcome::new(
            "fanout",
            "plexus",
            "native-json",
            &P {
                subscribers: 3,
                rate: "max".into(),
            },
        );
        o.set("deliveries_per_s", 1234.5);
        o.set("nan_is_dropped", f64::NAN);
        o.note("capped");
        let o = o.finish();
        let back: Outcome = serde_json::from_str(&o.to_json_line()).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.params_line(), "rate=max subscribers=3");
        assert!(o.to_table().contains("deliveries_per_s"));
        assert!(!o.figures.contains_key("nan_is_dropped"));
        assert_eq!(format_value(0.01234), "0.012");
        assert_eq!(format_value(12345.6), "12346");
    }
}

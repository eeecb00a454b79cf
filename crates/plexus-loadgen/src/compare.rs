//! The side-by-side table: results of the same scenario with the same parameters against
//! several servers, with the ratio of the baseline (Plexus) to each peer per figure.

use crate::report::{Outcome, format_value};
use std::fmt::Write as _;

/// Whether more of a figure is better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// Context, not a score (CPU use, counts).
    Neither,
}

/// The figures shown for a scenario, in order.
fn headline(scenario: &str) -> &'static [(&'static str, Better)] {
    use Better::*;
    match scenario {
        "fanout" | "channels" => &[
            ("deliveries_per_s", Higher),
            ("deliveries_per_server_cpu_s", Higher),
            ("latency_p50_ms", Lower),
            ("latency_p99_ms", Lower),
            ("latency_max_ms", Lower),
            ("delivered_pct", Higher),
            ("publish_per_s", Neither),
            ("server_cpu_pct", Neither),
            ("loadgen_cpu_pct", Neither),
            ("other_cpu_pct", Neither),
        ],
        "rpc" => &[
            ("calls_per_s", Higher),
            ("calls_per_server_cpu_s", Higher),
            ("latency_p50_ms", Lower),
            ("latency_p99_ms", Lower),
            ("latency_max_ms", Lower),
            ("server_cpu_pct", Neither),
            ("loadgen_cpu_pct", Neither),
            ("other_cpu_pct", Neither),
        ],
        "connect" => &[
            ("connects_per_s", Higher),
            ("connects_per_server_cpu_s", Higher),
            ("latency_p50_ms", Lower),
            ("latency_p99_ms", Lower),
            ("server_cpu_pct", Neither),
            ("loadgen_cpu_pct", Neither),
            ("other_cpu_pct", Neither),
        ],
        "idle" => &[
            ("rss_per_conn_bytes", Lower),
            ("connections", Neither),
            ("loadgen_rss_per_conn_bytes", Neither),
        ],
        _ => &[],
    }
}

/// The results of one target in one group: every run, and the median of each figure.
struct Runs<'a> {
    target: &'a str,
    runs: Vec<&'a Outcome>,
}

impl Runs<'_> {
    /// The median over the runs that have the figure (the lower middle for an even count).
    fn figure(&self, name: &str) -> Option<f64> {
        let mut values: Vec<f64> = self.runs.iter().filter_map(|o| o.figure(name)).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(values[(values.len() - 1) / 2])
    }

    fn errors(&self) -> u64 {
        self.runs.iter().map(|o| o.errors).sum()
    }
}

/// Markdown tables, one per (scenario, parameters), in the order the results came. With
/// several runs of a target, each figure is the median over them. Ratio columns compare
/// `baseline` with every target whose name does not start with `plexus`.
pub fn table(outcomes: &[Outcome], baseline: &str, all_figures: bool) -> String {
    let mut groups: Vec<(String, String, Vec<Runs<'_>>)> = Vec::new();
    for o in outcomes {
        let params = o.params_line();
        let group = match groups
            .iter_mut()
            .position(|(s, p, _)| *s == o.scenario && *p == params)
        {
            Some(i) => &mut groups[i].2,
            None => {
                groups.push((o.scenario.clone(), params, Vec::new()));
                &mut groups.last_mut().expect("pushed").2
            }
        };
        match group.iter_mut().find(|r| r.target == o.target) {
            Some(runs) => runs.runs.push(o),
            None => group.push(Runs {
                target: &o.target,
                runs: vec![o],
            }),
        }
    }
    let mut out = String::new();
    for (scenario, params, list) in groups {
        let base = list.iter().find(|r| r.target == baseline);
        let peers: Vec<&Runs<'_>> = list
            .iter()
            .filter(|r| !r.target.starts_with("plexus"))
            .collect();
        let _ = writeln!(out, "#### {scenario} · {params}\n");
        let mut header = String::from("| figure |");
        let mut rule = String::from("|---|");
        for r in &list {
            let _ = write!(header, " {} |", r.target);
            rule.push_str("---:|");
        }
        if let Some(base) = base {
            for p in &peers {
                let _ = write!(header, " {} ÷ {} |", base.target, p.target);
                rule.push_str("---:|");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let mut names: Vec<(String, Better)> = headline(&scenario)
            .iter()
            .map(|(n, b)| ((*n).to_owned(), *b))
            .collect();
        if all_figures || names.is_empty() {
            for r in &list {
                for o in &r.runs {
                    for name in o.figures.keys() {
                        if !names.iter().any(|(n, _)| n == name) {
                            names.push((name.clone(), Better::Neither));
                        }
                    }
                }
            }
        }
        let ratio_cells = if base.is_some() { peers.len() } else { 0 };
        if list.iter().any(|r| r.runs.len() > 1) {
            let _ = write!(out, "| runs (median shown) |");
            for r in &list {
                let _ = write!(out, " {} |", r.runs.len());
            }
            out.push_str(&"  |".repeat(ratio_cells));
            out.push('\n');
        }
        for (name, better) in &names {
            if list.iter().all(|r| r.figure(name).is_none()) {
                continue;
            }
            let arrow = match better {
                Better::Higher => " ↑",
                Better::Lower => " ↓",
                Better::Neither => "",
            };
            let _ = write!(out, "| {name}{arrow} |");
            for r in &list {
                let cell = r.figure(name).map(format_value).unwrap_or("—".into());
                let _ = write!(out, " {cell} |");
            }
            if let Some(base) = base {
                for p in &peers {
                    let cell = match (base.figure(name), p.figure(name), better) {
                        (_, _, Better::Neither) => String::new(),
                        (Some(b), Some(v), _) if v != 0.0 => format!("{:.2}×", b / v),
                        _ => "—".into(),
                    };
                    let _ = write!(out, " {cell} |");
                }
            }
            out.push('\n');
        }
        let _ = write!(out, "| errors |");
        for r in &list {
            let _ = write!(out, " {} |", r.errors());
        }
        out.push_str(&"  |".repeat(ratio_cells));
        out.push('\n');
        for r in &list {
            let mut notes: Vec<&String> = r.runs.iter().flat_map(|o| &o.notes).collect();
            notes.dedup();
            for note in notes {
                let _ = writeln!(out, "\n- {}: {note}", r.target);
            }
        }
        out.push('\n');
    }
    out
}

/// Reads results: one JSON object per line; other lines are skipped.
pub fn parse_lines(text: &str) -> Vec<Outcome> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(target: &str, deliveries: f64, p50: f64) -> Outcome {
        let mut o = Outcome::new(
            "fanout",
            target,
            "x",
            &serde_json::json!({"subscribers": 10}),
        );
        o.set("deliveries_per_s", deliveries);
        o.set("latency_p50_ms", p50);
        o.set("server_cpu_pct", 90.0);
        o
    }

    #[test]
    fn ratios_against_each_peer() {
        let lines = [
            outcome("plexus-json", 500.0, 1.0),
            outcome("plexus-msgpack", 450.0, 1.0),
            outcome("socketio", 100.0, 4.0),
            outcome("ws", 250.0, 2.0),
        ]
        .iter()
        .map(Outcome::to_json_line)
        .collect::<Vec<_>>()
        .join("\nnot json\n");
        let results = parse_lines(&lines);
        assert_eq!(results.len(), 4);
        let t = table(&results, "plexus-json", false);
        assert!(
            t.contains("| plexus-json ÷ socketio | plexus-json ÷ ws |"),
            "{t}"
        );
        assert!(
            t.contains("| deliveries_per_s ↑ | 500 | 450 | 100 | 250 | 5.00× | 2.00× |"),
            "{t}"
        );
        assert!(
            t.contains("| latency_p50_ms ↓ | 1 | 1 | 4 | 2 | 0.25× | 0.50× |"),
            "{t}"
        );
        assert!(
            t.contains("| server_cpu_pct | 90 | 90 | 90 | 90 |  |  |"),
            "{t}"
        );
        assert!(!t.contains("runs"), "{t}");
    }

    #[test]
    fn repeated_runs_show_the_median() {
        let results = vec![
            outcome("plexus-json", 500.0, 1.0),
            outcome("socketio", 100.0, 4.0),
            outcome("plexus-json", 300.0, 3.0),
            outcome("socketio", 120.0, 5.0),
            outcome("plexus-json", 900.0, 2.0),
            outcome("socketio", 80.0, 6.0),
        ];
        let t = table(&results, "plexus-json", false);
        assert!(t.contains("| runs (median shown) | 3 | 3 |  |"), "{t}");
        assert!(
            t.contains("| deliveries_per_s ↑ | 500 | 100 | 5.00× |"),
            "{t}"
        );
        assert!(t.contains("| latency_p50_ms ↓ | 2 | 5 | 0.40× |"), "{t}");
    }
}

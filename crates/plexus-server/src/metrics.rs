//! `GET /metrics`: the node's counters in the Prometheus text format (version 0.0.4), written by
//! hand from [`NodeStats`], the API counters and the hook counters.
//!
//! Label values come from fixed sets (API method names, hook names, outcomes); channel names,
//! user ids and connection ids are never labels.

use crate::api::{ApiStats, METHODS};
use crate::backend::{Backend, Hook, Outcome};
use plexus_core::Node;
use plexus_core::stats::{Histogram, NodeStats};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: &AtomicU64) {
        self.header(name, "counter", help);
        self.sample(name, "", value.load(Ordering::Relaxed));
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "gauge", help);
        self.sample(name, "", value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        for (bound, count) in h.cumulative() {
            self.sample(&format!("{name}_bucket"), &format!("le=\"{bound}\""), count);
        }
        self.sample(&format!("{name}_bucket"), "le=\"+Inf\"", h.count());
        self.sample(&format!("{name}_sum"), "", h.sum_seconds());
        self.sample(&format!("{name}_count"), "", h.count());
    }
}

/// The metrics page.
pub fn render(node: &Node, api: &ApiStats, backend: Option<&Backend>) -> String {
    let mut out = Out(String::with_capacity(8 * 1024));
    let s: &NodeStats = node.stats();
    out.header(
        "plexus_info",
        "gauge",
        "Always 1; the labels describe the node.",
    );
    out.sample(
        "plexus_info",
        &format!(
            "node=\"{}\",version=\"{}\"",
            node.id(),
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    out.gauge(
        "plexus_uptime_seconds",
        "Seconds since the server started.",
        api.uptime().as_secs(),
    );
    out.gauge(
        "plexus_connections",
        "Client connections open now.",
        node.connection_count() as u64,
    );
    out.gauge(
        "plexus_users",
        "Distinct authenticated users with a connection now.",
        node.hub().user_count() as u64,
    );
    let channels = node.active_channels();
    let subscriptions: usize = channels
        .iter()
        .map(|c| node.hub().subscriber_count(c))
        .sum();
    out.gauge(
        "plexus_channels",
        "Channels with at least one subscriber on this node.",
        channels.len() as u64,
    );
    out.gauge(
        "plexus_subscriptions",
        "Subscriptions of this node's connections.",
        subscriptions as u64,
    );
    out.counter(
        "plexus_connections_opened_total",
        "Client connections opened.",
        &s.connections_opened,
    );
    out.counter(
        "plexus_connections_closed_total",
        "Client connections closed.",
        &s.connections_closed,
    );
    out.counter(
        "plexus_messages_received_total",
        "WebSocket messages received from clients.",
        &s.messages_in,
    );
    out.counter(
        "plexus_messages_sent_total",
        "WebSocket messages written to clients.",
        &s.messages_out,
    );
    out.counter(
        "plexus_bytes_received_total",
        "Bytes of WebSocket messages received from clients.",
        &s.bytes_in,
    );
    out.counter(
        "plexus_bytes_sent_total",
        "Bytes of WebSocket messages written to clients.",
        &s.bytes_out,
    );
    out.counter(
        "plexus_publications_total",
        "Publications made through this node.",
        &s.publications,
    );
    out.counter(
        "plexus_deliveries_total",
        "Frames queued to subscribers by fan-out.",
        &s.deliveries,
    );
    out.counter(
        "plexus_slow_consumer_disconnects_total",
        "Connections closed because their outbound queue overflowed (4001).",
        &s.slow_consumer_closes,
    );
    out.counter(
        "plexus_auth_failures_total",
        "Authentications refused (bad, expired or missing tokens, refused credentials).",
        &s.auth_failures,
    );
    out.counter("plexus_commands_total", "RPC calls handled.", &s.commands);
    out.counter(
        "plexus_command_errors_total",
        "RPC calls that ended with an error.",
        &s.command_errors,
    );
    out.histogram(
        "plexus_command_duration_seconds",
        "Time from an RPC call's start to its result, middleware and hooks included.",
        &s.command_latency,
    );

    out.header(
        "plexus_api_requests_total",
        "counter",
        "HTTP server API calls with a valid key, by method (`unknown`: no such method).",
    );
    let methods = METHODS
        .iter()
        .map(|m| (Some(*m), *m))
        .chain([(None, "unknown")]);
    for (method, label) in methods.clone() {
        out.sample(
            "plexus_api_requests_total",
            &format!("method=\"{label}\""),
            api.calls(method).0,
        );
    }
    out.header(
        "plexus_api_errors_total",
        "counter",
        "HTTP server API calls answered with an error, by method.",
    );
    for (method, label) in methods {
        out.sample(
            "plexus_api_errors_total",
            &format!("method=\"{label}\""),
            api.calls(method).1,
        );
    }
    out.counter(
        "plexus_api_unauthorized_total",
        "HTTP server API calls refused for a missing or wrong API key.",
        &api.unauthorized,
    );
    out.histogram(
        "plexus_api_request_duration_seconds",
        "Time to answer an HTTP server API call.",
        &api.duration,
    );

    if let Some(backend) = backend {
        out.header(
            "plexus_backend_requests_total",
            "counter",
            "Requests to the backend's HTTP hooks, by hook and outcome.",
        );
        for hook in Hook::ALL {
            for outcome in Outcome::ALL {
                out.sample(
                    "plexus_backend_requests_total",
                    &format!(
                        "hook=\"{}\",outcome=\"{}\"",
                        hook.as_str(),
                        outcome.as_str()
                    ),
                    backend.stats().count(hook, outcome),
                );
            }
        }
        out.histogram(
            "plexus_backend_request_duration_seconds",
            "Time of backend hook requests, failures included.",
            &backend.stats().duration,
        );
    }
    out.0
}

//! What operators see of the nodes: each node's counters and its connections, gathered from
//! every live node (`Node::inspect`), for the HTTP API's `nodes` and `connections` methods and
//! the admin interface.
//!
//! On an engine with many nodes the question goes to every node as a control message
//! ([`Control::Inspect`]); each node writes its answer under a key of the engine's key/value
//! store that expires by itself, and the asking node reads the answers of the live nodes until
//! all of them answered or its wait ends — a node that does not answer in time is listed as
//! missing, never waited for longer. Everything is bounded: connections per node
//! ([`CONNECTIONS_MAX`]), channels listed per connection ([`SUBSCRIPTIONS_LISTED_MAX`]), nodes
//! asked (what the broker lists).

use crate::Error;
use crate::connection::Connection;
use crate::engine::Control;
use crate::ids::{ConnId, NodeId};
use crate::node::{Node, engine_error};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Connections one node lists in one answer, at most.
pub const CONNECTIONS_MAX: usize = 1000;
/// Channels listed per connection, at most (the count is always exact).
pub const SUBSCRIPTIONS_LISTED_MAX: usize = 100;
/// How long an answer stays in the key/value store (long past any wait).
const ANSWER_TTL: Duration = Duration::from_secs(30);
/// How often the asking node looks for answers while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What to ask every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectQuery {
    /// List the connections of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// List this connection.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "conn_text")]
    pub conn: Option<ConnId>,
    /// How many connections each node lists (at most [`CONNECTIONS_MAX`]); 0: only counters.
    /// Without `user` or `conn`, the node's first connections by id.
    #[serde(default)]
    pub limit: usize,
    /// List the channels with a subscriber on each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelsQuery>,
}

/// Which channels each node lists: those starting with `prefix`, the first `limit` by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsQuery {
    #[serde(default)]
    pub prefix: String,
    pub limit: usize,
}

/// A channel with subscribers on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCount {
    pub channel: String,
    pub subscribers: u64,
}

/// One node's counters, as it reported them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub version: String,
    pub uptime_ms: u64,
    pub connections: u64,
    pub users: u64,
    /// Channels with a subscriber on this node.
    pub channels: u64,
    /// Subscriptions of this node's connections.
    pub subscriptions: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub publications: u64,
    pub deliveries: u64,
    pub shutting_down: bool,
    pub engine_healthy: bool,
    pub engine_detail: String,
    /// Unix milliseconds at which the node wrote this report.
    pub at_ms: u64,
}

/// One connection, as operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub conn: String,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub dialect: String,
    pub transport: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub opened_ms: u64,
    /// The last measured round trip of a ping, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Its channels, in order, at most [`SUBSCRIPTIONS_LISTED_MAX`].
    pub subscriptions: Vec<String>,
    /// How many channels it is subscribed to.
    pub subscription_count: u64,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Bytes waiting in its outbound queue.
    pub queued_bytes: u64,
}

/// One node's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub report: NodeReport,
    pub connections: Vec<ConnectionReport>,
    /// More connections matched than were listed.
    pub truncated: bool,
    /// The node's channels, when asked: the first by name, and how many matched.
    #[serde(default)]
    pub channels: Vec<ChannelCount>,
    #[serde(default)]
    pub channels_total: u64,
}

/// Every live node's answer, and the nodes that did not answer in time.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    pub answers: Vec<NodeAnswer>,
    pub missing: Vec<String>,
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

fn answer_key(request: &str, node: &str) -> String {
    format!("inspect:{request}:{node}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn connection_report(node: NodeId, c: &Connection) -> ConnectionReport {
    // A record subscription shows as `record:<id>` rather than its internal channel.
    let mut subscriptions: Vec<String> = c
        .subscriptions()
        .iter()
        .map(|s| match crate::records::record_id(s) {
            Some(id) => format!("record:{id}"),
            None => s.to_string(),
        })
        .collect();
    subscriptions.sort();
    let subscription_count = subscriptions.len() as u64;
    subscriptions.truncate(SUBSCRIPTIONS_LISTED_MAX);
    let origin = c.origin();
    ConnectionReport {
        conn: c.id.to_string(),
        node: node.to_string(),
        user: c.user().map(str::to_owned),
        dialect: origin.map_or("unknown", |o| o.dialect).to_owned(),
        transport: origin.map_or("unknown", |o| o.transport).to_owned(),
        peer: origin.and_then(|o| o.peer).map(|p| p.to_string()),
        opened_ms: c.opened_ms(),
        latency_ms: c.latency().map(|d| d.as_secs_f64() * 1000.0),
        subscriptions,
        subscription_count,
        metadata: c.metadata(),
        queued_bytes: c.outbox().queued_bytes() as u64,
    }
}

impl Node {
    /// This node's answer to `query`.
    pub fn inspect_local(&self, query: &InspectQuery) -> NodeAnswer {
        let hub = self.hub();
        let connections = hub.connections();
        let stats = self.stats();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let engine = self.engine().broker.health();
        let report = NodeReport {
            node: self.id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_ms: self.started().elapsed().as_millis() as u64,
            connections: connections.len() as u64,
            users: hub.user_count() as u64,
            channels: hub.channels().len() as u64,
            subscriptions: connections
                .iter()
                .map(|c| c.subscription_count() as u64)
                .sum(),
            messages_in: load(&stats.messages_in),
            messages_out: load(&stats.messages_out),
            publications: load(&stats.publications),
            deliveries: load(&stats.deliveries),
            shutting_down: self.is_shutting_down(),
            engine_healthy: engine.healthy,
            engine_detail: engine.detail,
            at_ms: now_ms(),
        };
        let limit = query.limit.min(CONNECTIONS_MAX);
        let mut matched: Vec<Arc<Connection>> = match (&query.conn, &query.user) {
            (Some(conn), _) => hub
                .connection(*conn)
                .into_iter()
                .filter(|c| query.user.as_deref().is_none_or(|u| c.user() == Some(u)))
                .collect(),
            (None, Some(user)) => hub.user_connections(user),
            (None, None) => connections,
        };
        let truncated = matched.len() > limit;
        if limit == 0 {
            matched.clear();
        } else {
            matched.sort_by_key(|c| c.id);
            matched.truncate(limit);
        }
        let (channels, channels_total) = match &query.channels {
            None => (Vec::new(), 0),
            Some(q) => {
                let mut names: Vec<Arc<str>> = hub
                    .channels()
                    .into_iter()
                    // Records' internal channels are no channels a client could use.
                    .filter(|c| {
                        crate::records::record_id(c).is_none() && c.starts_with(q.prefix.as_str())
                    })
                    .collect();
                names.sort();
                let total = names.len() as u64;
                let listed = names
                    .into_iter()
                    .take(q.limit)
                    .map(|c| ChannelCount {
                        // The admin interface's own live tail is not a subscriber to count.
                        subscribers: hub
                            .subscribers(&c)
                            .iter()
                            .filter(|s| !s.is_observer())
                            .count() as u64,
                        channel: c.to_string(),
                    })
                    .collect();
                (listed, total)
            }
        };
        NodeAnswer {
            report,
            channels,
            channels_total,
            connections: matched
                .iter()
                .map(|c| connection_report(self.id(), c))
                .collect(),
            truncated,
        }
    }

    /// Asks every live node (`query`) and waits at most `wait` for their answers.
    pub async fn inspect(&self, query: InspectQuery, wait: Duration) -> Result<Inspection, Error> {
        let me = self.id().to_string();
        let mut nodes: Vec<String> = self
            .engine()
            .broker
            .nodes()
            .await
            .map_err(engine_error)?
            .into_iter()
            .map(|n| n.id)
            .collect();
        // A connection lives on the node its id names: only that node is asked.
        if let Some(conn) = &query.conn {
            nodes.retain(|n| *n == conn.node.to_string());
            if nodes.is_empty() && conn.node != self.id() {
                return Ok(Inspection {
                    answers: Vec::new(),
                    missing: Vec::new(),
                });
            }
        }
        if nodes.is_empty() || nodes == [me.clone()] {
            return Ok(Inspection {
                answers: vec![self.inspect_local(&query)],
                missing: Vec::new(),
            });
        }
        let request: Arc<str> =
            format!("{me}-{}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)).into();
        self.engine()
            .broker
            .control(Control::Inspect {
                request: request.clone(),
                query,
            })
            .await
            .map_err(engine_error)?;
        let deadline = Instant::now() + wait;
        let mut answers: Vec<Option<NodeAnswer>> = vec![None; nodes.len()];
        loop {
            for (node, slot) in nodes.iter().zip(answers.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                let key = answer_key(&request, node);
                if let Some(bytes) = self.engine().kv.get(&key).await.map_err(engine_error)? {
                    *slot = serde_json::from_slice(&bytes).ok();
                    let _ = self.engine().kv.delete(&key).await;
                }
            }
            if answers.iter().all(Option::is_some) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let mut inspection = Inspection {
            answers: Vec::new(),
            missing: Vec::new(),
        };
        for (node, answer) in nodes.into_iter().zip(answers) {
            match answer {
                Some(answer) => inspection.answers.push(answer),
                None => inspection.missing.push(node),
            }
        }
        Ok(inspection)
    }

    /// Answers another node's [`Control::Inspect`] (or this node's own) in the key/value
    /// store.
    pub(crate) fn answer_inspect(&self, request: Arc<str>, query: InspectQuery) {
        if query.conn.is_some_and(|c| c.node != self.id()) {
            return;
        }
        let answer = self.inspect_local(&query);
        let node = self.clone();
        tokio::spawn(async move {
            let key = answer_key(&request, &node.id().to_string());
            match serde_json::to_vec(&answer) {
                Ok(bytes) => {
                    if let Err(e) = node
                        .engine()
                        .kv
                        .set(&key, Bytes::from(bytes), Some(ANSWER_TTL))
                        .await
                    {
                        tracing::debug!(error = %e, "could not answer an inspection");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not encode an inspection"),
            }
        });
    }
}

/// A connection id as its text (`"<node>-<seq>"`) in a query.
mod conn_text {
    use crate::ids::ConnId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(conn: &Option<ConnId>, s: S) -> Result<S::Ok, S::Error> {
        match conn {
            Some(c) => s.serialize_some(&c.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConnId>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_survive_the_wire() {
        let query = InspectQuery {
            user: Some("alice".into()),
            conn: Some("0000abcd-7".parse().unwrap()),
            limit: 5,
            channels: Some(ChannelsQuery {
                prefix: "chat:".into(),
                limit: 10,
            }),
        };
        let text = serde_json::to_string(&query).unwrap();
        assert_eq!(serde_json::from_str::<InspectQuery>(&text).unwrap(), query);
        assert_eq!(
            serde_json::from_str::<InspectQuery>("{}").unwrap(),
            InspectQuery::default()
        );
    }
}

//! Plezi's Redis formats (`docs/endpoints.md`, "Plezi's Redis formats"), so Ruby processes still
//! on Plezi's bus reach Plexus's connections:
//!
//! - **Plezi 0.16 (iodine)** publishes raw strings on Redis channels named as the application's
//!   channels: a message on Redis channel `X` reaches this node's subscribers of Plexus channel
//!   `X` as it is (live, no offset, no history — iodine kept none either).
//! - **Plezi 0.12** publishes YAML hashes on its global channel: `:type` (an endpoint's name,
//!   or `all`) broadcasts, `:target` (a Plexus connection id) unicasts; the event is `:method`,
//!   the data its arguments (one argument as it is, several as an array).
//!
//! Every node subscribes and delivers to its own connections only, so a message reaches each
//! connection once. The binary (`plexus serve`) subscribes with `[plezi_bus]`; an application
//! embedding the library calls [`PleziBus::deliver`] from its own subscription.

use super::{ALL_ENDPOINTS_CHANNEL, endpoint_channel};
use plexus_core::model::{EncodeCache, Event, Target};
use plexus_core::{ConnId, Error, Node, Payload};
use plexus_protocol::plezi_yaml::bus_message;
use serde_json::Value;

/// What `[plezi_bus]` subscribes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PleziBusConfig {
    /// Redis channel patterns (globs) of Plezi 0.16's raw publications.
    pub raw_channels: Vec<String>,
    /// Plezi 0.12's global channel (`Plezi::Settings.redis_channel_name`); empty: none.
    pub global_channel: String,
}

/// Delivers the bus's messages to this node's connections.
#[derive(Clone)]
pub struct PleziBus {
    pub(crate) node: Node,
    pub(crate) global_channel: String,
}

impl PleziBus {
    /// A message the node's subscription received on Redis channel `channel`: the global
    /// channel's YAML, or a raw publication. Returns the connections reached.
    pub fn deliver(&self, channel: &str, payload: &[u8]) -> Result<usize, Error> {
        if !self.global_channel.is_empty() && channel == self.global_channel {
            self.deliver_yaml(payload)
        } else {
            Ok(self.deliver_raw(channel, payload))
        }
    }

    /// A Plezi 0.16 raw publication on `channel`, to this node's subscribers of the Plexus
    /// channel of that name: JSON text as JSON, other text as a string, other bytes as bytes.
    pub fn deliver_raw(&self, channel: &str, payload: &[u8]) -> usize {
        let payload = match std::str::from_utf8(payload) {
            Ok(text) => Payload::from_json_str(text)
                .or_else(|_| Payload::json(&text))
                .unwrap_or_else(|_| Payload::binary(payload.to_vec())),
            Err(_) => Payload::binary(payload.to_vec()),
        };
        let subscribers = self.node.hub().subscribers(channel);
        let mut cache = EncodeCache::new(Event::Notice {
            channel,
            event: None,
            payload: &payload,
        });
        let mut reached = 0;
        for conn in subscribers {
            if let Some(frame) = cache.frame(conn.format()) {
                conn.send_frame(frame);
                reached += 1;
            }
        }
        reached
    }

    /// A Plezi 0.12 YAML message: a unicast to one of this node's connections, or a broadcast to
    /// this node's connections of an endpoint (`:type`) or of every endpoint (`all`).
    pub fn deliver_yaml(&self, payload: &[u8]) -> Result<usize, Error> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| Error::bad_request("a Plezi bus message is not UTF-8"))?;
        let message = bus_message(text).map_err(|e| Error::bad_request(e.to_string()))?;
        plexus_core::model::validate_event(&message.method)?;
        let data = match <[Value; 1]>::try_from(message.data) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        let payload = Payload::json(&data).map_err(|e| Error::bad_request(e.to_string()))?;
        let event = Event::Message {
            to: Target::Connection,
            payload: &payload,
            event: Some(&message.method),
        };
        let conns = match (&message.target, &message.kind) {
            (Some(target), _) => {
                let id: ConnId = target
                    .parse()
                    .map_err(|_| Error::bad_request(format!("`{target}` is no connection id")))?;
                self.node.hub().connection(id).into_iter().collect()
            }
            (None, Some(kind)) if kind == "all" => {
                self.node.hub().subscribers(ALL_ENDPOINTS_CHANNEL)
            }
            (None, Some(kind)) => self.node.hub().subscribers(&endpoint_channel(kind)),
            (None, None) => Vec::new(),
        };
        let mut cache = EncodeCache::new(event);
        let mut reached = 0;
        for conn in conns {
            if let Some(frame) = cache.frame(conn.format()) {
                conn.send_frame(frame);
                reached += 1;
            }
        }
        Ok(reached)
    }
}

impl PleziBus {
    /// Delivery of Plezi's Redis bus messages to `node`'s connections (`global_channel`: Plezi
    /// 0.12's global channel, empty for none).
    pub fn new(node: &Node, global_channel: &str) -> PleziBus {
        PleziBus {
            node: node.clone(),
            global_channel: global_channel.to_owned(),
        }
    }
}

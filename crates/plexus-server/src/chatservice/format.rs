//! How a chat-service socket receives core events: room publications as `roomMessage`, the
//! service's notices and user messages as their events in the service's namespace, and
//! everything else as the Socket.IO dialect writes it in `/`.

use super::ChatServiceConfig;
use crate::socketio::{SocketIoFormat, event_in};
use bytes::Bytes;
use plexus_core::engine::PresenceEvent;
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::Payload;
use plexus_protocol::chatservice::value_to_arg;
use plexus_protocol::socketio::Arg;
use serde_json::{Value, json};

/// The wire-format id of chat-service sockets (native 0 and 1, Socket.IO 2).
pub(crate) const CHAT_SERVICE_FORMAT_ID: usize = 3;

/// The events the service sends with their arguments as a JSON array (`[room, user]` …):
/// a message or notice under one of these names is that event, its array spread into
/// arguments.
pub(crate) const NOTIFICATIONS: [&str; 16] = [
    "directMessage",
    "directMessageEcho",
    "roomAccessListAdded",
    "roomAccessListRemoved",
    "roomAccessRemoved",
    "roomJoinedEcho",
    "roomLeftEcho",
    "roomMessage",
    "roomModeChanged",
    "roomUserJoined",
    "roomUserLeft",
    "socketConnectEcho",
    "socketDisconnectEcho",
    "systemMessage",
    "loginConfirmed",
    "loginRejected",
];

pub struct ChatServiceFormat {
    config: ChatServiceConfig,
    socketio: SocketIoFormat,
}

impl ChatServiceFormat {
    pub(crate) fn new(config: &ChatServiceConfig) -> ChatServiceFormat {
        ChatServiceFormat {
            config: config.clone(),
            socketio: SocketIoFormat,
        }
    }

    fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        self.config.room_of(channel)
    }

    fn is_own(&self, channel: &str) -> bool {
        channel.starts_with(self.config.channel_prefix.as_str())
    }

    /// `[name, ...args]` in the service's namespace.
    pub(crate) fn event(&self, name: &str, args: Vec<Arg>) -> Bytes {
        event_in(&self.config.namespace, name, args)
    }

    /// A notification whose payload is its arguments as a JSON array.
    fn notification(&self, name: &str, payload: &Payload) -> Option<Bytes> {
        let Value::Array(args) = payload_value(payload)? else {
            return None;
        };
        Some(self.event(name, args.into_iter().map(value_to_arg).collect()))
    }
}

/// A JSON payload as a value (binary payloads are not the service's).
pub(crate) fn payload_value(payload: &Payload) -> Option<Value> {
    serde_json::from_str(payload.as_json_str()?).ok()
}

impl WireFormat for ChatServiceFormat {
    fn id(&self) -> usize {
        CHAT_SERVICE_FORMAT_ID
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        match event {
            Event::Publication(p) if self.is_own(&p.channel) => {
                let room = self.room_of(&p.channel)?;
                // A message as stored (`{...msg, author, timestamp}`), with its id: the offset.
                // A native client's publication that is not an object is given as `{data}`.
                let mut message = match payload_value(&p.payload)? {
                    Value::Object(o) => o,
                    other => [("data".to_owned(), other)].into_iter().collect(),
                };
                message.insert("id".into(), json!(p.offset));
                Some(self.event(
                    "roomMessage",
                    vec![Arg::from(json!(room)), value_to_arg(Value::Object(message))],
                ))
            }
            Event::Message {
                payload,
                event: Some(name),
                ..
            } if NOTIFICATIONS.contains(name) => self.notification(name, payload),
            // The service's notices to a room's members (`roomUserJoined`, …).
            Event::Notice {
                channel,
                event: Some(name),
                payload,
            } if self.is_own(channel) && NOTIFICATIONS.contains(name) => {
                self.notification(name, payload)
            }
            // The server removed the socket from a room: access lost, the room deleted.
            Event::Unsubscribed { channel, .. } if self.is_own(channel) => {
                let room = self.room_of(channel)?;
                Some(self.event("roomAccessRemoved", vec![Arg::from(json!(room))]))
            }
            // A user's first socket joined a room, or its last left (the core tells these
            // only for rooms with user-list notifications on).
            Event::Presence {
                channel,
                event:
                    PresenceEvent::Join {
                        user: Some(user), ..
                    },
                ..
            } if self.room_of(channel).is_some() => {
                let room = self.room_of(channel)?;
                Some(self.event(
                    "roomUserJoined",
                    vec![value_to_arg(json!(room)), value_to_arg(json!(**user))],
                ))
            }
            Event::Presence {
                channel,
                event: PresenceEvent::Leave { user: Some(user) },
                ..
            } if self.room_of(channel).is_some() => {
                let room = self.room_of(channel)?;
                Some(self.event(
                    "roomUserLeft",
                    vec![value_to_arg(json!(room)), value_to_arg(json!(**user))],
                ))
            }
            Event::Presence { channel, .. } | Event::Subscribed { channel, .. }
                if self.is_own(channel) =>
            {
                None
            }
            _ => self.socketio.encode(event),
        }
    }

    fn node_heartbeat(&self) -> bool {
        false
    }
}

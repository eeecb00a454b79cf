//! The core's vocabulary: identities, publications, the events a connection receives, and the
//! wire-format trait through which dialects encode those events.

use crate::ids::ConnId;
use bytes::Bytes;
use plexus_protocol::Payload;
use std::sync::Arc;
use std::time::Duration;

pub use plexus_protocol::server::Target;

/// An authenticated user of a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub user: Arc<str>,
    /// Application data about the user, given to clients (`info`).
    pub info: Option<Payload>,
    /// Channels the connection is subscribed to as soon as it is authenticated (a token's
    /// `channels` claim, a backend's answer).
    pub channels: Vec<Arc<str>>,
    /// When the authentication expires; the connection is then closed with `token_expired`
    /// (4506), checked by the heartbeat sweep.
    pub expires_at: Option<std::time::SystemTime>,
}

impl Identity {
    pub fn new(user: impl Into<Arc<str>>) -> Identity {
        Identity {
            user: user.into(),
            info: None,
            channels: Vec::new(),
            expires_at: None,
        }
    }

    pub fn with_channels(
        mut self,
        channels: impl IntoIterator<Item = impl Into<Arc<str>>>,
    ) -> Identity {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }

    pub fn expires_at(mut self, at: std::time::SystemTime) -> Identity {
        self.expires_at = Some(at);
        self
    }

    pub fn with_info(mut self, info: Payload) -> Identity {
        self.info = Some(info);
        self
    }
}

/// Who published a publication.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientInfo {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub info: Option<Payload>,
}

/// A channel's position: the offset of its latest publication and its epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A publication in a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    pub channel: Arc<str>,
    /// +1 for every publication in the channel, starting at 1.
    pub offset: u64,
    pub epoch: Arc<str>,
    pub payload: Payload,
    pub publisher: Option<ClientInfo>,
    /// The event name it was published under (Socket.IO's `to(room).emit(event, …)`); `None`
    /// is the default event (`message` for Socket.IO clients). Kept in history.
    pub event: Option<Arc<str>>,
}

/// What a server-side send carries: a payload and, optionally, an event name.
///
/// Every method that publishes or sends takes `impl Into<Emit>`, so a bare [`Payload`] is the
/// default event. Dialects with event names deliver it under that name (a Socket.IO client's
/// `socket.on(event, …)`); native clients see it as the push's `event` field.
#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    pub event: Option<Arc<str>>,
    pub payload: Payload,
}

impl Emit {
    /// A payload under an event name.
    pub fn event(name: impl Into<Arc<str>>, payload: Payload) -> Emit {
        Emit {
            event: Some(name.into()),
            payload,
        }
    }
}

impl From<Payload> for Emit {
    fn from(payload: Payload) -> Emit {
        Emit {
            event: None,
            payload,
        }
    }
}

/// Longest event name, in bytes.
pub const MAX_EVENT_BYTES: usize = 200;

/// Event names no dialect may be sent: Socket.IO reserves these for its own lifecycle (a server
/// emitting one is an error there too).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Checks an event name: 1 to [`MAX_EVENT_BYTES`] bytes, no control characters, not one of
/// [`RESERVED_EVENTS`]. A bad name is `bad_request` (104).
pub fn validate_event(name: &str) -> Result<(), crate::Error> {
    let problem = if name.is_empty() {
        "empty event name".to_owned()
    } else if name.len() > MAX_EVENT_BYTES {
        format!("event name longer than {MAX_EVENT_BYTES} bytes")
    } else if name.chars().any(char::is_control) {
        "control character in event name".to_owned()
    } else if RESERVED_EVENTS.contains(&name) {
        format!("event name {name:?} is reserved")
    } else {
        return Ok(());
    };
    Err(crate::Error::bad_request(problem))
}

/// Connections or users a delivery skips (Mesa `excluding`, Mesh `broadcastExclude`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exclude {
    pub conns: Vec<ConnId>,
    pub users: Vec<Arc<str>>,
}

impl Exclude {
    pub fn conn(conn: ConnId) -> Exclude {
        Exclude {
            conns: vec![conn],
            users: Vec::new(),
        }
    }

    pub fn user(user: impl Into<Arc<str>>) -> Exclude {
        Exclude {
            conns: Vec::new(),
            users: vec![user.into()],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.users.is_empty()
    }

    pub fn excludes(&self, conn: ConnId, user: Option<&str>) -> bool {
        self.conns.contains(&conn) || user.is_some_and(|u| self.users.iter().any(|x| &**x == u))
    }
}

/// Something a connection receives from the server outside request/reply.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    Publication(&'a Publication),
    Message {
        to: Target,
        payload: &'a Payload,
        event: Option<&'a str>,
    },
    Subscribed {
        channel: &'a str,
        position: &'a StreamPosition,
    },
    Unsubscribed {
        channel: &'a str,
        reason: &'a str,
    },
    Ping,
    Latency(Duration),
    /// A presence change of another connection in a channel.
    Presence {
        channel: &'a str,
        conn: ConnId,
        event: &'a crate::engine::PresenceEvent,
    },
    /// A durable message for the connection's user.
    Mail(&'a crate::engine::Mail),
    /// Another connection of the same user changed.
    Echo {
        conn: ConnId,
        event: crate::engine::EchoEvent,
        channel: Option<&'a str>,
    },
    /// An event for a channel's subscribers that is not a publication: no offset, no history
    /// (room notices: a changed access list, a user who joined).
    Notice {
        channel: &'a str,
        event: Option<&'a str>,
        payload: &'a Payload,
    },
    /// A change of a record the connection subscribed, in its mode ([`crate::records`]).
    Record(&'a crate::records::RecordEvent),
}

/// How one dialect in one encoding writes events as frames.
///
/// Each wire format has a small distinct `id` (below [`MAX_WIRE_FORMATS`]) so that a fan-out
/// encodes a publication once per format and shares the bytes among every subscriber using it.
pub trait WireFormat: Send + Sync + 'static {
    fn id(&self) -> usize;
    /// The frame for `event`, or `None` when this dialect has no such frame.
    fn encode(&self, event: &Event<'_>) -> Option<Bytes>;
    /// Whether the node's heartbeat sweep pings this format's connections and closes them
    /// after missed pongs. A dialect whose protocol has a heartbeat of its own (Engine.IO)
    /// answers false and runs it in its transport; the sweep then only checks token expiry.
    fn node_heartbeat(&self) -> bool {
        true
    }
    /// The ping the sweep sends after `missed` unanswered pings in a row (of at most `max`):
    /// [`Event::Ping`] unless the dialect's ping says more (Mesa's op 1 `{tries, max}`).
    fn heartbeat(&self, missed: u32, max: u32) -> Option<Bytes> {
        let _ = (missed, max);
        self.encode(&Event::Ping)
    }
}

/// Wire formats a node can serve at once.
pub const MAX_WIRE_FORMATS: usize = 16;

/// A per-fan-out cache: each event encoded at most once per wire format.
pub struct EncodeCache<'a> {
    event: Event<'a>,
    frames: [Option<Option<Bytes>>; MAX_WIRE_FORMATS],
}

impl<'a> EncodeCache<'a> {
    pub fn new(event: Event<'a>) -> EncodeCache<'a> {
        EncodeCache {
            event,
            frames: Default::default(),
        }
    }

    pub fn frame(&mut self, format: &dyn WireFormat) -> Option<Bytes> {
        let slot = &mut self.frames[format.id()];
        slot.get_or_insert_with(|| format.encode(&self.event))
            .clone()
    }
}

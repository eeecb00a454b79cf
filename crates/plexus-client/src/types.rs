//! The values the client hands to the application: publications, pushes, events.

use crate::error::ClientError;
use plexus_protocol::server::{
    ClientInfo, EchoPush, HelloLimits, JoinPush, PresenceMember, PubPush, StatePush, Target,
};
use plexus_protocol::{CloseCode, DataField, Payload};
use std::time::Duration;

/// A position in a channel's stream: the offset of a publication and the channel's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// +1 for every publication of the channel.
    pub offset: u64,
    /// Changes when the channel's history was lost; offsets of different epochs don't compare.
    pub epoch: String,
}

/// Who published a publication, when the server attaches it.
#[derive(Clone, Debug, PartialEq)]
pub struct Publisher {
    /// The publishing connection's id.
    pub conn: String,
    pub user: Option<String>,
    /// The publisher's user info (a JSON payload).
    pub info: Option<Payload>,
}

/// A publication received on a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    pub channel: String,
    pub offset: u64,
    pub epoch: String,
    pub payload: Payload,
    pub publisher: Option<Publisher>,
    /// The event name it was published under; `None` for the default event.
    pub event: Option<String>,
}

impl Publication {
    pub(crate) fn from_push(p: PubPush) -> Publication {
        let payload = p.payload().unwrap_or_else(Payload::null);
        Publication {
            channel: p.channel,
            offset: p.offset,
            epoch: p.epoch,
            payload,
            publisher: p.publisher.map(Publisher::from_info),
            event: p.event,
        }
    }

    pub fn position(&self) -> Position {
        Position {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }
}

impl Publisher {
    fn from_info(c: ClientInfo) -> Publisher {
        Publisher {
            conn: c.conn,
            user: c.user,
            info: c.info.map(json),
        }
    }
}

/// A JSON field of a frame as a payload.
pub(crate) fn json(d: DataField) -> Payload {
    Payload::Json(d.0)
}

/// A member of a channel's presence, from [`crate::Client::presence`].
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The member connection's id.
    pub conn: String,
    /// Its user; `None` for an anonymous connection.
    pub user: Option<String>,
    /// Its user's info (a JSON payload).
    pub info: Option<Payload>,
    /// Its ephemeral presence state, when set ([`crate::Client::set_presence_state`]).
    pub state: Option<Payload>,
}

impl Member {
    pub(crate) fn from_wire(m: PresenceMember) -> Member {
        Member {
            conn: m.conn,
            user: m.user,
            info: m.info.map(json),
            state: m.state.map(json),
        }
    }
}

/// A connection joined or left a channel's presence (`join` / `leave` pushes).
///
/// In a namespace whose join/leave setting is "users", these come for a user's first
/// connection and its last; in a "connections" namespace, for every connection.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberChange {
    pub channel: String,
    /// The connection that joined or left.
    pub conn: String,
    pub user: Option<String>,
    /// The user's info (joins only).
    pub info: Option<Payload>,
}

impl MemberChange {
    pub(crate) fn from_wire(p: JoinPush) -> MemberChange {
        MemberChange {
            channel: p.channel,
            conn: p.conn,
            user: p.user,
            info: p.info.map(json),
        }
    }
}

/// A member's presence state changed (`state` push); `state: None` means it was cleared or
/// expired.
#[derive(Clone, Debug, PartialEq)]
pub struct StateChange {
    pub channel: String,
    pub conn: String,
    pub user: Option<String>,
    pub state: Option<Payload>,
}

impl StateChange {
    pub(crate) fn from_wire(p: StatePush) -> StateChange {
        StateChange {
            channel: p.channel,
            conn: p.conn,
            user: p.user,
            state: p.state.map(json),
        }
    }
}

/// What another connection of this client's user did (`echo` push).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EchoKind {
    /// It authenticated.
    Connected,
    /// It closed.
    Disconnected,
    /// It was subscribed to [`Echo::channel`].
    Joined,
    /// It was unsubscribed from [`Echo::channel`].
    Left,
    /// A kind this client does not know (from a newer server).
    Other(String),
}

/// Another connection of this client's user connected, disconnected, joined or left a channel
/// (sent only when the server enables echoes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    pub kind: EchoKind,
    /// The other connection.
    pub conn: String,
    /// The channel, for [`EchoKind::Joined`] and [`EchoKind::Left`].
    pub channel: Option<String>,
}

impl Echo {
    pub(crate) fn from_wire(p: EchoPush) -> Echo {
        let kind = match p.event.as_str() {
            "connected" => EchoKind::Connected,
            "disconnected" => EchoKind::Disconnected,
            "joined" => EchoKind::Joined,
            "left" => EchoKind::Left,
            _ => EchoKind::Other(p.event),
        };
        Echo {
            kind,
            conn: p.conn,
            channel: p.channel,
        }
    }
}

/// How many are in a channel's presence, from [`crate::Client::presence_stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceStats {
    /// Member connections, anonymous ones included.
    pub connections: u64,
    /// Distinct users among them.
    pub users: u64,
}

/// Whether a user is in a channel, and when it was last there ([`crate::Client::last_seen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastSeen {
    /// A connection of the user is a member of the channel's presence now.
    pub online: bool,
    /// Unix time in milliseconds: now when `online`, else when the user's last connection
    /// left. `None` when the user was never seen there (or the server forgot).
    pub last_seen_ms: Option<u64>,
}

/// A page of a channel's history, from [`crate::Client::history`].
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Oldest first, or newest first with [`crate::HistoryOptions::reverse`].
    pub publications: Vec<Publication>,
    /// The channel's current position (its latest publication, kept or not).
    pub position: Position,
}

/// Whose metadata [`crate::Client::metadata`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaTarget {
    /// A connection: only this client's own (its `conn` id).
    Connection(String),
    /// A user: only this client's own user.
    User(String),
    /// A channel this client may read.
    Channel(String),
}

/// A `message` push: data the server sent to this connection, its user, or everyone.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub to: Target,
    pub payload: Payload,
    /// The event name it was sent under; `None` for the default event.
    pub event: Option<String>,
}

/// A `notice` push: an event for the subscribers of a channel this connection is subscribed
/// to, outside the channel's publications (no offset, never recovered; room notices such as a
/// changed access list).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub channel: String,
    /// The event name it was sent under; `None` for the default event.
    pub event: Option<String>,
    pub payload: Payload,
}

/// What a [`crate::Pushes`] stream yields.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PushEvent {
    /// A `message` push (to the connection, the user, or a broadcast).
    Message(Message),
    /// A publication of a channel the *server* subscribed this connection to (client
    /// subscriptions deliver to their own [`crate::Subscription`]).
    Publication(Publication),
    /// A presence join in a channel the server subscribed this connection to.
    Join(MemberChange),
    /// A presence leave in a channel the server subscribed this connection to.
    Leave(MemberChange),
    /// A presence state change in a channel the server subscribed this connection to.
    State(StateChange),
    /// Another connection of this client's user changed (when the server enables echoes).
    Echo(Echo),
    /// An event for a subscribed channel's subscribers, outside its publications.
    Notice(Notice),
    /// A change of a record this connection subscribed to ([`crate::RecordWatch`] follows
    /// them for you).
    Record(crate::records::RecordChange),
    /// This stream fell behind by `missed` pushes, which were dropped.
    Lagged { missed: u64 },
}

/// A (re)subscription took effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribed {
    pub channel: String,
    /// The channel's position at subscribe time.
    pub position: Position,
    /// Only when the subscribe asked to recover (it passed `since`, the last position seen):
    /// `Some(true)`: every missed publication follows on the stream, in order, before the
    /// live ones; `Some(false)`: nothing was recovered ([`Subscribed::reason`] says why) and
    /// the stream goes on live from [`Subscribed::position`]. `None`: no recovery was asked
    /// (or the server does not support it).
    pub recovered: Option<bool>,
    /// Why recovery failed, a stable code: `epoch_changed`, `history_trimmed`, `too_many`,
    /// `not_available` or `invalid_position` (`docs/protocol.md` section 4.6).
    pub reason: Option<String>,
    /// True after a reconnect (the subscription was restored), false for a new subscription.
    pub resubscribed: bool,
    /// True for a subscription the server made (`subscribed` push), false for the client's.
    pub server_side: bool,
}

/// Why a subscription ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum UnsubscribeReason {
    /// The application unsubscribed.
    Client,
    /// The server removed the subscription (`unsubscribed` push), with its reason.
    Server(String),
    /// Restoring the subscription after a reconnect failed for good.
    ResubscribeFailed(ClientError),
    /// The client stopped (see [`Event::Disconnected`] / [`Event::GaveUp`]).
    ClientClosed,
}

/// What a [`crate::Subscription`] yields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    Publication(Publication),
    /// The subscription was restored: after a reconnect, or after a gap in the live stream.
    /// With `recovered == Some(true)`, the missed publications follow, before any live one.
    Subscribed(Subscribed),
    /// A connection joined the channel's presence.
    Join(MemberChange),
    /// A connection left the channel's presence.
    Leave(MemberChange),
    /// A member's presence state changed.
    State(StateChange),
    /// This stream fell behind by `missed` events (publications, presence changes), which were
    /// dropped: the application read too slowly for [`crate::SubscribeOptions::buffer`].
    Lagged {
        missed: u64,
    },
    /// The subscription ended; this is the last event.
    Unsubscribed(UnsubscribeReason),
}

/// A connection state change or a notice, from [`crate::Client::events`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// Connection attempt `attempt` (1 for the first one after being connected, or ever) will
    /// start after `delay`.
    Connecting { attempt: u32, delay: Duration },
    /// Connection attempt `attempt` failed; another follows unless [`Event::GaveUp`] or a final
    /// [`Event::Disconnected`] comes next.
    ConnectFailed { attempt: u32, error: ClientError },
    /// Connected and authenticated. `reconnected` is false for the first connection of this
    /// client; after a reconnect, subscriptions are being restored (see [`Event::Subscribed`]).
    Connected {
        reconnected: bool,
        info: ConnectionInfo,
    },
    /// The connection was lost or closed. `code` is the server's close code when it sent one.
    /// `will_reconnect: false` is final: the client has stopped.
    Disconnected {
        code: Option<CloseCode>,
        reason: String,
        will_reconnect: bool,
    },
    /// Reconnect attempts were exhausted ([`crate::Backoff::max_attempts`]); the client stopped.
    GaveUp { attempts: u32, error: ClientError },
    /// The server measured this round-trip time.
    Latency { rtt_ms: f64 },
    /// A subscription took effect (server-side ones, and every restored one after a reconnect).
    Subscribed(Subscribed),
    /// Restoring a subscription failed; `will_retry` says whether the client tries again.
    SubscribeFailed {
        channel: String,
        error: ClientError,
        will_retry: bool,
    },
    /// A subscription ended by the server's decision or a failed restore.
    Unsubscribed {
        channel: String,
        reason: UnsubscribeReason,
    },
    /// The server reported an error about a frame that had no id (an `error` push).
    ServerError(ClientError),
    /// This stream fell behind by `missed` events, which were dropped.
    Lagged { missed: u64 },
    /// A durable message did not fit in the [`crate::Mailbox`]'s buffer: it was not delivered
    /// nor acknowledged, and comes again on the next connection.
    MailDeferred { seq: u64 },
}

/// What the server said about this connection when it was established.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionInfo {
    /// The connection id, unique across nodes.
    pub conn: String,
    /// The server node the client is connected to.
    pub node: String,
    /// The authenticated user; `None` for an anonymous connection.
    pub user: Option<String>,
    /// The user's info from the server's auth hook (a JSON payload).
    pub info: Option<Payload>,
    /// The limits the server announced.
    pub limits: HelloLimits,
    /// The server's ping interval (0: no pings).
    pub ping_interval_ms: u64,
}

/// Where the client is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionState {
    /// Opening a connection, or waiting to retry.
    Connecting,
    Connected(ConnectionInfo),
    /// Stopped for good; every request fails with `Closed`.
    Closed,
}

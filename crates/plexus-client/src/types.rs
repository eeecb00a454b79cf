//! The values the client hands to the application: publications, pushes, events.

use crate::error::ClientError;
use plexus_protocol::server::{ClientInfo, HelloLimits, PubPush, Target};
use plexus_protocol::{CloseCode, Payload};
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
            info: c.info.map(|d| Payload::Json(d.0)),
        }
    }
}

/// A `message` push: data the server sent to this connection, its user, or everyone.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub to: Target,
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
    /// This stream fell behind by `missed` pushes, which were dropped.
    Lagged { missed: u64 },
}

/// A (re)subscription took effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribed {
    pub channel: String,
    /// The channel's position at subscribe time.
    pub position: Position,
    /// Whether the publications missed while disconnected were all delivered. `None`: the
    /// server did not say (recovery is not requested yet; see issue 5).
    pub recovered: Option<bool>,
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
    /// The subscription was restored after a reconnect. Publications made while the client was
    /// away are not delivered unless `recovered == Some(true)`.
    Subscribed(Subscribed),
    /// This stream fell behind by `missed` publications, which were dropped: the application
    /// read too slowly for [`crate::SubscribeOptions::buffer`].
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

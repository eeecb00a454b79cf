//! The Plexus Rust client.
//!
//! One [`Client`] holds one WebSocket connection to a Plexus server (native protocol v1, JSON or
//! MessagePack frames) and keeps it alive: it answers the server's pings, notices a silent
//! server, reconnects with exponential backoff and jitter, authenticates again, and restores
//! every subscription. What it offers:
//!
//! - [`Client::call`]: RPC to a command registered on the server, with a per-call timeout;
//! - [`Client::subscribe`] → [`Subscription`], a stream of publications (and restore / lag /
//!   end notices); [`Client::publish`]; [`Client::unsubscribe`];
//! - [`Client::pushes`]: `message` pushes, echoes, and publications of server-side
//!   subscriptions;
//! - [`Client::history`], [`Client::presence`], [`Client::presence_stats`],
//!   [`Client::set_presence_state`], [`Client::last_seen`], [`Client::metadata`],
//!   [`Client::set_metadata`];
//! - [`Client::mail`] → [`Mailbox`]: durable messages, acknowledged once handled ([`MailAck`]);
//! - [`Client::events`]: connection state changes ([`Event`]).
//!
//! # Recovery
//!
//! A subscription remembers the position (offset and epoch) of the last publication it saw.
//! When it is made again — after a reconnect, after the server reports lost publications, after
//! a gap in the live offsets — it passes that position as `since`, and where the channel's
//! namespace keeps history with recovery, the missed publications come first, in order, then
//! the live ones, none twice. [`Subscribed::recovered`] says whether that worked.
//!
//! # Errors
//!
//! Every operation fails with a [`ClientError`]: a server error carries its code
//! ([`ClientError::code`], the table is `plexus_protocol::ErrorCode`), local failures are told
//! apart by [`ErrorKind`] (timeout, disconnected, closed, queue full, …).
//!
//! # Reconnect rules
//!
//! - A close code in 4000–4499 (or a dropped socket, or a silent server) → reconnect.
//! - A close code in 4500–4999, or 1000 → never reconnect: the client stops and emits a final
//!   [`Event::Disconnected`] with `will_reconnect: false`. So does a refused `connect` (bad
//!   credentials or an expired token).
//! - [`Client::disconnect`] → never reconnect.
//! - [`Backoff::max_attempts`] consecutive failed attempts → [`Event::GaveUp`].
//!
//! Requests made while disconnected wait in a bounded queue, each until its own timeout (or fail
//! at once with [`RequestOptions::fail_fast`]); requests in flight when the connection drops
//! fail with [`ErrorKind::Disconnected`], since the server may or may not have handled them.
//! [`ClientConfig`] lists every bound.

mod backoff;
mod client;
mod config;
mod driver;
mod error;
mod lossy;
mod mail;
pub mod net;
mod queue;
mod records;
pub mod sockety;
mod types;

pub use backoff::{Backoff, Jitter};
pub use client::{Client, Events, Pushes, Subscription};
pub use config::{ClientConfig, HistoryOptions, MailAck, RequestOptions, SubscribeOptions};
pub use error::{ClientError, ErrorKind};
pub use mail::{Mail, Mailbox};
pub use plexus_protocol::server::{HelloLimits, Target};
pub use plexus_protocol::{CloseCode, Encoding, ErrorCode, Payload};
pub use records::{RecordChange, RecordMode, RecordState, RecordVersion, RecordWatch};
pub use types::{
    ConnectionInfo, ConnectionState, Echo, EchoKind, Event, History, LastSeen, Member,
    MemberChange, Message, MetaTarget, Notice, Position, PresenceStats, Publication, Publisher,
    PushEvent, StateChange, Subscribed, SubscriptionEvent, UnsubscribeReason,
};

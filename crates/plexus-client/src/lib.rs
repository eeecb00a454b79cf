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
//! - [`Client::pushes`]: `message` pushes and publications of server-side subscriptions;
//! - [`Client::events`]: connection state changes ([`Event`]).
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
mod queue;
mod types;

pub use backoff::{Backoff, Jitter};
pub use client::{Client, Events, Pushes, Subscription};
pub use config::{ClientConfig, RequestOptions, SubscribeOptions};
pub use error::{ClientError, ErrorKind};
pub use plexus_protocol::server::{HelloLimits, Target};
pub use plexus_protocol::{CloseCode, Encoding, ErrorCode, Payload};
pub use types::{
    ConnectionInfo, ConnectionState, Event, Message, Position, Publication, Publisher, PushEvent,
    Subscribed, SubscriptionEvent, UnsubscribeReason,
};

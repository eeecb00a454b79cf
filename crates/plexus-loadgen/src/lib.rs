//! The Plexus load generator.
//!
//! One process opens many WebSocket connections on loopback and drives a scenario against one
//! server: Plexus in its native protocol (JSON or MessagePack), or a peer speaking Socket.IO v4
//! (over WebSocket only) or plain WebSocket text messages. Every scenario is bounded in time and
//! count, stops by itself, and reports its figures as one JSON line plus a human-readable table
//! (`docs/benchmarks.md`).
//!
//! - [`client`]: one connection in one dialect (open, hello, subscribe, publish, call, read).
//! - [`socketio`]: the Engine.IO v4 / Socket.IO v4 packets the client needs (sans-IO).
//! - [`stamp`]: the timestamped payload that carries publish-to-receive latency.
//! - [`scenario`]: fan-out, many channels, RPC, connect rate, idle memory.
//! - [`report`] and [`compare`]: results, and the side-by-side table with ratios.
//! - [`sockety_bench`]: Sockety against HTTP/2 (`hyper`) and a raw TCP copy, with their servers.

pub mod client;
pub mod compare;
pub mod conn;
pub mod report;
pub mod scenario;
pub mod socketio;
pub mod sockety_bench;
pub mod stamp;
pub mod stats;
pub mod sys;

pub use client::{Client, Dialect, Event, Role};
pub use conn::Connector;
pub use report::Outcome;
pub use scenario::Target;

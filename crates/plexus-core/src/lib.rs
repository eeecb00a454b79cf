//! Plexus core: the node, hub, channels, commands, authentication hooks, the engine traits and
//! the in-memory engine. No sockets and no HTTP: transports and dialects live in
//! `plexus-server`, byte layouts in `plexus-protocol`.

pub mod access;
pub mod auth;
pub mod channels;
pub mod commands;
pub mod connection;
pub mod engine;
mod error;
pub mod hub;
pub mod ids;
pub mod inspect;
pub mod lifecycle;
pub mod limits;
pub mod mailbox;
pub mod memory;
pub mod metadata;
pub mod model;
pub mod node;
pub mod outbox;
pub mod presence;
pub mod queue;
pub mod records;
pub mod rooms;
pub mod session;
pub mod stats;
pub mod testing;

pub use access::{Actor, RoomUpdate, Rooms};
pub use auth::{AuthConfig, AuthRequest, UpgradeDecision, UpgradeRequest};
pub use channels::{
    Access, Action, ChannelMatch, ChannelPolicy, GuardRequest, JoinLeave, Namespace,
};
pub use commands::{Before, CallInfo, Command, CommandContext, CommandResult, Commands};
pub use connection::Connection;
pub use engine::HistoryOptions;
pub use engine::{Engine, EngineError};
pub use error::Error;
pub use ids::{ConnId, NodeId};
pub use lifecycle::{Authenticated, Closed, Lifecycle, Opened};
pub use limits::{ConnLimits, Limits};
pub use mailbox::DurableOutcome;
pub use metadata::Metadata;
pub use model::{
    ClientInfo, Emit, Event, Exclude, Identity, Publication, StreamPosition, Target, WireFormat,
    validate_event,
};
pub use node::{Node, NodeBuilder};
pub use plexus_protocol::{CloseCode, ErrorCode, Payload};
pub use records::{
    Record, RecordAction, RecordChange, RecordEvent, RecordMode, RecordNamespace, RecordPolicy,
    RecordWrite, Written,
};
pub use session::Session;

//! Every per-connection limit, explicit and configurable (units in the names).

use std::time::Duration;

/// Limits applied to every connection. Each has a test that hits it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest WebSocket message accepted; larger closes with `message_too_big` (1009).
    pub max_message_bytes: usize,
    /// Channels one connection may be subscribed to at once.
    pub max_subscriptions: usize,
    /// The longest channel name, in bytes.
    pub max_channel_bytes: usize,
    /// Bytes of frames that may wait in one connection's outbound queue; beyond it the
    /// connection is closed with `slow_consumer` (4001).
    pub outbound_queue_bytes_max: usize,
    /// Time a connection has to authenticate when authentication is required.
    pub auth_timeout: Duration,
    /// Connections one user may hold on this node (0 means no limit).
    pub max_connections_per_user: usize,
    /// Sustained requests per second per connection (token bucket rate).
    pub requests_per_second: u32,
    /// Requests allowed in a burst above the rate (token bucket size). That many rejected
    /// requests in a row close the connection with `flood` (4006).
    pub requests_burst: u32,
    /// Requests that may wait for an answer at once on one connection.
    pub max_pending_requests: usize,
    /// Default time a command handler may take before the caller gets `timeout` (110).
    pub command_timeout: Duration,
    /// The server pings every connection at this interval.
    pub ping_interval: Duration,
    /// Unanswered pings in a row after which a connection is closed (4002).
    pub max_missed_pongs: u32,
    /// Whether to push the measured round-trip time to the client after every pong.
    pub push_latency: bool,
    /// Time given to connections to drain their queues at shutdown.
    pub shutdown_timeout: Duration,
    /// Time one write to a client may take; a client that stops reading is dropped after it.
    pub write_timeout: Duration,
    /// Publications one recovery may return; a larger gap answers `recovered: false`
    /// (`too_many`). Also bounds the live publications buffered while a subscribe completes.
    pub recovery_max_publications: usize,
    /// Publications one client `history` read (or history-on-subscribe) may return.
    pub client_history_max: usize,
    /// The largest metadata object (connection, user or channel) and presence state, in bytes
    /// of JSON.
    pub max_metadata_bytes: usize,
    /// Durable messages waiting in one user's inbox; more are refused with an error.
    pub mailbox_max_messages: usize,
    /// How long an inbox lives after its user's last connection (Plezi `register_as` lifetime).
    pub mailbox_lifetime: Duration,
    /// How long a durable message waits for its acknowledgement, unless the sender says.
    pub mail_ttl: Duration,
    /// Pause between redelivered durable messages on connect (Mesa `redeliveryInterval`).
    pub mail_redelivery_pace: Duration,
    /// The shortest lifetime of an endpoint identity (Plezi `register_as` clamps to 10
    /// minutes).
    pub identity_min_lifetime: Duration,
    /// Names one room list (whitelist, blacklist, adminlist) may hold (chat-service
    /// `roomListSizeLimit`); also the names one change may carry.
    pub room_list_max: usize,
    /// Names one user's direct-message list may hold (chat-service `directListSizeLimit`).
    pub direct_list_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 64 * 1024,
            max_subscriptions: 128,
            max_channel_bytes: 255,
            outbound_queue_bytes_max: 1024 * 1024,
            auth_timeout: Duration::from_secs(10),
            max_connections_per_user: 100,
            requests_per_second: 100,
            requests_burst: 200,
            max_pending_requests: 64,
            command_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(25),
            max_missed_pongs: 2,
            push_latency: true,
            shutdown_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            recovery_max_publications: 300,
            client_history_max: 300,
            max_metadata_bytes: 16 * 1024,
            mailbox_max_messages: 1000,
            mailbox_lifetime: Duration::from_secs(7 * 24 * 3600),
            mail_ttl: Duration::from_secs(7 * 24 * 3600),
            mail_redelivery_pace: Duration::ZERO,
            identity_min_lifetime: Duration::from_secs(600),
            room_list_max: 10_000,
            direct_list_max: 1_000,
        }
    }
}

/// Per-connection limits that a listener (an endpoint with limits of its own, such as a raw echo
/// endpoint that must take big messages quickly) sets for its connections in place of the
/// node's [`Limits`]; `None` keeps the node's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    pub outbound_queue_bytes_max: Option<usize>,
    pub requests_per_second: Option<u32>,
    pub requests_burst: Option<u32>,
}

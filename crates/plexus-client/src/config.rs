//! Client configuration: every limit is a field, set explicitly, with its bound documented.

use crate::backoff::Backoff;
use crate::types::Position;
use plexus_protocol::Encoding;
use std::time::Duration;

/// How a [`crate::Client`] connects, authenticates, reconnects and how much it may buffer.
///
/// Build it with [`ClientConfig::new`] and the chained setters, or set the public fields.
///
/// # Bounds
///
/// Nothing the client holds grows without limit:
///
/// | what | bound | when full |
/// |---|---|---|
/// | requests waiting to be sent (offline, or above the in-flight limit) | [`max_queued_requests`](Self::max_queued_requests) | the new request fails with `QueueFull` (or at once with `Disconnected` when it asked to fail fast) |
/// | requests sent and waiting for their reply | [`max_in_flight`](Self::max_in_flight), and never more than the server's `max_pending_requests` | further requests wait in the queue above |
/// | subscriptions held (client- and server-side) | [`max_subscriptions`](Self::max_subscriptions) | `subscribe` fails with `QueueFull` |
/// | undelivered events of one subscription | [`SubscribeOptions::buffer`](crate::SubscribeOptions::buffer) | the publication is dropped and the stream yields `Lagged { missed }` |
/// | undelivered pushes per [`crate::Pushes`] stream | [`push_buffer`](Self::push_buffer) | the oldest are dropped; the stream yields `Lagged { missed }` |
/// | undelivered events per [`crate::Events`] stream | [`event_buffer`](Self::event_buffer) | the oldest are dropped; the stream yields `Event::Lagged` |
/// | commands from handles to the connection task | [`command_buffer`](Self::command_buffer) | the caller waits (within its timeout) |
/// | one incoming WebSocket message | [`max_message_bytes`](Self::max_message_bytes) | the connection is dropped and re-opened |
/// | one outgoing WebSocket message | the server's `max_message_bytes` (from its hello) | the request fails with `TooLarge` |
/// | durable messages received and not yet read from [`crate::Mailbox`] | [`mail_buffer`](Self::mail_buffer) | the message is not delivered nor acknowledged: it comes again on the next connection ([`crate::Event::MailDeferred`]) |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The WebSocket endpoint, e.g. `ws://127.0.0.1:8000/ws`.
    pub url: String,
    /// A PEM file of certificates trusted for `wss://` besides the Mozilla roots (a server
    /// with a certificate of its own CA).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The frame encoding (the WebSocket subprotocol): JSON text or MessagePack binary frames.
    pub encoding: Encoding,
    /// A connection token sent in `connect` (for example a JWT).
    pub token: Option<String>,
    /// Free-form credentials sent in `connect` (checked by the server's auth hook).
    pub credentials: Option<serde_json::Value>,
    /// The longest one connection attempt may take: TCP and WebSocket upgrade, the server's
    /// hello, and the reply to `connect`. Default 10 s.
    pub connect_timeout: Duration,
    /// The default timeout of a request (`call`, `publish`, `subscribe`, `unsubscribe`),
    /// counted from the moment it is made, including time spent queued. Default 10 s.
    pub request_timeout: Duration,
    /// Whether to reconnect after the connection is lost (default true). Close codes
    /// 4500–4999 and 1000 never reconnect, whatever this says.
    pub reconnect: bool,
    /// The delays between reconnect attempts.
    pub backoff: Backoff,
    /// Requests waiting to be sent; default 256.
    pub max_queued_requests: usize,
    /// Requests sent and not yet answered; default 64 (the server's own limit applies too).
    pub max_in_flight: usize,
    /// Subscriptions held at once, client- and server-side; default 1024.
    pub max_subscriptions: usize,
    /// Default per-subscription buffer of undelivered events; default 256.
    pub subscription_buffer: usize,
    /// Per-stream buffer of undelivered pushes; default 256.
    pub push_buffer: usize,
    /// Per-stream buffer of undelivered connection events; default 64.
    pub event_buffer: usize,
    /// Commands queued from the handles to the connection task; default 128.
    pub command_buffer: usize,
    /// The largest WebSocket message (and frame) accepted from the server; default 16 MiB.
    pub max_message_bytes: usize,
    /// The WebSocket read buffer, allocated once per connection; default 16 KiB.
    pub read_buffer_bytes: usize,
    /// Outgoing frames are batched into WebSocket messages of at most this many bytes (a single
    /// larger frame goes alone); default 64 KiB.
    pub batch_bytes: usize,
    /// The seed of the backoff's random generator; `None` seeds from the OS. Set it to make
    /// reconnect delays reproducible in tests.
    pub rng_seed: Option<u64>,
    /// Whether to receive the user's unacknowledged durable messages after each `connect`
    /// (default true). `false` asks the server to acknowledge and drop that backlog (only
    /// messages sent afterwards arrive).
    pub sync: bool,
    /// Durable messages received and not yet read from the [`crate::Mailbox`]; default 1024
    /// (the server keeps at most 1000 per user by default).
    pub mail_buffer: usize,
    /// When a durable message counts as handled, and so may be acknowledged.
    pub mail_ack: MailAck,
}

/// When the client acknowledges a durable message ([`crate::Mail`]).
///
/// Acknowledgements are cumulative on the wire (`ack {seq}` covers every lower `seq`), so the
/// client sends one only when every message it received with a lower `seq` was handled too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailAck {
    /// A [`crate::Mail`] is handled when the application drops it after reading it from the
    /// [`crate::Mailbox`] (typically at the end of the loop body that handled it), or calls
    /// [`crate::Mail::ack`]. A mail dropped while its thread panics is not handled.
    #[default]
    OnDrop,
    /// Only [`crate::Mail::ack`] marks a mail handled. A mail dropped without it holds back
    /// the acknowledgement of every later one until the next connection, which delivers them
    /// again.
    Explicit,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            tls_ca_file: None,
            encoding: Encoding::Json,
            token: None,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff: Backoff::default(),
            max_queued_requests: 256,
            max_in_flight: 64,
            max_subscriptions: 1024,
            subscription_buffer: 256,
            push_buffer: 256,
            event_buffer: 64,
            command_buffer: 128,
            max_message_bytes: 16 << 20,
            read_buffer_bytes: 16 << 10,
            batch_bytes: 64 << 10,
            rng_seed: None,
            sync: true,
            mail_buffer: 1024,
            mail_ack: MailAck::OnDrop,
        }
    }

    pub fn encoding(mut self, encoding: Encoding) -> ClientConfig {
        self.encoding = encoding;
        self
    }

    /// Trusts the certificates of a PEM file for `wss://` (besides the Mozilla roots).
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> ClientConfig {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Use MessagePack binary frames (`plexus.v1.msgpack`).
    pub fn msgpack(self) -> ClientConfig {
        self.encoding(Encoding::Msgpack)
    }

    pub fn token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }

    pub fn credentials(mut self, credentials: serde_json::Value) -> ClientConfig {
        self.credentials = Some(credentials);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.connect_timeout = timeout;
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.request_timeout = timeout;
        self
    }

    pub fn reconnect(mut self, reconnect: bool) -> ClientConfig {
        self.reconnect = reconnect;
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> ClientConfig {
        self.backoff = backoff;
        self
    }

    pub fn max_queued_requests(mut self, max: usize) -> ClientConfig {
        self.max_queued_requests = max;
        self
    }

    pub fn max_in_flight(mut self, max: usize) -> ClientConfig {
        self.max_in_flight = max;
        self
    }

    pub fn rng_seed(mut self, seed: u64) -> ClientConfig {
        self.rng_seed = Some(seed);
        self
    }

    /// Whether to receive the durable-message backlog on connect (default true).
    pub fn sync(mut self, sync: bool) -> ClientConfig {
        self.sync = sync;
        self
    }

    pub fn mail_ack(mut self, mail_ack: MailAck) -> ClientConfig {
        self.mail_ack = mail_ack;
        self
    }

    /// Every buffer at least 1, so a zero never turns into a channel that cannot hold anything.
    pub(crate) fn sanitized(mut self) -> ClientConfig {
        for n in [
            &mut self.max_in_flight,
            &mut self.subscription_buffer,
            &mut self.push_buffer,
            &mut self.event_buffer,
            &mut self.command_buffer,
            &mut self.max_subscriptions,
            &mut self.mail_buffer,
        ] {
            *n = (*n).max(1);
        }
        self.read_buffer_bytes = self.read_buffer_bytes.max(1024);
        self.max_message_bytes = self.max_message_bytes.max(1024);
        self.batch_bytes = self.batch_bytes.max(1);
        self
    }
}

/// Options of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Overrides [`ClientConfig::request_timeout`].
    pub timeout: Option<Duration>,
    /// Fail at once with `Disconnected` instead of waiting in the queue while the client is not
    /// connected.
    pub fail_fast: bool,
}

impl RequestOptions {
    pub fn timeout(mut self, timeout: Duration) -> RequestOptions {
        self.timeout = Some(timeout);
        self
    }

    pub fn fail_fast(mut self) -> RequestOptions {
        self.fail_fast = true;
        self
    }
}

/// Options of [`crate::Client::subscribe`].
///
/// ```
/// # use plexus_client::{Position, SubscribeOptions};
/// // Show the last 20 messages of a room, then the live ones.
/// let options = SubscribeOptions::default().history(20);
/// // Go on from a position saved earlier (the offset and epoch of the last publication seen).
/// let saved = Position { offset: 41, epoch: "b3e1".into() };
/// let options = SubscribeOptions::default().since(saved);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Overrides [`ClientConfig::request_timeout`] for the first subscribe.
    pub timeout: Option<Duration>,
    /// Fail at once with `Disconnected` when the client is not connected.
    pub fail_fast: bool,
    /// Undelivered events this subscription may hold (default
    /// [`ClientConfig::subscription_buffer`]). When it is full, publications are dropped and
    /// counted, and the stream yields [`crate::SubscriptionEvent::Lagged`] before the next one.
    pub buffer: Option<usize>,
    /// Recover missed publications whenever the subscription is made again — after a
    /// reconnect, after the server reports lost publications (`insufficient_state`), after a
    /// gap in offsets — by passing the last position seen (default true). Where the channel's
    /// namespace allows recovery, the missed publications arrive first, in order, then the live
    /// ones, none twice; otherwise [`crate::Subscribed::recovered`] is `Some(false)`.
    pub recover: bool,
    /// The first subscribe recovers from this position: the publications after it arrive
    /// first (the subscribe's result says whether they all could).
    pub since: Option<Position>,
    /// The first subscribe also delivers the channel's last `history` publications (at most
    /// the server's `client_history_max`, 300 by default) before the live ones. Ignored with
    /// `since`.
    pub history: Option<u32>,
    /// A subscription token for channels whose guard asks for one; sent with every
    /// (re)subscribe.
    pub token: Option<String>,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            timeout: None,
            fail_fast: false,
            buffer: None,
            recover: true,
            since: None,
            history: None,
            token: None,
        }
    }
}

impl SubscribeOptions {
    pub fn timeout(mut self, timeout: Duration) -> SubscribeOptions {
        self.timeout = Some(timeout);
        self
    }

    pub fn fail_fast(mut self) -> SubscribeOptions {
        self.fail_fast = true;
        self
    }

    pub fn buffer(mut self, buffer: usize) -> SubscribeOptions {
        self.buffer = Some(buffer);
        self
    }

    pub fn recover(mut self, recover: bool) -> SubscribeOptions {
        self.recover = recover;
        self
    }

    pub fn since(mut self, position: Position) -> SubscribeOptions {
        self.since = Some(position);
        self
    }

    pub fn history(mut self, publications: u32) -> SubscribeOptions {
        self.history = Some(publications);
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> SubscribeOptions {
        self.token = Some(token.into());
        self
    }
}

/// Options of [`crate::Client::history`].
///
/// `HistoryOptions::default()` reads every kept publication, oldest first (up to the server's
/// `client_history_max`, 300 by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryOptions {
    /// Only publications with an offset greater than this.
    pub since: Option<u64>,
    /// At most this many (the server caps it); `0` reads only the channel's position.
    pub limit: Option<u32>,
    /// Newest first (with `since`, the newest `limit` after it).
    pub reverse: bool,
}

impl HistoryOptions {
    pub fn since(mut self, offset: u64) -> HistoryOptions {
        self.since = Some(offset);
        self
    }

    pub fn limit(mut self, limit: u32) -> HistoryOptions {
        self.limit = Some(limit);
        self
    }

    pub fn reverse(mut self) -> HistoryOptions {
        self.reverse = true;
        self
    }
}

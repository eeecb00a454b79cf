//! The dialect-independent state machine of one connection.
//!
//! A dialect (the native protocol, and later Socket.IO, Mesa, …) decodes its frames, calls the
//! methods here, and encodes what they return. Everything a client may do goes through a
//! `Session`, so every dialect gets the same authentication, limits, permissions and cleanup.

use crate::auth::{AuthRequest, UpgradeRequest};
use crate::channels::{Action, GuardRequest, validate_channel};
use crate::commands::{BoxFuture, CommandContext, CommandResult, Extensions};
use crate::connection::Connection;
use crate::error::Error;
use crate::ids::ConnId;
use crate::model::{ClientInfo, Event, Identity, StreamPosition, WireFormat};
use crate::node::Node;
use plexus_protocol::server::AuthState;
use plexus_protocol::{CloseCode, ErrorCode, PROTOCOL_VERSION, Payload};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `connect` request, decoded by the dialect.
#[derive(Clone, Debug, Default)]
pub struct ConnectRequest {
    pub token: Option<String>,
    pub credentials: Option<Payload>,
    pub version: Option<u32>,
}

/// What a call turned into: the future to run and whether it may run concurrently with the
/// connection's later requests.
pub struct PendingCall {
    pub future: BoxFuture<CommandResult>,
    pub concurrent: bool,
}

/// Token bucket for requests per second.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    rejected_in_row: u32,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            tokens: burst as f64,
            rate: rate as f64,
            burst: burst as f64,
            last: Instant::now(),
            rejected_in_row: 0,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.rejected_in_row = 0;
            true
        } else {
            self.rejected_in_row += 1;
            false
        }
    }
}

/// One connection's session.
pub struct Session {
    node: Node,
    conn: Arc<Connection>,
    upgrade: Arc<UpgradeRequest>,
    /// Whether requests other than `connect` may be served.
    admitted: bool,
    auth_deadline: Option<Instant>,
    rate: RateLimit,
    closed: bool,
}

impl Session {
    /// Opens a session for a new connection. `identity` comes from the upgrade hook.
    ///
    /// Fails (with a close code) when the node is shutting down or the user is over its
    /// connection limit.
    pub fn open(
        node: &Node,
        format: Arc<dyn WireFormat>,
        upgrade: Arc<UpgradeRequest>,
        identity: Option<Identity>,
    ) -> Result<Session, Error> {
        if node.is_shutting_down() {
            return Err(Error::new(ErrorCode::NOT_AVAILABLE, "server shutting down")
                .and_close(CloseCode::SHUTDOWN));
        }
        let limits = node.limits();
        let conn = Arc::new(Connection::new(
            node.next_conn_id(),
            format,
            limits.outbound_queue_bytes_max,
        ));
        let authenticated = identity.is_some();
        if let Some(identity) = identity {
            conn.set_identity(identity);
            node.add_user_connection(&conn)?;
        }
        node.add_connection(&conn);
        let admitted = authenticated || node.auth().anonymous;
        let auth_deadline = (!admitted).then(|| Instant::now() + limits.auth_timeout);
        Ok(Session {
            node: node.clone(),
            conn,
            upgrade,
            admitted,
            auth_deadline,
            rate: RateLimit::new(limits.requests_per_second, limits.requests_burst),
            closed: false,
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The hello's `auth` field.
    pub fn auth_state(&self) -> AuthState {
        if self.conn.identity().is_some() {
            AuthState::Done
        } else if self.admitted {
            AuthState::Optional
        } else {
            AuthState::Required
        }
    }

    /// When the connection must have authenticated by; `None` once it has (or needs not).
    pub fn auth_deadline(&self) -> Option<Instant> {
        self.auth_deadline
    }

    /// Counts one request against the rate limit. Fails with `too_many_requests`, and asks to
    /// close with `flood` once `requests_burst` requests in a row were refused.
    pub fn admit_request(&mut self) -> Result<(), Error> {
        if self.rate.take() {
            return Ok(());
        }
        let error = Error::new(ErrorCode::TOO_MANY_REQUESTS, "request rate limit exceeded");
        if self.rate.rejected_in_row >= self.node.limits().requests_burst.max(1) {
            return Err(error.and_close(CloseCode::FLOOD));
        }
        Err(error)
    }

    fn require_admitted(&self) -> Result<(), Error> {
        if self.admitted {
            Ok(())
        } else {
            Err(Error::unauthorized())
        }
    }

    /// In-band authentication (`connect`).
    pub async fn connect(&mut self, request: ConnectRequest) -> Result<Option<Identity>, Error> {
        if let Some(version) = request.version
            && version != PROTOCOL_VERSION
        {
            return Err(Error::new(ErrorCode::BAD_REQUEST, format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"))
                .and_close(CloseCode::UNSUPPORTED_VERSION));
        }
        if self.conn.identity().is_some() {
            return Err(Error::new(
                ErrorCode::ALREADY_AUTHENTICATED,
                "already authenticated",
            ));
        }
        let has_credentials = request.token.is_some() || request.credentials.is_some();
        if !has_credentials {
            if self.node.auth().anonymous {
                self.admit(None);
                return Ok(None);
            }
            return Err(Error::new(
                ErrorCode::AUTH_FAILED,
                "a token or credentials are required",
            )
            .and_close(CloseCode::AUTH_FAILED));
        }
        let Some(hook) = self.node.auth().in_band.clone() else {
            return Err(Error::new(
                ErrorCode::AUTH_FAILED,
                "this server does not accept in-band credentials",
            )
            .and_close(CloseCode::AUTH_FAILED));
        };
        let auth = AuthRequest {
            conn: self.conn.id,
            token: request.token,
            credentials: request.credentials,
            upgrade: self.upgrade.clone(),
        };
        let budget = match self.auth_deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.node.limits().auth_timeout,
        };
        let identity = match tokio::time::timeout(budget, hook.authenticate(auth)).await {
            Err(_) => {
                return Err(Error::new(ErrorCode::TIMEOUT, "authentication timed out")
                    .and_close(CloseCode::AUTH_TIMEOUT));
            }
            Ok(Err(mut e)) => {
                let close = if e.code == ErrorCode::TOKEN_EXPIRED {
                    CloseCode::TOKEN_EXPIRED
                } else {
                    CloseCode::AUTH_FAILED
                };
                if e.code.0 < ErrorCode::APPLICATION_MIN && e.code != ErrorCode::TOKEN_EXPIRED {
                    e.code = ErrorCode::AUTH_FAILED;
                }
                return Err(e.and_close(close));
            }
            Ok(Ok(identity)) => identity,
        };
        self.conn.set_identity(identity.clone());
        self.node.add_user_connection(&self.conn)?;
        self.admit(Some(identity.clone()));
        Ok(Some(identity))
    }

    fn admit(&mut self, _identity: Option<Identity>) {
        self.admitted = true;
        self.auth_deadline = None;
    }

    fn guard_request(&self, channel: &Arc<str>, action: Action) -> GuardRequest {
        GuardRequest {
            conn: self.conn.id,
            user: self.conn.identity().map(|i| i.user.clone()),
            channel: channel.clone(),
            action,
        }
    }

    /// A client subscribe.
    pub async fn subscribe(&mut self, channel: &str) -> Result<StreamPosition, Error> {
        self.require_admitted()?;
        validate_channel(channel, self.node.limits().max_channel_bytes)?;
        let channel: Arc<str> = Arc::from(channel);
        if self.conn.is_subscribed(&channel) {
            return Err(Error::new(
                ErrorCode::ALREADY_SUBSCRIBED,
                format!("already subscribed to `{channel}`"),
            ));
        }
        self.node
            .channels()
            .check(self.guard_request(&channel, Action::Subscribe), false)
            .await?;
        self.node.subscribe_local(&self.conn, &channel).await
    }

    /// A client unsubscribe.
    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), Error> {
        self.require_admitted()?;
        if self.node.unsubscribe_local(&self.conn, channel).await {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::NOT_SUBSCRIBED,
                format!("not subscribed to `{channel}`"),
            ))
        }
    }

    /// A client publish.
    pub async fn publish(
        &mut self,
        channel: &str,
        payload: Payload,
    ) -> Result<StreamPosition, Error> {
        self.require_admitted()?;
        validate_channel(channel, self.node.limits().max_channel_bytes)?;
        let channel: Arc<str> = Arc::from(channel);
        let subscribed = self.conn.is_subscribed(&channel);
        self.node
            .channels()
            .check(self.guard_request(&channel, Action::Publish), subscribed)
            .await?;
        let publisher = self
            .node
            .channels()
            .namespace(&channel)
            .filter(|ns| ns.publisher_info)
            .map(|_| ClientInfo {
                conn: self.conn.id,
                user: self.conn.identity().map(|i| i.user.clone()),
                info: self.conn.identity().and_then(|i| i.info.clone()),
            });
        self.node
            .publish_with(&channel, payload, publisher, None)
            .await
    }

    /// A client call: resolves the command and returns its future, to be run in order or
    /// concurrently as the command says.
    pub fn call(&self, method: &str, payload: Payload) -> Result<PendingCall, Error> {
        self.require_admitted()?;
        let Some(command) = self.node.commands().get(method) else {
            return Err(Error::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("no method `{method}`"),
            ));
        };
        let identity = self.conn.identity();
        let ctx = CommandContext {
            node: self.node.clone(),
            conn: self.conn.id,
            user: identity.map(|i| i.user.clone()),
            info: identity.and_then(|i| i.info.clone()),
            metadata: self.conn.metadata(),
            method: Arc::from(method),
            payload,
            extensions: Extensions::default(),
        };
        let concurrent = command.is_concurrent();
        let future = self
            .node
            .commands()
            .run(command, ctx, self.node.limits().command_timeout);
        Ok(PendingCall { future, concurrent })
    }

    /// A `pong`: records the round-trip time and, when enabled, pushes it to the client.
    pub fn pong(&self) -> Option<Duration> {
        let rtt = self.conn.pong()?;
        if self.node.limits().push_latency {
            self.conn.send_event(&Event::Latency(rtt));
        }
        Some(rtt)
    }

    /// Cleans up after the transport closed. Idempotent.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.conn.outbox().close(CloseCode::NORMAL, "closed", false);
        self.node.remove_connection(&self.conn).await;
    }
}

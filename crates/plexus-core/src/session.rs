//! The dialect-independent state machine of one connection.
//!
//! A dialect (the native protocol, and later Socket.IO, Mesa, …) decodes its frames, calls the
//! methods here, and encodes what they return. Everything a client may do goes through a
//! `Session`, so every dialect gets the same authentication, limits, permissions and cleanup.
//!
//! Two methods hand back work the dialect must finish after it queued its answer, so that the
//! answer comes first: [`Session::finish_auth`] after the hello or the `connect` reply (it
//! delivers the mailbox backlog and subscribes the identity's channels), and dropping the
//! [`Subscription`] returned by [`Session::subscribe`] after the subscribe reply (it releases
//! the live publications held back meanwhile).

use crate::auth::{AuthRequest, UpgradeRequest};
use crate::channels::{Action, GuardRequest, validate_channel};
use crate::commands::{BoxFuture, CommandContext, CommandResult, Extensions};
use crate::connection::{Connection, HoldKey};
use crate::engine::{EchoEvent, HistoryPage, HistoryQuery, PresenceEntry, PresenceStats};
use crate::error::Error;
use crate::ids::ConnId;
use crate::lifecycle::{Authenticated, Closed, Opened};
use crate::limits::ConnLimits;
use crate::metadata::Metadata;
use crate::model::{
    ClientInfo, Emit, Event, Identity, Publication, StreamPosition, WireFormat, validate_event,
};
use crate::node::{Node, engine_error};
use crate::records::{
    Record, RecordAction, RecordGuardRequest, RecordMode, RecordSubscription, RecordWrite, Written,
};
use crate::rooms::{Reason, room_history};
use plexus_protocol::server::AuthState;
use plexus_protocol::{CloseCode, ErrorCode, PROTOCOL_VERSION, Payload};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A `connect` request, decoded by the dialect.
#[derive(Clone, Debug, Default)]
pub struct ConnectRequest {
    pub token: Option<String>,
    pub credentials: Option<Payload>,
    pub version: Option<u32>,
    /// Receive the durable backlog (default true).
    pub sync: Option<bool>,
}

/// A `subscribe` request, decoded by the dialect.
#[derive(Clone, Debug, Default)]
pub struct SubscribeRequest {
    pub channel: String,
    pub token: Option<String>,
    /// Recover from this offset and epoch.
    pub since: Option<(u64, String)>,
    /// Also return the last N publications.
    pub history: Option<u32>,
}

/// Why a recovery could not be done.
pub mod reason {
    /// The channel's epoch differs: its history was lost (engine restart, expiry).
    pub const EPOCH_CHANGED: &str = "epoch_changed";
    /// Publications after the position are no longer kept (size or TTL).
    pub const HISTORY_TRIMMED: &str = "history_trimmed";
    /// More publications were missed than one recovery may return.
    pub const TOO_MANY: &str = "too_many";
    /// The namespace does not keep history for recovery.
    pub const NOT_AVAILABLE: &str = "not_available";
    /// The position is ahead of the channel's.
    pub const INVALID_POSITION: &str = "invalid_position";
}

/// A completed subscribe. Queue the reply, then drop it: dropping releases the live
/// publications held back since the subscribe started (only those after `position`).
pub struct Subscription {
    pub channel: Arc<str>,
    pub position: StreamPosition,
    /// With `since`: whether `publications` holds every missed publication.
    pub recovered: Option<bool>,
    pub reason: Option<&'static str>,
    /// Recovered publications, or the history asked for, oldest first.
    pub publications: Vec<Publication>,
    release: Option<(Node, Arc<Connection>)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((node, conn)) = self.release.take() {
            node.release(&conn, &self.channel, self.position.offset);
        }
    }
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
    /// Set by a successful authentication until [`Session::finish_auth`] ran: `Some(sync)`.
    auth_pending: Option<bool>,
    rate: RateLimit,
    /// The connection got its identity and `authenticated` fired.
    identified: bool,
    /// Cleanup started.
    closed: bool,
    /// The close `closed` reports, once known.
    close: Option<(CloseCode, String)>,
    /// `closed` fired (exactly once, by `close` or, if it never finished, by `drop`).
    close_reported: bool,
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
        Session::open_as(
            node,
            format,
            upgrade,
            identity,
            &ConnLimits::default(),
            false,
        )
    }

    /// [`Session::open`] with per-connection limits of the listener's own in place of the
    /// node's.
    pub fn open_with(
        node: &Node,
        format: Arc<dyn WireFormat>,
        upgrade: Arc<UpgradeRequest>,
        identity: Option<Identity>,
        own: &ConnLimits,
    ) -> Result<Session, Error> {
        Session::open_as(node, format, upgrade, identity, own, false)
    }

    /// Opens an operator's connection ([`Connection::set_observer`]): never in presence, never
    /// echoed (the admin interface's live tail).
    pub fn open_observer(
        node: &Node,
        format: Arc<dyn WireFormat>,
        upgrade: Arc<UpgradeRequest>,
        identity: Identity,
    ) -> Result<Session, Error> {
        Session::open_as(
            node,
            format,
            upgrade,
            Some(identity),
            &ConnLimits::default(),
            true,
        )
    }

    fn open_as(
        node: &Node,
        format: Arc<dyn WireFormat>,
        upgrade: Arc<UpgradeRequest>,
        identity: Option<Identity>,
        own: &ConnLimits,
        observer: bool,
    ) -> Result<Session, Error> {
        if node.is_shutting_down() {
            return Err(Error::new(ErrorCode::NOT_AVAILABLE, "server shutting down")
                .and_close(CloseCode::SHUTDOWN));
        }
        let limits = node.limits();
        let held_max = limits
            .recovery_max_publications
            .max(limits.mailbox_max_messages);
        let conn = Arc::new(Connection::new(
            node.next_conn_id(),
            format,
            own.outbound_queue_bytes_max
                .unwrap_or(limits.outbound_queue_bytes_max),
            held_max,
        ));
        if observer {
            conn.set_observer();
        }
        conn.set_origin(crate::connection::Origin {
            dialect: upgrade.dialect,
            transport: upgrade.transport,
            peer: upgrade.peer,
        });
        let authenticated = identity.is_some();
        if let Some(identity) = identity {
            conn.set_identity(identity);
            conn.hold(HoldKey::Mail);
            node.add_user_connection(&conn)?;
        }
        node.add_connection(&conn);
        let admitted = authenticated || node.auth().anonymous;
        let auth_deadline = (!admitted).then(|| Instant::now() + limits.auth_timeout);
        let session = Session {
            node: node.clone(),
            conn,
            upgrade,
            admitted,
            auth_deadline,
            auth_pending: authenticated.then_some(true),
            rate: RateLimit::new(
                own.requests_per_second
                    .unwrap_or(limits.requests_per_second),
                own.requests_burst.unwrap_or(limits.requests_burst),
            ),
            identified: authenticated,
            closed: false,
            close: None,
            close_reported: false,
        };
        let lifecycle = node.lifecycle();
        if lifecycle.has_opened() {
            lifecycle.opened(&Opened {
                conn: session.conn.id,
                request: session.upgrade.clone(),
            });
        }
        if authenticated {
            session.report_authenticated();
        }
        Ok(session)
    }

    /// Fires the `authenticated` hooks (the connection just got its identity).
    fn report_authenticated(&self) {
        let lifecycle = self.node.lifecycle();
        if let Some(identity) = self.conn.identity()
            && lifecycle.has_authenticated()
        {
            lifecycle.authenticated(&Authenticated {
                conn: self.conn.id,
                identity: identity.clone(),
                request: self.upgrade.clone(),
            });
        }
    }

    /// Fires the `closed` hooks, once: with the close `close` recorded, or — when the session is
    /// dropped before it was closed (its task cancelled) — as a lost connection.
    fn report_closed(&mut self) {
        if self.close_reported {
            return;
        }
        self.close_reported = true;
        let lifecycle = self.node.lifecycle();
        if !lifecycle.has_closed() {
            return;
        }
        let (code, reason) = self
            .close
            .take()
            .unwrap_or_else(|| (CloseCode::CONNECTION_LOST, "connection dropped".into()));
        let user = self
            .identified
            .then(|| self.conn.identity().map(|i| i.user.clone()))
            .flatten();
        lifecycle.closed(&Closed {
            conn: self.conn.id,
            user,
            code,
            reason,
            request: self.upgrade.clone(),
        });
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
        // The connection's own burst (an endpoint may set one in place of the node's).
        if self.rate.rejected_in_row as f64 >= self.rate.burst.max(1.0) {
            return Err(error.and_close(CloseCode::FLOOD));
        }
        Err(error)
    }

    /// Fails unless requests other than `connect` may be served (authenticated, or anonymous
    /// connections allowed).
    pub fn require_admitted(&self) -> Result<(), Error> {
        if self.admitted {
            Ok(())
        } else {
            Err(Error::unauthorized())
        }
    }

    /// In-band authentication (`connect`). Call [`Session::finish_auth`] after queuing the reply.
    pub async fn connect(&mut self, request: ConnectRequest) -> Result<Option<Identity>, Error> {
        let result = self.authenticate(request).await;
        if let Err(e) = &result
            && e.close.is_some()
        {
            crate::stats::NodeStats::add(&self.node.stats().auth_failures, 1);
        }
        result
    }

    async fn authenticate(&mut self, request: ConnectRequest) -> Result<Option<Identity>, Error> {
        if let Some(version) = request.version
            && version != PROTOCOL_VERSION
        {
            return Err(Error::new(
                ErrorCode::BAD_REQUEST,
                format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"),
            )
            .and_close(CloseCode::UNSUPPORTED_VERSION));
        }
        if self.conn.identity().is_some() {
            return Err(Error::new(
                ErrorCode::ALREADY_AUTHENTICATED,
                "already authenticated",
            ));
        }
        let has_credentials = request.token.is_some() || request.credentials.is_some();
        if !has_credentials && !self.node.auth().hook_without_credentials {
            if self.node.auth().anonymous {
                self.admit();
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
                // An expired token and a backend outage are worth another try (with a new
                // token, or later); anything else is a refusal.
                let close = match e.code {
                    ErrorCode::TOKEN_EXPIRED => CloseCode::TOKEN_EXPIRED,
                    ErrorCode::BACKEND_UNAVAILABLE => CloseCode::RECONNECT,
                    _ => CloseCode::AUTH_FAILED,
                };
                if e.code.0 < ErrorCode::APPLICATION_MIN
                    && e.code != ErrorCode::TOKEN_EXPIRED
                    && e.code != ErrorCode::BACKEND_UNAVAILABLE
                {
                    e.code = ErrorCode::AUTH_FAILED;
                }
                return Err(e.and_close(close));
            }
            Ok(Ok(identity)) => identity,
        };
        if identity
            .expires_at
            .is_some_and(|at| at <= SystemTime::now())
        {
            return Err(Error::new(ErrorCode::TOKEN_EXPIRED, "token expired")
                .and_close(CloseCode::TOKEN_EXPIRED));
        }
        self.conn.set_identity(identity.clone());
        self.conn.hold(HoldKey::Mail);
        self.node.add_user_connection(&self.conn)?;
        self.admit();
        self.auth_pending = Some(request.sync.unwrap_or(true));
        self.identified = true;
        self.report_authenticated();
        Ok(Some(identity))
    }

    fn admit(&mut self) {
        self.admitted = true;
        self.auth_deadline = None;
    }

    /// Authenticates the connection as `identity`, which the dialect established itself
    /// (chat-service's `onConnect` hook, its login query parameter in development mode) —
    /// as a successful `connect` would. Fails when the connection has an identity already or
    /// the user has too many connections. Call [`Session::finish_auth`] after.
    pub fn establish(&mut self, identity: Identity) -> Result<(), Error> {
        if self.conn.identity().is_some() {
            return Err(Error::new(
                ErrorCode::ALREADY_AUTHENTICATED,
                "already authenticated",
            ));
        }
        self.conn.set_identity(identity);
        self.conn.hold(HoldKey::Mail);
        self.node.add_user_connection(&self.conn)?;
        self.admit();
        self.auth_pending = Some(true);
        self.identified = true;
        self.report_authenticated();
        Ok(())
    }

    /// Runs what follows a successful authentication, once the hello or `connect` reply is
    /// queued: the mailbox backlog, echoes to the user's other connections, and subscriptions
    /// to the identity's channels. Does nothing otherwise.
    pub async fn finish_auth(&mut self) {
        let Some(sync) = self.auth_pending.take() else {
            return;
        };
        self.node.open_mailbox(&self.conn, sync).await;
        self.node.user_online(&self.conn).await;
        self.node.echo(&self.conn, EchoEvent::Connected, None).await;
        let channels = self
            .conn
            .identity()
            .map(|i| i.channels.clone())
            .unwrap_or_default();
        for channel in channels {
            if let Err(e) = self.node.subscribe_local(&self.conn, &channel).await {
                tracing::warn!(%channel, error = %e, "subscribing an identity's channel failed");
            }
        }
    }

    fn guard_request(
        &self,
        channel: &Arc<str>,
        action: Action,
        token: Option<String>,
    ) -> GuardRequest {
        GuardRequest {
            conn: self.conn.id,
            user: self.conn.identity().map(|i| i.user.clone()),
            channel: channel.clone(),
            action,
            token,
        }
    }

    /// Checks that this connection may read a channel (it is subscribed, or may subscribe); a
    /// room also needs its user to be in it or one of its admins.
    async fn check_read(&self, channel: &str) -> Result<Arc<str>, Error> {
        self.require_admitted()?;
        validate_channel(channel, self.node.limits().max_channel_bytes)?;
        let channel: Arc<str> = Arc::from(channel);
        let subscribed = self.conn.is_subscribed(&channel);
        if !subscribed {
            self.node
                .channels()
                .check(self.guard_request(&channel, Action::Subscribe, None), false)
                .await?;
        }
        if self.node.channels().is_room(&channel) {
            self.node
                .room_readable(&channel, self.conn.user(), subscribed)
                .await?;
        }
        Ok(channel)
    }

    /// A client subscribe, with recovery (`since`) or history. Queue the reply, then drop the
    /// returned [`Subscription`].
    pub async fn subscribe(&mut self, request: SubscribeRequest) -> Result<Subscription, Error> {
        self.require_admitted()?;
        validate_channel(&request.channel, self.node.limits().max_channel_bytes)?;
        let channel: Arc<str> = Arc::from(request.channel.as_str());
        if self.conn.is_subscribed(&channel) {
            return Err(Error::new(
                ErrorCode::ALREADY_SUBSCRIBED,
                format!("already subscribed to `{channel}`"),
            ));
        }
        let guard = self.guard_request(&channel, Action::Subscribe, request.token.clone());
        self.node.channels().check(guard, false).await?;
        let room = self.node.channels().is_room(&channel);
        if room {
            self.node.room_admits(&channel, self.conn.user()).await?;
        }
        self.node.join_channel(&self.conn, &channel).await?;
        if room {
            // Judged again now that the connection is a member: a change that took access away
            // between the first check and the join saw no such member to remove.
            if let Err(e) = self.node.room_admits(&channel, self.conn.user()).await {
                self.node.release(&self.conn, &channel, u64::MAX);
                self.node.unsubscribe_local(&self.conn, &channel).await;
                return Err(e);
            }
        }
        let mut subscription = Subscription {
            channel: channel.clone(),
            position: StreamPosition {
                offset: 0,
                epoch: Arc::from(""),
            },
            recovered: None,
            reason: None,
            publications: Vec::new(),
            release: Some((self.node.clone(), self.conn.clone())),
        };
        let read = self
            .read_for_subscribe(&channel, &request, &mut subscription)
            .await;
        if let Err(e) = read {
            drop(subscription);
            self.node.unsubscribe_local(&self.conn, &channel).await;
            return Err(e);
        }
        Ok(subscription)
    }

    async fn read_for_subscribe(
        &self,
        channel: &Arc<str>,
        request: &SubscribeRequest,
        out: &mut Subscription,
    ) -> Result<(), Error> {
        let broker = &self.node.engine().broker;
        let namespace = self.node.channels().namespace(channel);
        let limits = self.node.limits();
        if let Some((offset, epoch)) = &request.since {
            out.recovered = Some(false);
            if !namespace.is_some_and(|ns| ns.recovery && ns.history.is_some()) {
                out.position = broker.position(channel).await.map_err(engine_error)?;
                out.reason = Some(reason::NOT_AVAILABLE);
                return Ok(());
            }
            let max = limits.recovery_max_publications;
            let query = HistoryQuery {
                since: Some(*offset),
                limit: max + 1,
                reverse: false,
            };
            let HistoryPage {
                publications,
                position,
            } = broker.history(channel, query).await.map_err(engine_error)?;
            out.reason = if *position.epoch != **epoch {
                Some(reason::EPOCH_CHANGED)
            } else if *offset > position.offset {
                Some(reason::INVALID_POSITION)
            } else if *offset == position.offset {
                None
            } else if position.offset - offset > max as u64 {
                // The first applicable reason (§4.6): too many, whether or not all are kept.
                Some(reason::TOO_MANY)
            } else if publications.first().map(|p| p.offset) != Some(offset + 1)
                || publications.last().map(|p| p.offset) != Some(position.offset)
            {
                Some(reason::HISTORY_TRIMMED)
            } else {
                None
            };
            if out.reason.is_none() {
                out.recovered = Some(true);
                out.publications = publications;
            }
            out.position = position;
            return Ok(());
        }
        if let Some(limit) = request.history
            && namespace.is_some_and(|ns| ns.history.is_some())
        {
            let limit = (limit as usize).min(limits.client_history_max);
            let query = HistoryQuery {
                since: None,
                limit,
                reverse: true,
            };
            let mut page = broker.history(channel, query).await.map_err(engine_error)?;
            page.publications.reverse();
            out.publications = page.publications;
            out.position = page.position;
            return Ok(());
        }
        out.position = broker.position(channel).await.map_err(engine_error)?;
        Ok(())
    }

    fn record_request(&self, id: &str, action: RecordAction) -> RecordGuardRequest {
        RecordGuardRequest {
            conn: self.conn.id,
            user: self.conn.identity().map(|i| i.user.clone()),
            id: Arc::from(id),
            action,
        }
    }

    /// A client's record read (namespace rules and read guards).
    pub async fn record(&self, id: &str) -> Result<Option<Record>, Error> {
        self.require_admitted()?;
        let request = self.record_request(id, RecordAction::Read);
        self.node.records().check(request).await?;
        self.node.record(id).await
    }

    /// A client's record write (namespace rules and write guards), see [`Node::write_record`].
    pub async fn write_record(
        &self,
        id: &str,
        write: RecordWrite,
        expect: Option<u64>,
    ) -> Result<Written, Error> {
        self.require_admitted()?;
        let request = self.record_request(id, RecordAction::Write);
        self.node.records().check(request).await?;
        self.node.write_record(id, write, expect).await
    }

    /// A client's record subscribe in `mode`. Queue the reply (with the value), then drop the
    /// returned [`RecordSubscription`].
    pub async fn subscribe_record(
        &mut self,
        id: &str,
        mode: RecordMode,
    ) -> Result<RecordSubscription, Error> {
        self.require_admitted()?;
        let request = self.record_request(id, RecordAction::Read);
        self.node.records().check(request).await?;
        self.node.subscribe_record(&self.conn, id, mode).await
    }

    /// A client's record unsubscribe.
    pub async fn unsubscribe_record(&mut self, id: &str) -> Result<(), Error> {
        self.require_admitted()?;
        if self.node.unsubscribe_record(&self.conn, id).await {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::NOT_SUBSCRIBED,
                format!("not subscribed to record `{id}`"),
            ))
        }
    }

    /// Receives a channel's publications and presence events without being in its presence
    /// (Mesh's `subscribe-presence`): the subscribe rules apply, the subscription counts
    /// against the connection's limit, and [`Session::unobserve`] ends it.
    pub async fn observe(&mut self, channel: &str) -> Result<(), Error> {
        self.require_admitted()?;
        validate_channel(channel, self.node.limits().max_channel_bytes)?;
        let channel: Arc<str> = Arc::from(channel);
        let guard = self.guard_request(&channel, Action::Subscribe, None);
        self.node.channels().check(guard, false).await?;
        if self.node.channels().is_room(&channel) {
            self.node.room_admits(&channel, self.conn.user()).await?;
        }
        self.node
            .join_stream(&self.conn, &channel, &format!("`{channel}`"))
            .await?;
        // Nothing to answer first: what came meanwhile goes out now.
        self.node.release(&self.conn, &channel, 0);
        Ok(())
    }

    /// Ends what [`Session::observe`] started; false when there was nothing.
    pub async fn unobserve(&mut self, channel: &str) -> bool {
        if !self.conn.remove_subscription(channel) {
            return false;
        }
        let _ = self
            .conn
            .release(&HoldKey::Channel(Arc::from(channel)), u64::MAX);
        self.node.leave_stream(channel, self.conn.id).await;
        true
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

    /// A client publish — a [`Payload`], or an [`Emit`] with an event name: namespace rules,
    /// guards, then publish hooks (which may rewrite the payload).
    pub async fn publish(
        &mut self,
        channel: &str,
        emit: impl Into<Emit>,
    ) -> Result<StreamPosition, Error> {
        let Emit { event, payload } = emit.into();
        self.require_admitted()?;
        validate_channel(channel, self.node.limits().max_channel_bytes)?;
        if let Some(event) = &event {
            validate_event(event)?;
        }
        let channel: Arc<str> = Arc::from(channel);
        let subscribed = self.conn.is_subscribed(&channel);
        // One namespace lookup serves every question below.
        let namespace = self.node.channels().namespace(&channel);
        let is_room = namespace.is_some_and(|ns| ns.rooms);
        if is_room && !subscribed {
            return Err(Reason::NotJoined.error(&[&channel]));
        }
        let publisher_info = namespace.is_some_and(|ns| ns.publisher_info);
        let mut history = namespace.and_then(|ns| ns.history);
        let request = self.guard_request(&channel, Action::Publish, None);
        self.node
            .channels()
            .check(request.clone(), subscribed)
            .await?;
        if is_room {
            let room = self.node.room_admits(&channel, self.conn.user()).await?;
            history = room_history(history, &room);
        }
        let payload = self
            .node
            .channels()
            .rewrite_publication(&request, payload)
            .await?;
        let publisher = publisher_info.then(|| ClientInfo {
            conn: self.conn.id,
            user: self.conn.identity().map(|i| i.user.clone()),
            info: self.conn.identity().and_then(|i| i.info.clone()),
        });
        let emit = Emit { event, payload };
        self.node
            .publish_checked(&channel, emit, publisher, None, history)
            .await
    }

    /// A client history read (who may subscribe may read), capped by
    /// `Limits::client_history_max`.
    pub async fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: Option<u32>,
        reverse: bool,
    ) -> Result<HistoryPage, Error> {
        let channel = self.check_read(channel).await?;
        if self
            .node
            .channels()
            .namespace(&channel)
            .is_none_or(|ns| ns.history.is_none())
        {
            return Err(Error::new(
                ErrorCode::NOT_AVAILABLE,
                format!("no history is kept for `{channel}`"),
            ));
        }
        let max = self.node.limits().client_history_max;
        let limit = limit.map_or(max, |l| (l as usize).min(max));
        let query = HistoryQuery {
            since,
            limit,
            reverse,
        };
        self.node
            .engine()
            .broker
            .history(&channel, query)
            .await
            .map_err(engine_error)
    }

    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, Error> {
        let channel = self.check_read(channel).await?;
        self.node.presence(&channel).await
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, Error> {
        let channel = self.check_read(channel).await?;
        self.node.presence_stats(&channel).await
    }

    /// Sets (or clears) this connection's presence state in a channel it is subscribed to.
    pub async fn set_presence_state(
        &self,
        channel: &str,
        state: Option<Payload>,
        expire_after: Option<Duration>,
    ) -> Result<(), Error> {
        self.require_admitted()?;
        if !self.conn.is_subscribed(channel) {
            return Err(Error::new(
                ErrorCode::NOT_SUBSCRIBED,
                format!("not subscribed to `{channel}`"),
            ));
        }
        self.node
            .set_presence_state(self.conn.id, channel, state, expire_after)
            .await
    }

    pub async fn last_seen(
        &self,
        channel: &str,
        user: &str,
    ) -> Result<(bool, Option<SystemTime>), Error> {
        let channel = self.check_read(channel).await?;
        self.node.last_seen(&channel, user).await
    }

    /// Reads metadata: this connection's, this user's, or a channel's this connection may read.
    pub async fn metadata(
        &self,
        conn: Option<ConnId>,
        user: Option<&str>,
        channel: Option<&str>,
    ) -> Result<Metadata, Error> {
        self.require_admitted()?;
        let found = match (conn, user, channel) {
            (Some(conn), None, None) => {
                if conn != self.conn.id {
                    return Err(Error::permission_denied(
                        "clients may read their own connection's metadata only",
                    ));
                }
                Some(self.conn.metadata())
            }
            (None, Some(user), None) => {
                if self.conn.user() != Some(user) {
                    return Err(Error::permission_denied(
                        "clients may read their own user's metadata only",
                    ));
                }
                self.node.user_metadata(user).await?
            }
            (None, None, Some(channel)) => {
                let channel = self.check_read(channel).await?;
                self.node.channel_metadata(&channel).await?
            }
            _ => {
                return Err(Error::bad_request(
                    "name exactly one of `conn`, `user`, `channel`",
                ));
            }
        };
        Ok(found.unwrap_or_default())
    }

    /// Sets or merges this connection's metadata.
    pub async fn set_metadata(&self, value: Metadata, merge: bool) -> Result<(), Error> {
        self.require_admitted()?;
        self.node
            .set_connection_metadata(self.conn.id, value, merge)
            .await
    }

    /// Acknowledges this user's durable messages up to `seq`.
    pub async fn ack(&self, seq: u64) -> Result<u64, Error> {
        let Some(user) = self.conn.user() else {
            return Err(Error::unauthorized());
        };
        self.node.ack_mail(user, seq).await
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
        let chain = self
            .node
            .commands()
            .run(command, ctx, self.node.limits().command_timeout);
        let node = self.node.clone();
        let future: BoxFuture<CommandResult> = Box::pin(async move {
            let started = Instant::now();
            let result = chain.await;
            let stats = node.stats();
            stats.command_latency.observe(started.elapsed());
            crate::stats::NodeStats::add(&stats.commands, 1);
            if result.is_err() {
                crate::stats::NodeStats::add(&stats.command_errors, 1);
            }
            result
        });
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

    /// Cleans up after the transport closed, then fires the `closed` lifecycle hooks with `code`
    /// and `reason`: those of the close frame sent to the client or received from it, or what
    /// ended the transport (see [`Closed`]). Idempotent: the first call's close is reported.
    pub async fn close(&mut self, code: CloseCode, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.close = Some((code, reason.to_owned()));
        self.conn.outbox().close(CloseCode::NORMAL, "closed", false);
        self.node.remove_connection(&self.conn).await;
        self.report_closed();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.report_closed();
    }
}

//! Hooks into the application's backend over HTTP: the requests `connect`, `subscribe`,
//! `publish` and `rpc`, and the lifecycle notifications `opened`, `authenticated`, `closed`.
//!
//! Each request hook POSTs a JSON object to a URL from the configuration and reads back either
//! `{"result": …}` or `{"error": {"code", "message", "data"?}}` (see `docs/configuration.md`).
//! A backend that is down, slow (past `timeout`), answers with a status other than 2xx, answers
//! more than `max_response_bytes` or anything that is not such an object gives the client error
//! 118 `backend_unavailable`; the server itself never waits longer than the timeout and never
//! has more than `max_in_flight` hook requests open.
//!
//! A notification ([`Notifications`]) is fire-and-forget: sent from a task of its own, it never
//! delays or fails a connection; its answer is only counted. Notifications have their own
//! `max_in_flight` slots, so that a burst of them never takes the slots a `connect` hook needs;
//! one that finds them all taken is dropped and counted, never queued.

use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderName, HeaderValue, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use plexus_core::auth::AuthRequest;
use plexus_core::channels::GuardRequest;
use plexus_core::commands::{Command, CommandContext};
use plexus_core::lifecycle::{Authenticated, Closed, Opened};
use plexus_core::stats::Histogram;
use plexus_core::{ConnId, Error, ErrorCode, Identity, Payload};
use plexus_protocol::{BinaryField, DataField};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, oneshot};

/// The hooks, as metrics label them: four requests, three notifications, and chat-service's
/// hooks (requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Connect,
    Subscribe,
    Publish,
    Rpc,
    Opened,
    Authenticated,
    Closed,
    ChatService,
    Endpoint,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::Connect,
        Hook::Subscribe,
        Hook::Publish,
        Hook::Rpc,
        Hook::Opened,
        Hook::Authenticated,
        Hook::Closed,
        Hook::ChatService,
        Hook::Endpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Subscribe => "subscribe",
            Hook::Publish => "publish",
            Hook::Rpc => "rpc",
            Hook::Opened => "opened",
            Hook::Authenticated => "authenticated",
            Hook::Closed => "closed",
            Hook::ChatService => "chat_service",
            Hook::Endpoint => "endpoint",
        }
    }
}

/// How a hook request ended, as metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered `result` (a notification: any 2xx status).
    Ok,
    /// The backend answered `error` (a refusal: not a failure of the backend).
    Refused,
    /// No connection, the connection failed, or `max_in_flight` requests were already open (a
    /// notification is then dropped).
    Unavailable,
    /// No complete answer within the timeout.
    Timeout,
    /// An answer that is not a 2xx JSON `{"result"}` / `{"error"}` object within the size bound.
    BadResponse,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Unavailable,
        Outcome::Timeout,
        Outcome::BadResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::BadResponse => "bad_response",
        }
    }
}

/// Hook request counters by hook and outcome, and their duration.
#[derive(Debug, Default)]
pub struct BackendStats {
    counts: [[AtomicU64; Outcome::ALL.len()]; Hook::ALL.len()],
    pub duration: Histogram,
    /// When the last warning was logged (Unix ms), so that an outage logs once per second.
    last_warning_ms: AtomicU64,
}

impl BackendStats {
    pub fn count(&self, hook: Hook, outcome: Outcome) -> u64 {
        self.counts[hook as usize][outcome as usize].load(Ordering::Relaxed)
    }

    fn record(&self, hook: Hook, outcome: Outcome, elapsed: Duration) {
        self.counts[hook as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// Whether a warning may be logged now (at most one per second).
    fn may_warn(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Options of the hook client.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// The longest a hook request may take, connection and body included.
    pub timeout: Duration,
    /// Hook requests open at once; beyond it a hook fails at once with `backend_unavailable`.
    /// Notifications have as many slots again, of their own.
    pub max_in_flight: usize,
    /// The largest answer read.
    pub max_response_bytes: usize,
    /// Headers of the client's WebSocket upgrade request passed on to the `connect` hook.
    pub forward_headers: Vec<HeaderName>,
    /// Headers added to every hook request (for example a shared secret).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A PEM file of certificates trusted for `https://` hook URLs besides the Mozilla roots
    /// (a backend with a certificate of its own CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for BackendOptions {
    fn default() -> BackendOptions {
        BackendOptions {
            timeout: Duration::from_secs(5),
            max_in_flight: 256,
            max_response_bytes: 1024 * 1024,
            forward_headers: [
                "cookie",
                "authorization",
                "origin",
                "user-agent",
                "x-forwarded-for",
                "x-real-ip",
            ]
            .into_iter()
            .map(HeaderName::from_static)
            .collect(),
            headers: Vec::new(),
            ca_file: None,
        }
    }
}

/// The HTTP client of the hooks.
pub struct Backend {
    client: Client<crate::tls::HttpsConnector, Full<Bytes>>,
    options: BackendOptions,
    slots: Semaphore,
    /// The notifications' own `max_in_flight` slots.
    notification_slots: Arc<Semaphore>,
    stats: BackendStats,
}

/// A backend's `{"error": …}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    code: u32,
    message: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    result: Option<Box<RawValue>>,
    error: Option<ErrorAnswer>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataField>, D::Error> {
    DataField::deserialize(d).map(Some)
}

/// A payload in a hook body or answer: `data` (JSON) or `binary` (base64).
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PayloadFields {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binary: Option<BinaryField>,
}

impl PayloadFields {
    fn of(payload: &Payload) -> PayloadFields {
        let (data, binary) = payload.to_fields();
        PayloadFields { data, binary }
    }
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::BACKEND_UNAVAILABLE, message)
}

impl Backend {
    pub fn new(options: BackendOptions) -> Backend {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.timeout));
        connector.set_nodelay(true);
        // `https://` hook URLs: rustls with the Mozilla roots and `ca_file` (checked by the
        // configuration; a file that went bad since leaves the roots alone).
        let tls = crate::tls::client_config(options.ca_file.as_deref())
            .or_else(|e| {
                tracing::warn!(error = %e, "backend.ca_file: using the usual roots only");
                crate::tls::client_config(None)
            })
            .expect("the usual roots");
        let connector = crate::tls::HttpsConnector::new(connector, tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(options.max_in_flight.min(64))
            .build(connector);
        Backend {
            client,
            slots: Semaphore::new(options.max_in_flight.max(1)),
            notification_slots: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            options,
            stats: BackendStats::default(),
        }
    }

    /// Waits, at most `timeout`, until no notification is in flight (at shutdown, so that the
    /// `closed` notifications of the last connections go out). False when some were still in
    /// flight.
    pub async fn settle_notifications(&self, timeout: Duration) -> bool {
        let all = self.options.max_in_flight.max(1) as u32;
        tokio::time::timeout(timeout, self.notification_slots.acquire_many(all))
            .await
            .is_ok()
    }

    pub fn stats(&self) -> &BackendStats {
        &self.stats
    }

    pub fn options(&self) -> &BackendOptions {
        &self.options
    }

    /// POSTs `body` to `url` and decodes the `result` as `R`, or returns the backend's `error`.
    async fn call<R: DeserializeOwned>(
        &self,
        hook: Hook,
        url: &Uri,
        body: &impl Serialize,
        forwarded: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<R, Error> {
        let started = Instant::now();
        let body = serde_json::to_vec(body).map_err(|e| Error::internal(e.to_string()))?;
        // A saturated backend sheds load at once rather than queueing behind slow requests.
        let Ok(_slot) = self.slots.try_acquire() else {
            let why = format!(
                "{} hook requests already in flight",
                self.options.max_in_flight
            );
            return Err(self.failed(hook, url, Outcome::Unavailable, why, started));
        };
        let attempt = tokio::time::timeout(
            self.options.timeout,
            self.exchange(hook, url, body, forwarded),
        )
        .await;
        let answer = match attempt {
            Ok(Ok(answer)) => answer,
            Ok(Err((outcome, why))) => return Err(self.failed(hook, url, outcome, why, started)),
            Err(_) => {
                let why = format!("no answer within {:?}", self.options.timeout);
                return Err(self.failed(hook, url, Outcome::Timeout, why, started));
            }
        };
        match (answer.result, answer.error) {
            (Some(result), None) => match serde_json::from_str::<R>(result.get()) {
                Ok(r) => {
                    self.stats.record(hook, Outcome::Ok, started.elapsed());
                    Ok(r)
                }
                Err(e) => {
                    let why = format!("unexpected `result`: {e}");
                    Err(self.failed(hook, url, Outcome::BadResponse, why, started))
                }
            },
            (None, Some(error)) => {
                self.stats.record(hook, Outcome::Refused, started.elapsed());
                let mut e = Error::new(ErrorCode(error.code), error.message);
                e.data = error.data.map(|d| Payload::Json(d.0));
                Err(e)
            }
            _ => {
                let why = "the answer must have exactly one of `result` and `error`".to_owned();
                Err(self.failed(hook, url, Outcome::BadResponse, why, started))
            }
        }
    }

    /// A chat-service hook (`docs/chat-service.md`, "Hooks"): POSTs `body`, returns the
    /// `result` value, or the backend's `error`.
    pub async fn chat_hook(
        &self,
        url: &Uri,
        body: &impl Serialize,
    ) -> Result<serde_json::Value, Error> {
        self.call(Hook::ChatService, url, body, Vec::new()).await
    }

    /// An endpoint's hook (`docs/endpoints.md`, "Backend hooks"): POSTs `body`, returns the
    /// `result` value, or the backend's `error`.
    pub async fn endpoint_hook(
        &self,
        url: &Uri,
        body: &impl Serialize,
    ) -> Result<serde_json::Value, Error> {
        self.call(Hook::Endpoint, url, body, Vec::new()).await
    }

    /// A notification, holding one of the notifications' slots: its answer is only counted.
    async fn notify(&self, hook: Hook, url: &Uri, body: Vec<u8>) {
        let started = Instant::now();
        let sent =
            tokio::time::timeout(self.options.timeout, self.post(hook, url, body, Vec::new()));
        let (outcome, why) = match sent.await {
            Ok(Ok(_)) => {
                self.stats.record(hook, Outcome::Ok, started.elapsed());
                return;
            }
            Ok(Err(failure)) => failure,
            Err(_) => (
                Outcome::Timeout,
                format!("no answer within {:?}", self.options.timeout),
            ),
        };
        self.failed(hook, url, outcome, why, started);
    }

    async fn exchange(
        &self,
        hook: Hook,
        url: &Uri,
        body: Vec<u8>,
        forwarded: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Answer, (Outcome, String)> {
        let bytes = self.post(hook, url, body, forwarded).await?;
        serde_json::from_slice::<Answer>(&bytes)
            .map_err(|e| (Outcome::BadResponse, format!("not a hook answer: {e}")))
    }

    /// POSTs `body` and reads the answer (bounded); a status other than 2xx is a bad response.
    async fn post(
        &self,
        hook: Hook,
        url: &Uri,
        body: Vec<u8>,
        forwarded: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Bytes, (Outcome, String)> {
        let mut request = Request::post(url.clone())
            .header(USER_AGENT, concat!("plexus/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| (Outcome::Unavailable, e.to_string()))?;
        // The client's headers replace Plexus's own (its user agent); ours come last.
        let headers = request.headers_mut();
        for (name, value) in forwarded.iter().chain(&self.options.headers) {
            headers.insert(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-plexus-hook", HeaderValue::from_static(hook.as_str()));
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| (Outcome::Unavailable, format!("request failed: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), self.options.max_response_bytes)
            .collect()
            .await
            .map_err(|e| (Outcome::BadResponse, format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err((Outcome::BadResponse, format!("HTTP status {status}")));
        }
        Ok(bytes)
    }

    fn failed(
        &self,
        hook: Hook,
        url: &Uri,
        outcome: Outcome,
        why: String,
        started: Instant,
    ) -> Error {
        self.stats.record(hook, outcome, started.elapsed());
        if self.stats.may_warn() {
            tracing::warn!(hook = hook.as_str(), %url, outcome = outcome.as_str(), "backend hook failed: {why}");
        }
        unavailable(format!("the {} backend is unavailable", hook.as_str()))
    }
}

/// The hook URLs and the client they share.
pub struct BackendHooks {
    pub backend: Arc<Backend>,
    pub connect: Option<Uri>,
    pub subscribe: Option<Uri>,
    pub publish: Option<Uri>,
}

#[derive(Serialize)]
struct ConnectBody<'a> {
    conn: String,
    dialect: &'a str,
    transport: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(flatten)]
    payload: PayloadFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectAnswer {
    user: String,
    #[serde(default, deserialize_with = "present")]
    info: Option<DataField>,
    #[serde(default)]
    channels: Vec<String>,
    /// Unix seconds after which the connection is closed with 4506.
    #[serde(default)]
    expire_at: Option<u64>,
}

#[derive(Serialize)]
struct ChannelBody<'a> {
    conn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(flatten)]
    payload: PayloadFields,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Serialize)]
struct RpcBody<'a> {
    conn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<DataField>,
    method: &'a str,
    meta: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    payload: PayloadFields,
}

fn answer_payload(fields: PayloadFields) -> Result<Option<Payload>, Error> {
    Payload::from_fields(fields.data, fields.binary)
        .map_err(|e| unavailable(format!("the backend answered a bad payload: {e}")))
}

impl BackendHooks {
    /// The `connect` hook: the backend names the user (or refuses).
    pub async fn connect(&self, url: &Uri, request: &AuthRequest) -> Result<Identity, Error> {
        let upgrade = &request.upgrade;
        let forwarded = self
            .backend
            .options
            .forward_headers
            .iter()
            .filter_map(|name| {
                let value = upgrade.header(name.as_str())?;
                Some((name.clone(), HeaderValue::from_str(value).ok()?))
            })
            .collect();
        let payload = request
            .credentials
            .as_ref()
            .map(PayloadFields::of)
            .unwrap_or_default();
        let body = ConnectBody {
            conn: request.conn.to_string(),
            dialect: upgrade.dialect,
            transport: upgrade.transport,
            path: &upgrade.path,
            query: &upgrade.query,
            peer: upgrade.peer.map(|p| p.to_string()),
            token: request.token.as_deref(),
            payload,
        };
        let answer: ConnectAnswer = self
            .backend
            .call(Hook::Connect, url, &body, forwarded)
            .await?;
        if answer.user.is_empty() {
            return Err(unavailable("the connect backend answered an empty `user`"));
        }
        let mut identity = Identity::new(answer.user).with_channels(answer.channels);
        if let Some(info) = answer.info {
            identity = identity.with_info(Payload::Json(info.0));
        }
        if let Some(at) = answer.expire_at {
            identity = identity.expires_at(UNIX_EPOCH + Duration::from_secs(at));
        }
        Ok(identity)
    }

    /// The `subscribe` hook: the backend allows or refuses a client's subscribe.
    pub async fn subscribe(&self, url: &Uri, request: &GuardRequest) -> Result<(), Error> {
        let body = ChannelBody {
            conn: request.conn.to_string(),
            user: request.user.as_deref(),
            channel: &request.channel,
            token: request.token.as_deref(),
            payload: PayloadFields::default(),
        };
        let _: Empty = self
            .backend
            .call(Hook::Subscribe, url, &body, Vec::new())
            .await?;
        Ok(())
    }

    /// The `publish` hook: the backend allows, refuses, or replaces the data of a client's
    /// publish.
    pub async fn publish(
        &self,
        url: &Uri,
        request: &GuardRequest,
        payload: Payload,
    ) -> Result<Payload, Error> {
        let body = ChannelBody {
            conn: request.conn.to_string(),
            user: request.user.as_deref(),
            channel: &request.channel,
            token: None,
            payload: PayloadFields::of(&payload),
        };
        let answer: PayloadFields = self
            .backend
            .call(Hook::Publish, url, &body, Vec::new())
            .await?;
        Ok(answer_payload(answer)?.unwrap_or(payload))
    }
}

/// A command answered by the backend's `rpc` hook at `url`.
pub fn rpc_command(backend: Arc<Backend>, url: Uri) -> Command {
    let timeout = backend.options.timeout;
    let handler = move |ctx: CommandContext| {
        let backend = backend.clone();
        let url = url.clone();
        async move {
            let body = RpcBody {
                conn: ctx.conn.to_string(),
                user: ctx.user.as_deref(),
                info: ctx.info.as_ref().and_then(|i| i.to_fields().0),
                method: &ctx.method,
                meta: &ctx.metadata,
                payload: PayloadFields::of(&ctx.payload),
            };
            let answer: PayloadFields = backend.call(Hook::Rpc, &url, &body, Vec::new()).await?;
            Ok(answer_payload(answer)?.unwrap_or_else(Payload::null))
        }
    };
    // The hook's own timeout answers first, with `backend_unavailable`.
    Command::new(handler).timeout(timeout + Duration::from_secs(1))
}

#[derive(Serialize)]
struct OpenedBody<'a> {
    event: &'static str,
    conn: String,
    dialect: &'a str,
    transport: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
}

#[derive(Serialize)]
struct AuthenticatedBody<'a> {
    event: &'static str,
    conn: String,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<DataField>,
    dialect: &'a str,
    transport: &'a str,
}

#[derive(Serialize)]
struct ClosedBody<'a> {
    event: &'static str,
    conn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    dialect: &'a str,
    transport: &'a str,
    code: u16,
    reason: &'a str,
}

/// The lifecycle notifications: `opened`, `authenticated` and `closed` POSTed to the backend as
/// JSON, fire-and-forget (`docs/configuration.md`, "Lifecycle notifications").
///
/// Each is sent by a task of its own, so a connection never waits for one. A connection's
/// notifications are sent in order, each once the one before it is answered or failed; while
/// they wait they hold their slot, so the tasks and the per-connection order bookkeeping are
/// bounded by `max_in_flight`. At most once: a notification that fails is not retried.
pub struct Notifications {
    backend: Arc<Backend>,
    opened: Option<Uri>,
    authenticated: Option<Uri>,
    closed: Option<Uri>,
    /// For each connection with a notification in flight: the ticket of its latest one, and
    /// what resolves when that one is done (its sender is dropped).
    chains: Mutex<HashMap<ConnId, (u64, oneshot::Receiver<()>)>>,
    next_ticket: AtomicU64,
}

impl Notifications {
    pub fn new(
        backend: Arc<Backend>,
        opened: Option<Uri>,
        authenticated: Option<Uri>,
        closed: Option<Uri>,
    ) -> Arc<Notifications> {
        Arc::new(Notifications {
            backend,
            opened,
            authenticated,
            closed,
            chains: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(0),
        })
    }

    /// Registers a lifecycle hook for each notification that has a URL.
    pub fn install(self: &Arc<Self>, mut builder: crate::ServerBuilder) -> crate::ServerBuilder {
        if let Some(url) = self.opened.clone() {
            let this = self.clone();
            builder = builder.on_open(move |e: &Opened| {
                let request = &e.request;
                let body = OpenedBody {
                    event: "opened",
                    conn: e.conn.to_string(),
                    dialect: request.dialect,
                    transport: request.transport,
                    path: &request.path,
                    query: &request.query,
                    peer: request.peer.map(|p| p.to_string()),
                };
                this.send(Hook::Opened, &url, e.conn, &body);
            });
        }
        if let Some(url) = self.authenticated.clone() {
            let this = self.clone();
            builder = builder.on_authenticated(move |e: &Authenticated| {
                let body = AuthenticatedBody {
                    event: "authenticated",
                    conn: e.conn.to_string(),
                    user: &e.identity.user,
                    info: e.identity.info.as_ref().and_then(|i| i.to_fields().0),
                    dialect: e.request.dialect,
                    transport: e.request.transport,
                };
                this.send(Hook::Authenticated, &url, e.conn, &body);
            });
        }
        if let Some(url) = self.closed.clone() {
            let this = self.clone();
            builder = builder.on_close(move |e: &Closed| {
                let body = ClosedBody {
                    event: "closed",
                    conn: e.conn.to_string(),
                    user: e.user.as_deref(),
                    dialect: e.request.dialect,
                    transport: e.request.transport,
                    code: e.code.0,
                    reason: &e.reason,
                };
                this.send(Hook::Closed, &url, e.conn, &body);
            });
        }
        builder
    }

    /// Takes a slot (or drops the notification) and sends it in a task, after the connection's
    /// previous notification.
    fn send(self: &Arc<Self>, hook: Hook, url: &Uri, conn: ConnId, body: &impl Serialize) {
        let started = Instant::now();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let why = "no runtime to send it from".to_owned();
            self.backend
                .failed(hook, url, Outcome::Unavailable, why, started);
            return;
        };
        let Ok(slot) = self.backend.notification_slots.clone().try_acquire_owned() else {
            let why = format!(
                "{} notifications already in flight: dropped",
                self.backend.options.max_in_flight
            );
            self.backend
                .failed(hook, url, Outcome::Unavailable, why, started);
            return;
        };
        let body = match serde_json::to_vec(body) {
            Ok(body) => body,
            Err(e) => {
                self.backend
                    .failed(hook, url, Outcome::BadResponse, e.to_string(), started);
                return;
            }
        };
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (done, done_rx) = oneshot::channel::<()>();
        let previous = self
            .chains
            .lock()
            .unwrap()
            .insert(conn, (ticket, done_rx))
            .map(|(_, rx)| rx);
        let (this, url) = (self.clone(), url.clone());
        runtime.spawn(async move {
            let _slot = slot;
            if let Some(previous) = previous {
                // Resolves when the previous notification's task ends, however it ends.
                let _ = previous.await;
            }
            this.backend.notify(hook, &url, body).await;
            let mut chains = this.chains.lock().unwrap();
            if chains.get(&conn).is_some_and(|(t, _)| *t == ticket) {
                chains.remove(&conn);
            }
            drop(chains);
            drop(done);
        });
    }
}

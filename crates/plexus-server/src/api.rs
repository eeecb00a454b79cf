//! The HTTP server API: `POST /api/<method>` with a JSON body, protected by an API key
//! (`Authorization: apikey <KEY>` or `X-API-Key: <KEY>`). Documented in `docs/api.md` and
//! `docs/openapi.yaml`.
//!
//! A success is `200 {"result": {…}}`; a failure is a 4xx/5xx status with
//! `{"error": {"code", "message", "data"?}}`, the code from the table of `docs/protocol.md`.

use crate::backend::Backend;
use crate::chatservice::{ChatServiceApi, ExecContext};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use plexus_core::engine::{HistoryQuery, PresenceEntry};
use plexus_core::inspect::{CONNECTIONS_MAX, ChannelsQuery, InspectQuery};
use plexus_core::rooms::{DirectList, DirectState, RoomConfig, RoomList};
use plexus_core::stats::Histogram;
use plexus_core::{
    Actor, CloseCode, ConnId, Emit, Error, ErrorCode, Exclude, Metadata, Node, Payload,
    Publication, RecordWrite, RoomUpdate, validate_event,
};
use plexus_protocol::{BinaryField, DataField};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The HTTP endpoints of the standalone server besides `/ws` and `/health`: the server API and
/// `/metrics`. Nothing is served unless set.
#[derive(Clone, Default)]
pub struct HttpEndpoints {
    /// `/api/<method>`.
    pub api: Option<ApiOptions>,
    /// `GET /metrics` (Prometheus text format).
    pub metrics: bool,
    /// The hook client, whose counters `/metrics` shows.
    pub backend: Option<Arc<Backend>>,
    /// API call counters, shared with `/metrics`.
    pub stats: Arc<ApiStats>,
}

/// Who may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKey {
    /// Calls must carry this key.
    Required(String),
    /// No key is needed (development mode only).
    Open,
    /// No key is configured: every call is refused with 404, saying how to enable the API.
    Missing,
}

/// Options of the server API.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub key: ApiKey,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// Publications one `history` call may return.
    pub history_max: usize,
    /// Channels one `broadcast` may name.
    pub broadcast_max_channels: usize,
    /// Channels one `channels` call may list.
    pub channels_max: usize,
}

impl Default for ApiOptions {
    fn default() -> ApiOptions {
        ApiOptions {
            key: ApiKey::Missing,
            max_body_bytes: 1024 * 1024,
            history_max: 1000,
            broadcast_max_channels: 1000,
            channels_max: 10_000,
        }
    }
}

/// How long `nodes` and `connections` wait for the other nodes' answers, at most; a node that
/// has not answered by then is listed in `missing`.
const INSPECT_WAIT: Duration = Duration::from_secs(2);
/// Durable messages `mailbox` lists without a `limit` (a mailbox holds at most
/// `client.mailbox_max_messages`).
const MAILBOX_DEFAULT: usize = 100;
/// Connections `connections` lists without a `limit`.
const CONNECTIONS_DEFAULT: usize = 100;

/// Every API method, in the order of `docs/api.md`.
pub const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "send",
    "send_all",
    "send_connection",
    "send_durable",
    "mailbox",
    "disconnect",
    "subscribe",
    "unsubscribe",
    "channels",
    "info",
    "nodes",
    "connections",
    "history",
    "history_remove",
    "presence",
    "presence_stats",
    "metadata_get",
    "metadata_set",
    "record_get",
    "record_set",
    "record_patch",
    "record_delete",
    "room_create",
    "room_delete",
    "room_info",
    "room_list_add",
    "room_list_remove",
    "room_set_whitelist_only",
    "room_set_owner",
    "room_set_history_size",
    "room_set_notifications",
    "room_access",
    "user_add",
    "user_delete",
    "user_exists",
    "direct_list_add",
    "direct_list_remove",
    "direct_set_whitelist_only",
    "direct_access",
    "notify",
    "chat_exec",
    "identity_notify",
    "mesa_dispatch",
    "mesa_disconnect",
    "mesa_portal_take",
    "mesa_portal_ack",
];

/// API calls by method (the last slot counts unknown methods) and their duration.
#[derive(Debug)]
pub struct ApiStats {
    calls: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    pub unauthorized: AtomicU64,
    pub duration: Histogram,
    started: Instant,
}

impl Default for ApiStats {
    fn default() -> ApiStats {
        ApiStats {
            calls: (0..=METHODS.len()).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..=METHODS.len()).map(|_| AtomicU64::new(0)).collect(),
            unauthorized: AtomicU64::new(0),
            duration: Histogram::default(),
            started: Instant::now(),
        }
    }
}

impl ApiStats {
    /// Calls and failed calls of `method` (`None`: unknown methods).
    pub fn calls(&self, method: Option<&str>) -> (u64, u64) {
        let i = slot(method);
        (
            self.calls[i].load(Ordering::Relaxed),
            self.errors[i].load(Ordering::Relaxed),
        )
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

fn slot(method: Option<&str>) -> usize {
    method
        .and_then(|m| METHODS.iter().position(|x| *x == m))
        .unwrap_or(METHODS.len())
}

struct ApiState {
    node: Node,
    chat_service: Option<ChatServiceApi>,
    options: ApiOptions,
    stats: Arc<ApiStats>,
    backend: Option<Arc<Backend>>,
    metrics: bool,
    mesa: Option<crate::mesa::MesaApi>,
}

/// The API's methods for another front that authenticates its callers itself (the admin
/// interface): the same methods, limits and counters, without the API key.
#[derive(Clone)]
pub(crate) struct ApiHandle(Arc<ApiState>);

impl ApiHandle {
    pub(crate) fn new(
        node: Node,
        chat_service: Option<ChatServiceApi>,
        endpoints: &HttpEndpoints,
        mesa: Option<crate::mesa::MesaApi>,
    ) -> ApiHandle {
        ApiHandle(Arc::new(ApiState {
            node,
            chat_service,
            mesa,
            options: endpoints.api.clone().unwrap_or_default(),
            stats: endpoints.stats.clone(),
            backend: endpoints.backend.clone(),
            metrics: endpoints.metrics,
        }))
    }

    /// Runs `method` as `POST /api/<method>` would after its key check.
    pub(crate) async fn call(&self, method: &str, body: Body) -> Response {
        run(&self.0, method, body).await
    }
}

/// The routes of `endpoints` (none when nothing is enabled).
pub(crate) fn routes(
    node: Node,
    chat_service: Option<ChatServiceApi>,
    endpoints: &HttpEndpoints,
    mesa: Option<crate::mesa::MesaApi>,
) -> Router {
    let mut router = Router::new();
    let state = ApiHandle::new(node, chat_service, endpoints, mesa).0;
    if endpoints.api.is_some() {
        router = router.route("/api/{method}", post(call));
    }
    if endpoints.metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.with_state(state)
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    debug_assert!(state.metrics);
    let mut text = crate::metrics::render(&state.node, &state.stats, state.backend.as_deref());
    if let Some(mesa) = &state.mesa {
        text.push_str(
            "# HELP plexus_mesa_portal_dropped_total Mesa client events dropped because the portal backlog was full.\n\
             # TYPE plexus_mesa_portal_dropped_total counter\n",
        );
        text.push_str(&format!(
            "plexus_mesa_portal_dropped_total {}\n",
            mesa.portal_dropped()
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// An API failure: an HTTP status and a Plexus error.
struct Failure(StatusCode, Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match e.code {
            ErrorCode::BAD_REQUEST | ErrorCode::BAD_CHANNEL | ErrorCode::BAD_PAYLOAD => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            ErrorCode::PERMISSION_DENIED => StatusCode::FORBIDDEN,
            ErrorCode::METHOD_NOT_FOUND | ErrorCode::NOT_FOUND => StatusCode::NOT_FOUND,
            // A patch that does not apply conflicts with the record's state (RFC 5789).
            ErrorCode::CONFLICT | ErrorCode::VERSION_CONFLICT | ErrorCode::BAD_PATCH => {
                StatusCode::CONFLICT
            }
            ErrorCode::LIMIT_EXCEEDED
            | ErrorCode::NOT_AVAILABLE
            | ErrorCode::NOT_SUBSCRIBED
            | ErrorCode::ALREADY_SUBSCRIBED
            | ErrorCode::RECORD_LIMIT => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TIMEOUT | ErrorCode::BACKEND_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e)
    }
}

fn bad_request(message: impl Into<String>) -> Failure {
    Error::bad_request(message).into()
}

fn error_response(status: StatusCode, e: &Error) -> Response {
    let mut body = json!({"error": {"code": e.code.0, "message": e.message}});
    // Details a refusal carries (a room's reason), when they are JSON.
    if let Some(data) = e
        .data
        .as_ref()
        .and_then(|d| d.as_json_str())
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
    {
        body["error"]["data"] = data;
    }
    (status, axum::Json(body)).into_response()
}

/// Compares without an early exit, so the time taken does not tell how much of a key matched.
pub(crate) fn same_key(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn given_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, key) = auth.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("apikey").then(|| key.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

async fn call(
    State(state): State<Arc<ApiState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match &state.options.key {
        ApiKey::Open => {}
        ApiKey::Missing => {
            let e = Error::new(
                ErrorCode::NOT_AVAILABLE,
                "the HTTP API is disabled: set `api.key` in the configuration",
            );
            return error_response(StatusCode::NOT_FOUND, &e);
        }
        ApiKey::Required(key) => {
            if !given_key(&headers).is_some_and(|k| same_key(k.as_bytes(), key.as_bytes())) {
                state.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
                let e = Error::new(ErrorCode::UNAUTHORIZED, "a valid API key is required");
                let mut response = error_response(StatusCode::UNAUTHORIZED, &e);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "apikey".parse().expect("static"));
                return response;
            }
        }
    }
    run(&state, &method, body).await
}

/// Runs an API method on an authenticated request: counts it, bounds its body, answers.
async fn run(state: &ApiState, method: &str, body: Body) -> Response {
    let started = Instant::now();
    let known = METHODS.iter().find(|m| **m == method).copied();
    let i = slot(known);
    state.stats.calls[i].fetch_add(1, Ordering::Relaxed);
    let result = match known {
        None => Err(Failure::from(Error::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("no API method `{method}`"),
        ))),
        Some(method) => match axum::body::to_bytes(body, state.options.max_body_bytes).await {
            Err(_) => Err(Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!("body larger than {} bytes", state.options.max_body_bytes),
                ),
            )),
            Ok(bytes) => dispatch(state, method, &bytes).await,
        },
    };
    state.stats.duration.observe(started.elapsed());
    match result {
        Ok(value) => axum::Json(json!({ "result": value })).into_response(),
        Err(Failure(status, e)) => {
            state.stats.errors[i].fetch_add(1, Ordering::Relaxed);
            error_response(status, &e)
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    // An empty body is `{}`; whitespace alone is no JSON document.
    if body.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|e| bad_request(format!("invalid body: {e}")));
    }
    match body.iter().position(|b| !b.is_ascii_whitespace()) {
        // serde would also read a struct from an array; the API takes objects only.
        Some(i) if body[i] == b'{' => {}
        _ => return Err(bad_request("the body must be a JSON object")),
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid body: {e}")))
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataField>, D::Error> {
    DataField::deserialize(d).map(Some)
}

/// An optional field that, when present, must not be `null`.
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An integer a JavaScript number holds exactly (at most 2^53 - 1).
#[derive(Clone, Copy, Debug)]
struct SafeInt(u64);

impl<'de> Deserialize<'de> for SafeInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SafeInt, D::Error> {
        const MAX: u64 = (1 << 53) - 1;
        let n = u64::deserialize(d)?;
        if n > MAX {
            return Err(serde::de::Error::custom(format!(
                "{n} is larger than {MAX}"
            )));
        }
        Ok(SafeInt(n))
    }
}

/// `data` or `binary`.
#[derive(Deserialize)]
struct PayloadParams {
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
}

impl PayloadParams {
    fn payload(self, node: &Node) -> Result<Payload, Failure> {
        let payload = Payload::from_fields(self.data, self.binary)
            .map_err(|e| bad_request(e.to_string()))?
            .ok_or_else(|| bad_request("`data` or `binary` is required"))?;
        let max = node.limits().max_message_bytes;
        if payload.len() > max {
            return Err(Error::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!("payload larger than max_message_bytes ({max})"),
            )
            .into());
        }
        Ok(payload)
    }
}

/// Connections and users a send skips (`exclude` of `publish`, `send`, `send_all`, `notify`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludeFields {
    #[serde(default)]
    conns: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
}

/// `exclude`, read from an object only (serde alone would also read a struct from an array).
struct ExcludeParams(ExcludeFields);

impl<'de> Deserialize<'de> for ExcludeParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExcludeParams, D::Error> {
        let map = serde_json::Map::<String, Value>::deserialize(d)?;
        serde_json::from_value(Value::Object(map))
            .map(ExcludeParams)
            .map_err(serde::de::Error::custom)
    }
}

/// Most connections, and most users, one `exclude` may name (as `docs/openapi.yaml` says).
const MAX_EXCLUDE_EACH: usize = 500;

impl ExcludeParams {
    fn parse(this: Option<ExcludeParams>) -> Result<Option<Exclude>, Failure> {
        let Some(ExcludeParams(this)) = this else {
            return Ok(None);
        };
        if this.conns.len().max(this.users.len()) > MAX_EXCLUDE_EACH {
            return Err(Error::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "`exclude` names at most {MAX_EXCLUDE_EACH} connections and {MAX_EXCLUDE_EACH} users"
                ),
            )
            .into());
        }
        let conns = this
            .conns
            .iter()
            .map(|c| parse_conn(c))
            .collect::<Result<Vec<_>, _>>()?;
        if this.users.iter().any(String::is_empty) {
            return Err(bad_request(
                "`exclude.users` may not hold an empty user name",
            ));
        }
        let users = this.users.into_iter().map(Arc::from).collect();
        Ok(Some(Exclude { conns, users }))
    }
}

/// A payload under an optional event name.
fn emit(event: Option<String>, payload: Payload) -> Result<Emit, Failure> {
    let event = event.map(Arc::<str>::from);
    if let Some(event) = &event {
        validate_event(event)?;
    }
    Ok(Emit { event, payload })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishParams {
    channel: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
    #[serde(default, deserialize_with = "some")]
    exclude: Option<ExcludeParams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastParams {
    channels: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
}

/// Most users one `mesa_dispatch` may name in `recipients`, and in `excluding`.
const MAX_MESA_RECIPIENTS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MesaDispatchParams {
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    excluding: Vec<String>,
    #[serde(default, deserialize_with = "some")]
    t: Option<String>,
    #[serde(default, deserialize_with = "present")]
    d: Option<DataField>,
    #[serde(default = "yes")]
    sync: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MesaDisconnectParams {
    recipients: Vec<String>,
}

/// The longest a `mesa_portal_take` waits for events, and the most it returns.
const MAX_PORTAL_WAIT_MS: u64 = 30_000;
const MAX_PORTAL_TAKE: usize = 1000;
/// How often a waiting `mesa_portal_take` looks again.
const PORTAL_POLL: Duration = Duration::from_millis(20);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalTakeParams {
    worker: String,
    #[serde(default)]
    max: Option<SafeInt>,
    #[serde(default)]
    wait_ms: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalAckParams {
    ids: Vec<String>,
}

/// Checks a list of user ids: bounded, none empty.
fn users(field: &str, list: &[String]) -> Result<(), Failure> {
    if list.len() > MAX_MESA_RECIPIENTS {
        return Err(Error::new(
            ErrorCode::LIMIT_EXCEEDED,
            format!("`{field}` names at most {MAX_MESA_RECIPIENTS} users"),
        )
        .into());
    }
    if list.iter().any(String::is_empty) {
        return Err(bad_request(format!("`{field}` has an empty user id")));
    }
    Ok(())
}

/// The Mesa dispatcher; 404 (error 114) when the server does not serve Mesa.
fn mesa(state: &ApiState) -> Result<&crate::mesa::MesaApi, Failure> {
    state.mesa.as_ref().ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            Error::new(
                ErrorCode::NOT_AVAILABLE,
                "Mesa is not served: set `mesa.enabled = true`",
            ),
        )
    })
}

/// The Mesa dispatcher of a server whose portals are a queue; 404 (error 114) otherwise.
fn mesa_queue(state: &ApiState) -> Result<&crate::mesa::MesaApi, Failure> {
    let mesa = mesa(state)?;
    if mesa.config().portals != crate::mesa::PortalMode::Queue {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            Error::new(
                ErrorCode::NOT_AVAILABLE,
                "portals are not served as a queue: set `mesa.portals = \"queue\"`",
            ),
        ));
    }
    Ok(mesa)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendParams {
    user: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
    #[serde(default, deserialize_with = "some")]
    exclude: Option<ExcludeParams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendAllParams {
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
    #[serde(default, deserialize_with = "some")]
    exclude: Option<ExcludeParams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendConnectionParams {
    conn: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendDurableParams {
    user: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    ttl_ms: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectParams {
    #[serde(default, deserialize_with = "some")]
    user: Option<String>,
    #[serde(default, deserialize_with = "some")]
    conn: Option<String>,
    #[serde(default, deserialize_with = "some")]
    code: Option<u16>,
    #[serde(default, deserialize_with = "some")]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChannelParams {
    user: String,
    channel: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsParams {
    #[serde(default, deserialize_with = "some")]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "some")]
    limit: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailboxParams {
    user: String,
    #[serde(default, deserialize_with = "some")]
    limit: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsParams {
    #[serde(default, deserialize_with = "some")]
    user: Option<String>,
    #[serde(default, deserialize_with = "some")]
    conn: Option<String>,
    #[serde(default, deserialize_with = "some")]
    limit: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    channel: String,
    #[serde(default, deserialize_with = "some")]
    since: Option<SafeInt>,
    #[serde(default, deserialize_with = "some")]
    limit: Option<SafeInt>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelParams {
    channel: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataGetParams {
    #[serde(default, deserialize_with = "some")]
    conn: Option<String>,
    #[serde(default, deserialize_with = "some")]
    user: Option<String>,
    #[serde(default, deserialize_with = "some")]
    channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIdParams {
    id: String,
}

/// `record_set` / `record_patch` / `record_delete`: `value` or `patch` (each required by its
/// method; `null` is a value) and an optional expected version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordWriteParams {
    id: String,
    #[serde(default, deserialize_with = "some")]
    value: Option<Value>,
    #[serde(default, deserialize_with = "some")]
    patch: Option<Value>,
    #[serde(default, deserialize_with = "some")]
    expect: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataSetParams {
    #[serde(default, deserialize_with = "some")]
    conn: Option<String>,
    #[serde(default, deserialize_with = "some")]
    user: Option<String>,
    #[serde(default, deserialize_with = "some")]
    channel: Option<String>,
    value: Metadata,
    #[serde(default)]
    merge: bool,
}

/// `room_create`: a room and its initial state.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomCreateParams {
    room: String,
    #[serde(default, deserialize_with = "some")]
    owner: Option<String>,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    blacklist: Vec<String>,
    #[serde(default)]
    adminlist: Vec<String>,
    #[serde(default)]
    whitelist_only: bool,
    #[serde(default, deserialize_with = "some")]
    history_max_size: Option<SafeInt>,
    #[serde(default)]
    notify_userlist: bool,
    #[serde(default)]
    notify_access_lists: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomParams {
    room: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomListParams {
    room: String,
    list: String,
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomModeParams {
    room: String,
    whitelist_only: bool,
}

/// `room_set_owner`: without `owner`, the room has none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomOwnerParams {
    room: String,
    #[serde(default, deserialize_with = "some")]
    owner: Option<String>,
}

/// `room_set_history_size`: without `history_max_size`, the namespace's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomHistorySizeParams {
    room: String,
    #[serde(default, deserialize_with = "some")]
    history_max_size: Option<SafeInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomNotificationsParams {
    room: String,
    #[serde(default, deserialize_with = "some")]
    userlist: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    access_lists: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomUserParams {
    room: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserAddParams {
    user: String,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    blacklist: Vec<String>,
    #[serde(default)]
    whitelist_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserParams {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectListParams {
    user: String,
    list: String,
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectModeParams {
    user: String,
    whitelist_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectAccessParams {
    sender: String,
    recipient: String,
}

/// `identity_notify`: Plezi's `notify(identity, event, data)`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityNotifyParams {
    identity: String,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

/// `chat_exec`: chat-service's `execUserCommand`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatExecParams {
    command: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default, deserialize_with = "some")]
    user: Option<String>,
    #[serde(default, deserialize_with = "some")]
    id: Option<String>,
    #[serde(default)]
    bypass_permissions: bool,
    #[serde(default)]
    bypass_hooks: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyParams {
    channel: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<DataField>,
    #[serde(default, deserialize_with = "some")]
    binary: Option<BinaryField>,
    #[serde(default, deserialize_with = "some")]
    event: Option<String>,
    #[serde(default, deserialize_with = "some")]
    exclude: Option<ExcludeParams>,
}

/// The users a room change unsubscribed.
fn removed(update: RoomUpdate) -> Value {
    let users: Vec<&str> = update.removed.iter().map(|u| &**u).collect();
    json!({ "removed": users })
}

/// A size the API takes as `usize`.
fn size(n: SafeInt) -> usize {
    usize::try_from(n.0).unwrap_or(usize::MAX)
}

/// The room and user methods (`room_*`, `user_*`, `direct_*`): the server's authority, so the
/// rules of who may change what are bypassed; names and sizes are still checked.
async fn dispatch_rooms(node: &Node, method: &str, body: &[u8]) -> Result<Value, Failure> {
    let rooms = node.rooms();
    let empty = || Ok(json!({}));
    // A list as sent, bounded before duplicates are merged (the schema bounds the array).
    let list_of = |list: &str,
                   names: Vec<String>,
                   max: usize|
     -> Result<std::collections::BTreeSet<Arc<str>>, Failure> {
        if names.len() > max {
            return Err(plexus_core::rooms::Reason::ListLimitExceeded
                .error(&[list])
                .into());
        }
        Ok(names.into_iter().map(Arc::from).collect())
    };
    let (room_max, direct_max) = (node.limits().room_list_max, node.limits().direct_list_max);
    match method {
        "room_create" => {
            let p: RoomCreateParams = parse(body)?;
            let mut config = RoomConfig {
                owner: p.owner.map(Arc::from),
                whitelist_only: p.whitelist_only,
                history_max_size: p.history_max_size.map(size),
                notify_userlist: p.notify_userlist,
                notify_access_lists: p.notify_access_lists,
                ..RoomConfig::default()
            };
            config.whitelist = list_of("whitelist", p.whitelist, room_max)?;
            config.blacklist = list_of("blacklist", p.blacklist, room_max)?;
            config.adminlist = list_of("adminlist", p.adminlist, room_max)?;
            rooms.create(&p.room, config).await?;
            empty()
        }
        "room_delete" => {
            let p: RoomParams = parse(body)?;
            let members = rooms.delete(Actor::Server, &p.room).await?;
            Ok(json!({ "removed": members.iter().map(|u| &**u).collect::<Vec<_>>() }))
        }
        "room_info" => {
            let p: RoomParams = parse(body)?;
            let state = rooms.state(&p.room).await?;
            let users = rooms.members(&p.room).await?;
            let names = |set: &std::collections::BTreeSet<Arc<str>>| -> Vec<String> {
                set.iter().map(|n| n.to_string()).collect()
            };
            Ok(json!({
                "owner": state.owner.as_deref(),
                "whitelist": names(&state.whitelist),
                "blacklist": names(&state.blacklist),
                "adminlist": names(&state.adminlist),
                "whitelist_only": state.whitelist_only,
                "history_max_size": state.history_max_size,
                "notify_userlist": state.notify_userlist,
                "notify_access_lists": state.notify_access_lists,
                "users": users.iter().map(|u| &**u).collect::<Vec<_>>(),
            }))
        }
        "room_list_add" | "room_list_remove" => {
            let p: RoomListParams = parse(body)?;
            let list = RoomList::parse(&p.list)?;
            let update = if method == "room_list_add" {
                rooms
                    .add_to_list(Actor::Server, &p.room, list, &p.names)
                    .await?
            } else {
                rooms
                    .remove_from_list(Actor::Server, &p.room, list, &p.names)
                    .await?
            };
            Ok(removed(update))
        }
        "room_set_whitelist_only" => {
            let p: RoomModeParams = parse(body)?;
            let update = rooms
                .set_whitelist_only(Actor::Server, &p.room, p.whitelist_only)
                .await?;
            Ok(removed(update))
        }
        "room_set_owner" => {
            let p: RoomOwnerParams = parse(body)?;
            Ok(removed(rooms.set_owner(&p.room, p.owner.as_deref()).await?))
        }
        "room_set_history_size" => {
            let p: RoomHistorySizeParams = parse(body)?;
            rooms
                .set_history_size(&p.room, p.history_max_size.map(size))
                .await?;
            empty()
        }
        "room_set_notifications" => {
            let p: RoomNotificationsParams = parse(body)?;
            rooms
                .set_notifications(&p.room, p.userlist, p.access_lists)
                .await?;
            empty()
        }
        "room_access" => {
            let p: RoomUserParams = parse(body)?;
            let access = rooms.has_access(&p.room, &p.user).await?;
            Ok(json!({ "access": access }))
        }
        "user_add" => {
            let p: UserAddParams = parse(body)?;
            let state = DirectState {
                whitelist: list_of("whitelist", p.whitelist, direct_max)?,
                blacklist: list_of("blacklist", p.blacklist, direct_max)?,
                whitelist_only: p.whitelist_only,
            };
            rooms.add_user(&p.user, state).await?;
            empty()
        }
        "user_delete" => {
            let p: UserParams = parse(body)?;
            rooms.delete_user(&p.user).await?;
            empty()
        }
        "user_exists" => {
            let p: UserParams = parse(body)?;
            Ok(json!({ "exists": rooms.has_user(&p.user).await? }))
        }
        "direct_list_add" | "direct_list_remove" => {
            let p: DirectListParams = parse(body)?;
            let list = DirectList::parse(&p.list)?;
            if method == "direct_list_add" {
                rooms.direct_add_to_list(&p.user, list, &p.names).await?;
            } else {
                rooms
                    .direct_remove_from_list(&p.user, list, &p.names)
                    .await?;
            }
            empty()
        }
        "direct_set_whitelist_only" => {
            let p: DirectModeParams = parse(body)?;
            rooms
                .direct_set_whitelist_only(&p.user, p.whitelist_only)
                .await?;
            empty()
        }
        "direct_access" => {
            let p: DirectAccessParams = parse(body)?;
            let access = rooms.has_direct_access(&p.sender, &p.recipient).await?;
            Ok(json!({ "access": access }))
        }
        _ => Err(Error::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("no API method `{method}`"),
        )
        .into()),
    }
}

/// What `metadata_get` and `metadata_set` address.
enum MetaTarget {
    Conn(ConnId),
    User(String),
    Channel(String),
}

fn meta_target(
    conn: Option<String>,
    user: Option<String>,
    channel: Option<String>,
) -> Result<MetaTarget, Failure> {
    match (conn, user, channel) {
        (Some(conn), None, None) => Ok(MetaTarget::Conn(parse_conn(&conn)?)),
        (None, Some(user), None) => Ok(MetaTarget::User(non_empty("user", user)?)),
        (None, None, Some(channel)) => Ok(MetaTarget::Channel(channel)),
        _ => Err(bad_request("name exactly one of `conn`, `user`, `channel`")),
    }
}

/// A connection id exactly as the server writes it: 8 lower-case hex digits, `-`, at most 19
/// decimal digits (stricter than `ConnId::from_str`, which also takes `+` signs and capitals).
fn parse_conn(conn: &str) -> Result<ConnId, Failure> {
    let canonical = conn.split_once('-').is_some_and(|(node, seq)| {
        node.len() == 8
            && node.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && (1..=19).contains(&seq.len())
            && seq.bytes().all(|b| b.is_ascii_digit())
    });
    canonical
        .then(|| conn.parse().ok())
        .flatten()
        .ok_or_else(|| bad_request(format!("`{conn}` is not a connection id")))
}

fn non_empty(field: &str, value: String) -> Result<String, Failure> {
    if value.is_empty() {
        return Err(bad_request(format!("`{field}` must not be empty")));
    }
    Ok(value)
}

fn payload(
    data: Option<DataField>,
    binary: Option<BinaryField>,
    node: &Node,
) -> Result<Payload, Failure> {
    PayloadParams { data, binary }.payload(node)
}

fn payload_fields(payload: &Payload) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    match payload {
        Payload::Json(raw) => {
            map.insert(
                "data".into(),
                serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            );
        }
        Payload::Binary(_) => {
            let (_, binary) = payload.to_fields();
            map.insert(
                "binary".into(),
                serde_json::to_value(binary).unwrap_or(Value::Null),
            );
        }
    }
    map
}

fn publication_json(p: &Publication) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("offset".into(), p.offset.into());
    map.extend(payload_fields(&p.payload));
    if let Some(event) = &p.event {
        map.insert("event".into(), event.to_string().into());
    }
    if let Some(publisher) = &p.publisher {
        let mut info = serde_json::Map::new();
        info.insert("conn".into(), publisher.conn.to_string().into());
        if let Some(user) = &publisher.user {
            info.insert("user".into(), user.to_string().into());
        }
        if let Some(Payload::Json(raw)) = &publisher.info {
            info.insert(
                "info".into(),
                serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            );
        }
        map.insert("publisher".into(), info.into());
    }
    map.into()
}

fn presence_json(e: &PresenceEntry) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("conn".into(), e.conn.to_string().into());
    if let Some(user) = &e.user {
        map.insert("user".into(), user.to_string().into());
    }
    for (key, value) in [("info", &e.info), ("state", &e.state)] {
        if let Some(Payload::Json(raw)) = value {
            map.insert(
                key.into(),
                serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            );
        }
    }
    map.into()
}

#[derive(Serialize)]
struct Position {
    offset: u64,
    epoch: String,
}

fn require_history(node: &Node, channel: &str) -> Result<(), Failure> {
    plexus_core::channels::validate_channel(channel, node.limits().max_channel_bytes)?;
    if node
        .channels()
        .namespace(channel)
        .is_some_and(|ns| ns.history.is_some())
    {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::NOT_AVAILABLE,
        format!("no history is kept for `{channel}`"),
    )
    .into())
}

async fn dispatch(state: &ApiState, method: &str, body: &[u8]) -> Result<Value, Failure> {
    let node = &state.node;
    let empty = || Ok(json!({}));
    match method {
        "publish" => {
            let p: PublishParams = parse(body)?;
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let exclude = ExcludeParams::parse(p.exclude)?;
            let position = node.publish_with(&p.channel, emit, None, exclude).await?;
            Ok(json!(Position {
                offset: position.offset,
                epoch: position.epoch.to_string()
            }))
        }
        "broadcast" => {
            let p: BroadcastParams = parse(body)?;
            if p.channels.is_empty() {
                return Err(bad_request("`channels` must not be empty"));
            }
            let max = state.options.broadcast_max_channels;
            if p.channels.len() > max {
                return Err(Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!("at most {max} channels per broadcast"),
                )
                .into());
            }
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let mut responses = Vec::with_capacity(p.channels.len());
            for channel in p.channels {
                responses.push(match node.publish(&channel, emit.clone()).await {
                    Ok(pos) => json!({"channel": channel, "offset": pos.offset, "epoch": pos.epoch.to_string()}),
                    Err(e) => json!({"channel": channel, "error": {"code": e.code.0, "message": e.message}}),
                });
            }
            Ok(json!({ "responses": responses }))
        }
        "send" => {
            let p: SendParams = parse(body)?;
            let user = non_empty("user", p.user)?;
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let exclude = ExcludeParams::parse(p.exclude)?;
            node.send_to_user(&user, emit, exclude).await?;
            empty()
        }
        "send_all" => {
            let p: SendAllParams = parse(body)?;
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let exclude = ExcludeParams::parse(p.exclude)?;
            node.broadcast(emit, exclude).await?;
            empty()
        }
        "send_connection" => {
            let p: SendConnectionParams = parse(body)?;
            let conn = parse_conn(&p.conn)?;
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let delivered = node.send_to_connection(conn, emit).await?;
            Ok(json!({ "delivered": delivered }))
        }
        "mesa_dispatch" => {
            let p: MesaDispatchParams = parse(body)?;
            users("recipients", &p.recipients)?;
            users("excluding", &p.excluding)?;
            if p.d.is_none() {
                return Err(bad_request("`d` is required"));
            }
            let d = payload(p.d, None, node)?;
            if let Some(t) = &p.t {
                validate_event(t)?;
            }
            let message = crate::mesa::MesaMessage {
                t: p.t,
                d,
                sync: p.sync,
            };
            let recipients: Vec<&str> = p.recipients.iter().map(String::as_str).collect();
            let excluding: Vec<&str> = p.excluding.iter().map(String::as_str).collect();
            let report = mesa(state)?
                .dispatch(&message, &recipients, &excluding)
                .await?;
            Ok(json!(report))
        }
        "mesa_disconnect" => {
            let p: MesaDisconnectParams = parse(body)?;
            users("recipients", &p.recipients)?;
            if p.recipients.is_empty() {
                return Err(bad_request("`recipients` must not be empty"));
            }
            let recipients: Vec<&str> = p.recipients.iter().map(String::as_str).collect();
            mesa(state)?.disconnect(&recipients).await?;
            empty()
        }
        "mesa_portal_take" => {
            let p: PortalTakeParams = parse(body)?;
            let worker = non_empty("worker", p.worker)?;
            if worker.len() > 200 || worker.chars().any(char::is_control) {
                return Err(bad_request(
                    "`worker` must be at most 200 bytes, with no control characters",
                ));
            }
            let max = p.max.map_or(100, size);
            if !(1..=MAX_PORTAL_TAKE).contains(&max) {
                return Err(bad_request(format!(
                    "`max` must be between 1 and {MAX_PORTAL_TAKE}"
                )));
            }
            let wait = p.wait_ms.map_or(0, |w| w.0);
            if wait > MAX_PORTAL_WAIT_MS {
                return Err(bad_request(format!(
                    "`wait_ms` must be at most {MAX_PORTAL_WAIT_MS}"
                )));
            }
            let mesa = mesa_queue(state)?;
            let deadline = Instant::now() + Duration::from_millis(wait);
            let taken = loop {
                let taken = mesa.portal_take(&worker, max).await?;
                if !taken.is_empty() || Instant::now() + PORTAL_POLL > deadline {
                    break taken;
                }
                tokio::time::sleep(PORTAL_POLL).await;
            };
            let events: Vec<Value> = taken
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "redeliveries": t.redeliveries,
                        "event": serde_json::to_value(&t.event).unwrap_or(Value::Null),
                    })
                })
                .collect();
            Ok(json!({ "events": events }))
        }
        "mesa_portal_ack" => {
            let p: PortalAckParams = parse(body)?;
            if p.ids.len() > MAX_PORTAL_TAKE {
                return Err(Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!("`ids` names at most {MAX_PORTAL_TAKE} events"),
                )
                .into());
            }
            let acked = mesa_queue(state)?.portal_ack(&p.ids).await?;
            Ok(json!({ "acked": acked }))
        }
        "send_durable" => {
            let p: SendDurableParams = parse(body)?;
            let user = non_empty("user", p.user)?;
            let payload = payload(p.data, p.binary, node)?;
            let ttl = p.ttl_ms.map(|t| Duration::from_millis(t.0));
            if ttl.is_some_and(|t| t.is_zero()) {
                return Err(bad_request("`ttl_ms` must be positive"));
            }
            let outcome = node.send_durable(&user, payload, ttl).await?;
            Ok(json!({ "registered": outcome.registered, "seq": outcome.seq }))
        }
        "mailbox" => {
            let p: MailboxParams = parse(body)?;
            let user = non_empty("user", p.user)?;
            let limit = p.limit.map_or(MAILBOX_DEFAULT, |l| {
                usize::try_from(l.0).unwrap_or(usize::MAX)
            });
            if limit == 0 {
                return Err(bad_request("`limit` must be greater than 0"));
            }
            let registered = node.is_registered(&user).await?;
            let pending = node.pending_mail(&user).await?;
            let messages: Vec<Value> = pending
                .iter()
                .take(limit)
                .map(|m| {
                    let mut map = payload_fields(&m.payload);
                    map.insert("seq".into(), m.seq.into());
                    map.insert("sent_ms".into(), m.sent_ms.into());
                    map.into()
                })
                .collect();
            Ok(json!({
                "registered": registered,
                "pending": pending.len(),
                "messages": messages,
            }))
        }
        "disconnect" => {
            let p: DisconnectParams = parse(body)?;
            let code = p.code.unwrap_or(CloseCode::DISCONNECTED.0);
            if !(4000..=4999).contains(&code) {
                return Err(bad_request("`code` must be between 4000 and 4999"));
            }
            let mut reason = p
                .reason
                .unwrap_or_else(|| "disconnected by the server".into());
            if reason.chars().count() > 100 {
                return Err(bad_request("`reason` must be at most 100 characters"));
            }
            // A close frame carries at most 123 bytes of reason: cut at a character boundary.
            while reason.len() > 100 {
                reason.pop();
            }
            match (p.user, p.conn) {
                (Some(user), None) => {
                    let user = non_empty("user", user)?;
                    node.disconnect_user(&user, CloseCode(code), &reason)
                        .await?
                }
                (None, Some(conn)) => {
                    let conn = parse_conn(&conn)?;
                    node.disconnect_connection(conn, CloseCode(code), &reason)
                        .await?
                }
                _ => return Err(bad_request("name exactly one of `user` and `conn`")),
            }
            empty()
        }
        "subscribe" | "unsubscribe" => {
            let p: UserChannelParams = parse(body)?;
            let user = non_empty("user", p.user)?;
            plexus_core::channels::validate_channel(&p.channel, node.limits().max_channel_bytes)?;
            if method == "subscribe" {
                node.subscribe_user(&user, &p.channel).await?;
            } else {
                node.unsubscribe_user(&user, &p.channel).await?;
            }
            empty()
        }
        "channels" => {
            let p: ChannelsParams = parse(body)?;
            let max = state.options.channels_max;
            let limit = p
                .limit
                .map_or(max, |l| usize::try_from(l.0).unwrap_or(max).min(max));
            // Every node lists its channels (the first `limit` by name); a channel with
            // subscribers on many nodes is one entry with their sum.
            let query = InspectQuery {
                channels: Some(ChannelsQuery {
                    prefix: p.prefix.unwrap_or_default(),
                    limit,
                }),
                ..InspectQuery::default()
            };
            let inspection = node.inspect(query, INSPECT_WAIT).await?;
            let mut merged: std::collections::BTreeMap<String, u64> = Default::default();
            let mut total = 0;
            for answer in &inspection.answers {
                total = total.max(answer.channels_total as usize);
                for c in &answer.channels {
                    *merged.entry(c.channel.clone()).or_default() += c.subscribers;
                }
            }
            let total = total.max(merged.len());
            let channels: Vec<_> = merged
                .into_iter()
                .take(limit)
                .map(|(channel, subscribers)| json!({"channel": channel, "subscribers": subscribers}))
                .collect();
            Ok(json!({ "channels": channels, "total": total, "missing": inspection.missing }))
        }
        "info" => {
            let _: InfoParams = parse(body)?;
            // The live nodes, as the engine knows them (just this one in a single process).
            let mut nodes: Vec<Value> = match node.engine().broker.nodes().await {
                Ok(list) => list
                    .iter()
                    .map(|n| json!({"node": n.id, "connections": n.connections, "seen_ms": n.seen_ms}))
                    .collect(),
                Err(_) => Vec::new(),
            };
            if nodes.is_empty() {
                nodes.push(json!({"node": node.id().to_string(), "connections": node.connection_count(), "seen_ms": 0}));
            }
            let engine = node.engine().broker.health();
            let stats = node.stats();
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            Ok(json!({
                "node": node.id().to_string(),
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_ms": state.stats.uptime().as_millis() as u64,
                "connections": node.connection_count(),
                "users": node.hub().user_count(),
                "channels": node.active_channels().len(),
                "shutting_down": node.is_shutting_down(),
                "nodes": nodes,
                "engine": {"healthy": engine.healthy, "detail": engine.detail},
                "counters": {
                    "connections_opened": load(&stats.connections_opened),
                    "connections_closed": load(&stats.connections_closed),
                    "messages_in": load(&stats.messages_in),
                    "messages_out": load(&stats.messages_out),
                    "bytes_in": load(&stats.bytes_in),
                    "bytes_out": load(&stats.bytes_out),
                    "publications": load(&stats.publications),
                    "deliveries": load(&stats.deliveries),
                    "slow_consumer_closes": load(&stats.slow_consumer_closes),
                    "auth_failures": load(&stats.auth_failures),
                    "commands": load(&stats.commands),
                    "command_errors": load(&stats.command_errors),
                }
            }))
        }
        "nodes" => {
            let _: InfoParams = parse(body)?;
            let inspection = node.inspect(InspectQuery::default(), INSPECT_WAIT).await?;
            let nodes: Vec<_> = inspection.answers.iter().map(|a| &a.report).collect();
            Ok(json!({ "nodes": nodes, "missing": inspection.missing }))
        }
        "connections" => {
            let p: ConnectionsParams = parse(body)?;
            let user = p.user.map(|u| non_empty("user", u)).transpose()?;
            let conn = p.conn.as_deref().map(parse_conn).transpose()?;
            let limit = p.limit.map_or(CONNECTIONS_DEFAULT, |l| {
                usize::try_from(l.0)
                    .unwrap_or(CONNECTIONS_MAX)
                    .min(CONNECTIONS_MAX)
            });
            if limit == 0 {
                return Err(bad_request("`limit` must be greater than 0"));
            }
            let query = InspectQuery {
                user,
                conn,
                limit,
                channels: None,
            };
            let inspection = node.inspect(query, INSPECT_WAIT).await?;
            let truncated = inspection.answers.iter().any(|a| a.truncated);
            let mut connections: Vec<_> = inspection
                .answers
                .into_iter()
                .flat_map(|a| a.connections)
                .collect();
            connections.sort_by_key(|c| c.conn.parse::<ConnId>().ok());
            let truncated = truncated || connections.len() > limit;
            connections.truncate(limit);
            Ok(json!({
                "connections": connections,
                "truncated": truncated,
                "missing": inspection.missing,
            }))
        }
        "history" => {
            let p: HistoryParams = parse(body)?;
            require_history(node, &p.channel)?;
            let max = state.options.history_max;
            let limit = p
                .limit
                .map_or(max, |l| usize::try_from(l.0).unwrap_or(max).min(max));
            let query = HistoryQuery {
                since: p.since.map(|s| s.0),
                limit,
                reverse: p.reverse,
            };
            let page = node
                .engine()
                .broker
                .history(&p.channel, query)
                .await
                .map_err(engine_failure)?;
            let publications: Vec<_> = page.publications.iter().map(publication_json).collect();
            Ok(json!({
                "publications": publications,
                "offset": page.position.offset,
                "epoch": page.position.epoch.to_string(),
            }))
        }
        "history_remove" => {
            let p: ChannelParams = parse(body)?;
            require_history(node, &p.channel)?;
            node.engine()
                .broker
                .remove_history(&p.channel)
                .await
                .map_err(engine_failure)?;
            empty()
        }
        "presence" => {
            let p: ChannelParams = parse(body)?;
            plexus_core::channels::validate_channel(&p.channel, node.limits().max_channel_bytes)?;
            let members = node.presence(&p.channel).await?;
            let members: Vec<_> = members.iter().map(presence_json).collect();
            Ok(json!({ "members": members }))
        }
        "presence_stats" => {
            let p: ChannelParams = parse(body)?;
            plexus_core::channels::validate_channel(&p.channel, node.limits().max_channel_bytes)?;
            let s = node.presence_stats(&p.channel).await?;
            Ok(json!({ "connections": s.connections, "users": s.users }))
        }
        "metadata_get" => {
            let p: MetadataGetParams = parse(body)?;
            let value = match meta_target(p.conn, p.user, p.channel)? {
                MetaTarget::Conn(conn) => node.connection_metadata(conn).await?,
                MetaTarget::User(user) => node.user_metadata(&user).await?,
                MetaTarget::Channel(channel) => {
                    plexus_core::channels::validate_channel(
                        &channel,
                        node.limits().max_channel_bytes,
                    )?;
                    node.channel_metadata(&channel).await?
                }
            };
            Ok(json!({ "value": value }))
        }
        "metadata_set" => {
            let p: MetadataSetParams = parse(body)?;
            match meta_target(p.conn, p.user, p.channel)? {
                MetaTarget::Conn(conn) => node
                    .set_connection_metadata(conn, p.value, p.merge)
                    .await
                    .map_err(|e| match e.code {
                        // The only bad request left here: no such connection.
                        ErrorCode::BAD_REQUEST => Failure(StatusCode::NOT_FOUND, e),
                        _ => e.into(),
                    })?,
                MetaTarget::User(user) => node.set_user_metadata(&user, p.value, p.merge).await?,
                MetaTarget::Channel(channel) => {
                    node.set_channel_metadata(&channel, p.value, p.merge)
                        .await?
                }
            }
            empty()
        }
        "record_get" => {
            let p: RecordIdParams = parse(body)?;
            let record = node.record(&p.id).await?;
            Ok(json!({
                "id": p.id,
                "value": record.as_ref().map_or(Value::Null, |r| r.value.clone()),
                "version": record.as_ref().map_or(0, |r| r.version),
                "epoch": record.as_ref().map_or("", |r| &*r.epoch),
            }))
        }
        "record_set" | "record_patch" | "record_delete" => {
            let p: RecordWriteParams = parse(body)?;
            let write = match (method, p.value, p.patch) {
                ("record_set", Some(value), None) => RecordWrite::Set(value),
                ("record_patch", None, Some(patch)) => RecordWrite::Patch(patch),
                ("record_delete", None, None) => RecordWrite::Delete,
                ("record_set", ..) => return Err(bad_request("`record_set` takes `value`")),
                ("record_patch", ..) => return Err(bad_request("`record_patch` takes `patch`")),
                _ => {
                    return Err(bad_request(
                        "`record_delete` takes neither `value` nor `patch`",
                    ));
                }
            };
            let written = node
                .write_record(&p.id, write, p.expect.map(|e| e.0))
                .await?;
            Ok(json!({"version": written.version, "epoch": &*written.epoch}))
        }
        "notify" => {
            let p: NotifyParams = parse(body)?;
            let emit = emit(p.event, payload(p.data, p.binary, node)?)?;
            let exclude = ExcludeParams::parse(p.exclude)?;
            node.notify(&p.channel, emit, exclude).await?;
            empty()
        }
        "identity_notify" => {
            let p: IdentityNotifyParams = parse(body)?;
            let data = p.data.unwrap_or(Value::Null);
            let notified =
                crate::endpoint::identity::notify(node, &p.identity, p.event.as_deref(), data)
                    .await?;
            Ok(json!({"notified": notified}))
        }
        "chat_exec" => {
            let p: ChatExecParams = parse(body)?;
            let Some(chat) = &state.chat_service else {
                return Err(Error::new(
                    ErrorCode::NOT_AVAILABLE,
                    "this server does not serve chat-service (`[chat_service]`)",
                )
                .into());
            };
            let context = ExecContext {
                user: p.user,
                id: p.id,
                bypass_permissions: p.bypass_permissions,
                bypass_hooks: p.bypass_hooks,
            };
            // The command's outcome is the answer, as a socket's ack is: its results, or
            // chat-service's error (`{name, code, args}` with its message).
            match chat.exec_user_command(context, &p.command, p.args).await {
                Ok(results) => Ok(json!({"results": results})),
                Err(e) => {
                    let mut error = e.raw();
                    let message = e.message();
                    let message = message
                        .strip_prefix("ChatServiceError: ")
                        .unwrap_or(&message);
                    error["message"] = json!(message);
                    Ok(json!({"error": error}))
                }
            }
        }
        _ => dispatch_rooms(node, method, body).await,
    }
}

fn engine_failure(e: plexus_core::EngineError) -> Failure {
    match e {
        plexus_core::EngineError::Limit(m) => Error::new(ErrorCode::LIMIT_EXCEEDED, m).into(),
        plexus_core::EngineError::Unavailable(m) => Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::internal(format!("engine unavailable: {m}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "apikey s3cret".parse().unwrap());
        assert_eq!(given_key(&h), Some("s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(given_key(&h), None);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k".parse().unwrap());
        assert_eq!(given_key(&h), Some("k"));
        assert!(same_key(b"abc", b"abc"));
        assert!(!same_key(b"abc", b"abd"));
        assert!(!same_key(b"ab", b"abc"));
    }

    #[test]
    fn every_method_has_a_stats_slot() {
        let stats = ApiStats::default();
        for m in METHODS {
            assert_eq!(stats.calls(Some(m)), (0, 0));
        }
        assert_eq!(slot(Some("nope")), METHODS.len());
    }
}

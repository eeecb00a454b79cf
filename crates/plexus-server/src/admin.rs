//! The admin web interface at `/admin` (`docs/admin.md`): an operator logs in with the admin
//! password (not the API key) and sees the nodes, channels and connections, tails a channel,
//! publishes and disconnects.
//!
//! - **Login**: `POST /admin/login` with `{"password"}` (JSON only, so a cross-site form cannot
//!   post it) sets a session cookie: random, `HttpOnly`, `SameSite=Strict`, `Path=/admin`,
//!   `Secure` when configured or when the request came through a TLS proxy
//!   (`X-Forwarded-Proto: https`). Sessions expire after `session_ttl` and are bounded
//!   (`sessions_max`: the oldest goes first).
//! - **A bound on failed logins**: after `login_failures_max` failures within `login_window`,
//!   every login (even a right one) is refused with 429 and `Retry-After` until the oldest of
//!   them leaves the window. The bound is global, not per address: behind a proxy every
//!   address is the proxy's, and a guesser must not get more tries by changing address.
//! - **CSRF**: every state-changing request (`/admin/api/…`, logout) carries the session's
//!   token in `X-CSRF-Token`, which only a page of this origin can read (`GET
//!   /admin/session`); a missing or wrong token is refused with 403.
//! - **The API**: `POST /admin/api/<method>` runs the HTTP API's methods ([`ADMIN_METHODS`]) as
//!   `/api/` does, and `tail` / `untail` subscribe the page's own connection (an observer,
//!   opened at `GET /admin/ws`: in no presence, echoed to nobody) to a channel.
//!
//! The page (`assets/admin/`) is plain HTML, CSS and JavaScript embedded in the binary; it uses
//! the TypeScript client the demo page embeds (served again under `/admin/client/`).

use crate::ServerState;
use crate::api::{ApiHandle, same_key};
use crate::assets::{Asset, CSS, HTML, JS, SVG, asset};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use plexus_core::{ConnId, ErrorCode, Identity};
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
const COOKIE: &str = "plexus_admin";
/// The header that carries the CSRF token.
const CSRF_HEADER: &str = "x-csrf-token";
/// The largest body of a login or of an admin call that is not an API call.
const SMALL_BODY_BYTES: usize = 4096;
/// The user the page's own connection (the live tail) has.
pub const OBSERVER_USER: &str = "plexus-admin";

/// The HTTP API methods the admin interface may call.
pub const ADMIN_METHODS: &[&str] = &[
    "info",
    "nodes",
    "connections",
    "channels",
    "presence",
    "presence_stats",
    "history",
    "publish",
    "disconnect",
    "metadata_get",
    "mailbox",
    "send_durable",
];

/// Options of the admin interface.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// What logs in (a password or a token; at least 12 characters in a configuration).
    pub password: String,
    /// A session ends this long after its login.
    pub session_ttl: Duration,
    /// Sessions at once; a login beyond ends the oldest.
    pub sessions_max: usize,
    /// Failed logins within `login_window` after which logins are refused (429).
    pub login_failures_max: usize,
    pub login_window: Duration,
    /// Always mark the cookie `Secure` (the server is reached over HTTPS).
    pub secure_cookie: bool,
    /// The password was made up at startup (development mode): the log shows it.
    pub generated: bool,
}

impl AdminOptions {
    pub fn new(password: impl Into<String>) -> AdminOptions {
        AdminOptions {
            password: password.into(),
            session_ttl: Duration::from_secs(8 * 3600),
            sessions_max: 64,
            login_failures_max: 10,
            login_window: Duration::from_secs(60),
            secure_cookie: false,
            generated: false,
        }
    }

    /// Development mode's: a random password, shown in the log.
    pub fn generated() -> AdminOptions {
        AdminOptions {
            generated: true,
            ..AdminOptions::new(crate::config::random_hex(12))
        }
    }
}

struct Session {
    csrf: String,
    created: Instant,
}

/// The admin interface's sessions and failed logins (kept by the server, shared by every
/// router it makes).
pub(crate) struct AdminState {
    pub(crate) options: AdminOptions,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl AdminState {
    pub(crate) fn new(options: AdminOptions) -> AdminState {
        AdminState {
            options,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(VecDeque::new()),
        }
    }

    /// How long logins stay refused, when too many failed recently.
    fn locked_for(&self, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap();
        let window = self.options.login_window;
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            failures.pop_front();
        }
        (failures.len() >= self.options.login_failures_max.max(1))
            .then(|| window.saturating_sub(now.duration_since(failures[0])))
    }

    fn failed(&self, now: Instant) {
        let mut failures = self.failures.lock().unwrap();
        failures.push_back(now);
        // Only the last `login_failures_max` decide the lock.
        while failures.len() > self.options.login_failures_max.max(1) {
            failures.pop_front();
        }
    }

    /// A new session: its id (the cookie) and its CSRF token.
    fn open(&self, now: Instant) -> (String, String) {
        let id = crate::config::random_hex(32);
        let csrf = crate::config::random_hex(32);
        let mut sessions = self.sessions.lock().unwrap();
        let ttl = self.options.session_ttl;
        sessions.retain(|_, s| now.duration_since(s.created) < ttl);
        while sessions.len() >= self.options.sessions_max.max(1) {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => sessions.remove(&id),
                None => break,
            };
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
            },
        );
        (id, csrf)
    }

    /// The session the request's cookie names (its id and CSRF token), if it is live.
    fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap();
        let session = sessions.get(id)?;
        if session.created.elapsed() >= self.options.session_ttl {
            sessions.remove(id);
            return None;
        }
        Some((id.to_owned(), session.csrf.clone()))
    }

    fn close(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
}

#[derive(Clone)]
struct Ctx {
    server: Arc<ServerState>,
    admin: Arc<AdminState>,
    api: ApiHandle,
}

/// The admin routes (none when the interface is off).
pub(crate) fn router(server: Arc<ServerState>, api: ApiHandle) -> Router {
    let Some(admin) = server.admin.clone() else {
        return Router::new();
    };
    let mut router = Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .route("/admin/session", get(session))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/api/{method}", post(call))
        .route("/admin/ws", get(ws));
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    for (name, body) in crate::demo::client_files() {
        let path = format!("/admin/client/{name}");
        router = router.route(
            &path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, JS),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }),
        );
    }
    router.with_state(Ctx { server, admin, api })
}

const ASSETS: &[Asset] = &[
    asset!("admin", "index.html", HTML),
    asset!("admin", "app.js", JS),
    asset!("admin", "charts.js", JS),
    asset!("admin", "style.css", CSS),
    asset!("admin", "icon.svg", SVG),
];

/// Headers of every page and asset: revalidate always (a rebuilt server serves its own page),
/// no framing, no referrer, and scripts, styles and connections from this origin only.
fn serve(asset: &'static Asset) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response();
    secure_headers(response.headers_mut());
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

async fn page() -> Response {
    serve(&ASSETS[0])
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"error": {"code": code.0, "message": message}})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::UNAUTHORIZED,
        "log in to the admin interface",
    )
}

/// A request refused before it did anything: its answer, made when it is sent.
enum Refusal {
    NoSession,
    BadCsrf,
    TooLarge,
    BadBody(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoSession => unauthorized(),
            Refusal::BadCsrf => error(
                StatusCode::FORBIDDEN,
                ErrorCode::PERMISSION_DENIED,
                "missing or wrong CSRF token (X-CSRF-Token)",
            ),
            Refusal::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::LIMIT_EXCEEDED,
                "body too large",
            ),
            Refusal::BadBody(message) => error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BAD_REQUEST,
                &format!("invalid body: {message}"),
            ),
        }
    }
}

fn no_store(value: serde_json::Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /admin/session`: whether the cookie names a live session, and its CSRF token.
async fn session(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    match ctx.admin.session(&headers) {
        Some((_, csrf)) => no_store(json!({
            "authenticated": true,
            "csrf": csrf,
            "node": ctx.server.node.id().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "dev_mode": ctx.server.dev_mode,
        })),
        None => no_store(json!({"authenticated": false})),
    }
}

/// The session of a state-changing request, when its CSRF token is the session's.
fn checked(ctx: &Ctx, headers: &HeaderMap) -> Result<String, Refusal> {
    let Some((id, csrf)) = ctx.admin.session(headers) else {
        return Err(Refusal::NoSession);
    };
    let given = headers.get(CSRF_HEADER).map(|v| v.as_bytes());
    if !given.is_some_and(|g| same_key(g, csrf.as_bytes())) {
        return Err(Refusal::BadCsrf);
    }
    Ok(id)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn small_json<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, Refusal> {
    let bytes = axum::body::to_bytes(body, SMALL_BODY_BYTES)
        .await
        .map_err(|_| Refusal::TooLarge)?;
    serde_json::from_slice(&bytes).map_err(|e| Refusal::BadBody(e.to_string()))
}

fn session_cookie(ctx: &Ctx, headers: &HeaderMap, value: &str, max_age_s: u64) -> HeaderValue {
    let behind_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let secure = if ctx.admin.options.secure_cookie || behind_tls {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    );
    HeaderValue::from_str(&cookie).expect("a cookie of hex digits")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginParams {
    password: String,
}

/// `POST /admin/login`.
async fn login(State(ctx): State<Ctx>, headers: HeaderMap, body: Body) -> Response {
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BAD_REQUEST,
            "send the password as JSON (Content-Type: application/json)",
        );
    }
    let now = Instant::now();
    if let Some(wait) = ctx.admin.locked_for(now) {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TOO_MANY_REQUESTS,
            "too many failed logins: wait, then try again",
        );
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return response;
    }
    let params: LoginParams = match small_json(body).await {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(),
    };
    if !same_key(
        params.password.as_bytes(),
        ctx.admin.options.password.as_bytes(),
    ) {
        ctx.admin.failed(now);
        tracing::warn!("admin interface: a failed login");
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::AUTH_FAILED,
            "wrong password",
        );
    }
    let (id, csrf) = ctx.admin.open(now);
    let mut response = no_store(json!({"csrf": csrf}));
    let cookie = session_cookie(&ctx, &headers, &id, ctx.admin.options.session_ttl.as_secs());
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// `POST /admin/logout`.
async fn logout(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let id = match checked(&ctx, &headers) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    ctx.admin.close(&id);
    let mut response = no_store(json!({}));
    let cookie = session_cookie(&ctx, &headers, "", 0);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TailParams {
    channel: String,
    conn: String,
}

/// `POST /admin/api/<method>`.
async fn call(
    State(ctx): State<Ctx>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = checked(&ctx, &headers) {
        return refusal.into_response();
    }
    match method.as_str() {
        "tail" | "untail" => {
            let p: TailParams = match small_json(body).await {
                Ok(p) => p,
                Err(refusal) => return refusal.into_response(),
            };
            tail(&ctx, &p, method == "tail").await
        }
        m if ADMIN_METHODS.contains(&m) => ctx.api.call(m, body).await,
        _ => error(
            StatusCode::NOT_FOUND,
            ErrorCode::METHOD_NOT_FOUND,
            &format!("no admin method `{method}`"),
        ),
    }
}

/// Subscribes (or unsubscribes) the page's own observer connection to a channel.
async fn tail(ctx: &Ctx, p: &TailParams, on: bool) -> Response {
    let node = &ctx.server.node;
    let observer = p
        .conn
        .parse::<ConnId>()
        .ok()
        .and_then(|id| node.connection(id))
        .filter(|c| c.is_observer());
    let Some(conn) = observer else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NOT_FOUND,
            "no live-tail connection of the admin interface with this id on this node",
        );
    };
    let result = if on {
        node.subscribe_connection(conn.id, &p.channel).await
    } else {
        node.unsubscribe_connection(conn.id, &p.channel).await
    };
    match result {
        Ok(_) => no_store(json!({})),
        Err(e) if e.code == ErrorCode::ALREADY_SUBSCRIBED => no_store(json!({})),
        Err(e) => {
            let status = match e.code {
                ErrorCode::BAD_REQUEST | ErrorCode::BAD_CHANNEL => StatusCode::BAD_REQUEST,
                ErrorCode::LIMIT_EXCEEDED => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.code, &e.message)
        }
    }
}

/// `GET /admin/ws`: the page's own connection for the live tail, an observer with the user
/// [`OBSERVER_USER`]. A WebSocket request carries no CSRF header: it needs the session cookie
/// (which `SameSite=Strict` keeps from other sites) and, when the browser sends one, an
/// `Origin` of this host.
async fn ws(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let headers = req.headers();
    if ctx.admin.session(headers).is_none() {
        return unauthorized();
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host != host {
            return error(
                StatusCode::FORBIDDEN,
                ErrorCode::PERMISSION_DENIED,
                "cross-origin request",
            );
        }
    }
    crate::ws::upgrade_native(
        ctx.server.clone(),
        peer,
        req,
        Some(Identity::new(OBSERVER_USER)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_admin_file_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/admin");
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let served: BTreeSet<String> = ASSETS
            .iter()
            .map(|a| a.path.strip_prefix("/admin/").unwrap().to_owned())
            .collect();
        assert_eq!(served, on_disk, "list every file of assets/admin in ASSETS");
    }

    #[test]
    fn every_admin_method_is_an_api_method() {
        for m in ADMIN_METHODS {
            assert!(crate::api::METHODS.contains(m), "{m}");
        }
    }

    #[test]
    fn failed_logins_lock_until_the_window_passes() {
        let mut options = AdminOptions::new("correct horse battery");
        options.login_failures_max = 3;
        options.login_window = Duration::from_secs(60);
        let admin = AdminState::new(options);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(admin.locked_for(t0), None, "attempt {i}");
            admin.failed(t0);
        }
        assert_eq!(admin.locked_for(t0), Some(Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(59);
        assert_eq!(admin.locked_for(later), Some(Duration::from_secs(1)));
        assert_eq!(admin.locked_for(t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes() {
        let mut options = AdminOptions::new("correct horse battery");
        options.sessions_max = 2;
        let admin = AdminState::new(options);
        let t0 = Instant::now();
        let (a, _) = admin.open(t0);
        let (b, _) = admin.open(t0 + Duration::from_secs(1));
        let (c, _) = admin.open(t0 + Duration::from_secs(2));
        let sessions = admin.sessions.lock().unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(!sessions.contains_key(&a));
        assert!(sessions.contains_key(&b) && sessions.contains_key(&c));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; plexus_admin=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}

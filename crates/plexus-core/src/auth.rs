//! Authentication hooks: at the WebSocket upgrade, and in band (the `connect` request).

use crate::commands::BoxFuture;
use crate::error::Error;
use crate::ids::ConnId;
use crate::model::Identity;
use plexus_protocol::Payload;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the upgrade hook sees of the HTTP request that opens a connection.
#[derive(Clone, Debug, Default)]
pub struct UpgradeRequest {
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<(String, String)>,
    pub peer: Option<SocketAddr>,
    /// The wire dialect the connection speaks: `native` or `socketio`.
    pub dialect: &'static str,
    /// The transport the connection opens on: `websocket` or `polling` (a Socket.IO session
    /// may move from polling to WebSocket later).
    pub transport: &'static str,
}

impl UpgradeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's raw (still percent-encoded) value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// The upgrade hook's answer.
#[derive(Clone, Debug)]
pub enum UpgradeDecision {
    /// Open the connection, authenticated as this identity, or (with `None`) left to in-band
    /// authentication or anonymous use.
    Accept(Option<Identity>),
    /// Refuse with an HTTP status before any WebSocket exists (Plezi `pre_connect`).
    Refuse { status: u16, reason: String },
}

/// Decides at the upgrade (Plezi `pre_connect`).
pub trait UpgradeHook: Send + Sync + 'static {
    fn check(&self, request: Arc<UpgradeRequest>) -> BoxFuture<UpgradeDecision>;
}

impl<F, Fut> UpgradeHook for F
where
    F: Fn(Arc<UpgradeRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = UpgradeDecision> + Send + 'static,
{
    fn check(&self, request: Arc<UpgradeRequest>) -> BoxFuture<UpgradeDecision> {
        Box::pin(self(request))
    }
}

/// What the in-band hook sees: the `connect` request's token or credentials.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub conn: ConnId,
    pub token: Option<String>,
    pub credentials: Option<Payload>,
    pub upgrade: Arc<UpgradeRequest>,
}

/// Checks in-band credentials (Mesa's authentication handler). Errors go to the client; use
/// `ErrorCode::AUTH_FAILED` or `ErrorCode::TOKEN_EXPIRED`.
pub trait AuthHook: Send + Sync + 'static {
    fn authenticate(&self, request: AuthRequest) -> BoxFuture<Result<Identity, Error>>;
}

impl<F, Fut> AuthHook for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, Error>> + Send + 'static,
{
    fn authenticate(&self, request: AuthRequest) -> BoxFuture<Result<Identity, Error>> {
        Box::pin(self(request))
    }
}

/// How a node authenticates connections.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub upgrade: Option<Arc<dyn UpgradeHook>>,
    pub in_band: Option<Arc<dyn AuthHook>>,
    /// Whether a connection may be used without authenticating.
    pub anonymous: bool,
    /// Call the in-band hook even for a `connect` without token or credentials (it may decide
    /// from the upgrade's cookies and headers).
    pub hook_without_credentials: bool,
}

//! The standalone server's configuration: a TOML file, `PLEXUS_…` environment variables and
//! command-line flags, merged with an explicit precedence — **defaults < file < environment <
//! flags** — and checked once, before anything starts. Every problem is reported with where it
//! came from (`plexus.toml:12:1`, `environment variable PLEXUS_API_KEY`, `flag --listen`), all
//! of them at once. Unknown keys are errors.
//!
//! With a configuration file the defaults are secure: no anonymous connections, no channel
//! open to clients, no HTTP API without `api.key`, no metrics unless enabled. Without one
//! (`plexus serve` alone) the server runs in development mode: anonymous connections, every
//! channel open, the API without a key, metrics on.
//!
//! Every setting has an environment variable: `PLEXUS_` and its path in capitals with `_` for
//! `.` (`server.listen` → `PLEXUS_SERVER_LISTEN`). Lists and tables take TOML values
//! (`PLEXUS_NAMESPACES='[{name = "chat", channels = "chat:*", subscribe = "authenticated"}]'`);
//! a list of strings may also be written `a,b,c`. The walk-through is `docs/configuration.md`.

use crate::api::{ApiKey, ApiOptions, HttpEndpoints};
use crate::backend::{Backend, BackendHooks, BackendOptions, Notifications, rpc_command};
use crate::chatservice::{BackendChatHooks, ChatHooks, ChatServiceConfig, is_hook};
use crate::endpoint::backend::{
    self as endpoint_backend, EndpointSpec, HOOKS as ENDPOINT_HOOKS, Kind as EndpointKind,
};
use crate::endpoint::bus::PleziBusConfig;
use crate::endpoint::{EndpointLimits, UnknownEvent};
use crate::jwt::{JwtKeys, JwtVerifier};
use crate::mesa::{MesaConfig, PortalMode};
use crate::socketio::SocketIoConfig;
use crate::sockety::SocketyConfig;
use crate::tls::TlsConfig;
use crate::{Server, ServerBuilder};
use axum::http::{HeaderName, HeaderValue, Uri};
use plexus_core::auth::AuthRequest;
use plexus_core::channels::{
    Access, Action, ChannelMatch, ChannelPolicy, GuardRequest, JoinLeave, Namespace,
};
use plexus_core::{Error, ErrorCode, HistoryOptions, Limits, Payload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The whole configuration, as the file spells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `memory` (one process) or `redis` (many nodes sharing the `[redis]` server).
    pub engine: String,
    pub server: ServerSection,
    pub client: ClientSection,
    pub jwt: JwtSection,
    pub api: ApiSection,
    pub metrics: MetricsSection,
    pub backend: BackendSection,
    pub namespaces: Vec<NamespaceSection>,
    pub records: Vec<RecordSection>,
    pub redis: RedisSection,
    pub socketio: SocketIoSection,
    pub chat_service: ChatServiceSection,
    pub endpoints: Vec<EndpointSection>,
    pub plezi_bus: PleziBusSection,
    pub mesa: MesaSection,
    pub mesh: MeshSection,
    pub admin: AdminSection,
    pub sockety: SocketySection,
    pub tls: TlsSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: "memory".into(),
            server: ServerSection::default(),
            client: ClientSection::default(),
            jwt: JwtSection::default(),
            api: ApiSection::default(),
            metrics: MetricsSection::default(),
            backend: BackendSection::default(),
            namespaces: Vec::new(),
            records: Vec::new(),
            redis: RedisSection::default(),
            socketio: SocketIoSection::default(),
            chat_service: ChatServiceSection::default(),
            endpoints: Vec::new(),
            plezi_bus: PleziBusSection::default(),
            mesa: MesaSection::default(),
            mesh: MeshSection::default(),
            sockety: SocketySection::default(),
            tls: TlsSection::default(),
            admin: AdminSection::default(),
        }
    }
}

/// `[admin]`: the admin web interface at `/admin` (`docs/admin.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Default: on in development mode, off otherwise.
    pub enabled: bool,
    /// What logs in: at least 12 characters, not the API key. Development mode makes one up
    /// (shown in the log) when it is empty.
    pub password: String,
    pub session_ttl_ms: u64,
    pub sessions_max: u64,
    /// Failed logins within `login_window_ms` after which logins are refused for a while.
    pub login_failures_max: u64,
    pub login_window_ms: u64,
    /// Mark the session cookie `Secure` (HTTPS); behind a proxy that sends
    /// `X-Forwarded-Proto: https` it is marked anyway.
    pub secure_cookie: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        let d = crate::admin::AdminOptions::new("");
        AdminSection {
            enabled: false,
            password: String::new(),
            session_ttl_ms: d.session_ttl.as_millis() as u64,
            sessions_max: d.sessions_max as u64,
            login_failures_max: d.login_failures_max as u64,
            login_window_ms: d.login_window.as_millis() as u64,
            secure_cookie: d.secure_cookie,
        }
    }
}

/// `[[endpoints]]`: a WebSocket endpoint (`docs/endpoints.md`) whose handlers are the backend's
/// hooks (`backend.endpoints_url`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSection {
    /// Where it is mounted (`/chat`).
    pub path: String,
    /// The scope of its broadcasts (default: the path without its `/`).
    pub name: String,
    /// `dispatch` (JSON auto-dispatch), `raw` or `echo` (raw, writing every message back).
    pub mode: String,
    /// Auto-dispatch: an event nobody handles gets `not_found` (Plezi 0.12's 404 `err`) or
    /// `close` (4500).
    pub unknown_event: String,
    /// The hooks sent to `backend.endpoints_url`: `pre_connect`, `open`, `message` (raw),
    /// `event` (auto-dispatch), `close`, `shutdown`.
    pub hooks: Vec<String>,
    /// Limits of its own (0: the server's).
    pub max_message_bytes: u64,
    pub outbound_queue_bytes_max: u64,
    pub messages_per_second: u64,
    pub messages_burst: u64,
}

impl Default for EndpointSection {
    fn default() -> Self {
        EndpointSection {
            path: String::new(),
            name: String::new(),
            mode: "dispatch".into(),
            unknown_event: "not_found".into(),
            hooks: Vec::new(),
            max_message_bytes: 0,
            outbound_queue_bytes_max: 0,
            messages_per_second: 0,
            messages_burst: 0,
        }
    }
}

/// `[mesh]`: Mesh's protocol (`docs/mesh.md`) for clients of `@prsm/mesh`'s wire format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    /// Default: off. Development mode serves it at `/mesh` whatever this says.
    pub enabled: bool,
    pub path: String,
    /// Push `mesh/assign-id` with the connection's id right after the upgrade.
    pub assign_id: bool,
    /// `mesh/get-connection-metadata` may read other connections' metadata (Mesh's behaviour).
    pub metadata_readable: bool,
}

impl Default for MeshSection {
    fn default() -> Self {
        let d = crate::mesh::MeshConfig::default();
        MeshSection {
            enabled: false,
            path: d.path,
            assign_id: d.assign_id,
            metadata_readable: d.metadata_readable,
        }
    }
}

/// `[sockety]`: Sockety's binary protocol (`docs/sockety.md`) over TCP, TLS and WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketySection {
    /// Default: off. Development mode serves it whatever this says.
    pub enabled: bool,
    /// The WebSocket path (binary frames); empty: none.
    pub path: String,
    /// The plain TCP listener's address; empty: none (development mode: `127.0.0.1:8001`).
    pub listen: String,
    /// The TLS listener's address (needs `[tls]`); empty: none.
    pub tls_listen: String,
    pub channels: u64,
    pub timeout_ms: u64,
    pub max_data_bytes: u64,
    pub max_files: u64,
    pub max_files_bytes: u64,
    pub memory_file_bytes: u64,
    /// Where large received files are spooled; empty: the system's temporary directory.
    pub spool_dir: String,
    pub stream_buffer_bytes: u64,
}

impl Default for SocketySection {
    fn default() -> Self {
        let d = SocketyConfig::default();
        SocketySection {
            enabled: false,
            path: d.path.unwrap_or_default(),
            listen: String::new(),
            tls_listen: String::new(),
            channels: u64::from(d.channels),
            timeout_ms: d.timeout.as_millis() as u64,
            max_data_bytes: d.max_data_bytes,
            max_files: d.max_files as u64,
            max_files_bytes: d.max_files_bytes,
            memory_file_bytes: d.memory_file_bytes,
            spool_dir: String::new(),
            stream_buffer_bytes: d.stream_buffer_bytes as u64,
        }
    }
}

/// The `[mesh]` endpoint, when the file turns it on (development mode's default is the
/// builder's).
fn mesh_config(
    s: &MeshSection,
    taken: &[&str],
    err: &mut impl FnMut(&[Seg], String),
) -> Option<crate::mesh::MeshConfig> {
    if !s.enabled {
        return None;
    }
    let path_ok = s.path.starts_with('/')
        && s.path.len() <= 200
        && !s
            .path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '{' | '}'));
    if !path_ok {
        err(
            &key_path(&["mesh", "path"]),
            "must be a URL path such as `/mesh` (at most 200 bytes, no spaces, `?`, `#`, `{`, `}`)"
                .into(),
        );
    } else if ["/ws", "/health", "/metrics", "/"].contains(&s.path.as_str())
        || s.path.starts_with("/api/")
        || taken.contains(&s.path.as_str())
    {
        err(
            &key_path(&["mesh", "path"]),
            format!("`{}` is already served", s.path),
        );
    }
    Some(crate::mesh::MeshConfig {
        path: s.path.clone(),
        assign_id: s.assign_id,
        metadata_readable: s.metadata_readable,
    })
}

/// `[tls]`: the server's certificate and key (PEM files): `https://` and `wss://` on the HTTP
/// listener (with `http`), and Sockety's TLS listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    pub cert: String,
    pub key: String,
    pub http: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: String::new(),
            key: String::new(),
            http: true,
        }
    }
}

/// The development mode's Sockety TCP address (taken if free).
pub const DEV_SOCKETY_LISTEN: &str = "127.0.0.1:8001";

/// Checks `[sockety]`; its [`SocketyConfig`] when Sockety is served (`enabled`, or
/// development mode).
fn sockety_config(
    s: &SocketySection,
    dev_mode: bool,
    tls: bool,
    err: &mut impl FnMut(&[Seg], String),
) -> Option<SocketyConfig> {
    if !s.enabled && !dev_mode {
        return None;
    }
    let at = |key: &str| key_path(&["sockety", key]);
    let mut addr = |key: &str, value: &str| -> Option<SocketAddr> {
        if value.is_empty() {
            return None;
        }
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                err(
                    &at(key),
                    format!("`{value}` is not an address such as 127.0.0.1:8001"),
                );
                None
            }
        }
    };
    let listen_set = !s.listen.is_empty();
    let listen = if listen_set {
        addr("listen", &s.listen)
    } else if dev_mode {
        DEV_SOCKETY_LISTEN.parse().ok()
    } else {
        None
    };
    let tls_listen = addr("tls_listen", &s.tls_listen);
    if tls_listen.is_some() && !tls {
        err(
            &at("tls_listen"),
            "needs a certificate: set `tls.cert` and `tls.key`".into(),
        );
    }
    if s.channels == 0 || s.channels > 4096 {
        err(&at("channels"), "must be 1 to 4096".into());
    }
    if s.timeout_ms < 100 {
        err(&at("timeout_ms"), "must be at least 100".into());
    }
    if !s.path.is_empty() && !s.path.starts_with('/') {
        err(
            &at("path"),
            "must be a URL path such as `/sockety`, or empty".into(),
        );
    }
    if s.max_files > plexus_protocol::sockety::MAX_FILES as u64 {
        err(
            &at("max_files"),
            format!("at most {}", plexus_protocol::sockety::MAX_FILES),
        );
    }
    let d = SocketyConfig::default();
    Some(SocketyConfig {
        path: (!s.path.is_empty()).then(|| s.path.clone()),
        listen,
        // Development mode's default port is taken only if free; an address set is required.
        listen_best_effort: dev_mode && !listen_set,
        tls_listen,
        channels: s.channels.clamp(1, 4096) as u16,
        timeout: Duration::from_millis(s.timeout_ms.max(100)),
        max_data_bytes: s.max_data_bytes,
        max_files: s.max_files as usize,
        max_files_bytes: s.max_files_bytes,
        memory_file_bytes: s.memory_file_bytes,
        spool_dir: if s.spool_dir.is_empty() {
            d.spool_dir
        } else {
            s.spool_dir.clone().into()
        },
        stream_buffer_bytes: s.stream_buffer_bytes.max(1) as usize,
    })
}

/// `[mesa]`: Mesa's protocol (`docs/mesa.md`) for `@cryb/mesa` and `mesa-js-client` apps,
/// Mesa's server options under snake_case names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MesaSection {
    /// Default: off. Development mode serves it whatever this says.
    pub enabled: bool,
    pub path: String,
    /// Op 1 heartbeats every `client.ping_interval_ms`.
    pub heartbeat: bool,
    /// Advertised `c_reconnect_interval`; 0: none (Mesa's `reconnect.enabled = false`).
    pub reconnect_interval_ms: u64,
    /// Enforced: a connection not authenticated by then is closed with 4003.
    pub auth_timeout_ms: u64,
    pub send_user_object: bool,
    pub disconnect_on_fail: bool,
    /// Clients must send this `CLIENT_VERSION`; empty: not enforced.
    pub enforce_version: String,
    /// Keep messages for users with no connection; development mode turns it on unless set.
    pub sync: bool,
    pub redelivery_interval_ms: u64,
    /// Mesa's `namespace`: the suffix of its Redis names (`ws_<namespace>`).
    pub namespace: String,
    /// Where client events go: `off`, `queue` (at least once), `mesa` (Mesa's Portal format on
    /// Redis).
    pub portals: String,
    pub portal_group: String,
    pub portal_backlog_max: u64,
    pub portal_lease_ms: u64,
    pub distribute_load: bool,
}

impl Default for MesaSection {
    fn default() -> Self {
        let d = MesaConfig::default();
        MesaSection {
            enabled: false,
            path: d.path,
            heartbeat: d.heartbeat,
            reconnect_interval_ms: 0,
            auth_timeout_ms: d.auth_timeout_ms,
            send_user_object: d.send_user_object,
            disconnect_on_fail: d.disconnect_on_fail,
            enforce_version: String::new(),
            sync: d.sync,
            redelivery_interval_ms: d.redelivery_interval_ms,
            namespace: String::new(),
            portals: "off".into(),
            portal_group: d.portal_group,
            portal_backlog_max: d.portal_backlog_max as u64,
            portal_lease_ms: d.portal_lease_ms,
            distribute_load: d.distribute_load,
        }
    }
}

/// `[plezi_bus]`: Plezi's Redis formats (`docs/endpoints.md`), read by every node from the
/// `[redis]` server (needs `engine = "redis"`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PleziBusSection {
    /// Redis channel patterns (globs) on which Plezi 0.16 publishes raw messages: a message on
    /// Redis channel `X` reaches the subscribers of Plexus channel `X`.
    pub raw_channels: Vec<String>,
    /// Plezi 0.12's global channel (`Plezi::Settings.redis_channel_name`); empty: none.
    pub global_channel: String,
}

/// Patterns `[plezi_bus] raw_channels` may list.
const PLEZI_BUS_MAX_PATTERNS: usize = 100;

/// Checks `[plezi_bus]`; what to subscribe to, when anything.
fn plezi_bus_config(
    s: &PleziBusSection,
    redis: bool,
    err: &mut impl FnMut(&[Seg], String),
) -> Option<PleziBusConfig> {
    let at = |key: &str| key_path(&["plezi_bus", key]);
    let bad = |v: &str| v.is_empty() || v.len() > 255 || v.chars().any(char::is_control);
    if s.raw_channels.len() > PLEZI_BUS_MAX_PATTERNS {
        err(
            &at("raw_channels"),
            format!("at most {PLEZI_BUS_MAX_PATTERNS} patterns"),
        );
    }
    for (i, pattern) in s.raw_channels.iter().enumerate() {
        if bad(pattern) {
            err(
                &[
                    Seg::Key("plezi_bus".into()),
                    Seg::Key("raw_channels".into()),
                    Seg::Index(i),
                ],
                "must be 1 to 255 bytes, with no control characters".into(),
            );
        }
    }
    if !s.global_channel.is_empty() && bad(&s.global_channel) {
        err(
            &at("global_channel"),
            "must be at most 255 bytes, with no control characters".into(),
        );
    }
    let used = !s.raw_channels.is_empty() || !s.global_channel.is_empty();
    if used && !redis {
        err(
            &at(if s.global_channel.is_empty() {
                "raw_channels"
            } else {
                "global_channel"
            }),
            "Plezi's bus is Redis: needs `engine = \"redis\"`".into(),
        );
    }
    used.then(|| PleziBusConfig {
        raw_channels: s.raw_channels.clone(),
        global_channel: s.global_channel.clone(),
    })
}

/// Paths the server serves itself, which no endpoint may take.
const RESERVED_PATHS: [&str; 5] = ["/", "/ws", "/health", "/metrics", "/admin"];

/// Checks `[[endpoints]]`.
fn endpoint_specs(
    sections: &[EndpointSection],
    dialect_paths: &[&str],
    has_url: bool,
    err: &mut impl FnMut(&[Seg], String),
) -> Vec<EndpointSpec> {
    let mut specs = Vec::new();
    let mut paths = BTreeSet::new();
    for (i, e) in sections.iter().enumerate() {
        let at = |key: &str| {
            vec![
                Seg::Key("endpoints".into()),
                Seg::Index(i),
                Seg::Key(key.into()),
            ]
        };
        let taken = RESERVED_PATHS.contains(&e.path.as_str())
            || e.path.starts_with("/api/")
            || e.path.starts_with("/admin/")
            || dialect_paths
                .iter()
                .any(|p| e.path.trim_end_matches('/') == p.trim_end_matches('/'));
        if !e.path.starts_with('/') || e.path.contains(['?', '#', '{', '}', '*', ' ']) {
            err(
                &at("path"),
                format!("`{}` is not a path such as `/chat`", e.path),
            );
        } else if taken {
            err(
                &at("path"),
                format!("`{}` is served by the server itself", e.path),
            );
        } else if !paths.insert(e.path.clone()) {
            err(
                &at("path"),
                format!("`{}` is mounted by an earlier endpoint", e.path),
            );
        }
        let kind = match e.mode.as_str() {
            "dispatch" => EndpointKind::Dispatch,
            "raw" => EndpointKind::Raw,
            "echo" => EndpointKind::Echo,
            other => {
                err(
                    &at("mode"),
                    format!("`{other}` is none of `dispatch`, `raw`, `echo`"),
                );
                EndpointKind::Echo
            }
        };
        let unknown = match e.unknown_event.as_str() {
            "not_found" => UnknownEvent::NotFound,
            "close" => UnknownEvent::Close,
            other => {
                err(
                    &at("unknown_event"),
                    format!("`{other}` is neither `not_found` nor `close`"),
                );
                UnknownEvent::NotFound
            }
        };
        for hook in &e.hooks {
            let fits = match hook.as_str() {
                "message" => kind == EndpointKind::Raw,
                "event" => kind == EndpointKind::Dispatch,
                other => ENDPOINT_HOOKS.contains(&other),
            };
            if !ENDPOINT_HOOKS.contains(&hook.as_str()) {
                err(
                    &at("hooks"),
                    format!("`{hook}` is none of {}", ENDPOINT_HOOKS.join(", ")),
                );
            } else if !fits {
                err(
                    &at("hooks"),
                    format!("`{hook}` does not fit mode `{}`", e.mode),
                );
            }
        }
        if !e.hooks.is_empty() && !has_url {
            err(
                &at("hooks"),
                "needs `backend.endpoints_url`, where they are sent".into(),
            );
        }
        let own = |v: u64| (v > 0).then_some(v);
        let name = if e.name.is_empty() {
            e.path.trim_matches('/').replace('/', "_")
        } else {
            e.name.clone()
        };
        specs.push(EndpointSpec {
            path: e.path.clone(),
            name,
            kind,
            unknown,
            hooks: e.hooks.iter().cloned().collect(),
            limits: EndpointLimits {
                max_message_bytes: own(e.max_message_bytes).map(usize_of),
                outbound_queue_bytes_max: own(e.outbound_queue_bytes_max).map(usize_of),
                messages_per_second: own(e.messages_per_second)
                    .map(|v| v.min(u64::from(u32::MAX)) as u32),
                messages_burst: own(e.messages_burst).map(|v| v.min(u64::from(u32::MAX)) as u32),
            },
        });
    }
    specs
}

/// The longest authentication timeout and redelivery pause `[mesa]` takes.
const MESA_MAX_AUTH_TIMEOUT_MS: u64 = 3_600_000;
const MESA_MAX_REDELIVERY_INTERVAL_MS: u64 = 60_000;
/// The longest `enforce_version`, `namespace` and `portal_group`.
const MESA_MAX_NAME_BYTES: usize = 64;
/// The largest `portal_backlog_max`.
const MESA_MAX_PORTAL_BACKLOG: u64 = 10_000_000;

/// Checks `[mesa]`; its [`MesaConfig`] when Mesa is served (`enabled`, or development mode,
/// where sync is on unless set and op 2's `token` is the user id).
fn mesa_config(
    s: &MesaSection,
    dev_mode: bool,
    sync_set: bool,
    redis: bool,
    err: &mut impl FnMut(&[Seg], String),
) -> Option<MesaConfig> {
    let at = |key: &str| key_path(&["mesa", key]);
    if !s.path.starts_with('/')
        || s.path.len() > 200
        || s.path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '{' | '}'))
    {
        err(
            &at("path"),
            "must be a URL path such as `/mesa` (at most 200 bytes, no spaces, `?`, `#`, `{`, `}`)"
                .into(),
        );
    } else if ["/ws", "/health", "/metrics", "/"].contains(&s.path.as_str())
        || s.path.starts_with("/api/")
    {
        err(
            &at("path"),
            format!("`{}` is one of Plexus's own paths", s.path),
        );
    }
    if s.auth_timeout_ms == 0 || s.auth_timeout_ms > MESA_MAX_AUTH_TIMEOUT_MS {
        err(
            &at("auth_timeout_ms"),
            format!("must be between 1 and {MESA_MAX_AUTH_TIMEOUT_MS}"),
        );
    }
    if s.reconnect_interval_ms > MAX_TIMER_MS {
        err(
            &at("reconnect_interval_ms"),
            format!("must be at most {MAX_TIMER_MS}"),
        );
    }
    if s.redelivery_interval_ms > MESA_MAX_REDELIVERY_INTERVAL_MS {
        err(
            &at("redelivery_interval_ms"),
            format!("must be at most {MESA_MAX_REDELIVERY_INTERVAL_MS}"),
        );
    }
    for (key, value) in [
        ("enforce_version", &s.enforce_version),
        ("namespace", &s.namespace),
    ] {
        if value.len() > MESA_MAX_NAME_BYTES
            || value.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            err(
                &at(key),
                format!(
                    "must be at most {MESA_MAX_NAME_BYTES} bytes, with no spaces or control characters"
                ),
            );
        }
    }
    let portals = match s.portals.as_str() {
        "off" => PortalMode::Off,
        "queue" => PortalMode::Queue,
        "mesa" => {
            if !redis {
                err(
                    &at("portals"),
                    "`mesa` (Mesa's Portal format) needs `engine = \"redis\"`".into(),
                );
            }
            PortalMode::Mesa
        }
        other => {
            err(
                &at("portals"),
                format!("`{other}` is not `off`, `queue` or `mesa`"),
            );
            PortalMode::Off
        }
    };
    if s.portal_group.is_empty()
        || s.portal_group.len() > MESA_MAX_NAME_BYTES
        || s.portal_group.chars().any(char::is_control)
    {
        err(
            &at("portal_group"),
            format!("must be 1 to {MESA_MAX_NAME_BYTES} bytes, with no control characters"),
        );
    }
    if s.portal_backlog_max == 0 || s.portal_backlog_max > MESA_MAX_PORTAL_BACKLOG {
        err(
            &at("portal_backlog_max"),
            format!("must be between 1 and {MESA_MAX_PORTAL_BACKLOG}"),
        );
    }
    if s.portal_lease_ms < 100 || s.portal_lease_ms > MESA_MAX_AUTH_TIMEOUT_MS {
        err(
            &at("portal_lease_ms"),
            format!("must be between 100 and {MESA_MAX_AUTH_TIMEOUT_MS}"),
        );
    }
    let non_empty = |v: &String| Some(v.clone()).filter(|v| !v.is_empty());
    (s.enabled || dev_mode).then(|| MesaConfig {
        path: s.path.clone(),
        heartbeat: s.heartbeat,
        reconnect_interval_ms: Some(s.reconnect_interval_ms).filter(|ms| *ms > 0),
        auth_timeout_ms: s.auth_timeout_ms,
        send_user_object: s.send_user_object,
        disconnect_on_fail: s.disconnect_on_fail,
        enforce_version: non_empty(&s.enforce_version),
        sync: if dev_mode && !sync_set { true } else { s.sync },
        redelivery_interval_ms: s.redelivery_interval_ms,
        token_is_user: dev_mode,
        namespace: non_empty(&s.namespace),
        portals,
        portal_group: s.portal_group.clone(),
        portal_backlog_max: usize_of(s.portal_backlog_max),
        portal_lease_ms: s.portal_lease_ms,
        distribute_load: s.distribute_load,
    })
}

/// `[redis]`: the Redis engine (used with `engine = "redis"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// One Redis (`redis://`), or a Redis behind Sentinel (`redis+sentinel://`).
    pub url: String,
    /// A Redis Cluster: URLs of some of its nodes (`redis://host:port`); when set, `url` is not
    /// used and delivery between nodes goes through sharded pub/sub.
    pub cluster: Vec<String>,
    /// Prefix of every key and channel: one per application sharing the Redis.
    pub prefix: String,
    /// A presence member whose node stopped refreshing it is gone after this long.
    pub presence_ttl_ms: u64,
    /// A node that stopped announcing itself is dead after this long.
    pub node_ttl_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: "redis://127.0.0.1:6379/".into(),
            cluster: Vec::new(),
            prefix: "plexus".into(),
            presence_ttl_ms: 60_000,
            node_ttl_ms: 15_000,
        }
    }
}

/// `[chat_service]`: chat-service's protocol (`docs/chat-service.md`) in its Socket.IO
/// namespace — chat-service's options under their snake_case names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatServiceSection {
    /// Default: off. Development mode serves it whatever this says.
    pub enabled: bool,
    pub namespace: String,
    pub channel_prefix: String,
    pub enable_rooms_management: bool,
    pub enable_direct_messages: bool,
    pub enable_userlist_updates: bool,
    pub enable_access_lists_updates: bool,
    pub history_max_size: u64,
    pub history_max_get_messages: u64,
    pub room_list_size_limit: u64,
    pub direct_list_size_limit: u64,
    pub use_raw_error_objects: bool,
    /// Log sockets in from this handshake query parameter (development mode: `user`); empty:
    /// from the connection's identity.
    pub login_query: String,
    /// chat-service's hooks sent to `backend.chat_service_url` (`roomJoinBefore`, `onJoin`,
    /// `roomMessagesChecker`, …).
    pub backend_hooks: Vec<String>,
}

impl Default for ChatServiceSection {
    fn default() -> Self {
        let d = ChatServiceConfig::default();
        ChatServiceSection {
            enabled: false,
            namespace: d.namespace,
            channel_prefix: d.channel_prefix,
            enable_rooms_management: d.enable_rooms_management,
            enable_direct_messages: d.enable_direct_messages,
            enable_userlist_updates: d.enable_userlist_updates,
            enable_access_lists_updates: d.enable_access_lists_updates,
            history_max_size: d.history_max_size as u64,
            history_max_get_messages: d.history_max_get_messages as u64,
            room_list_size_limit: d.room_list_size_limit as u64,
            direct_list_size_limit: d.direct_list_size_limit as u64,
            use_raw_error_objects: d.use_raw_error_objects,
            login_query: String::new(),
            backend_hooks: Vec::new(),
        }
    }
}

/// Settings whose absence means something: `[socketio] enabled = false` given explicitly, and
/// which of `[chat_service]`'s keys that development mode turns on were set.
#[derive(Clone, Copy, Debug, Default)]
struct Explicit {
    socketio_off: bool,
    rooms_management: bool,
    direct_messages: bool,
    userlist_updates: bool,
    login_query: bool,
    mesa_sync: bool,
    /// `admin.enabled`, when set.
    admin_enabled: Option<bool>,
}

/// The most messages a room may keep, and the most names an access list may hold.
const CHAT_MAX_HISTORY: u64 = 1_000_000;
const CHAT_MAX_LIST: u64 = 1_000_000;

/// Checks `[chat_service]`; its [`ChatServiceConfig`] when the service is served (`enabled`,
/// or development mode, whose defaults turn on rooms management, direct messages, user list
/// updates and the `user` login parameter unless set).
fn chat_service_config(
    s: &ChatServiceSection,
    dev_mode: bool,
    explicit: Explicit,
    err: &mut impl FnMut(&[Seg], String),
) -> Option<ChatServiceConfig> {
    let at = |key: &str| key_path(&["chat_service", key]);
    if let Err(e) = socketio_namespace(&s.namespace) {
        err(&at("namespace"), e);
    }
    if s.channel_prefix.is_empty() {
        err(
            &at("channel_prefix"),
            "must not be empty (every channel would be a room)".into(),
        );
    } else if s.channel_prefix.chars().any(char::is_control) {
        err(
            &at("channel_prefix"),
            "must not contain control characters".into(),
        );
    }
    if s.history_max_size > CHAT_MAX_HISTORY {
        err(
            &at("history_max_size"),
            format!("must be at most {CHAT_MAX_HISTORY}"),
        );
    }
    if s.history_max_get_messages > CHAT_MAX_HISTORY {
        err(
            &at("history_max_get_messages"),
            format!("must be at most {CHAT_MAX_HISTORY}"),
        );
    }
    for (key, value) in [
        ("room_list_size_limit", s.room_list_size_limit),
        ("direct_list_size_limit", s.direct_list_size_limit),
    ] {
        if value == 0 {
            err(&at(key), "must be greater than 0".into());
        } else if value > CHAT_MAX_LIST {
            err(&at(key), format!("must be at most {CHAT_MAX_LIST}"));
        }
    }
    if !s.login_query.is_empty()
        && s.login_query
            .chars()
            .any(|c| c.is_control() || c == '&' || c == '=')
    {
        err(
            &at("login_query"),
            "must be a plain query parameter name".into(),
        );
    }
    for (i, hook) in s.backend_hooks.iter().enumerate() {
        if !is_hook(hook) {
            let mut path = at("backend_hooks");
            path.push(Seg::Index(i));
            err(
                &path,
                format!(
                    "`{hook}` is not a chat-service hook (`<command>Before`, `<command>After`, onJoin, onLeave, onDisconnect, roomMessagesChecker, directMessagesChecker)"
                ),
            );
        }
    }
    let on = |set: bool, value: bool| if dev_mode && !set { true } else { value };
    let login_query = if dev_mode && !explicit.login_query {
        Some("user".to_owned())
    } else {
        Some(s.login_query.clone()).filter(|q| !q.is_empty())
    };
    (s.enabled || dev_mode).then(|| ChatServiceConfig {
        namespace: s.namespace.clone(),
        channel_prefix: s.channel_prefix.clone(),
        enable_rooms_management: on(explicit.rooms_management, s.enable_rooms_management),
        enable_direct_messages: on(explicit.direct_messages, s.enable_direct_messages),
        enable_userlist_updates: on(explicit.userlist_updates, s.enable_userlist_updates),
        enable_access_lists_updates: s.enable_access_lists_updates,
        history_max_size: usize_of(s.history_max_size),
        history_max_get_messages: usize_of(s.history_max_get_messages),
        room_list_size_limit: usize_of(s.room_list_size_limit),
        direct_list_size_limit: usize_of(s.direct_list_size_limit),
        use_raw_error_objects: s.use_raw_error_objects,
        login_query,
    })
}

/// `[socketio]`: the Socket.IO dialect (`docs/socketio.md`), on the same port as `/ws`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSection {
    /// Default: off. Development mode serves Socket.IO whatever this says.
    pub enabled: bool,
    /// Where it is served (`/socket.io/`, socket.io-client's default).
    pub path: String,
    /// Engine.IO `pingInterval`.
    pub ping_interval_ms: u64,
    /// Engine.IO `pingTimeout`.
    pub ping_timeout_ms: u64,
    /// Engine.IO `maxPayload`: the largest polling body and WebSocket message.
    pub max_payload_bytes: u64,
    /// Namespaces clients may connect to besides `/` (each starts with `/`). Development
    /// mode opens every namespace while this is empty.
    pub namespaces: Vec<String>,
    /// Origins allowed to poll cross-origin; `*` allows any. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    pub max_polling_sessions: u64,
    pub max_buffered_packets: u64,
    pub max_attachments: u64,
    pub max_namespaces: u64,
    pub upgrade_timeout_ms: u64,
    /// Socket.IO `connectTimeout`: a connection that joined no namespace by then is closed.
    pub connect_timeout_ms: u64,
}

impl Default for SocketIoSection {
    fn default() -> Self {
        let d = SocketIoConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        SocketIoSection {
            enabled: false,
            path: d.path,
            ping_interval_ms: ms(d.ping_interval),
            ping_timeout_ms: ms(d.ping_timeout),
            max_payload_bytes: d.max_payload_bytes as u64,
            namespaces: d.namespaces,
            cors_origins: d.cors_origins,
            max_polling_sessions: d.max_polling_sessions as u64,
            max_buffered_packets: d.max_buffered_packets as u64,
            max_attachments: d.max_attachments as u64,
            max_namespaces: d.max_namespaces as u64,
            upgrade_timeout_ms: ms(d.upgrade_timeout),
            connect_timeout_ms: ms(d.connect_timeout),
        }
    }
}

/// `[server]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    /// Default: on without a configuration file, off with one.
    pub dev_mode: bool,
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8000".into(),
            dev_mode: false,
            shutdown_timeout_ms: Limits::default().shutdown_timeout.as_millis() as u64,
        }
    }
}

/// `[client]`: how connections authenticate, and their limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSection {
    /// Default: on in development mode, off otherwise.
    pub anonymous: bool,
    pub auth_timeout_ms: u64,
    pub max_message_bytes: u64,
    pub max_subscriptions: u64,
    pub max_channel_bytes: u64,
    pub outbound_queue_bytes_max: u64,
    pub max_connections_per_user: u64,
    pub requests_per_second: u64,
    pub requests_burst: u64,
    pub max_pending_requests: u64,
    pub command_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub max_missed_pongs: u64,
    pub push_latency: bool,
    pub recovery_max_publications: u64,
    pub history_max: u64,
    pub max_metadata_bytes: u64,
    pub mailbox_max_messages: u64,
    pub mailbox_lifetime_ms: u64,
    pub mail_ttl_ms: u64,
    pub mail_redelivery_pace_ms: u64,
    /// The shortest lifetime of an endpoint identity (`register_as`; Plezi's clamp: 600 s).
    pub identity_min_lifetime_ms: u64,
    /// Time one write to a client may take before the client is dropped.
    pub write_timeout_ms: u64,
    /// Names one room list (whitelist, blacklist, adminlist) may hold.
    pub room_list_max: u64,
    /// Names one user's direct-message list may hold.
    pub direct_list_max: u64,
}

impl Default for ClientSection {
    fn default() -> Self {
        let l = Limits::default();
        let ms = |d: Duration| d.as_millis() as u64;
        ClientSection {
            anonymous: false,
            auth_timeout_ms: ms(l.auth_timeout),
            max_message_bytes: l.max_message_bytes as u64,
            max_subscriptions: l.max_subscriptions as u64,
            max_channel_bytes: l.max_channel_bytes as u64,
            outbound_queue_bytes_max: l.outbound_queue_bytes_max as u64,
            max_connections_per_user: l.max_connections_per_user as u64,
            requests_per_second: l.requests_per_second.into(),
            requests_burst: l.requests_burst.into(),
            max_pending_requests: l.max_pending_requests as u64,
            command_timeout_ms: ms(l.command_timeout),
            ping_interval_ms: ms(l.ping_interval),
            max_missed_pongs: l.max_missed_pongs.into(),
            push_latency: l.push_latency,
            recovery_max_publications: l.recovery_max_publications as u64,
            history_max: l.client_history_max as u64,
            max_metadata_bytes: l.max_metadata_bytes as u64,
            mailbox_max_messages: l.mailbox_max_messages as u64,
            mailbox_lifetime_ms: ms(l.mailbox_lifetime),
            mail_ttl_ms: ms(l.mail_ttl),
            mail_redelivery_pace_ms: ms(l.mail_redelivery_pace),
            identity_min_lifetime_ms: ms(l.identity_min_lifetime),
            write_timeout_ms: ms(l.write_timeout),
            room_list_max: l.room_list_max as u64,
            direct_list_max: l.direct_list_max as u64,
        }
    }
}

/// `[jwt]`: keys that verify connection and subscription tokens. Empty = not used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSection {
    pub hmac_secret: String,
    /// PEM text, or the path of a PEM file (relative to the configuration file).
    pub rsa_public_key: String,
    pub ecdsa_public_key: String,
    pub audience: String,
    pub issuer: String,
    pub leeway_seconds: u64,
}

/// `[api]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    pub key: String,
    pub max_body_bytes: u64,
    pub history_max: u64,
    pub broadcast_max_channels: u64,
    pub channels_max: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        let d = ApiOptions::default();
        ApiSection {
            key: String::new(),
            max_body_bytes: d.max_body_bytes as u64,
            history_max: d.history_max as u64,
            broadcast_max_channels: d.broadcast_max_channels as u64,
            channels_max: d.channels_max as u64,
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Default: on in development mode, off otherwise.
    pub enabled: bool,
}

/// `[backend]`: the application's HTTP hooks. An empty URL turns its hook off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSection {
    pub timeout_ms: u64,
    pub max_in_flight: u64,
    pub max_response_bytes: u64,
    pub forward_headers: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub connect_url: String,
    pub subscribe_url: String,
    pub publish_url: String,
    pub rpc_url: String,
    pub rpc_urls: BTreeMap<String, String>,
    /// Lifecycle notifications, fire-and-forget: a connection opened, authenticated, closed.
    pub opened_url: String,
    pub authenticated_url: String,
    pub closed_url: String,
    /// chat-service's hooks named in `[chat_service] backend_hooks`.
    pub chat_service_url: String,
    /// The hooks `[[endpoints]]` name (`docs/endpoints.md`).
    pub endpoints_url: String,
    /// A PEM file of certificates trusted for `https://` hook URLs besides the usual roots.
    pub ca_file: String,
}

impl Default for BackendSection {
    fn default() -> Self {
        let d = BackendOptions::default();
        BackendSection {
            timeout_ms: d.timeout.as_millis() as u64,
            max_in_flight: d.max_in_flight as u64,
            max_response_bytes: d.max_response_bytes as u64,
            forward_headers: d.forward_headers.iter().map(|h| h.to_string()).collect(),
            headers: BTreeMap::new(),
            connect_url: String::new(),
            subscribe_url: String::new(),
            publish_url: String::new(),
            rpc_url: String::new(),
            rpc_urls: BTreeMap::new(),
            opened_url: String::new(),
            authenticated_url: String::new(),
            closed_url: String::new(),
            chat_service_url: String::new(),
            endpoints_url: String::new(),
            ca_file: String::new(),
        }
    }
}

/// `[[namespaces]]`: a set of channels and who may do what in them. The first namespace that
/// matches a channel applies; a channel no namespace matches is closed to clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceSection {
    pub name: String,
    /// A glob: `*` matches anything (`chat:*`, `*`, `room:*:public`); no `*` = one channel.
    pub channels: String,
    /// A regular expression that must match the whole name (instead of `channels`).
    pub regex: String,
    /// `nobody`, `anyone`, `authenticated`, `token` or `backend`.
    pub subscribe: String,
    /// `nobody`, `anyone`, `subscribers`, `authenticated` or `backend`.
    pub publish: String,
    pub publisher_info: bool,
    pub history_size: u64,
    pub history_ttl_ms: u64,
    pub recovery: bool,
    pub presence: bool,
    /// `off`, `users` or `connections`.
    pub join_leave: String,
    /// The channels are rooms: created through the API, with access lists (needs presence).
    pub rooms: bool,
}

impl Default for NamespaceSection {
    fn default() -> Self {
        NamespaceSection {
            name: String::new(),
            channels: String::new(),
            regex: String::new(),
            subscribe: "nobody".into(),
            publish: "nobody".into(),
            publisher_info: true,
            history_size: 0,
            history_ttl_ms: 0,
            recovery: false,
            presence: false,
            join_leave: "off".into(),
            rooms: false,
        }
    }
}

/// `[[records]]`: a set of records (JSON documents with versions, `docs/records.md`), who may
/// read and write them, and their limits. The first section that matches a record id applies;
/// a record no section matches is closed to everyone (development mode opens the rest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordSection {
    /// Also the records' storage group: the limit on records counts per name, and on Redis it
    /// is the keys' hash tag.
    pub name: String,
    /// A glob over record ids, as `channels` of `[[namespaces]]`.
    pub records: String,
    /// A regular expression that must match the whole id (instead of `records`).
    pub regex: String,
    /// `nobody`, `anyone` or `authenticated` (writers may also read).
    pub read: String,
    /// `nobody`, `anyone` or `authenticated`.
    pub write: String,
    /// Records that may exist at once.
    pub max_records: u64,
    /// The largest value, in bytes of JSON.
    pub max_value_bytes: u64,
    /// Operations one JSON Patch may hold.
    pub max_patch_ops: u64,
}

impl Default for RecordSection {
    fn default() -> Self {
        let d = plexus_core::RecordNamespace::new("", ChannelMatch::Any);
        RecordSection {
            name: String::new(),
            records: String::new(),
            regex: String::new(),
            read: "nobody".into(),
            write: "nobody".into(),
            max_records: d.max_records as u64,
            max_value_bytes: d.max_value_bytes as u64,
            max_patch_ops: d.max_patch_ops as u64,
        }
    }
}

/// Environment variables that are not settings (logging, the CLI client's, the test suites').
const NOT_SETTINGS: &[&str] = &[
    "PLEXUS_LOG",
    "PLEXUS_URL",
    "PLEXUS_TOKEN",
    "PLEXUS_CREDENTIALS",
    "PLEXUS_CONFIG",
    "PLEXUS_TEST_ENGINE",
    "PLEXUS_TEST_REDIS_CLUSTER",
];

/// Where the configuration comes from.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub file: Option<ConfigFile>,
    /// Environment variables (only those starting with `PLEXUS_` are read).
    pub env: Vec<(String, String)>,
    pub flags: Vec<Flag>,
}

/// A configuration file's name (for messages and relative key paths) and text.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

impl ConfigFile {
    pub fn read(path: impl Into<PathBuf>) -> Result<ConfigFile, ConfigError> {
        let path = path.into();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(ConfigFile { path, text }),
            Err(e) => Err(ConfigError::one(
                path.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
}

/// A setting given on the command line.
#[derive(Clone, Debug)]
pub struct Flag {
    /// How the user wrote it, for messages (`--listen`).
    pub name: String,
    /// The setting's path (`server.listen`).
    pub key: String,
    pub value: String,
}

impl Flag {
    pub fn new(name: impl Into<String>, key: impl Into<String>, value: impl Into<String>) -> Flag {
        Flag {
            name: name.into(),
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One problem, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `plexus.toml:12:3`, `environment variable PLEXUS_API_KEY`, `flag --listen`, …
    pub location: String,
    /// The setting's path, when the problem is about one (`namespaces[1].subscribe`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: `{key}`: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(location: String, message: String) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                location,
                key: None,
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Key paths and the schema (derived from the defaults, so it cannot drift from the structs).

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn key_path(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

#[derive(Debug)]
enum Schema {
    Bool,
    Int,
    Str,
    List(Box<Schema>),
    /// A struct: these keys only.
    Table(Vec<(String, Schema)>),
    /// Any keys, values of one type.
    Map(Box<Schema>),
}

impl Schema {
    fn of(value: &serde_json::Value) -> Schema {
        use serde_json::Value as J;
        match value {
            J::Bool(_) => Schema::Bool,
            J::Number(_) => Schema::Int,
            J::Array(items) => {
                Schema::List(Box::new(items.first().map_or(Schema::Str, Schema::of)))
            }
            J::Object(map) if map.is_empty() => Schema::Map(Box::new(Schema::Str)),
            J::Object(map) => Schema::Table(
                map.iter()
                    .map(|(k, v)| (k.clone(), Schema::of(v)))
                    .collect(),
            ),
            _ => Schema::Str,
        }
    }

    fn config() -> Schema {
        let mut defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
        defaults["namespaces"] = serde_json::json!([NamespaceSection::default()]);
        defaults["records"] = serde_json::json!([RecordSection::default()]);
        defaults["endpoints"] = serde_json::json!([EndpointSection::default()]);
        Schema::of(&defaults)
    }

    fn field(&self, key: &str) -> Option<&Schema> {
        match self {
            Schema::Table(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, s)| s),
            Schema::Map(values) => Some(values),
            _ => None,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Schema::Bool => "a boolean",
            Schema::Int => "a non-negative integer",
            Schema::Str => "a string",
            Schema::List(_) => "an array",
            Schema::Table(_) | Schema::Map(_) => "a table",
        }
    }

    /// Checks a value; pushes each problem with its path.
    fn check(&self, value: &toml::Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
        let wrong = |out: &mut Vec<(Vec<Seg>, String)>, path: &[Seg]| {
            out.push((
                path.to_vec(),
                format!("expected {}, found {}", self.describe(), value.type_str()),
            ));
        };
        match (self, value) {
            (Schema::Bool, toml::Value::Boolean(_)) | (Schema::Str, toml::Value::String(_)) => {}
            (Schema::Int, toml::Value::Integer(i)) if *i >= 0 => {}
            (Schema::List(item), toml::Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    item.check(v, path, out);
                    path.pop();
                }
            }
            (Schema::Table(fields), toml::Value::Table(table)) => {
                for (k, v) in table {
                    path.push(Seg::Key(k.clone()));
                    match fields.iter().find(|(name, _)| name == k) {
                        Some((_, schema)) => schema.check(v, path, out),
                        None => {
                            let known: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                            out.push((path.clone(), unknown_key(k, &known)));
                        }
                    }
                    path.pop();
                }
            }
            (Schema::Map(values), toml::Value::Table(table)) => {
                for (k, v) in table {
                    path.push(Seg::Key(k.clone()));
                    values.check(v, path, out);
                    path.pop();
                }
            }
            _ => wrong(out, path),
        }
    }

    /// The setting an environment variable name (after `PLEXUS_`) names.
    fn env_path(&self, rest: &str) -> Option<(Vec<Seg>, &Schema)> {
        let Schema::Table(fields) = self else {
            return None;
        };
        for (key, schema) in fields {
            let upper = key.to_ascii_uppercase();
            if rest == upper {
                return Some((vec![Seg::Key(key.clone())], schema));
            }
        }
        for (key, schema) in fields {
            let upper = key.to_ascii_uppercase();
            if let Some(tail) = rest.strip_prefix(&upper).and_then(|t| t.strip_prefix('_'))
                && let Some((mut path, leaf)) = schema.env_path(tail)
            {
                path.insert(0, Seg::Key(key.clone()));
                return Some((path, leaf));
            }
        }
        None
    }

    /// Parses a value given as text (environment, flags) for this setting.
    fn parse_text(&self, text: &str) -> Result<toml::Value, String> {
        match self {
            Schema::Str => Ok(toml::Value::String(text.to_owned())),
            Schema::Bool => match text {
                "true" => Ok(toml::Value::Boolean(true)),
                "false" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("expected `true` or `false`, found `{text}`")),
            },
            Schema::Int => text
                .parse::<i64>()
                .ok()
                .filter(|i| *i >= 0)
                .map(toml::Value::Integer)
                .ok_or_else(|| format!("expected a non-negative integer, found `{text}`")),
            Schema::List(item)
                if matches!(**item, Schema::Str) && !text.trim_start().starts_with('[') =>
            {
                Ok(toml::Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ))
            }
            _ => {
                let doc = format!("v = {text}");
                let mut table: toml::Table = toml::from_str(&doc)
                    .map_err(|e| format!("not a TOML value: {}", e.message()))?;
                let value = table.remove("v").expect("parsed key");
                let mut problems = Vec::new();
                self.check(&value, &mut Vec::new(), &mut problems);
                match problems.first() {
                    None => Ok(value),
                    Some((path, message)) if path.is_empty() => Err(message.clone()),
                    Some((path, message)) => Err(format!("{}: {message}", path_string(path))),
                }
            }
        }
    }
}

fn unknown_key(key: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match close {
        Some((_, k)) => format!("unknown key `{key}` (did you mean `{k}`?)"),
        None => format!("unknown key `{key}`; known keys: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn set_path(table: &mut toml::Table, path: &[Seg], value: toml::Value) {
    let Some((Seg::Key(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(inner) = entry {
        set_path(inner, rest, value);
    }
}

fn get_path<'a>(table: &'a toml::Table, path: &[Seg]) -> Option<&'a toml::Value> {
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let value = table.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match (value, &rest[0]) {
        (toml::Value::Table(t), Seg::Key(_)) => get_path(t, rest),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Locations.

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The span of the key (or array item) at `path` in the file.
fn span_of(
    doc: &toml::Spanned<toml::de::DeTable<'_>>,
    path: &[Seg],
) -> Option<std::ops::Range<usize>> {
    let mut table = doc.get_ref();
    let mut value: Option<&toml::Spanned<toml::de::DeValue<'_>>> = None;
    let mut span = None;
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if let Some(v) = value {
                    table = v.get_ref().as_table()?;
                }
                let (k, v) = table.iter().find(|(k, _)| k.get_ref() == key)?;
                span = Some(k.span());
                value = Some(v);
            }
            Seg::Index(i) => {
                let item = value?.get_ref().as_array()?.get(*i)?;
                span = Some(item.span());
                value = Some(item);
            }
        }
    }
    span
}

struct Locator<'a> {
    file: Option<(&'a ConfigFile, toml::Spanned<toml::de::DeTable<'a>>)>,
    /// Settings given by the environment and flags, in order (later wins).
    overlays: Vec<(Vec<Seg>, String)>,
}

impl Locator<'_> {
    fn locate(&self, path: &[Seg]) -> String {
        if let Some((_, label)) = self
            .overlays
            .iter()
            .rev()
            .find(|(p, _)| path.starts_with(p) || p.starts_with(path))
        {
            return label.clone();
        }
        match &self.file {
            Some((file, doc)) => {
                // The deepest part of the path the file has.
                let found = (1..=path.len())
                    .rev()
                    .find_map(|n| span_of(doc, &path[..n]));
                match found {
                    Some(span) => {
                        let (line, col) = line_col(&file.text, span.start);
                        format!("{}:{line}:{col}", file.path.display())
                    }
                    None => file.path.display().to_string(),
                }
            }
            None => "defaults".into(),
        }
    }

    fn problem(&self, path: &[Seg], message: impl Into<String>) -> Problem {
        Problem {
            location: self.locate(path),
            key: (!path.is_empty()).then(|| path_string(path)),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// A checked configuration, ready to build a server from.
pub struct Loaded {
    pub config: Config,
    /// Development mode: anonymous connections, every channel open, the API without a key.
    pub dev_mode: bool,
    /// Things that are allowed but probably not meant (nobody can authenticate, …).
    pub warnings: Vec<String>,
    pub listen: SocketAddr,
    limits: Limits,
    anonymous: bool,
    metrics: bool,
    api_key: ApiKey,
    jwt: Option<Arc<JwtVerifier>>,
    namespaces: Vec<Compiled>,
    records: Vec<plexus_core::RecordNamespace>,
    backend: Option<Arc<Backend>>,
    hooks: Option<Arc<BackendHooks>>,
    notifications: Option<Arc<Notifications>>,
    rpc_url: Option<Uri>,
    rpc_urls: Vec<(String, Uri)>,
    socketio: Option<SocketIoConfig>,
    chat_service: Option<ChatServiceConfig>,
    chat_hooks: Option<Arc<dyn ChatHooks>>,
    endpoints: Vec<EndpointSpec>,
    endpoints_url: Option<Uri>,
    plezi_bus: Option<PleziBusConfig>,
    mesa: Option<MesaConfig>,
    mesh: Option<crate::mesh::MeshConfig>,
    admin: Option<crate::admin::AdminOptions>,
    sockety: Option<SocketyConfig>,
    tls: Option<TlsConfig>,
}

/// How a namespace's subscribers are checked beyond its [`Access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubscribeCheck {
    None,
    Token,
    Backend,
}

struct Compiled {
    namespace: Namespace,
    subscribe: SubscribeCheck,
    publish_backend: bool,
}

/// Loads, merges and checks a configuration.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    let schema = Schema::config();
    let mut problems = Vec::new();
    let mut merged = toml::Table::new();
    let mut locator = Locator {
        file: None,
        overlays: Vec::new(),
    };

    if let Some(file) = &sources.file {
        let name = file.path.display().to_string();
        let (doc, errors) = toml::de::DeTable::parse_recoverable(&file.text);
        if !errors.is_empty() {
            let problems = errors
                .iter()
                .map(|e| {
                    let location = match e.span() {
                        Some(span) => {
                            let (line, col) = line_col(&file.text, span.start);
                            format!("{name}:{line}:{col}")
                        }
                        None => name.clone(),
                    };
                    Problem {
                        location,
                        key: None,
                        message: e.message().trim().to_owned(),
                    }
                })
                .collect();
            return Err(ConfigError { problems });
        }
        merged = toml::from_str(&file.text).map_err(|e| ConfigError::one(name, e.to_string()))?;
        locator.file = Some((file, doc));
        let mut found = Vec::new();
        schema.check(
            &toml::Value::Table(merged.clone()),
            &mut Vec::new(),
            &mut found,
        );
        problems.extend(
            found
                .iter()
                .map(|(path, message)| locator.problem(path, message.clone())),
        );
        // Without the bad values the rest can still be checked, so every problem is reported
        // in one go.
        for (path, _) in &found {
            remove_path(&mut merged, path);
        }
    }

    let mut env: Vec<&(String, String)> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("PLEXUS_") && !NOT_SETTINGS.contains(&k.as_str()))
        .collect();
    env.sort();
    for (name, text) in env {
        let label = format!("environment variable {name}");
        let Some((path, leaf)) = schema.env_path(&name["PLEXUS_".len()..]) else {
            problems.push(Problem {
                location: label,
                key: None,
                message: "not a setting".into(),
            });
            continue;
        };
        match leaf.parse_text(text) {
            Ok(value) => {
                set_path(&mut merged, &path, value);
                locator.overlays.push((path, label));
            }
            Err(message) => problems.push(Problem {
                location: label,
                key: Some(path_string(&path)),
                message,
            }),
        }
    }

    for flag in &sources.flags {
        let label = format!("flag {}", flag.name);
        let keys: Vec<&str> = flag.key.split('.').collect();
        let mut leaf = Some(&schema);
        for key in &keys {
            leaf = leaf.and_then(|s| s.field(key));
        }
        let Some(leaf) = leaf.filter(|_| keys.iter().all(|k| !k.is_empty())) else {
            problems.push(Problem {
                location: label,
                key: None,
                message: format!("`{}` is not a setting", flag.key),
            });
            continue;
        };
        let path = key_path(&keys);
        match leaf.parse_text(&flag.value) {
            Ok(value) => {
                set_path(&mut merged, &path, value);
                locator.overlays.push((path, label));
            }
            Err(message) => problems.push(Problem {
                location: label,
                key: Some(flag.key.clone()),
                message,
            }),
        }
    }

    let config: Config = match toml::Value::Table(merged.clone()).try_into() {
        Ok(config) => config,
        Err(e) => {
            let e: toml::de::Error = e;
            problems.push(Problem {
                location: locator.locate(&[]),
                key: None,
                message: e.message().to_owned(),
            });
            return Err(ConfigError { problems });
        }
    };
    let is_set = |keys: &[&str]| get_path(&merged, &key_path(keys)).is_some();
    let dev_mode = if is_set(&["server", "dev_mode"]) {
        config.server.dev_mode
    } else {
        sources.file.is_none()
    };
    let anonymous = if is_set(&["client", "anonymous"]) {
        config.client.anonymous
    } else {
        dev_mode
    };
    let metrics = if is_set(&["metrics", "enabled"]) {
        config.metrics.enabled
    } else {
        dev_mode
    };
    // Development mode serves Socket.IO whatever `enabled` says: an explicit `false` is worth
    // a warning.
    let explicit = Explicit {
        socketio_off: is_set(&["socketio", "enabled"]) && !config.socketio.enabled,
        rooms_management: is_set(&["chat_service", "enable_rooms_management"]),
        direct_messages: is_set(&["chat_service", "enable_direct_messages"]),
        userlist_updates: is_set(&["chat_service", "enable_userlist_updates"]),
        login_query: is_set(&["chat_service", "login_query"]),
        mesa_sync: is_set(&["mesa", "sync"]),
        admin_enabled: is_set(&["admin", "enabled"]).then_some(config.admin.enabled),
    };
    let base_dir = sources
        .file
        .as_ref()
        .and_then(|f| f.path.parent())
        .map(Path::to_path_buf);
    match compile(
        config, dev_mode, anonymous, metrics, explicit, base_dir, &locator,
    ) {
        Ok(loaded) if problems.is_empty() => Ok(loaded),
        Ok(_) => Err(sorted(problems)),
        Err(e) => {
            problems.extend(e.problems);
            Err(sorted(problems))
        }
    }
}

/// Problems in file order (line, column), then those of the environment and flags.
fn sorted(mut problems: Vec<Problem>) -> ConfigError {
    let position = |p: &Problem| {
        let mut parts = p.location.rsplitn(3, ':');
        let col = parts.next().and_then(|c| c.parse::<usize>().ok());
        let line = parts.next().and_then(|l| l.parse::<usize>().ok());
        match (line, col) {
            (Some(line), Some(col)) => (0, line, col),
            _ if p.location.starts_with("environment") => (2, 0, 0),
            _ if p.location.starts_with("flag") => (3, 0, 0),
            _ => (1, 0, 0),
        }
    };
    problems.sort_by_key(position);
    ConfigError { problems }
}

fn remove_path(table: &mut toml::Table, path: &[Seg]) {
    let Some((Seg::Key(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.remove(first);
        return;
    }
    let mut value = table.get_mut(first);
    for (i, seg) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        match (value, seg) {
            (Some(toml::Value::Table(t)), Seg::Key(k)) => {
                if last {
                    t.remove(k);
                    return;
                }
                value = t.get_mut(k);
            }
            (Some(toml::Value::Array(a)), Seg::Index(n)) => {
                if last {
                    // Keep the indexes of the other items: blank the item instead.
                    if let Some(item) = a.get_mut(*n) {
                        *item = toml::Value::Table(toml::Table::new());
                    }
                    return;
                }
                value = a.get_mut(*n);
            }
            _ => return,
        }
    }
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// A PEM key given inline or as a file path.
fn read_pem(value: &str, base: Option<&Path>) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let path = Path::new(value);
    let path = match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    };
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn hook_url(value: &str) -> Result<Option<Uri>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let uri: Uri = value.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(Some(uri)),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

/// A namespace's channel pattern.
fn channel_match(ns: &NamespaceSection) -> Result<ChannelMatch, String> {
    glob_match(&ns.channels, &ns.regex, "channels")
}

/// A pattern given as a glob (the setting `key`) or a regex.
fn glob_match(glob: &str, regex: &str, key: &str) -> Result<ChannelMatch, String> {
    match (glob.is_empty(), regex.is_empty()) {
        (false, false) => Err(format!("give `{key}` or `regex`, not both")),
        (true, true) => Err(format!("give `{key}` (a glob such as `chat:*`) or `regex`")),
        (true, false) => ChannelMatch::regex(regex).map_err(|e| format!("bad regex: {e}")),
        (false, true) => {
            let glob = &glob.to_owned();
            if glob == "*" {
                return Ok(ChannelMatch::Any);
            }
            let stars = glob.matches('*').count();
            if stars == 0 {
                return Ok(ChannelMatch::Exact(glob.clone()));
            }
            if stars == 1 && glob.ends_with('*') {
                return Ok(ChannelMatch::Prefix(glob[..glob.len() - 1].to_owned()));
            }
            let pattern: Vec<String> = glob.split('*').map(regex_escape).collect();
            ChannelMatch::regex(&pattern.join(".*")).map_err(|e| format!("bad glob: {e}"))
        }
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn compile(
    config: Config,
    dev_mode: bool,
    anonymous: bool,
    metrics: bool,
    explicit: Explicit,
    base_dir: Option<PathBuf>,
    at: &Locator<'_>,
) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut err = |keys: &[Seg], message: String| problems.push(at.problem(keys, message));
    let p = |keys: &[&str]| key_path(keys);

    if !matches!(config.engine.as_str(), "memory" | "redis") {
        err(
            &p(&["engine"]),
            format!("`{}`: expected memory or redis", config.engine),
        );
    }
    if config.engine == "redis"
        && !config.redis.url.starts_with("redis://")
        && !config.redis.url.starts_with("redis+sentinel://")
    {
        err(
            &p(&["redis", "url"]),
            "expected a redis:// or redis+sentinel:// URL".into(),
        );
    }
    for (i, node) in config.redis.cluster.iter().enumerate() {
        if !node.starts_with("redis://") {
            err(
                &[
                    Seg::Key("redis".into()),
                    Seg::Key("cluster".into()),
                    Seg::Index(i),
                ],
                "expected a redis:// URL".into(),
            );
        }
    }
    if config.redis.prefix.contains(['{', '}']) && !config.redis.cluster.is_empty() {
        err(
            &p(&["redis", "prefix"]),
            "no braces on a cluster (keys carry hash tags)".into(),
        );
    }
    for (key, value) in [
        ("presence_ttl_ms", config.redis.presence_ttl_ms),
        ("node_ttl_ms", config.redis.node_ttl_ms),
    ] {
        if value < 300 {
            err(&p(&["redis", key]), "must be at least 300".into());
        }
    }

    let listen = config
        .server
        .listen
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| {
            err(
                &p(&["server", "listen"]),
                format!("not an address such as 127.0.0.1:8000: {e}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 8000))
        });

    let c = &config.client;
    let positive: [(&str, u64); 18] = [
        ("auth_timeout_ms", c.auth_timeout_ms),
        ("max_message_bytes", c.max_message_bytes),
        ("max_subscriptions", c.max_subscriptions),
        ("max_channel_bytes", c.max_channel_bytes),
        ("outbound_queue_bytes_max", c.outbound_queue_bytes_max),
        ("requests_per_second", c.requests_per_second),
        ("requests_burst", c.requests_burst),
        ("max_pending_requests", c.max_pending_requests),
        ("command_timeout_ms", c.command_timeout_ms),
        ("ping_interval_ms", c.ping_interval_ms),
        ("max_missed_pongs", c.max_missed_pongs),
        ("max_metadata_bytes", c.max_metadata_bytes),
        ("mailbox_lifetime_ms", c.mailbox_lifetime_ms),
        ("mail_ttl_ms", c.mail_ttl_ms),
        ("identity_min_lifetime_ms", c.identity_min_lifetime_ms),
        ("write_timeout_ms", c.write_timeout_ms),
        ("room_list_max", c.room_list_max),
        ("direct_list_max", c.direct_list_max),
    ];
    for (key, value) in positive {
        if value == 0 {
            err(&p(&["client", key]), "must be greater than 0".into());
        }
    }
    if c.max_message_bytes < 1024 {
        err(
            &p(&["client", "max_message_bytes"]),
            "must be at least 1024".into(),
        );
    }
    if c.ping_interval_ms < 100 {
        err(
            &p(&["client", "ping_interval_ms"]),
            "must be at least 100".into(),
        );
    }
    for (key, value) in [
        ("requests_per_second", c.requests_per_second),
        ("requests_burst", c.requests_burst),
        ("max_missed_pongs", c.max_missed_pongs),
    ] {
        if value > u64::from(u32::MAX) {
            err(
                &p(&["client", key]),
                format!("must be at most {}", u32::MAX),
            );
        }
    }
    let limits = Limits {
        max_message_bytes: usize_of(c.max_message_bytes),
        max_subscriptions: usize_of(c.max_subscriptions),
        max_channel_bytes: usize_of(c.max_channel_bytes),
        outbound_queue_bytes_max: usize_of(c.outbound_queue_bytes_max),
        auth_timeout: ms(c.auth_timeout_ms),
        max_connections_per_user: usize_of(c.max_connections_per_user),
        requests_per_second: u32::try_from(c.requests_per_second).unwrap_or(u32::MAX),
        requests_burst: u32::try_from(c.requests_burst).unwrap_or(u32::MAX),
        max_pending_requests: usize_of(c.max_pending_requests),
        command_timeout: ms(c.command_timeout_ms),
        ping_interval: ms(c.ping_interval_ms),
        max_missed_pongs: u32::try_from(c.max_missed_pongs).unwrap_or(u32::MAX),
        push_latency: c.push_latency,
        shutdown_timeout: ms(config.server.shutdown_timeout_ms),
        recovery_max_publications: usize_of(c.recovery_max_publications),
        client_history_max: usize_of(c.history_max),
        max_metadata_bytes: usize_of(c.max_metadata_bytes),
        mailbox_max_messages: usize_of(c.mailbox_max_messages),
        mailbox_lifetime: ms(c.mailbox_lifetime_ms),
        mail_ttl: ms(c.mail_ttl_ms),
        mail_redelivery_pace: ms(c.mail_redelivery_pace_ms),
        identity_min_lifetime: ms(c.identity_min_lifetime_ms),
        write_timeout: ms(c.write_timeout_ms),
        room_list_max: usize_of(c.room_list_max),
        direct_list_max: usize_of(c.direct_list_max),
    };

    // JWT.
    let j = &config.jwt;
    let mut keys = JwtKeys {
        audience: (!j.audience.is_empty()).then(|| j.audience.clone()),
        issuer: (!j.issuer.is_empty()).then(|| j.issuer.clone()),
        leeway_seconds: j.leeway_seconds,
        ..JwtKeys::default()
    };
    if !j.hmac_secret.is_empty() {
        if j.hmac_secret.len() < 32 {
            err(
                &p(&["jwt", "hmac_secret"]),
                "must be at least 32 bytes long (`plexus config init` makes a random one)".into(),
            );
        }
        keys.hmac_secret = Some(j.hmac_secret.as_bytes().to_vec());
    }
    // Each PEM key is read and parsed on its own, so that a message names the right one.
    let mut key_problem = false;
    for (key, value) in [
        ("rsa_public_key", &j.rsa_public_key),
        ("ecdsa_public_key", &j.ecdsa_public_key),
    ] {
        if value.is_empty() {
            continue;
        }
        let rsa = key == "rsa_public_key";
        let checked = read_pem(value, base_dir.as_deref()).and_then(|pem| {
            let alone = JwtKeys {
                rsa_public_pem: rsa.then(|| pem.clone()),
                ecdsa_public_pem: (!rsa).then(|| pem.clone()),
                ..JwtKeys::default()
            };
            JwtVerifier::new(alone).map(|_| pem)
        });
        match checked {
            Ok(pem) if rsa => keys.rsa_public_pem = Some(pem),
            Ok(pem) => keys.ecdsa_public_pem = Some(pem),
            Err(e) => {
                key_problem = true;
                err(&p(&["jwt", key]), e);
            }
        }
    }
    let any_key = keys.hmac_secret.is_some()
        || keys.rsa_public_pem.is_some()
        || keys.ecdsa_public_pem.is_some();
    let jwt = if any_key && !key_problem {
        JwtVerifier::new(keys).ok().map(Arc::new)
    } else {
        None
    };

    // API and metrics.
    let api_key = if !config.api.key.is_empty() {
        if config.api.key.len() < 16 {
            err(
                &p(&["api", "key"]),
                "must be at least 16 characters long".into(),
            );
        }
        ApiKey::Required(config.api.key.clone())
    } else if dev_mode {
        ApiKey::Open
    } else {
        warnings.push("`api.key` is not set: the HTTP API (/api/…) is disabled".into());
        ApiKey::Missing
    };
    for (key, value) in [
        ("max_body_bytes", config.api.max_body_bytes),
        ("history_max", config.api.history_max),
        ("broadcast_max_channels", config.api.broadcast_max_channels),
        ("channels_max", config.api.channels_max),
    ] {
        if value == 0 {
            err(&p(&["api", key]), "must be greater than 0".into());
        }
    }

    // The admin interface.
    let a = &config.admin;
    if !a.password.is_empty() {
        if a.password.chars().count() < 12 {
            err(
                &p(&["admin", "password"]),
                "must be at least 12 characters long".into(),
            );
        }
        if a.password == config.api.key {
            err(
                &p(&["admin", "password"]),
                "must not be the API key (`api.key`): the admin interface has its own".into(),
            );
        }
    }
    for (key, value) in [
        ("session_ttl_ms", a.session_ttl_ms),
        ("sessions_max", a.sessions_max),
        ("login_failures_max", a.login_failures_max),
        ("login_window_ms", a.login_window_ms),
    ] {
        if value == 0 {
            err(&p(&["admin", key]), "must be greater than 0".into());
        }
    }
    let admin = if !explicit.admin_enabled.unwrap_or(dev_mode) {
        if !a.password.is_empty() {
            warnings.push(
                "`admin.password` is set but `admin.enabled` is not: the admin interface is off"
                    .into(),
            );
        }
        None
    } else if a.password.is_empty() && !dev_mode {
        err(
            &p(&["admin", "password"]),
            "must be set to serve the admin interface (`admin.enabled = true`)".into(),
        );
        None
    } else {
        let mut options = if a.password.is_empty() {
            crate::admin::AdminOptions::generated()
        } else {
            crate::admin::AdminOptions::new(a.password.clone())
        };
        options.session_ttl = Duration::from_millis(a.session_ttl_ms);
        options.sessions_max = usize_of(a.sessions_max);
        options.login_failures_max = usize_of(a.login_failures_max);
        options.login_window = Duration::from_millis(a.login_window_ms);
        options.secure_cookie = a.secure_cookie;
        Some(options)
    };

    // Backend.
    let b = &config.backend;
    let mut url = |key: &[Seg], value: &str| match hook_url(value) {
        Ok(u) => u,
        Err(e) => {
            err(key, e);
            None
        }
    };
    let connect_url = url(&p(&["backend", "connect_url"]), &b.connect_url);
    let subscribe_url = url(&p(&["backend", "subscribe_url"]), &b.subscribe_url);
    let publish_url = url(&p(&["backend", "publish_url"]), &b.publish_url);
    let rpc_url = url(&p(&["backend", "rpc_url"]), &b.rpc_url);
    let opened_url = url(&p(&["backend", "opened_url"]), &b.opened_url);
    let authenticated_url = url(&p(&["backend", "authenticated_url"]), &b.authenticated_url);
    let closed_url = url(&p(&["backend", "closed_url"]), &b.closed_url);
    let chat_service_url = url(&p(&["backend", "chat_service_url"]), &b.chat_service_url);
    let endpoints_url = url(&p(&["backend", "endpoints_url"]), &b.endpoints_url);
    let mut rpc_urls = Vec::new();
    for (method, value) in &b.rpc_urls {
        let key = p(&["backend", "rpc_urls", method]);
        if value.is_empty() {
            url(&key, "-");
        } else if let Some(u) = url(&key, value) {
            rpc_urls.push((method.clone(), u));
        }
    }
    for (key, value) in [
        ("timeout_ms", b.timeout_ms),
        ("max_in_flight", b.max_in_flight),
        ("max_response_bytes", b.max_response_bytes),
    ] {
        if value == 0 {
            err(&p(&["backend", key]), "must be greater than 0".into());
        }
    }
    let mut forward_headers = Vec::new();
    for (i, name) in b.forward_headers.iter().enumerate() {
        match HeaderName::try_from(name.to_ascii_lowercase()) {
            Ok(h) => forward_headers.push(h),
            Err(_) => err(
                &[
                    Seg::Key("backend".into()),
                    Seg::Key("forward_headers".into()),
                    Seg::Index(i),
                ],
                format!("`{name}` is not a header name"),
            ),
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &b.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => err(
                &p(&["backend", "headers", name]),
                "not a valid header".into(),
            ),
        }
    }
    let notifies = opened_url.is_some() || authenticated_url.is_some() || closed_url.is_some();
    let uses_backend = connect_url.is_some()
        || subscribe_url.is_some()
        || publish_url.is_some()
        || rpc_url.is_some()
        || !rpc_urls.is_empty()
        || chat_service_url.is_some()
        || endpoints_url.is_some()
        || notifies;
    let backend = uses_backend.then(|| {
        Arc::new(Backend::new(BackendOptions {
            timeout: ms(b.timeout_ms.max(1)),
            max_in_flight: usize_of(b.max_in_flight.max(1)),
            max_response_bytes: usize_of(b.max_response_bytes.max(1)),
            forward_headers,
            headers,
            ca_file: (!b.ca_file.is_empty()).then(|| b.ca_file.clone().into()),
        }))
    });
    if !b.ca_file.is_empty()
        && let Err(e) = crate::tls::client_config(Some(std::path::Path::new(&b.ca_file)))
    {
        err(&p(&["backend", "ca_file"]), e.to_string());
    }
    if !dev_mode && b.timeout_ms >= c.auth_timeout_ms && connect_url.is_some() {
        warnings.push("`backend.timeout_ms` is not below `client.auth_timeout_ms`: a slow connect hook ends in an auth timeout (4003)".into());
    }

    // Namespaces.
    let mut namespaces = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, ns) in config.namespaces.iter().enumerate() {
        let at_ns = |key: &str| {
            let mut path = vec![Seg::Key("namespaces".into()), Seg::Index(i)];
            if !key.is_empty() {
                path.push(Seg::Key(key.into()));
            }
            path
        };
        if ns.name.is_empty() {
            err(&at_ns("name"), "every namespace needs a `name`".into());
        } else if !names.insert(ns.name.clone()) {
            err(
                &at_ns("name"),
                format!("a namespace named `{}` comes earlier", ns.name),
            );
        }
        let channels = match channel_match(ns) {
            Ok(m) => m,
            Err(e) => {
                err(
                    &at_ns(if ns.regex.is_empty() {
                        "channels"
                    } else {
                        "regex"
                    }),
                    e,
                );
                ChannelMatch::Any
            }
        };
        let (subscribe, check) = match ns.subscribe.as_str() {
            "nobody" => (Access::Nobody, SubscribeCheck::None),
            "anyone" => (Access::Anyone, SubscribeCheck::None),
            "authenticated" => (Access::Authenticated, SubscribeCheck::None),
            "token" => {
                if jwt.is_none() && !key_problem {
                    err(
                        &at_ns("subscribe"),
                        "`token` needs a key in [jwt] to check subscription tokens".into(),
                    );
                }
                (Access::Anyone, SubscribeCheck::Token)
            }
            "backend" => {
                if subscribe_url.is_none() {
                    err(
                        &at_ns("subscribe"),
                        "`backend` needs `backend.subscribe_url`".into(),
                    );
                }
                (Access::Anyone, SubscribeCheck::Backend)
            }
            other => {
                err(
                    &at_ns("subscribe"),
                    format!("`{other}`: expected nobody, anyone, authenticated, token or backend"),
                );
                (Access::Nobody, SubscribeCheck::None)
            }
        };
        let (publish, publish_backend) = match ns.publish.as_str() {
            "nobody" => (Access::Nobody, false),
            "anyone" => (Access::Anyone, false),
            "subscribers" => (Access::Subscribers, false),
            "authenticated" => (Access::Authenticated, false),
            "backend" => {
                if publish_url.is_none() {
                    err(
                        &at_ns("publish"),
                        "`backend` needs `backend.publish_url`".into(),
                    );
                }
                (Access::Anyone, true)
            }
            other => {
                err(
                    &at_ns("publish"),
                    format!(
                        "`{other}`: expected nobody, anyone, subscribers, authenticated or backend"
                    ),
                );
                (Access::Nobody, false)
            }
        };
        let mut namespace = Namespace::new(ns.name.clone(), channels)
            .subscribe(subscribe)
            .publish(publish);
        namespace.publisher_info = ns.publisher_info;
        match (ns.history_size, ns.history_ttl_ms) {
            (0, 0) => {}
            (0, _) => err(
                &at_ns("history_size"),
                "`history_ttl_ms` is set: set `history_size` too".into(),
            ),
            (_, 0) => err(
                &at_ns("history_ttl_ms"),
                "`history_size` is set: set `history_ttl_ms` too".into(),
            ),
            (size, ttl) => {
                namespace.history = Some(HistoryOptions {
                    size: usize_of(size),
                    ttl: ms(ttl),
                })
            }
        }
        if ns.recovery {
            if namespace.history.is_none() {
                err(
                    &at_ns("recovery"),
                    "recovery needs history (`history_size` and `history_ttl_ms`)".into(),
                );
            }
            namespace.recovery = true;
        }
        namespace.presence = ns.presence;
        namespace.join_leave = match ns.join_leave.as_str() {
            "off" => JoinLeave::Off,
            "users" => JoinLeave::Users,
            "connections" => JoinLeave::Connections,
            other => {
                err(
                    &at_ns("join_leave"),
                    format!("`{other}`: expected off, users or connections"),
                );
                JoinLeave::Off
            }
        };
        if namespace.join_leave != JoinLeave::Off && !ns.presence {
            err(
                &at_ns("join_leave"),
                "join/leave pushes need `presence = true`".into(),
            );
        }
        if ns.rooms && !ns.presence {
            err(
                &at_ns("rooms"),
                "rooms need `presence = true` (a room's members are its presence)".into(),
            );
        }
        namespace.rooms = ns.rooms;
        namespaces.push(Compiled {
            namespace,
            subscribe: check,
            publish_backend,
        });
    }

    // Records.
    let mut records = Vec::new();
    let mut record_names = std::collections::HashSet::new();
    for (i, section) in config.records.iter().enumerate() {
        let at = |key: &str| {
            let mut path = vec![Seg::Key("records".into()), Seg::Index(i)];
            if !key.is_empty() {
                path.push(Seg::Key(key.into()));
            }
            path
        };
        if section.name.is_empty() {
            err(&at("name"), "every [[records]] needs a `name`".into());
        } else if !record_names.insert(section.name.clone()) {
            err(
                &at("name"),
                format!("a [[records]] named `{}` comes earlier", section.name),
            );
        }
        let matcher = glob_match(&section.records, &section.regex, "records").unwrap_or_else(|e| {
            err(
                &at(if section.regex.is_empty() {
                    "records"
                } else {
                    "regex"
                }),
                e,
            );
            ChannelMatch::Any
        });
        let mut access = |key: &str, value: &str| match value {
            "nobody" => Access::Nobody,
            "anyone" => Access::Anyone,
            "authenticated" => Access::Authenticated,
            other => {
                err(
                    &at(key),
                    format!("`{other}`: expected nobody, anyone or authenticated"),
                );
                Access::Nobody
            }
        };
        let (read, write) = (
            access("read", &section.read),
            access("write", &section.write),
        );
        for (key, value) in [
            ("max_records", section.max_records),
            ("max_value_bytes", section.max_value_bytes),
            ("max_patch_ops", section.max_patch_ops),
        ] {
            if value == 0 {
                err(&at(key), "must be at least 1".into());
            }
        }
        records.push(
            plexus_core::RecordNamespace::new(section.name.clone(), matcher)
                .read(read)
                .write(write)
                .max_records(usize_of(section.max_records))
                .max_value_bytes(usize_of(section.max_value_bytes))
                .max_patch_ops(usize_of(section.max_patch_ops)),
        );
    }

    // Socket.IO, and chat-service on it.
    let socketio = socketio_config(&config.socketio, dev_mode, &mut err);
    let chat_service = chat_service_config(&config.chat_service, dev_mode, explicit, &mut err);
    // The paths of the other dialects this server serves.
    let mut dialect_paths: Vec<&str> = socketio.iter().map(|s| s.path.as_str()).collect();
    if config.mesa.enabled || dev_mode {
        dialect_paths.push(config.mesa.path.as_str());
    }
    let mesh = mesh_config(&config.mesh, &dialect_paths, &mut err);
    if config.mesh.enabled || dev_mode {
        dialect_paths.push(config.mesh.path.as_str());
    }
    let plezi_bus = plezi_bus_config(&config.plezi_bus, config.engine == "redis", &mut err);
    let endpoints = endpoint_specs(
        &config.endpoints,
        &dialect_paths,
        endpoints_url.is_some(),
        &mut err,
    );
    let tls = match (config.tls.cert.is_empty(), config.tls.key.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let mut tls = TlsConfig::new(&config.tls.cert, &config.tls.key);
            tls.http = config.tls.http;
            if let Err(e) = tls.acceptor() {
                err(&p(&["tls", "cert"]), e.to_string());
            }
            Some(tls)
        }
        _ => {
            err(&p(&["tls"]), "`cert` and `key` go together".into());
            None
        }
    };
    let sockety = sockety_config(&config.sockety, dev_mode, tls.is_some(), &mut err);
    if let Some(path) = sockety.as_ref().and_then(|s| s.path.as_deref()) {
        dialect_paths.push(path);
    }
    let mesa = mesa_config(
        &config.mesa,
        dev_mode,
        explicit.mesa_sync,
        config.engine == "redis",
        &mut err,
    );
    let chat_hooks_named: BTreeSet<String> =
        config.chat_service.backend_hooks.iter().cloned().collect();
    if !chat_hooks_named.is_empty() && chat_service_url.is_none() {
        err(
            &p(&["chat_service", "backend_hooks"]),
            "needs `backend.chat_service_url`, where they are sent".into(),
        );
    }
    if dev_mode && explicit.socketio_off {
        warnings.push(
            "`socketio.enabled = false` has no effect in development mode, which always serves Socket.IO".into(),
        );
    }

    if !dev_mode {
        if !anonymous && jwt.is_none() && connect_url.is_none() {
            warnings.push("no way to authenticate: set a key in [jwt], `backend.connect_url` or `client.anonymous = true`".into());
        }
        if namespaces.is_empty() {
            warnings.push(
                "no [[namespaces]]: clients may not subscribe or publish to any channel".into(),
            );
        }
    }

    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let hooks = backend.as_ref().map(|backend| {
        Arc::new(BackendHooks {
            backend: backend.clone(),
            connect: connect_url,
            subscribe: subscribe_url,
            publish: publish_url,
        })
    });
    let chat_hooks = match (&backend, chat_service_url) {
        (Some(backend), Some(url)) if !chat_hooks_named.is_empty() => Some(Arc::new(
            BackendChatHooks::new(backend.clone(), url, chat_hooks_named),
        )
            as Arc<dyn ChatHooks>),
        _ => None,
    };
    let notifications = backend.as_ref().filter(|_| notifies).map(|backend| {
        Notifications::new(backend.clone(), opened_url, authenticated_url, closed_url)
    });
    Ok(Loaded {
        config,
        dev_mode,
        warnings,
        listen,
        limits,
        anonymous,
        metrics,
        api_key,
        jwt,
        namespaces,
        records,
        backend,
        hooks,
        notifications,
        rpc_url,
        rpc_urls,
        socketio,
        chat_service,
        chat_hooks,
        endpoints,
        endpoints_url,
        plezi_bus,
        mesa,
        mesh,
        admin,
        sockety,
        tls,
    })
}

/// The longest timer socket.io-client can set (JavaScript's `setTimeout` fires at once beyond
/// 2^31 - 1 ms); it waits `pingInterval + pingTimeout` in one timer.
const MAX_TIMER_MS: u64 = i32::MAX as u64;

/// Checks `[socketio]`; its [`SocketIoConfig`] when Socket.IO is served (`enabled`, or
/// development mode, where every namespace is open unless `namespaces` lists some).
fn socketio_config(
    s: &SocketIoSection,
    dev_mode: bool,
    err: &mut impl FnMut(&[Seg], String),
) -> Option<SocketIoConfig> {
    let at = |key: &str| key_path(&["socketio", key]);
    if let Err(e) = socketio_path(&s.path) {
        err(&at("path"), e);
    }
    type Check = fn(&str) -> Result<(), String>;
    let lists: [(&str, &Vec<String>, Check); 2] = [
        ("namespaces", &s.namespaces, socketio_namespace),
        ("cors_origins", &s.cors_origins, cors_origin),
    ];
    for (list, values, check) in lists {
        for (i, value) in values.iter().enumerate() {
            if let Err(e) = check(value) {
                let mut path = at(list);
                path.push(Seg::Index(i));
                err(&path, e);
            }
        }
    }
    for (key, value) in [
        ("ping_interval_ms", s.ping_interval_ms),
        ("ping_timeout_ms", s.ping_timeout_ms),
        ("upgrade_timeout_ms", s.upgrade_timeout_ms),
        ("connect_timeout_ms", s.connect_timeout_ms),
    ] {
        if value == 0 {
            err(&at(key), "must be greater than 0".into());
        } else if value > MAX_TIMER_MS {
            err(&at(key), format!("must be at most {MAX_TIMER_MS}"));
        }
    }
    if s.ping_interval_ms <= MAX_TIMER_MS
        && s.ping_timeout_ms <= MAX_TIMER_MS
        && s.ping_interval_ms + s.ping_timeout_ms > MAX_TIMER_MS
    {
        err(
            &at("ping_timeout_ms"),
            format!(
                "`ping_interval_ms` + `ping_timeout_ms` must be at most {MAX_TIMER_MS} (socket.io-client waits both in one timer)"
            ),
        );
    }
    for (key, value) in [
        ("max_payload_bytes", s.max_payload_bytes),
        ("max_polling_sessions", s.max_polling_sessions),
        ("max_buffered_packets", s.max_buffered_packets),
        ("max_attachments", s.max_attachments),
        ("max_namespaces", s.max_namespaces),
    ] {
        if value == 0 {
            err(&at(key), "must be greater than 0".into());
        } else if value > u64::from(u32::MAX) {
            err(&at(key), format!("must be at most {}", u32::MAX));
        }
    }
    (s.enabled || dev_mode).then(|| SocketIoConfig {
        path: s.path.clone(),
        ping_interval: ms(s.ping_interval_ms),
        ping_timeout: ms(s.ping_timeout_ms),
        max_payload_bytes: usize_of(s.max_payload_bytes),
        namespaces: s.namespaces.clone(),
        any_namespace: dev_mode && s.namespaces.is_empty(),
        cors_origins: s.cors_origins.clone(),
        max_polling_sessions: usize_of(s.max_polling_sessions),
        max_buffered_packets: usize_of(s.max_buffered_packets),
        max_attachments: usize_of(s.max_attachments),
        max_namespaces: usize_of(s.max_namespaces),
        upgrade_timeout: ms(s.upgrade_timeout_ms),
        connect_timeout: ms(s.connect_timeout_ms),
    })
}

/// The Socket.IO path: it starts with `/`, is a plain path, and is not one of the server's own
/// routes (`/ws`, `/health`, `/metrics`, `/api/…`, the demo's `/` and `/demo/…`).
fn socketio_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}`: must start with `/` (such as `/socket.io/`)"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-._~".contains(*c)))
    {
        return Err(format!(
            "`{path}`: `{c}` is not allowed (letters, digits, `/`, `-`, `.`, `_` and `~` are)"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    if segments.is_empty() {
        return Err(
            "`/` is the server's own: give a path of its own, such as `/socket.io/`".into(),
        );
    }
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err(format!(
            "`{path}`: empty, `.` and `..` segments are not allowed"
        ));
    }
    if matches!(
        segments[0],
        "ws" | "health" | "metrics" | "api" | "demo" | "admin"
    ) {
        return Err(format!(
            "`{path}`: `/{}` is the server's own (`/ws`, `/health`, `/metrics`, `/api/`, `/demo/`, `/admin`)",
            segments[0]
        ));
    }
    Ok(())
}

/// A Socket.IO namespace a client may connect to.
fn socketio_namespace(name: &str) -> Result<(), String> {
    if name.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "`{name}`: a namespace starts with `/` (such as `/admin`)"
        ))
    }
}

/// An origin allowed to poll cross-origin: `*`, or `scheme://host[:port]` as browsers send it
/// in `Origin` (no path, not even `/`: it would never match).
fn cors_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let valid = origin.split_once("://").is_some_and(|(scheme, host)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !host.is_empty()
            && !host.contains('/')
            && host.chars().all(|c| c.is_ascii_graphic())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{origin}`: expected `*` or an origin such as `https://app.example` (scheme://host[:port], without a path)"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Building the server.

/// The first namespace matching a channel, as the policy sees it.
fn first_match<'a>(
    rules: &'a [(ChannelMatch, SubscribeCheck, bool)],
    channel: &str,
) -> Option<&'a (ChannelMatch, SubscribeCheck, bool)> {
    rules.iter().find(|(m, _, _)| m.matches(channel))
}

impl Loaded {
    /// The limits every connection gets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The JWT verifier, when [jwt] has a key.
    pub fn jwt(&self) -> Option<&Arc<JwtVerifier>> {
        self.jwt.as_ref()
    }

    /// How Socket.IO is served, when it is (`[socketio] enabled = true`, or development mode).
    pub fn socketio(&self) -> Option<&SocketIoConfig> {
        self.socketio.as_ref()
    }

    /// How chat-service is served, when it is (`[chat_service] enabled = true`, or
    /// development mode).
    pub fn chat_service(&self) -> Option<&ChatServiceConfig> {
        self.chat_service.as_ref()
    }

    /// How Mesa is served, when it is (`[mesa] enabled = true`, or development mode).
    pub fn mesa(&self) -> Option<&MesaConfig> {
        self.mesa.as_ref()
    }

    /// What to read of Plezi's Redis bus (`[plezi_bus]`), when anything.
    pub fn plezi_bus(&self) -> Option<&PleziBusConfig> {
        self.plezi_bus.as_ref()
    }

    /// A server builder with everything the configuration says.
    pub fn server_builder(&self) -> ServerBuilder {
        let mut builder = Server::builder();
        if self.dev_mode {
            builder = builder.dev_mode();
        }
        // After `dev_mode()`: the `[socketio]` section replaces development mode's default.
        if let Some(socketio) = &self.socketio {
            builder = builder.socketio(socketio.clone());
        }
        if let Some(chat) = &self.chat_service {
            builder = builder.chat_service(chat.clone());
        }
        if let Some(hooks) = &self.chat_hooks {
            builder = builder.chat_hooks(hooks.clone());
        }
        for spec in &self.endpoints {
            let hooks = match (&self.backend, &self.endpoints_url) {
                (Some(backend), Some(url)) if !spec.hooks.is_empty() => {
                    Some((backend.clone(), url.clone()))
                }
                _ => None,
            };
            builder = builder.endpoint(spec.path.clone(), endpoint_backend::endpoint(spec, hooks));
        }
        if let Some(mesa) = &self.mesa {
            builder = builder.mesa(mesa.clone());
        }
        if let Some(mesh) = &self.mesh {
            builder = builder.mesh(mesh.clone());
        }
        if let Some(sockety) = &self.sockety {
            builder = builder.sockety(sockety.clone());
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls(tls.clone());
        }
        builder = builder
            .listen(self.listen)
            .limits(self.limits.clone())
            .anonymous(self.anonymous);

        let mut records = plexus_core::RecordPolicy::default();
        for namespace in &self.records {
            records.add_namespace(namespace.clone());
        }
        if self.dev_mode {
            // Development mode opens every record the sections above leave unmatched.
            records.add_namespace(plexus_core::RecordNamespace::development());
        }
        builder = builder.records(records);

        let mut policy = ChannelPolicy::default();
        let mut rules = Vec::new();
        for c in &self.namespaces {
            policy.add_namespace(c.namespace.clone());
            rules.push((c.namespace.channels.clone(), c.subscribe, c.publish_backend));
        }
        if self.dev_mode {
            // Development mode opens every channel the namespaces above leave unmatched.
            policy.add_namespace(Namespace::development());
            rules.push((ChannelMatch::Any, SubscribeCheck::None, false));
        }
        let rules = Arc::new(rules);
        if rules
            .iter()
            .any(|(_, check, _)| *check != SubscribeCheck::None)
        {
            let (rules, jwt, hooks) = (rules.clone(), self.jwt.clone(), self.hooks.clone());
            policy.add_guard(
                ChannelMatch::Any,
                &[Action::Subscribe],
                move |request: GuardRequest| {
                    let check =
                        first_match(&rules, &request.channel).map_or(SubscribeCheck::None, |r| r.1);
                    let (jwt, hooks) = (jwt.clone(), hooks.clone());
                    async move {
                        match check {
                            SubscribeCheck::None => Ok(()),
                            SubscribeCheck::Token => {
                                let Some(token) = request.token.as_deref() else {
                                    return Err(Error::permission_denied(format!(
                                        "subscribing to `{}` needs a subscription token",
                                        request.channel
                                    )));
                                };
                                let jwt = jwt.ok_or_else(|| Error::internal("no JWT key"))?;
                                jwt.verify_subscription(
                                    token,
                                    request.user.as_deref(),
                                    &request.channel,
                                )
                            }
                            SubscribeCheck::Backend => {
                                let hooks = hooks.ok_or_else(|| Error::internal("no backend"))?;
                                let url = hooks
                                    .subscribe
                                    .clone()
                                    .ok_or_else(|| Error::internal("no subscribe hook"))?;
                                hooks.subscribe(&url, &request).await
                            }
                        }
                    }
                },
            );
        }
        if rules.iter().any(|(_, _, backend)| *backend) {
            let (rules, hooks) = (rules.clone(), self.hooks.clone());
            policy.add_publish_hook(
                ChannelMatch::Any,
                move |request: GuardRequest, payload: Payload| {
                    let backend = first_match(&rules, &request.channel).is_some_and(|r| r.2);
                    let hooks = hooks.clone();
                    async move {
                        if !backend {
                            return Ok(payload);
                        }
                        let hooks = hooks.ok_or_else(|| Error::internal("no backend"))?;
                        let url = hooks
                            .publish
                            .clone()
                            .ok_or_else(|| Error::internal("no publish hook"))?;
                        hooks.publish(&url, &request, payload).await
                    }
                },
            );
        }
        builder = builder.channels(policy);

        let connect = self
            .hooks
            .as_ref()
            .and_then(|h| h.connect.clone().map(|u| (h.clone(), u)));
        if self.jwt.is_some() || connect.is_some() {
            let jwt = self.jwt.clone();
            builder = builder.auth_hook(move |request: AuthRequest| {
                let (jwt, connect) = (jwt.clone(), connect.clone());
                async move { authenticate(jwt.as_deref(), connect, request).await }
            });
        }

        if let Some(backend) = &self.backend {
            for (method, url) in &self.rpc_urls {
                builder =
                    builder.command_with(method.clone(), rpc_command(backend.clone(), url.clone()));
            }
            if let Some(url) = &self.rpc_url {
                builder = builder.fallback_command(rpc_command(backend.clone(), url.clone()));
            }
        }
        if let Some(notifications) = &self.notifications {
            builder = notifications.install(builder);
        }

        builder = match &self.admin {
            Some(admin) => builder.admin(admin.clone()),
            None => builder.without_admin(),
        };
        builder.endpoints(HttpEndpoints {
            api: Some(ApiOptions {
                key: self.api_key.clone(),
                max_body_bytes: usize_of(self.config.api.max_body_bytes),
                history_max: usize_of(self.config.api.history_max),
                broadcast_max_channels: usize_of(self.config.api.broadcast_max_channels),
                channels_max: usize_of(self.config.api.channels_max),
            }),
            metrics: self.metrics,
            backend: self.backend.clone(),
            stats: Arc::default(),
        })
    }

    /// What the server will do, in a few lines (for `config check` and the startup log).
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!("listen {}", self.listen)];
        if self.dev_mode {
            lines.push(
                "development mode: every channel not in a namespace is open to every client, with history (100, 1 h), recovery and presence".into(),
            );
            lines.push(format!("demo page: {}", crate::demo::page_url(self.listen)));
        }
        let mut auth = Vec::new();
        if self.jwt.is_some() {
            auth.push("JWT");
        }
        if self.hooks.as_ref().is_some_and(|h| h.connect.is_some()) {
            auth.push("connect hook");
        }
        if self.anonymous {
            auth.push("anonymous");
        }
        lines.push(format!(
            "authentication: {}",
            if auth.is_empty() {
                "none".into()
            } else {
                auth.join(", ")
            }
        ));
        for c in &self.namespaces {
            let ns = &self
                .config
                .namespaces
                .iter()
                .find(|n| n.name == c.namespace.name);
            if let Some(ns) = ns {
                let pattern = if ns.regex.is_empty() {
                    ns.channels.clone()
                } else {
                    format!("/{}/", ns.regex)
                };
                lines.push(format!(
                    "namespace {} ({pattern}): subscribe {}, publish {}{}",
                    ns.name,
                    ns.subscribe,
                    ns.publish,
                    if ns.rooms { ", rooms" } else { "" }
                ));
            }
        }
        lines.push(format!(
            "HTTP API: {}",
            match &self.api_key {
                ApiKey::Required(_) => "on, with a key",
                ApiKey::Open => "on, without a key",
                ApiKey::Missing => "off (no api.key)",
            }
        ));
        let notified: Vec<&str> = [
            ("opened", &self.config.backend.opened_url),
            ("authenticated", &self.config.backend.authenticated_url),
            ("closed", &self.config.backend.closed_url),
        ]
        .into_iter()
        .filter(|(_, url)| !url.is_empty())
        .map(|(name, _)| name)
        .collect();
        if !notified.is_empty() {
            lines.push(format!("lifecycle notifications: {}", notified.join(", ")));
        }
        lines.push(format!(
            "metrics: {}",
            if self.metrics { "on (/metrics)" } else { "off" }
        ));
        lines.push(match &self.admin {
            None => "admin interface: off".into(),
            Some(a) if a.generated => format!(
                "admin interface: {}admin (password made up at start, shown in the log)",
                crate::demo::page_url(self.listen)
            ),
            Some(_) => format!(
                "admin interface: {}admin",
                crate::demo::page_url(self.listen)
            ),
        });
        lines.push(match &self.socketio {
            None => "Socket.IO: off".into(),
            Some(s) if s.any_namespace => format!("Socket.IO: on ({}, every namespace)", s.path),
            Some(s) => {
                let mut namespaces = vec!["/".to_owned()];
                namespaces.extend(s.namespaces.iter().filter(|n| *n != "/").cloned());
                format!(
                    "Socket.IO: on ({}, namespaces {})",
                    s.path,
                    namespaces.join(", ")
                )
            }
        });
        let mut endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "{} ({})",
                    e.path,
                    self.config
                        .endpoints
                        .iter()
                        .find(|c| c.path == e.path)
                        .map_or("", |c| c.mode.as_str())
                )
            })
            .collect();
        if self.dev_mode {
            for (path, mode) in [("/echo", "echo"), ("/plezi", "dispatch")] {
                if !self.endpoints.iter().any(|e| e.path == path) {
                    endpoints.push(format!("{path} ({mode})"));
                }
            }
        }
        if !endpoints.is_empty() {
            lines.push(format!("endpoints: {}", endpoints.join(", ")));
        }
        lines
    }
}

/// In-band authentication: a token checked with the JWT keys, otherwise the backend's
/// `connect` hook (with the client's credentials and the token, if any).
async fn authenticate(
    jwt: Option<&JwtVerifier>,
    connect: Option<(Arc<BackendHooks>, Uri)>,
    request: AuthRequest,
) -> Result<plexus_core::Identity, Error> {
    if let (Some(token), Some(jwt)) = (request.token.as_deref(), jwt) {
        return jwt.verify_connection(token);
    }
    match connect {
        Some((hooks, url)) => hooks.connect(&url, &request).await,
        None => Err(Error::new(
            ErrorCode::AUTH_FAILED,
            "this server accepts tokens only",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// `plexus config init`.

/// Random bytes as hex, from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("the operating system's random generator");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A commented example configuration with fresh random secrets.
pub fn init_template() -> String {
    TEMPLATE
        .replace("@HMAC_SECRET@", &random_hex(32))
        .replace("@API_KEY@", &random_hex(24))
}

const TEMPLATE: &str = r#"# Plexus configuration. Check it with `plexus config check plexus.toml`, run it with
# `plexus serve --config plexus.toml`. Every setting can also come from an environment variable
# (PLEXUS_ + its path in capitals: PLEXUS_SERVER_LISTEN, PLEXUS_API_KEY, …) or, for the common
# ones, a flag; flags win over the environment, the environment over this file.
#
# With a file, the defaults are closed: nothing is allowed that the file does not allow.

# `memory`: one process, nothing to install. `redis`: many nodes sharing the [redis] server
# (see docs/redis.md).
engine = "memory"

[server]
listen = "127.0.0.1:8000"
# Development mode: anonymous connections, every channel open, the API without a key.
dev_mode = false
# Time given to clients to receive their queued messages at shutdown (close 4000).
shutdown_timeout_ms = 10000

[client]
# Connections that never authenticate may subscribe and publish where namespaces allow anyone.
anonymous = false
auth_timeout_ms = 10000
max_message_bytes = 65536
max_subscriptions = 128
max_channel_bytes = 255
outbound_queue_bytes_max = 1048576
max_connections_per_user = 100
requests_per_second = 100
requests_burst = 200
max_pending_requests = 64
command_timeout_ms = 30000
ping_interval_ms = 25000
max_missed_pongs = 2
push_latency = true
recovery_max_publications = 300
history_max = 300
max_metadata_bytes = 16384
mailbox_max_messages = 1000
mailbox_lifetime_ms = 604800000
mail_ttl_ms = 604800000
mail_redelivery_pace_ms = 0
# An endpoint identity (register_as) lives at least this long (Plezi's clamp: 10 minutes).
identity_min_lifetime_ms = 600000
# A client that stops reading is dropped once one write has waited this long.
write_timeout_ms = 10000
# Names one room list (whitelist, blacklist, adminlist) and one user's direct list may hold.
room_list_max = 10000
direct_list_max = 1000

[jwt]
# Connection tokens: `sub` = user id, `exp`, `info`, `channels`. Make one for testing with
# `plexus token --config plexus.toml --user alice`. Your backend signs them with this secret.
hmac_secret = "@HMAC_SECRET@"
# Public keys for RS256/384/512 and ES256/384 tokens: PEM text or a file path. Empty = unused.
rsa_public_key = ""
ecdsa_public_key = ""
# When set, tokens must carry this `aud` / `iss`.
audience = ""
issuer = ""
leeway_seconds = 0

[api]
# The HTTP server API (POST /api/<method>) requires this key:
#   Authorization: apikey <key>     (or X-API-Key: <key>)
key = "@API_KEY@"
max_body_bytes = 1048576
history_max = 1000
broadcast_max_channels = 1000
channels_max = 10000

[metrics]
# GET /metrics in the Prometheus text format.
enabled = true

[admin]
# The admin web interface at /admin (docs/admin.md). To turn it on, set enabled = true and a
# password of at least 12 characters (not the API key), e.g. from `openssl rand -hex 16`.
enabled = false
password = ""
session_ttl_ms = 28800000
sessions_max = 64
# After this many failed logins within login_window_ms, logins are refused until the window
# passes (429 with Retry-After).
login_failures_max = 10
login_window_ms = 60000
# Mark the session cookie Secure (set when the server is reached over HTTPS; a proxy that sends
# X-Forwarded-Proto: https gets a Secure cookie anyway).
secure_cookie = false

[backend]
# Hooks into your application over HTTP (POST JSON). An empty URL turns a hook off.
timeout_ms = 5000
max_in_flight = 256
max_response_bytes = 1048576
# Headers of the client's WebSocket request passed on to the connect hook.
forward_headers = ["cookie", "authorization", "origin", "user-agent", "x-forwarded-for", "x-real-ip"]
# Headers added to every hook request, e.g. a secret your backend checks.
headers = {}
# Hook URLs are http:// or https://; for https://, a PEM file of certificates trusted besides the
# usual (Mozilla) roots, e.g. your own CA.
ca_file = ""
connect_url = ""    # e.g. "http://127.0.0.1:3000/plexus/connect"
subscribe_url = ""  # for namespaces with subscribe = "backend"
publish_url = ""    # for namespaces with publish = "backend"
rpc_url = ""        # answers every `call` without a URL of its own
rpc_urls = {}       # per method, e.g. { "orders.create" = "http://127.0.0.1:3000/rpc/orders" }
# Notifications, fire-and-forget (never delay a connection): a connection opened, authenticated,
# closed (with its close code and reason).
opened_url = ""
authenticated_url = ""
closed_url = ""
# chat-service's hooks listed in [chat_service] backend_hooks (docs/chat-service.md).
chat_service_url = ""
# The hooks [[endpoints]] list (docs/endpoints.md).
endpoints_url = ""

# Channels. The first namespace whose pattern matches a channel applies; channels no namespace
# matches are closed to clients (the server API may still publish to them).
#   subscribe: nobody | anyone | authenticated | token (a subscription token) | backend
#   publish:   nobody | anyone | subscribers | authenticated | backend
[[namespaces]]
name = "chat"
channels = "chat:*"
subscribe = "authenticated"
publish = "subscribers"
publisher_info = true
history_size = 100
history_ttl_ms = 300000
recovery = true
presence = true
join_leave = "users"

[[namespaces]]
name = "news"
channels = "news"
subscribe = "anyone"
publish = "nobody"

# Rooms (docs/chat-service.md): channels that exist once created through the API, with an
# owner and access lists (whitelist, blacklist, adminlist, whitelist-only mode) that decide who
# may subscribe, publish and read. Needs presence: a room's members are its presence.
[[namespaces]]
name = "rooms"
channels = "room:*"
subscribe = "authenticated"
publish = "subscribers"
history_size = 100
history_ttl_ms = 300000
presence = true
rooms = true

# Records (docs/records.md): JSON documents with a version, read, written (whole, JSON Patch,
# compare-and-set) and watched. The first section matching a record id applies; with a file,
# records no section matches are closed.
[[records]]
name = "profiles"
records = "profile:*"
read = "anyone"
write = "authenticated"
max_records = 100000
max_value_bytes = 65536
max_patch_ops = 100

[[namespaces]]
name = "private"
regex = "private:[a-z0-9-]+"
subscribe = "token"
publish = "nobody"

[redis]
# Used with engine = "redis". One prefix per application sharing the Redis.
url = "redis://127.0.0.1:6379/"
# A Redis Cluster instead: some of its nodes, e.g. ["redis://10.0.0.1:6379",
# "redis://10.0.0.2:6379"] (url is then not used; see docs/redis.md).
cluster = []
prefix = "plexus"
# A presence member whose node died is gone after this long; a dead node after node_ttl_ms.
presence_ttl_ms = 60000
node_ttl_ms = 15000

[socketio]
# Socket.IO (docs/socketio.md): socket.io-client 2.x, 3.x and 4.x connect unchanged, on the same
# port as /ws, with the same authentication, namespaces (channels are its rooms) and limits.
# Development mode serves it always.
enabled = false
path = "/socket.io/"
# Engine.IO heartbeat: a silent client is closed after ping_interval_ms + ping_timeout_ms.
ping_interval_ms = 25000
ping_timeout_ms = 20000
# Engine.IO maxPayload: the largest polling body (larger: HTTP 413) and WebSocket message.
max_payload_bytes = 1000000
# Socket.IO namespaces clients may connect to besides "/", e.g. ["/admin"].
namespaces = []
# Origins allowed to poll cross-origin, e.g. ["https://app.example"]; "*" allows any.
cors_origins = []
# Long-polling sessions held by this node; a handshake beyond gets HTTP 503.
max_polling_sessions = 10000
# Packets waiting for a polling client that does not poll; beyond, its session is closed.
max_buffered_packets = 10000
# Binary attachments of one packet, and namespaces one connection may join.
max_attachments = 10
max_namespaces = 16
# Time a client has to finish the upgrade from polling to WebSocket.
upgrade_timeout_ms = 10000
# Socket.IO connectTimeout: a connection that joined no namespace by then is closed.
connect_timeout_ms = 45000

[chat_service]
# chat-service's protocol (docs/chat-service.md): its socket.io-client 2 apps connect unchanged
# to this Socket.IO namespace. Room R is the channel channel_prefix + R. Development mode serves
# it always, with rooms management, direct messages, user list updates and login_query = "user".
enabled = false
namespace = "/chat-service"
channel_prefix = "chat-service:"
enable_rooms_management = false
enable_direct_messages = false
enable_userlist_updates = false
enable_access_lists_updates = false
# Messages a room keeps, and the most one history read returns.
history_max_size = 10000
history_max_get_messages = 100
room_list_size_limit = 10000
direct_list_size_limit = 1000
# Errors as {name, code, args} objects instead of "ChatServiceError: ..." strings.
use_raw_error_objects = false
# Log sockets in from this handshake query parameter; empty: from the token or auth hook.
login_query = ""
# chat-service hooks sent to backend.chat_service_url, e.g. ["roomJoinBefore", "onJoin"].
backend_hooks = []

[mesa]
# Mesa's protocol (docs/mesa.md): @cryb/mesa's Client and mesa-js-client connect unchanged at
# `path`. Development mode serves it always, with sync on and op 2's `token` taken as the user id.
enabled = false
path = "/mesa"
# Op 1 heartbeats every client.ping_interval_ms (advertised as c_heartbeat_interval).
heartbeat = true
# Advertised c_reconnect_interval; 0: none.
reconnect_interval_ms = 0
# Enforced: a Mesa connection not authenticated by then is closed with 4003.
auth_timeout_ms = 10000
# Op 22 carries the user object (the identity's info, or {"id": user}).
send_user_object = true
# A refused op 2 closes with 1008; false: a PLEXUS_ERROR dispatch, and the client may retry.
disconnect_on_fail = true
# Clients must send this CLIENT_VERSION (closed with 1002 otherwise); empty: not enforced.
enforce_version = ""
# Keep messages for users with no connection (client.mailbox_max_messages, client.mail_ttl_ms)
# and redeliver them after authentication, redelivery_interval_ms apart.
sync = false
redelivery_interval_ms = 0
# Mesa's namespace: its Dispatcher's Redis channel is ws_<namespace> (ws when empty).
namespace = ""
# Where client events (connection, authentication, message, disconnection) go: "off"; "queue",
# Plexus's at-least-once queue portal_group (workers take and acknowledge them with the HTTP API
# or in Rust; an event not acknowledged within portal_lease_ms goes to another worker; beyond
# portal_backlog_max events the newest is dropped); "mesa", Mesa's Portal format on Redis
# (portal_<namespace>, lossy as in Mesa; needs engine = "redis").
portals = "off"
portal_group = "mesa"
portal_backlog_max = 10000
portal_lease_ms = 30000
# "mesa" portals: round-robin over the known portals (false: one at random).
distribute_load = true

[mesh]
# Mesh's protocol (docs/mesh.md): clients of @prsm/mesh's wire format ({id, command, payload})
# connect at `path`. Development mode serves it always, every connection's metadata readable.
enabled = false
path = "/mesh"
# Push mesh/assign-id with the connection's id right after the upgrade.
assign_id = true
# mesh/get-connection-metadata may read other connections' metadata (Mesh let anyone).
metadata_readable = false

[sockety]
# Sockety's binary protocol (docs/sockety.md). Development mode serves it whatever this says.
enabled = false
# WebSocket path (binary frames); "" for none.
path = "/sockety"
# Plain TCP listener, e.g. "0.0.0.0:8001"; "" for none (development mode: 127.0.0.1:8001 if free).
listen = ""
# TLS listener (needs [tls]); "" for none.
tls_listen = ""
# Channels the server receives on (1 to 4096).
channels = 4096
# Silence from a client that closes it; the server writes a heartbeat after 3/4 of it.
timeout_ms = 60000
# Bounds of one received message: its data, its files' count and bytes (over them: fast reply 413).
max_data_bytes = 16777216
max_files = 64
max_files_bytes = 1073741824
# Received files up to this size stay in memory; larger ones go to unlinked files in spool_dir.
memory_file_bytes = 65536
# "" for the system's temporary directory.
spool_dir = ""
# Unread bytes buffered per received stream before reading the connection pauses.
stream_buffer_bytes = 262144

[tls]
# PEM files of the certificate chain (leaf first) and of its private key; both or neither.
cert = ""
key = ""
# Serve https:// and wss:// on server.listen (else only Sockety's TLS listener uses them).
http = true

[plezi_bus]
# Plezi's Redis formats (docs/endpoints.md), read from the [redis] server (engine = "redis"):
# Redis channel patterns on which Plezi 0.16 publishes raw messages (a message on Redis channel X
# reaches the subscribers of Plexus channel X), e.g. ["chat:*"].
raw_channels = []
# Plezi 0.12's global channel (Plezi::Settings.redis_channel_name), e.g. "myapp_redis_channel".
global_channel = ""

# WebSocket endpoints (docs/endpoints.md): each at its own path, in `dispatch` (JSON
# auto-dispatch by `event`), `raw` or `echo` mode, with the backend's hooks as handlers.
# Development mode mounts /echo and /plezi. For example:
# [[endpoints]]
# path = "/chat"
# name = "chat"
# mode = "dispatch"
# unknown_event = "not_found"
# hooks = ["pre_connect", "open", "event", "close", "shutdown"]
# max_message_bytes = 0          # 0: the server's limits
# outbound_queue_bytes_max = 0
# messages_per_second = 0
# messages_burst = 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Sources {
        Sources {
            file: Some(ConfigFile {
                path: "test.toml".into(),
                text: text.into(),
            }),
            ..Sources::default()
        }
    }

    #[test]
    fn sockety_and_tls_are_checked() {
        let e = load(&file("[sockety]\nenabled = true\ntls_listen = \"127.0.0.1:0\"\nlisten = \"nowhere\"\nchannels = 5000\n"))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("sockety.tls_listen") && e.contains("tls.cert"),
            "{e}"
        );
        assert!(
            e.contains("sockety.listen") && e.contains("`nowhere`"),
            "{e}"
        );
        assert!(e.contains("sockety.channels"), "{e}");
        let e = load(&file("[tls]\ncert = \"/nonexistent.pem\"\n"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("`cert` and `key` go together"), "{e}");
        let loaded = load(&file(
            "[sockety]\nenabled = true\nlisten = \"127.0.0.1:9\"\n",
        ))
        .unwrap();
        let sockety = loaded.sockety.clone().expect("served");
        assert_eq!(sockety.listen, Some("127.0.0.1:9".parse().unwrap()));
        assert!(
            !sockety.listen_best_effort,
            "an address set must be listened on"
        );
        let dev = load(&Sources::default()).unwrap();
        let sockety = dev
            .sockety
            .clone()
            .expect("development mode serves Sockety");
        assert_eq!(sockety.listen, Some(DEV_SOCKETY_LISTEN.parse().unwrap()));
        assert!(sockety.listen_best_effort);
    }

    #[test]
    fn the_template_is_valid_and_names_every_setting() {
        let text = init_template();
        let loaded = load(&file(&text)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!loaded.dev_mode);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let schema = Schema::config();
        let Schema::Table(sections) = &schema else {
            panic!()
        };
        for (section, fields) in sections {
            let Schema::Table(fields) = fields else {
                continue;
            };
            for (key, _) in fields {
                let header = format!("\n[{section}]\n");
                let after = text
                    .split(&header)
                    .nth(1)
                    .unwrap_or_else(|| panic!("{header} missing"));
                // The section's own lines: up to the next table header.
                let body = format!("\n{}", after.split("\n[").next().unwrap_or(""));
                assert!(
                    body.contains(&format!("\n{key} = ")),
                    "{section}.{key} is not in the template"
                );
            }
        }
    }

    #[test]
    fn globs() {
        let ns = |channels: &str| NamespaceSection {
            channels: channels.into(),
            ..NamespaceSection::default()
        };
        let m = channel_match(&ns("room:*:public")).unwrap();
        assert!(m.matches("room:12:public"));
        assert!(!m.matches("room:12:private"));
        assert!(
            matches!(channel_match(&ns("chat:*")).unwrap(), ChannelMatch::Prefix(p) if p == "chat:")
        );
        assert!(matches!(
            channel_match(&ns("news")).unwrap(),
            ChannelMatch::Exact(_)
        ));
        assert!(matches!(
            channel_match(&ns("*")).unwrap(),
            ChannelMatch::Any
        ));
        assert!(channel_match(&ns("a.b*c")).unwrap().matches("a.bxxc"));
        assert!(!channel_match(&ns("a.b*c")).unwrap().matches("axbxxc"));
    }

    #[test]
    fn environment_names_map_to_paths() {
        let schema = Schema::config();
        let path = |name: &str| schema.env_path(name).map(|(p, _)| path_string(&p));
        assert_eq!(path("SERVER_LISTEN").as_deref(), Some("server.listen"));
        assert_eq!(
            path("CLIENT_MAX_MESSAGE_BYTES").as_deref(),
            Some("client.max_message_bytes")
        );
        assert_eq!(
            path("BACKEND_RPC_URLS").as_deref(),
            Some("backend.rpc_urls")
        );
        assert_eq!(path("BACKEND_RPC_URL").as_deref(), Some("backend.rpc_url"));
        assert_eq!(path("NAMESPACES").as_deref(), Some("namespaces"));
        assert_eq!(
            path("SOCKETIO_NAMESPACES").as_deref(),
            Some("socketio.namespaces")
        );
        assert_eq!(
            path("SOCKETIO_PING_INTERVAL_MS").as_deref(),
            Some("socketio.ping_interval_ms")
        );
        assert_eq!(path("SERVER_NOPE"), None);
    }

    #[test]
    fn the_client_commands_variables_are_not_settings() {
        let env = [
            "PLEXUS_URL",
            "PLEXUS_TOKEN",
            "PLEXUS_CREDENTIALS",
            "PLEXUS_LOG",
        ]
        .map(|name| (name.to_owned(), "{}".to_owned()))
        .to_vec();
        let loaded = load(&Sources {
            env,
            ..Sources::default()
        });
        assert!(loaded.is_ok(), "{}", loaded.err().unwrap());
    }

    #[test]
    fn edit_distance_suggests_keys() {
        assert_eq!(edit_distance("lisen", "listen"), 1);
        assert!(unknown_key("lisen", &["listen", "dev_mode"]).contains("did you mean `listen`"));
        assert!(unknown_key("zzz", &["listen"]).contains("known keys: listen"));
    }
}

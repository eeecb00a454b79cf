//! Plexus server: the WebSocket transport, the dialect sessions, the HTTP endpoints, and the
//! [`Server`] builder that embeds all of it in a tokio application.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use plexus_server::Server;
//! let server = Server::builder()
//!     .listen("127.0.0.1:8000".parse().unwrap())
//!     .dev_mode()
//!     .command("echo", |ctx: plexus_core::CommandContext| async move { Ok(ctx.payload) })
//!     .build();
//! let running = server.start().await?;
//! running.wait_for_signal().await;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
mod assets;
pub mod backend;
pub mod chatservice;
pub mod config;
mod conn;
mod demo;
pub mod endpoint;
pub mod jwt;
pub mod mesa;
pub mod mesh;
mod metrics;
pub mod native;
pub mod socketio;
pub mod sockety;
pub mod tls;
mod ws;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use plexus_core::auth::{AuthConfig, AuthHook, UpgradeHook};
use plexus_core::channels::{Action, ChannelMatch, ChannelPolicy, Guard, Namespace};
use plexus_core::commands::{AfterHook, BeforeHook, Command, Handler, Middleware};
use plexus_core::lifecycle::{Authenticated, Closed, Lifecycle, Opened};
use plexus_core::{Engine, Limits, Node, NodeBuilder, WireFormat};
use plexus_protocol::Encoding;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, oneshot};

pub use native::NativeFormat;

/// The wire formats this server speaks.
pub(crate) struct Formats {
    native_json: Arc<dyn WireFormat>,
    native_msgpack: Arc<dyn WireFormat>,
    socketio: Arc<dyn WireFormat>,
    sockety: Arc<dyn WireFormat>,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            native_json: Arc::new(NativeFormat::new(Encoding::Json)),
            native_msgpack: Arc::new(NativeFormat::new(Encoding::Msgpack)),
            socketio: Arc::new(socketio::SocketIoFormat),
            sockety: Arc::new(sockety::SocketyFormat::new()),
        }
    }

    pub(crate) fn sockety(&self) -> Arc<dyn WireFormat> {
        self.sockety.clone()
    }

    pub(crate) fn socketio(&self) -> Arc<dyn WireFormat> {
        self.socketio.clone()
    }

    pub(crate) fn native(&self, encoding: Encoding) -> Arc<dyn WireFormat> {
        match encoding {
            Encoding::Json => self.native_json.clone(),
            Encoding::Msgpack => self.native_msgpack.clone(),
        }
    }
}

/// Counts running sessions so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Sessions {
    active: AtomicUsize,
    idle: Notify,
}

/// Held by a running session; dropping it marks the session finished.
pub(crate) struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Sessions {
    pub(crate) fn enter(self: &Arc<Self>) -> SessionGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        SessionGuard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

pub(crate) struct ServerState {
    pub(crate) node: Node,
    pub(crate) formats: Formats,
    pub(crate) sessions: Arc<Sessions>,
    dev_mode: bool,
    endpoints: api::HttpEndpoints,
    pub(crate) socketio: Option<Arc<socketio::SocketIoConfig>>,
    pub(crate) socketio_sessions: Arc<socketio::Registry>,
    pub(crate) chat_service: Option<Arc<chatservice::ChatService>>,
    pub(crate) endpoints_ws: endpoint::Endpoints,
    pub(crate) mesa: Option<Arc<mesa::MesaService>>,
    pub(crate) mesh: Option<Arc<mesh::MeshService>>,
    pub(crate) admin: Option<Arc<admin::AdminState>>,
    pub(crate) sockety: Option<Arc<sockety::SocketyService>>,
    tls: Option<tls::TlsConfig>,
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    node: NodeBuilder,
    listen: SocketAddr,
    dev_mode: bool,
    endpoints: api::HttpEndpoints,
    socketio: Option<socketio::SocketIoConfig>,
    chat_service: Option<chatservice::ChatServiceConfig>,
    chat_hooks: Option<Arc<dyn chatservice::ChatHooks>>,
    endpoints_ws: endpoint::Endpoints,
    mesa: Option<mesa::MesaConfig>,
    mesa_hooks: Option<Arc<dyn mesa::MesaHooks>>,
    mesh: Option<mesh::MeshConfig>,
    admin: Option<admin::AdminOptions>,
    sockety: Option<sockety::SocketyConfig>,
    sockety_actions: std::collections::HashMap<String, Arc<dyn sockety::Action>>,
    tls: Option<tls::TlsConfig>,
}

impl ServerBuilder {
    /// Serves Sockety (`docs/sockety.md`): WebSocket at `config.path`, TCP at `config.listen`,
    /// TLS at `config.tls_listen` (with [`ServerBuilder::tls`]).
    pub fn sockety(mut self, config: sockety::SocketyConfig) -> Self {
        self.sockety = Some(config);
        self
    }

    /// A Sockety action: its handler sees the message's data, files and stream and answers
    /// with a response, a fast reply or nothing. Serves Sockety with the default configuration
    /// if [`ServerBuilder::sockety`] was not called.
    pub fn sockety_action(mut self, name: impl Into<String>, action: impl sockety::Action) -> Self {
        self.sockety.get_or_insert_with(Default::default);
        self.sockety_actions.insert(name.into(), Arc::new(action));
        self
    }

    /// TLS with this certificate and key: `https://` and `wss://` on the HTTP listener (unless
    /// `http` is off) and Sockety's TLS listener.
    pub fn tls(mut self, config: tls::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Mounts an endpoint at `path` (`docs/endpoints.md`): a raw or auto-dispatch WebSocket
    /// endpoint with its own handlers, sharing the port, the auth, the limits and the engine.
    /// A later endpoint at the same path replaces an earlier one.
    pub fn endpoint(mut self, path: impl Into<String>, endpoint: endpoint::Endpoint) -> Self {
        let path = path.into();
        self.endpoints_ws.mounted.retain(|m| m.path != path);
        self.endpoints_ws.mount(path, endpoint);
        self
    }

    /// Serves Mesa's protocol (`docs/mesa.md`) at `config.path`.
    pub fn mesa(mut self, config: mesa::MesaConfig) -> Self {
        self.mesa = Some(config);
        self
    }

    /// Serves Mesh's protocol (`docs/mesh.md`) at `config.path`.
    pub fn mesh(mut self, config: mesh::MeshConfig) -> Self {
        self.mesh = Some(config);
        self
    }

    /// Mesa's middleware events as hooks (`onMessageReceived`, `onAuthenticated`, …).
    pub fn mesa_hooks(mut self, hooks: Arc<dyn mesa::MesaHooks>) -> Self {
        self.mesa_hooks = Some(hooks);
        self
    }

    /// Serves the admin web interface at `/admin` (`docs/admin.md`), with its own password.
    pub fn admin(mut self, options: admin::AdminOptions) -> Self {
        self.admin = Some(options);
        self
    }

    /// No admin interface, even in development mode.
    pub fn without_admin(mut self) -> Self {
        self.admin = None;
        self
    }

    /// Serves chat-service's protocol (`docs/chat-service.md`) in its Socket.IO namespace;
    /// turns Socket.IO on when it is not.
    pub fn chat_service(mut self, config: chatservice::ChatServiceConfig) -> Self {
        self.chat_service = Some(config);
        self
    }

    /// chat-service's hooks (`onConnect`, `<command>Before`/`After`, …).
    pub fn chat_hooks(mut self, hooks: Arc<dyn chatservice::ChatHooks>) -> Self {
        self.chat_hooks = Some(hooks);
        self
    }

    /// Serves Socket.IO (`docs/socketio.md`) at `config.path` on the same port.
    pub fn socketio(mut self, config: socketio::SocketIoConfig) -> Self {
        self.socketio = Some(config);
        self
    }

    /// The HTTP server API (`/api/…`) and `/metrics`; neither is served unless set.
    pub fn endpoints(mut self, endpoints: api::HttpEndpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Adds a hook that sees (and may refuse or rewrite) client publications.
    pub fn publish_hook(
        mut self,
        channels: ChannelMatch,
        hook: impl plexus_core::channels::PublishHook,
    ) -> Self {
        self.node.channels_mut().add_publish_hook(channels, hook);
        self
    }

    /// The command that answers calls of methods no command is registered for.
    pub fn fallback_command(mut self, command: Command) -> Self {
        self.node.commands_mut().fallback(command);
        self
    }

    /// The address to listen on (default `127.0.0.1:8000`; port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Development mode: anonymous connections, and every channel subscribable and
    /// publishable by clients.
    pub fn dev_mode(mut self) -> Self {
        self.dev_mode = true;
        self.node.auth_mut().anonymous = true;
        if self.socketio.is_none() {
            self.socketio = Some(socketio::SocketIoConfig {
                any_namespace: true,
                ..Default::default()
            });
        }
        if self.chat_service.is_none() {
            self.chat_service = Some(chatservice::ChatServiceConfig::development());
        }
        if self.sockety.is_none() {
            self.sockety = Some(sockety::SocketyConfig::default());
        }
        // `echo` for Sockety clients: data, files and stream back.
        self.sockety_actions
            .entry("echo".into())
            .or_insert_with(|| Arc::new(sockety::echo));
        if self.mesa.is_none() {
            self.mesa = Some(mesa::MesaConfig::development());
        }
        if self.mesh.is_none() {
            self.mesh = Some(mesh::MeshConfig::development());
        }
        if self.admin.is_none() {
            self.admin = Some(admin::AdminOptions::generated());
        }
        *self.node.channels_mut() = ChannelPolicy::open();
        *self.node.records_mut() = plexus_core::RecordPolicy::open();
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        *self.node.limits_mut() = limits;
        self
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        self.node.limits_mut()
    }

    pub fn engine(mut self, engine: Engine) -> Self {
        self.node = self.node.engine(engine);
        self
    }

    /// Registers a command with default options.
    pub fn command(self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.command_with(name, Command::new(handler))
    }

    /// Registers a command with its middleware, hooks, timeout and concurrency.
    pub fn command_with(mut self, name: impl Into<String>, command: Command) -> Self {
        self.node.commands_mut().register(name, command);
        self
    }

    /// Global command middleware (before each command's own).
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.node.commands_mut().middleware(middleware);
        self
    }

    /// A before hook for every command.
    pub fn before(mut self, hook: impl BeforeHook) -> Self {
        self.node.commands_mut().before(hook);
        self
    }

    /// An after hook for every command.
    pub fn after(mut self, hook: impl AfterHook) -> Self {
        self.node.commands_mut().after(hook);
        self
    }

    /// Adds a namespace (the first matching namespace applies to a channel).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.node.channels_mut().add_namespace(namespace);
        self
    }

    /// Replaces the channel policy.
    pub fn channels(mut self, policy: ChannelPolicy) -> Self {
        *self.node.channels_mut() = policy;
        self
    }

    /// Adds a record namespace (the first matching namespace applies to a record).
    pub fn record_namespace(mut self, namespace: plexus_core::RecordNamespace) -> Self {
        self.node.records_mut().add_namespace(namespace);
        self
    }

    /// Replaces the record policy.
    pub fn records(mut self, policy: plexus_core::RecordPolicy) -> Self {
        *self.node.records_mut() = policy;
        self
    }

    /// Adds a guard on the records `records` matches.
    pub fn record_guard(
        mut self,
        records: ChannelMatch,
        actions: &[plexus_core::RecordAction],
        guard: impl plexus_core::records::RecordGuard,
    ) -> Self {
        self.node.records_mut().add_guard(records, actions, guard);
        self
    }

    /// Adds a guard on the channels `channels` matches.
    pub fn guard(mut self, channels: ChannelMatch, actions: &[Action], guard: impl Guard) -> Self {
        self.node.channels_mut().add_guard(channels, actions, guard);
        self
    }

    /// The hook that sees every upgrade request and may accept (with a user) or refuse it.
    pub fn upgrade_hook(mut self, hook: impl UpgradeHook) -> Self {
        self.node.auth_mut().upgrade = Some(Arc::new(hook));
        self
    }

    /// The hook that checks in-band credentials (`connect`).
    pub fn auth_hook(mut self, hook: impl AuthHook) -> Self {
        self.node.auth_mut().in_band = Some(Arc::new(hook));
        self
    }

    /// Tell a user's other connections when one of its connections connects, disconnects,
    /// joins or leaves a channel.
    pub fn echoes(mut self, on: bool) -> Self {
        self.node = self.node.echoes(on);
        self
    }

    /// Whether connections may be used without authenticating.
    pub fn anonymous(mut self, allowed: bool) -> Self {
        self.node.auth_mut().anonymous = allowed;
        self
    }

    pub fn auth(mut self, auth: AuthConfig) -> Self {
        *self.node.auth_mut() = auth;
        self
    }

    /// A hook for every connection that opens, whatever its dialect. Lifecycle hooks are
    /// synchronous and run on the connection's task: return at once, spawn any IO (see
    /// [`plexus_core::lifecycle`]).
    pub fn on_open(mut self, hook: impl Fn(&Opened) + Send + Sync + 'static) -> Self {
        self.node.lifecycle_mut().on_open(hook);
        self
    }

    /// A hook for every connection that gets its identity (at the upgrade or by `connect`).
    pub fn on_authenticated(
        mut self,
        hook: impl Fn(&Authenticated) + Send + Sync + 'static,
    ) -> Self {
        self.node.lifecycle_mut().on_authenticated(hook);
        self
    }

    /// A hook for every opened connection when it closes — exactly once, with the close code
    /// and reason the client was sent (or sent).
    pub fn on_close(mut self, hook: impl Fn(&Closed) + Send + Sync + 'static) -> Self {
        self.node.lifecycle_mut().on_close(hook);
        self
    }

    /// Replaces the lifecycle hooks.
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        *self.node.lifecycle_mut() = lifecycle;
        self
    }

    /// Builds the server (and starts its node). Needs a tokio runtime.
    pub fn build(mut self) -> Server {
        let chat_service = self.chat_service.take().map(|config| {
            let socketio = self.socketio.get_or_insert_with(Default::default);
            if !socketio.allows_namespace(&config.namespace) {
                socketio.namespaces.push(config.namespace.clone());
            }
            // The users' channels share the rooms' prefix: their namespace goes first.
            let channels = self.node.channels_mut();
            channels.prepend_namespace(config.channel_namespace());
            channels.prepend_namespace(config.user_namespace());
            // chat-service's list limits bound the node's (the smaller of the two applies).
            let limits = self.node.limits_mut();
            limits.room_list_max = limits.room_list_max.min(config.room_list_size_limit);
            limits.direct_list_max = limits.direct_list_max.min(config.direct_list_size_limit);
            Arc::new(chatservice::ChatService::new(
                config,
                self.chat_hooks.take(),
            ))
        });
        if self.dev_mode {
            for (path, endpoint) in endpoint::development() {
                if !self.endpoints_ws.mounted.iter().any(|m| m.path == path) {
                    self.endpoints_ws.mount(path.into(), endpoint);
                }
            }
        }
        if !self.endpoints_ws.is_empty() {
            self.node
                .channels_mut()
                .prepend_namespace(endpoint::endpoint_namespace());
        }
        let mesa = self.mesa.take().map(|config| {
            // Mesa's sync needs to know whether a user has a connection on any node.
            self.node = std::mem::take(&mut self.node).track_online(config.sync);
            let hooks = self.mesa_hooks.take();
            if let Some(hooks) = hooks.clone() {
                // `onDisconnection`, with the close the client got.
                self.node.lifecycle_mut().on_close(move |closed: &Closed| {
                    if closed.request.dialect == "mesa" {
                        hooks.disconnection(
                            closed.conn,
                            closed.user.as_deref(),
                            closed.code,
                            &closed.reason,
                        );
                    }
                });
            }
            Arc::new(mesa::MesaService::new(config, hooks))
        });
        let node = self.node.build();
        Server {
            state: Arc::new(ServerState {
                node,
                formats: Formats::new(),
                sessions: Arc::default(),
                dev_mode: self.dev_mode,
                endpoints: self.endpoints,
                socketio: self.socketio.map(Arc::new),
                socketio_sessions: Arc::default(),
                chat_service,
                endpoints_ws: self.endpoints_ws,
                mesa,
                mesh: self
                    .mesh
                    .map(|config| Arc::new(mesh::MeshService::new(config))),
                admin: self
                    .admin
                    .map(|options| Arc::new(admin::AdminState::new(options))),
                sockety: self.sockety.map(|config| {
                    Arc::new(sockety::SocketyService::new(config, self.sockety_actions))
                }),
                tls: self.tls,
            }),
            listen: self.listen,
        }
    }
}

/// A Plexus server: a node plus its HTTP and WebSocket endpoints.
pub struct Server {
    state: Arc<ServerState>,
    listen: SocketAddr,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            node: NodeBuilder::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            dev_mode: false,
            endpoints: api::HttpEndpoints::default(),
            socketio: None,
            chat_service: None,
            chat_hooks: None,
            endpoints_ws: endpoint::Endpoints::default(),
            mesa: None,
            mesa_hooks: None,
            mesh: None,
            admin: None,
            sockety: None,
            sockety_actions: Default::default(),
            tls: None,
        }
    }

    /// Calls to this node's Sockety clients, when the server serves Sockety.
    pub fn sockety(&self) -> Option<sockety::SocketyApi> {
        self.state
            .sockety
            .clone()
            .map(|service| sockety::SocketyApi { service })
    }

    pub fn node(&self) -> &Node {
        &self.state.node
    }

    /// chat-service's server-side API, when the server serves it.
    pub fn chat_service(&self) -> Option<chatservice::ChatServiceApi> {
        self.state
            .chat_service
            .clone()
            .map(|service| chatservice::ChatServiceApi {
                service,
                node: self.state.node.clone(),
            })
    }

    /// Mesa's dispatcher, when the server serves Mesa.
    pub fn mesa(&self) -> Option<mesa::MesaApi> {
        self.state.mesa.clone().map(|service| mesa::MesaApi {
            service,
            node: self.state.node.clone(),
        })
    }

    /// The server's routes (`/ws`, `/health`, the HTTP API and `/metrics` when configured, the
    /// demo page at `/` in development mode), to merge into an existing axum application. It
    /// must be served with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        if let Some(config) = &self.state.socketio {
            let path = config.path.trim_end_matches('/').to_owned();
            let handler = axum::routing::any(socketio::handle);
            router = router
                .route(&format!("{path}/"), handler.clone())
                .route(&path, handler);
        }
        for mounted in &self.state.endpoints_ws.mounted {
            router = router.route(&mounted.path, get(endpoint::upgrade));
        }
        if let Some(service) = &self.state.mesa {
            router = router.route(&service.config.path, get(mesa::upgrade));
        }
        if let Some(service) = &self.state.mesh {
            router = router.route(&service.config.path, get(mesh::upgrade));
        }
        if let Some(path) = self
            .state
            .sockety
            .as_ref()
            .and_then(|s| s.config.path.as_ref())
        {
            router = router.route(path, get(sockety::listen::ws_upgrade));
        }
        router
            .route("/ws", get(ws::native_upgrade))
            .route("/health", get(health))
            .merge(demo::router(self.state.dev_mode))
            .with_state(self.state.clone())
            .merge(admin::router(
                self.state.clone(),
                api::ApiHandle::new(
                    self.state.node.clone(),
                    self.chat_service(),
                    &self.state.endpoints,
                    self.mesa(),
                ),
            ))
            .merge(api::routes(
                self.state.node.clone(),
                self.chat_service(),
                &self.state.endpoints,
                self.mesa(),
            ))
    }

    /// The admin interface's password, when it is served (development mode makes one up).
    pub fn admin_password(&self) -> Option<&str> {
        self.state
            .admin
            .as_ref()
            .map(|a| a.options.password.as_str())
    }

    /// Binds and serves in the background.
    pub async fn start(self) -> std::io::Result<RunningServer> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        self.start_on(listener).await
    }

    /// Serves in the background on a listener bound already (the builder's `listen` address is
    /// not used): a program can bind first, so that a busy port is reported before anything
    /// else happens.
    pub async fn start_on(
        self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<RunningServer> {
        let local_addr = listener.local_addr()?;
        if self.state.dev_mode {
            tracing::warn!(
                "development mode: anonymous connections, every channel open to every client; use a configuration for production"
            );
        }
        tracing::info!(node = %self.state.node.id(), %local_addr, "plexus listening (WebSocket at /ws)");
        if let Some(admin) = &self.state.admin {
            let url = format!("{}admin", demo::page_url(local_addr));
            if admin.options.generated {
                tracing::warn!(
                    "admin interface at {url}: log in with the password {} (development mode: a new one at each start; set `admin.password` to choose one)",
                    admin.options.password
                );
            } else {
                tracing::info!("admin interface at {url}");
            }
        }
        let acceptor = match &self.state.tls {
            Some(tls) => Some(
                tls.acceptor()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        // Sockety's own listeners, bound before anything is served.
        let mut sockety_listeners = Vec::new();
        let mut sockety_addrs = (None, None);
        if let Some(service) = &self.state.sockety {
            if let Some(addr) = service.config.listen {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(tcp) => {
                        sockety_addrs.0 = Some(tcp.local_addr()?);
                        tracing::info!(addr = %tcp.local_addr()?, "sockety listening (TCP)");
                        sockety_listeners.push(sockety::listen::spawn_tcp(
                            self.state.clone(),
                            tcp,
                            None,
                        ));
                    }
                    Err(e) if service.config.listen_best_effort => {
                        tracing::warn!(%addr, error = %e, "sockety: not listening on TCP (the port is busy); /sockety still serves it")
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(addr) = service.config.tls_listen {
                let Some(acceptor) = acceptor.clone() else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "sockety.tls_listen needs a TLS certificate ([tls])",
                    ));
                };
                let tcp = tokio::net::TcpListener::bind(addr).await?;
                sockety_addrs.1 = Some(tcp.local_addr()?);
                tracing::info!(addr = %tcp.local_addr()?, "sockety listening (TLS)");
                sockety_listeners.push(sockety::listen::spawn_tcp(
                    self.state.clone(),
                    tcp,
                    Some(acceptor),
                ));
            }
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let stopped = async {
            let _ = stop_rx.await;
        };
        let https = acceptor.filter(|_| self.state.tls.as_ref().is_some_and(|t| t.http));
        let task = match https {
            Some(acceptor) => {
                // (Tapped, so that the connection info is the peer's address, as without TLS.)
                let listener = axum::serve::ListenerExt::tap_io(
                    tls::TlsListener::new(listener, acceptor)?,
                    |_: &mut _| {},
                );
                let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                tokio::spawn(async move {
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "server error");
                    }
                })
            }
            None => {
                // Small frames (replies, pushes) go out at once instead of waiting for the
                // peer's delayed acknowledgement (a 40 ms tail without it).
                let listener = axum::serve::ListenerExt::tap_io(
                    listener,
                    |tcp: &mut tokio::net::TcpStream| {
                        let _ = tcp.set_nodelay(true);
                    },
                );
                let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                tokio::spawn(async move {
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "server error");
                    }
                })
            }
        };
        Ok(RunningServer {
            state: self.state,
            local_addr,
            stop: Some(stop_tx),
            task,
            sockety_listeners,
            sockety_addrs,
        })
    }
}

/// `GET /health`: 200 with `"status": "ok"` while the engine can serve, 503 with
/// `"status": "degraded"` (and the engine's state) while it cannot.
async fn health(
    State(state): State<Arc<ServerState>>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let engine = state.node.engine().broker.health();
    let status = if engine.healthy {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if engine.healthy { "ok" } else { "degraded" },
        "node": state.node.id().to_string(),
        "connections": state.node.connection_count(),
        "engine": {"healthy": engine.healthy, "detail": engine.detail},
    });
    (status, axum::Json(body))
}

/// A server that is listening.
pub struct RunningServer {
    state: Arc<ServerState>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    sockety_listeners: Vec<tokio::task::JoinHandle<()>>,
    /// Sockety's TCP and TLS listeners' addresses.
    sockety_addrs: (Option<SocketAddr>, Option<SocketAddr>),
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ADDR/ws` (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.state.tls.as_ref().is_some_and(|t| t.http) {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// Sockety's plain TCP listener's address, when it listens.
    pub fn sockety_addr(&self) -> Option<SocketAddr> {
        self.sockety_addrs.0
    }

    /// Sockety's TLS listener's address, when it listens.
    pub fn sockety_tls_addr(&self) -> Option<SocketAddr> {
        self.sockety_addrs.1
    }

    /// Calls to this node's Sockety clients, when the server serves Sockety.
    pub fn sockety(&self) -> Option<sockety::SocketyApi> {
        self.state
            .sockety
            .clone()
            .map(|service| sockety::SocketyApi { service })
    }

    pub fn node(&self) -> &Node {
        &self.state.node
    }

    /// chat-service's server-side API, when the server serves it.
    pub fn chat_service(&self) -> Option<chatservice::ChatServiceApi> {
        self.state
            .chat_service
            .clone()
            .map(|service| chatservice::ChatServiceApi {
                service,
                node: self.state.node.clone(),
            })
    }

    /// Mesa's dispatcher, when the server serves Mesa.
    pub fn mesa(&self) -> Option<mesa::MesaApi> {
        self.state.mesa.clone().map(|service| mesa::MesaApi {
            service,
            node: self.state.node.clone(),
        })
    }

    /// Graceful shutdown: stop accepting, tell every client "server shutting down, reconnect"
    /// (4000) after its queued frames, and wait for the sessions to end, at most
    /// `Limits::shutdown_timeout`. Returns true when every session ended in time.
    /// Stops serving at once, without telling anyone (a crash, for tests of node failure).
    pub fn abort(self) {
        self.task.abort();
        for listener in &self.sockety_listeners {
            listener.abort();
        }
    }

    pub async fn shutdown(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for listener in &self.sockety_listeners {
            listener.abort();
        }
        // Endpoints' shutdown handlers may write a last message before the 4000 close.
        self.state.endpoints_ws.shutting_down().await;
        self.state.node.shutdown().await;
        let timeout = self.state.node.limits().shutdown_timeout;
        let drained = tokio::time::timeout(timeout, self.state.sessions.wait_idle())
            .await
            .is_ok();
        if !drained {
            tracing::warn!("shutdown timeout: some connections did not close in time");
        }
        // The `closed` notifications of the last connections go out (each is bounded by the
        // backend's timeout).
        if let Some(backend) = &self.state.endpoints.backend
            && !backend
                .settle_notifications(backend.options().timeout)
                .await
        {
            tracing::warn!("some lifecycle notifications were still in flight at shutdown");
        }
        self.task.abort();
        drained
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn wait_for_signal(self) -> bool {
        shutdown_signal().await;
        tracing::info!("signal received, shutting down");
        self.shutdown().await
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> bool {
        signal.await;
        self.shutdown().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

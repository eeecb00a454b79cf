//! chat-service's protocol on the Socket.IO dialect (`docs/chat-service.md`): a namespace
//! (`/chat-service`) whose sockets log in, run chat-service's commands on the core, and receive
//! its notifications. Rooms are channels (`{channel_prefix}{room}`); message ids are offsets.
//!
//! `socket.rs` runs one socket's commands, `format.rs` writes core events as chat-service's
//! notifications, `hooks.rs` is the application's side (chat-service's hooks).

mod backend;
mod format;
mod hooks;
mod rooms;
mod socket;

pub use backend::{BackendChatHooks, is_hook};
pub use format::ChatServiceFormat;
pub use hooks::{ChatHooks, ConnectInfo, DisconnectInfo, ExecInfo, JoinInfo};
pub use plexus_protocol::chatservice::{ChatError, ErrorKind};
pub(crate) use socket::ChatSocket;

use plexus_core::{ChannelMatch, HistoryOptions, JoinLeave, Namespace};
use std::sync::Arc;
use std::time::Duration;

/// chat-service's options (`seeds-protocols.md` §2.3), with its defaults.
#[derive(Clone, Debug)]
pub struct ChatServiceConfig {
    /// The Socket.IO namespace (`/chat-service`).
    pub namespace: String,
    /// Room `R` is the channel `{channel_prefix}R` (`chat-service:`). Room names cannot contain `:`,
    /// so channels under `{channel_prefix}:` are the service's own (a user's sockets).
    pub channel_prefix: String,
    /// Clients may create and delete rooms (`roomCreate`, `roomDelete`).
    pub enable_rooms_management: bool,
    /// Clients may send direct messages.
    pub enable_direct_messages: bool,
    /// New rooms tell their members when a user joins or leaves.
    pub enable_userlist_updates: bool,
    /// New rooms tell their members when an access list or the mode changes.
    pub enable_access_lists_updates: bool,
    /// Messages a room keeps (10 000); also the most a room may be set to keep.
    pub history_max_size: usize,
    /// The most messages one history read returns (100).
    pub history_max_get_messages: usize,
    /// The most names one room access list holds (10 000).
    pub room_list_size_limit: usize,
    /// The most names one direct-message access list holds (1 000).
    pub direct_list_size_limit: usize,
    /// Errors as `{name, code, args}` objects instead of strings.
    pub use_raw_error_objects: bool,
    /// Log in from this query parameter of the handshake (`user` in development mode, as
    /// chat-service's examples do); `None`: the connection's identity (token, auth hook).
    pub login_query: Option<String>,
}

impl Default for ChatServiceConfig {
    fn default() -> ChatServiceConfig {
        ChatServiceConfig {
            namespace: "/chat-service".into(),
            channel_prefix: "chat-service:".into(),
            enable_rooms_management: false,
            enable_direct_messages: false,
            enable_userlist_updates: false,
            enable_access_lists_updates: false,
            history_max_size: 10_000,
            history_max_get_messages: 100,
            room_list_size_limit: 10_000,
            direct_list_size_limit: 1_000,
            use_raw_error_objects: false,
            login_query: None,
        }
    }
}

impl ChatServiceConfig {
    /// Development mode's service: rooms management, direct messages and user list updates
    /// on, login from the `user` query parameter.
    pub fn development() -> ChatServiceConfig {
        ChatServiceConfig {
            enable_rooms_management: true,
            enable_direct_messages: true,
            enable_userlist_updates: true,
            login_query: Some("user".into()),
            ..ChatServiceConfig::default()
        }
    }

    /// The channel of room `room`.
    pub fn room_channel(&self, room: &str) -> String {
        format!("{}{room}", self.channel_prefix)
    }

    /// The room of a channel, when it is one of this service's rooms.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.channel_prefix.as_str())
            .filter(|room| !room.starts_with(':') && !room.is_empty())
    }

    /// The channel every chat-service socket of `user` is in (its sockets and their rooms are
    /// its presence).
    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{user}", self.channel_prefix)
    }

    /// The namespace of the service's rooms: access lists, history, presence with a join and
    /// a leave push per user (`roomUserJoined` / `roomUserLeft`, for rooms whose user-list
    /// notifications are on — the core tells them, from the presence store's atomic count, so a
    /// user's sockets leaving at once, or removed by an access change on any node, are told
    /// once).
    pub fn channel_namespace(&self) -> Namespace {
        let history = HistoryOptions {
            size: self.history_max_size,
            // chat-service keeps messages until rotated out, never for a time.
            ttl: Duration::from_secs(10 * 365 * 24 * 3600),
        };
        Namespace::new(
            "chat-service",
            ChannelMatch::Prefix(self.channel_prefix.clone()),
        )
        .history(history)
        .presence(JoinLeave::Users)
        .rooms(true)
        .subscribe(plexus_core::Access::Authenticated)
        .publish(plexus_core::Access::Subscribers)
    }

    /// The namespace of the users' channels (`{channel_prefix}:user:…`, matched before the
    /// rooms'): presence without pushes (a user's sockets and their rooms); only the service
    /// subscribes sockets to them, server side — a client may neither subscribe nor publish.
    pub fn user_namespace(&self) -> Namespace {
        Namespace::new(
            "chat-service users",
            ChannelMatch::Prefix(self.user_channel("")),
        )
        .presence(JoinLeave::Off)
        .subscribe(plexus_core::Access::Nobody)
        .publish(plexus_core::Access::Nobody)
    }
}

/// The service as the Socket.IO dialect holds it: the options, the wire format, the hooks.
pub struct ChatService {
    pub(crate) config: ChatServiceConfig,
    pub(crate) format: Arc<ChatServiceFormat>,
    pub(crate) hooks: Option<Arc<dyn ChatHooks>>,
}

impl ChatService {
    pub fn new(config: ChatServiceConfig, hooks: Option<Arc<dyn ChatHooks>>) -> ChatService {
        let format = Arc::new(ChatServiceFormat::new(&config));
        ChatService {
            config,
            format,
            hooks,
        }
    }

    pub fn config(&self) -> &ChatServiceConfig {
        &self.config
    }
}

/// Options of a server-side command: chat-service's `execUserCommand(context, …)`.
#[derive(Clone, Debug, Default)]
pub struct ExecContext {
    /// The user the command runs as; `None` runs it as no one (only `roomMessage` with
    /// `bypass_permissions`: a message without an author).
    pub user: Option<String>,
    /// The socket a `roomJoin` or `roomLeave` is for (one of this node's).
    pub id: Option<String>,
    pub bypass_permissions: bool,
    pub bypass_hooks: bool,
}

/// chat-service's server-side API on a running server (`Server::chat_service`).
#[derive(Clone)]
pub struct ChatServiceApi {
    pub(crate) service: Arc<ChatService>,
    pub(crate) node: plexus_core::Node,
}

impl ChatServiceApi {
    /// Runs a command as a user, from the server (`execUserCommand`): the same checks, hooks
    /// (unless `bypass_hooks`) and notifications as a socket's command; echoes reach every
    /// socket of the user. `roomJoin`/`roomLeave` need `id`, a socket of this node
    /// (`noSocket` without one, `invalidSocket` for an unknown one).
    pub async fn exec_user_command(
        &self,
        context: ExecContext,
        command: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, plexus_protocol::chatservice::ChatError> {
        use plexus_protocol::chatservice::{ChatError, ErrorKind};
        let mut conn = None;
        if let (Some(id), Some(user)) = (&context.id, &context.user) {
            let sockets = socket::sockets_of(&self.node, &self.service.config, user).await?;
            conn = sockets
                .into_iter()
                .find(|(_, socket, _)| socket == id)
                .and_then(|(c, _, _)| self.node.connection(c));
            if conn.is_none() {
                return Err(ChatError::new(
                    ErrorKind::InvalidSocket,
                    vec![serde_json::json!(id)],
                ));
            }
        }
        let mut socket = ChatSocket::server(
            self.service.clone(),
            context.id.clone().unwrap_or_default(),
            context.user.as_deref().map(Arc::from),
        );
        let mut ctx = socket::Ctx {
            node: self.node.clone(),
            conn,
            session: None,
            bypass_permissions: context.bypass_permissions,
            bypass_hooks: context.bypass_hooks,
            is_local_call: true,
        };
        socket.run(&mut ctx, command, args).await
    }
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("config", &self.config)
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
}

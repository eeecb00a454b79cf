//! Who may subscribe and publish where: namespaces (by channel-name prefix or pattern) and
//! guard hooks (by exact name or regex, Mesh `exposeChannel`).
//!
//! A client subscribe or publish is allowed when the first namespace matching the channel allows
//! it **and** every guard matching the channel allows it. A channel no namespace matches is
//! refused: the defaults are closed, except in development mode ([`ChannelPolicy::open`]).

use crate::commands::BoxFuture;
use crate::engine::HistoryOptions;
use crate::error::Error;
use crate::ids::ConnId;
use plexus_protocol::{ErrorCode, Payload};
use regex_lite::Regex;
use std::future::Future;
use std::sync::Arc;

/// Who may do something in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Nobody,
    Anyone,
    Authenticated,
    /// Publish only: connections subscribed to the channel.
    Subscribers,
}

impl Access {
    /// Whether a connection (with a user or not, subscribed or not) is let in.
    pub fn allows(self, authenticated: bool, subscribed: bool) -> bool {
        match self {
            Access::Nobody => false,
            Access::Anyone => true,
            Access::Authenticated => authenticated,
            Access::Subscribers => subscribed,
        }
    }

    /// The refusal of `what`: `unauthorized` (101) where a user would be let in, else
    /// `permission_denied` (105).
    pub fn refusal(self, what: String) -> Error {
        let code = if self == Access::Authenticated {
            ErrorCode::UNAUTHORIZED
        } else {
            ErrorCode::PERMISSION_DENIED
        };
        Error::new(code, what)
    }
}

/// Which channel names a rule applies to.
#[derive(Clone, Debug)]
pub enum ChannelMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl ChannelMatch {
    /// A regex that must match the whole channel name.
    pub fn regex(pattern: &str) -> Result<ChannelMatch, regex_lite::Error> {
        Regex::new(&format!("^(?:{pattern})$")).map(ChannelMatch::Regex)
    }

    pub fn matches(&self, channel: &str) -> bool {
        match self {
            ChannelMatch::Any => true,
            ChannelMatch::Exact(name) => name == channel,
            ChannelMatch::Prefix(prefix) => channel.starts_with(prefix.as_str()),
            ChannelMatch::Regex(re) => re.is_match(channel),
        }
    }
}

/// Options of the channels a namespace matches.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub name: String,
    pub channels: ChannelMatch,
    pub subscribe: Access,
    pub publish: Access,
    /// Attach the publisher's connection, user and info to client publications.
    pub publisher_info: bool,
    /// History kept for the namespace's channels (clients who may subscribe may read it).
    pub history: Option<HistoryOptions>,
    /// Whether a subscribe may recover missed publications from history (`since`).
    pub recovery: bool,
    /// Whether the namespace tracks presence.
    pub presence: bool,
    /// Which presence changes subscribers are told about.
    pub join_leave: JoinLeave,
    /// The channels are rooms ([`crate::rooms`]): they exist only once created, and their
    /// access lists decide who may subscribe, publish and read. Needs presence (a room's
    /// members are its presence).
    pub rooms: bool,
}

/// Join and leave pushes of a presence namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinLeave {
    Off,
    /// When a user's first connection joins and its last leaves (chat-service user lists).
    Users,
    /// For every connection.
    Connections,
}

impl Namespace {
    pub fn new(name: impl Into<String>, channels: ChannelMatch) -> Namespace {
        Namespace {
            name: name.into(),
            channels,
            subscribe: Access::Nobody,
            publish: Access::Nobody,
            publisher_info: true,
            history: None,
            recovery: false,
            presence: false,
            join_leave: JoinLeave::Off,
            rooms: false,
        }
    }

    /// Development mode's namespace: every channel open to anyone, with history (the last 100
    /// publications for an hour), recovery, and presence with per-user join/leave pushes — so
    /// that a newcomer sees every feature work at once.
    pub fn development() -> Namespace {
        let history = HistoryOptions {
            size: 100,
            ttl: std::time::Duration::from_secs(3600),
        };
        Namespace::new("development", ChannelMatch::Any)
            .subscribe(Access::Anyone)
            .publish(Access::Anyone)
            .recovery(history)
            .presence(JoinLeave::Users)
    }

    pub fn subscribe(mut self, access: Access) -> Namespace {
        self.subscribe = access;
        self
    }

    pub fn publish(mut self, access: Access) -> Namespace {
        self.publish = access;
        self
    }

    pub fn history(mut self, history: HistoryOptions) -> Namespace {
        self.history = Some(history);
        self
    }

    /// Keeps history and lets subscribers recover from it.
    pub fn recovery(mut self, history: HistoryOptions) -> Namespace {
        self.history = Some(history);
        self.recovery = true;
        self
    }

    /// Tracks presence, with the given join/leave pushes.
    pub fn presence(mut self, join_leave: JoinLeave) -> Namespace {
        self.presence = true;
        self.join_leave = join_leave;
        self
    }

    /// Makes the channels rooms ([`Namespace::rooms`]); turns presence on (a room's members are
    /// its presence), keeping the join/leave pushes as they are.
    pub fn rooms(mut self, on: bool) -> Namespace {
        self.rooms = on;
        self.presence |= on;
        self
    }
}

/// What a guard is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

/// The request a guard judges.
#[derive(Clone, Debug)]
pub struct GuardRequest {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub channel: Arc<str>,
    pub action: Action,
    /// The subscription token the client sent with `subscribe`, if any.
    pub token: Option<String>,
}

/// A guard: `Ok(())` allows, an error refuses with that error (use `PERMISSION_DENIED`).
pub trait Guard: Send + Sync + 'static {
    fn check(&self, request: GuardRequest) -> BoxFuture<Result<(), Error>>;
}

impl<F, Fut> Guard for F
where
    F: Fn(GuardRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    fn check(&self, request: GuardRequest) -> BoxFuture<Result<(), Error>> {
        Box::pin(self(request))
    }
}

/// A hook on client publications: it may refuse the publish (an error) or replace its payload.
pub trait PublishHook: Send + Sync + 'static {
    fn on_publish(
        &self,
        request: GuardRequest,
        payload: Payload,
    ) -> BoxFuture<Result<Payload, Error>>;
}

impl<F, Fut> PublishHook for F
where
    F: Fn(GuardRequest, Payload) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Payload, Error>> + Send + 'static,
{
    fn on_publish(
        &self,
        request: GuardRequest,
        payload: Payload,
    ) -> BoxFuture<Result<Payload, Error>> {
        Box::pin(self(request, payload))
    }
}

struct PublishRule {
    channels: ChannelMatch,
    hook: Arc<dyn PublishHook>,
}

struct GuardRule {
    channels: ChannelMatch,
    actions: Vec<Action>,
    guard: Arc<dyn Guard>,
}

/// The namespaces and guards of a node.
#[derive(Default, Clone)]
pub struct ChannelPolicy {
    namespaces: Vec<Namespace>,
    guards: Vec<Arc<GuardRule>>,
    publish_hooks: Vec<Arc<PublishRule>>,
}

impl ChannelPolicy {
    /// Every channel open to anyone, with the development namespace (see
    /// [`Namespace::development`]).
    pub fn open() -> ChannelPolicy {
        let mut policy = ChannelPolicy::default();
        policy.add_namespace(Namespace::development());
        policy
    }

    /// Adds a namespace; the first namespace that matches a channel applies.
    pub fn add_namespace(&mut self, namespace: Namespace) {
        self.namespaces.push(namespace);
    }

    /// Adds a namespace that comes before every other one (a dialect's own channels, like
    /// chat-service's rooms, which must not fall into a catch-all namespace).
    pub fn prepend_namespace(&mut self, namespace: Namespace) {
        self.namespaces.insert(0, namespace);
    }

    /// Adds a guard for `actions` on the channels `channels` matches.
    pub fn add_guard(&mut self, channels: ChannelMatch, actions: &[Action], guard: impl Guard) {
        self.guards.push(Arc::new(GuardRule {
            channels,
            actions: actions.to_vec(),
            guard: Arc::new(guard),
        }));
    }

    /// Adds a hook that sees (and may refuse or rewrite) client publications on the channels
    /// `channels` matches. Hooks run in order after the access checks and guards.
    pub fn add_publish_hook(&mut self, channels: ChannelMatch, hook: impl PublishHook) {
        self.publish_hooks.push(Arc::new(PublishRule {
            channels,
            hook: Arc::new(hook),
        }));
    }

    /// Runs the publish hooks matching the channel over `payload`.
    pub async fn rewrite_publication(
        &self,
        request: &GuardRequest,
        mut payload: Payload,
    ) -> Result<Payload, Error> {
        for rule in &self.publish_hooks {
            if rule.channels.matches(&request.channel) {
                payload = rule.hook.on_publish(request.clone(), payload).await?;
            }
        }
        Ok(payload)
    }

    /// Whether some namespace makes its channels rooms.
    pub fn has_rooms(&self) -> bool {
        self.namespaces.iter().any(|ns| ns.rooms)
    }

    /// Whether `channel` is a room (its namespace has `rooms`).
    pub fn is_room(&self, channel: &str) -> bool {
        self.namespace(channel).is_some_and(|ns| ns.rooms)
    }

    pub fn namespace(&self, channel: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|ns| ns.channels.matches(channel))
    }

    /// Checks a client's subscribe or publish.
    pub async fn check(&self, request: GuardRequest, subscribed: bool) -> Result<(), Error> {
        let Some(ns) = self.namespace(&request.channel) else {
            return Err(Error::permission_denied(format!(
                "no namespace allows channel `{}`",
                request.channel
            )));
        };
        let access = match request.action {
            Action::Subscribe => ns.subscribe,
            Action::Publish => ns.publish,
        };
        if !access.allows(request.user.is_some(), subscribed) {
            return Err(access.refusal(format!(
                "{:?} is not allowed on `{}`",
                request.action, request.channel
            )));
        }
        for rule in &self.guards {
            if rule.actions.contains(&request.action) && rule.channels.matches(&request.channel) {
                rule.guard.check(request.clone()).await?;
            }
        }
        Ok(())
    }
}

/// Checks a channel name: not empty, at most `max_bytes`, no control characters.
pub fn validate_channel(channel: &str, max_bytes: usize) -> Result<(), Error> {
    if channel.is_empty() {
        return Err(Error::new(ErrorCode::BAD_CHANNEL, "empty channel name"));
    }
    if channel.len() > max_bytes {
        return Err(Error::new(
            ErrorCode::BAD_CHANNEL,
            format!("channel name longer than {max_bytes} bytes"),
        ));
    }
    if channel.chars().any(|c| c.is_control()) {
        return Err(Error::new(
            ErrorCode::BAD_CHANNEL,
            "control character in channel name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        assert!(ChannelMatch::Prefix("chat:".into()).matches("chat:1"));
        assert!(!ChannelMatch::Prefix("chat:".into()).matches("news"));
        let re = ChannelMatch::regex(r"room-\d+").unwrap();
        assert!(re.matches("room-12"));
        assert!(!re.matches("room-12x"));
        assert!(ChannelMatch::Exact("a".into()).matches("a"));
    }

    #[test]
    fn channel_names() {
        assert!(validate_channel("ok:1", 10).is_ok());
        assert_eq!(
            validate_channel("", 10).unwrap_err().code,
            ErrorCode::BAD_CHANNEL
        );
        assert_eq!(
            validate_channel("abcdefghijk", 10).unwrap_err().code,
            ErrorCode::BAD_CHANNEL
        );
        assert_eq!(
            validate_channel("a\nb", 10).unwrap_err().code,
            ErrorCode::BAD_CHANNEL
        );
    }
}

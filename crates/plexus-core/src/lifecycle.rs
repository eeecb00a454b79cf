//! Connection lifecycle hooks: `opened`, `authenticated`, `closed` (with the close code and
//! reason), for every connection of every dialect.
//!
//! The [`Session`](crate::Session) fires them, so a dialect gets them without code of its own:
//!
//! - **opened** — once the connection has an id (`Session::open` succeeded). A connection
//!   refused before that (an upgrade hook's HTTP refusal, a protocol version the server does
//!   not speak, the server shutting down, a user at `max_connections_per_user` at the upgrade)
//!   never opens and fires nothing.
//! - **authenticated** — once, when the connection gets its identity: right after `opened` when
//!   the upgrade hook named the user, or when a `connect` succeeds. Anonymous use fires nothing.
//! - **closed** — exactly once per opened connection, whatever ends it, after its cleanup (it
//!   is gone from the hub, its channels and its user's connections). `code` and `reason` are
//!   those of the close frame the server sent or the client sent; see [`Closed`] for the cases
//!   without a close frame.
//!
//! Hooks are **synchronous** and run **inline**, on the connection's task, in registration
//! order: `opened` → `authenticated` → `closed` per connection. They must return at once — a
//! hook that does IO spawns it (`tokio::spawn`) and returns. A panicking hook is logged and
//! ignored; the connection and the other hooks go on.

use crate::auth::UpgradeRequest;
use crate::ids::ConnId;
use crate::model::Identity;
use plexus_protocol::CloseCode;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A connection opened.
#[derive(Clone, Debug)]
pub struct Opened {
    pub conn: ConnId,
    /// The request that opened it: dialect, transport, path, query, headers, peer address.
    pub request: Arc<UpgradeRequest>,
}

/// A connection authenticated.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub conn: ConnId,
    pub identity: Identity,
    pub request: Arc<UpgradeRequest>,
}

/// A connection closed.
///
/// `code` and `reason` are those of the close frame the server sent (its reason cut to the 123
/// bytes a close frame holds), or of the client's close frame when the client closed (1005
/// [`CloseCode::NO_STATUS`] when its frame had no code). Without a close frame they say what
/// ended the connection: 1006 [`CloseCode::CONNECTION_LOST`] when the transport failed or ended
/// (or a write waited past `write_timeout`); for Socket.IO, the code the server closed with even
/// over polling, where Engine.IO carries no code, 4002 when a client missed its Engine.IO
/// heartbeat, and 1000 when the client sent an Engine.IO `close`.
#[derive(Clone, Debug)]
pub struct Closed {
    pub conn: ConnId,
    /// The user, if the connection authenticated (`authenticated` fired).
    pub user: Option<Arc<str>>,
    pub code: CloseCode,
    pub reason: String,
    pub request: Arc<UpgradeRequest>,
}

type Hook<E> = Arc<dyn Fn(&E) + Send + Sync + 'static>;

/// The lifecycle hooks of a node ([`NodeBuilder::lifecycle`](crate::NodeBuilder::lifecycle)).
/// Several hooks of each kind run in the order they were added.
#[derive(Clone, Default)]
pub struct Lifecycle {
    opened: Vec<Hook<Opened>>,
    authenticated: Vec<Hook<Authenticated>>,
    closed: Vec<Hook<Closed>>,
}

impl Lifecycle {
    /// Adds a hook for opened connections.
    pub fn on_open(&mut self, hook: impl Fn(&Opened) + Send + Sync + 'static) {
        self.opened.push(Arc::new(hook));
    }

    /// Adds a hook for authenticated connections.
    pub fn on_authenticated(&mut self, hook: impl Fn(&Authenticated) + Send + Sync + 'static) {
        self.authenticated.push(Arc::new(hook));
    }

    /// Adds a hook for closed connections.
    pub fn on_close(&mut self, hook: impl Fn(&Closed) + Send + Sync + 'static) {
        self.closed.push(Arc::new(hook));
    }

    pub(crate) fn has_opened(&self) -> bool {
        !self.opened.is_empty()
    }

    pub(crate) fn has_authenticated(&self) -> bool {
        !self.authenticated.is_empty()
    }

    pub(crate) fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    pub(crate) fn opened(&self, event: &Opened) {
        run("opened", &self.opened, event);
    }

    pub(crate) fn authenticated(&self, event: &Authenticated) {
        run("authenticated", &self.authenticated, event);
    }

    pub(crate) fn closed(&self, event: &Closed) {
        run("closed", &self.closed, event);
    }
}

/// Runs each hook with a panic guard: a panicking hook is logged, the next one still runs.
fn run<E>(kind: &'static str, hooks: &[Hook<E>], event: &E) {
    for hook in hooks {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(event))) {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(hook = kind, panic = %what, "a lifecycle hook panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use std::sync::Mutex;

    #[test]
    fn a_panicking_hook_does_not_stop_the_next_one() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut lifecycle = Lifecycle::default();
        lifecycle.on_close(|_| panic!("boom"));
        let log = seen.clone();
        lifecycle.on_close(move |e: &Closed| log.lock().unwrap().push(e.code));
        lifecycle.closed(&Closed {
            conn: ConnId {
                node: NodeId(1),
                seq: 1,
            },
            user: None,
            code: CloseCode::NORMAL,
            reason: String::new(),
            request: Arc::default(),
        });
        assert_eq!(*seen.lock().unwrap(), vec![CloseCode::NORMAL]);
    }
}

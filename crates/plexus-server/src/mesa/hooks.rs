//! Mesa's middleware events (`server.use(…)` handlers, `seeds-protocols.md` §1.3) as Rust
//! hooks. They are synchronous and run inline (on the connection's task, or the dispatching
//! one), behind a panic guard: return at once and spawn any IO.

use super::MesaMessage;
use plexus_core::{CloseCode, ConnId, Error, Payload};

/// A message a Mesa client sent (op 0), as `onMessageReceived` sees it.
#[derive(Clone, Debug)]
pub struct ReceivedMessage<'a> {
    pub conn: ConnId,
    /// The connection's user, once it authenticated.
    pub user: Option<&'a str>,
    pub t: Option<&'a str>,
    pub d: &'a Payload,
}

/// Mesa's middleware events. Every method does nothing by default.
pub trait MesaHooks: Send + Sync + 'static {
    /// `onConnection`: a Mesa connection opened (Mesa passes the server; this the connection).
    fn connection(&self, _conn: ConnId) {}
    /// `onDisconnection(client, code, reason)`.
    fn disconnection(&self, _conn: ConnId, _user: Option<&str>, _code: CloseCode, _reason: &str) {}
    /// `onMessageReceived(message, client)`: every op 0 a client sends, before a command
    /// named after its `t` runs.
    fn message_received(&self, _message: &ReceivedMessage<'_>) {}
    /// `onMessageSent(message, recipients)`: a dispatch (Rust or HTTP API) went out.
    fn message_sent(&self, _message: &MesaMessage, _recipients: &[&str]) {}
    /// `onAuthenticated(client)`.
    fn authenticated(&self, _conn: ConnId, _user: &str) {}
    /// `onUndeliverableMessageSent(message, ids)`: kept for an offline user.
    fn undeliverable_stored(&self, _message: &MesaMessage, _user: &str) {}
    /// `onRedeliverUndeliverableMessages(messages, client)`: `count` kept messages are being
    /// redelivered to a connection that just authenticated.
    fn redelivered(&self, _conn: ConnId, _user: &str, _count: usize) {}
    /// `onError(error, client?)`.
    fn error(&self, _conn: Option<ConnId>, _error: &Error) {}
}

//! The client's one error type: small, opaque, with `is_*()` accessors and the wire code.

use plexus_protocol::server::ErrorBody;
use plexus_protocol::{CloseCode, ErrorCode, Payload};
use std::fmt;
use std::sync::Arc;

/// What went wrong, coarsely. Match on it, or use the `is_*()` accessors of [`ClientError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server answered the request with an error: see [`ClientError::code`],
    /// [`ClientError::message`] and [`ClientError::data`].
    Server,
    /// No answer within the request's timeout (time spent queued counts).
    Timeout,
    /// The connection dropped while the request was in flight (the server may or may not have
    /// handled it), or the request asked to fail fast while the client was disconnected.
    Disconnected,
    /// The client stopped for good: `disconnect()`, a close code that forbids reconnecting, an
    /// authentication failure, or reconnect attempts exhausted. See [`ClientError::close_code`].
    Closed,
    /// A bounded queue of the client is full (waiting requests, or local subscriptions).
    QueueFull,
    /// The encoded request is larger than the server's `max_message_bytes`; it was not sent
    /// (sending it would make the server close the connection with 4503).
    TooLarge,
    /// This client already holds a subscription to the channel (code 108, decided locally).
    AlreadySubscribed,
    /// The WebSocket connection could not be opened (network, TLS, HTTP upgrade, subprotocol,
    /// handshake timeout).
    Connect,
    /// The server sent a frame this client cannot decode.
    Protocol,
    /// The configuration is invalid (for example the URL).
    Config,
    /// An argument cannot be sent: bytes where the protocol takes JSON (a presence state,
    /// metadata). Nothing was sent.
    Invalid,
}

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    code: Option<ErrorCode>,
    data: Option<Payload>,
    close_code: Option<CloseCode>,
}

/// An error of a client operation.
///
/// Cheap to clone (it is shared), so it can travel in [`crate::Event`]s.
#[derive(Clone)]
pub struct ClientError(Arc<Inner>);

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError(Arc::new(Inner {
            kind,
            message: message.into(),
            code: None,
            data: None,
            close_code: None,
        }))
    }

    pub(crate) fn server(body: ErrorBody) -> ClientError {
        let data = body.data.map(|d| Payload::Json(d.0));
        ClientError(Arc::new(Inner {
            kind: ErrorKind::Server,
            message: body.message,
            code: Some(body.code),
            data,
            close_code: None,
        }))
    }

    pub(crate) fn timeout() -> ClientError {
        ClientError::new(ErrorKind::Timeout, "no reply within the request timeout")
    }

    pub(crate) fn disconnected() -> ClientError {
        ClientError::new(ErrorKind::Disconnected, "the connection is down")
    }

    pub(crate) fn closed(message: impl Into<String>, close_code: Option<CloseCode>) -> ClientError {
        ClientError(Arc::new(Inner {
            kind: ErrorKind::Closed,
            message: message.into(),
            code: None,
            data: None,
            close_code,
        }))
    }

    pub(crate) fn with_close_code(self, close_code: Option<CloseCode>) -> ClientError {
        let inner = &self.0;
        ClientError(Arc::new(Inner {
            kind: inner.kind,
            message: inner.message.clone(),
            code: inner.code,
            data: inner.data.clone(),
            close_code,
        }))
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The error code: the server's code for [`ErrorKind::Server`] errors (see
    /// `plexus_protocol::ErrorCode` and `docs/protocol.md`), 108 for
    /// [`ErrorKind::AlreadySubscribed`], `None` for local failures.
    pub fn code(&self) -> Option<ErrorCode> {
        match self.0.kind {
            ErrorKind::AlreadySubscribed => Some(ErrorCode::ALREADY_SUBSCRIBED),
            _ => self.0.code,
        }
    }

    /// The human-readable message (the server's, for server errors).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The details a server handler attached to its error, if any (a JSON payload).
    pub fn data(&self) -> Option<&Payload> {
        self.0.data.as_ref()
    }

    /// The WebSocket close code that ended the client, for [`ErrorKind::Closed`] (and for an
    /// authentication failure, which the server follows with 4502 or 4506).
    pub fn close_code(&self) -> Option<CloseCode> {
        self.0.close_code
    }

    pub fn is_server(&self) -> bool {
        self.0.kind == ErrorKind::Server
    }
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }
    pub fn is_disconnected(&self) -> bool {
        self.0.kind == ErrorKind::Disconnected
    }
    pub fn is_closed(&self) -> bool {
        self.0.kind == ErrorKind::Closed
    }
    pub fn is_queue_full(&self) -> bool {
        self.0.kind == ErrorKind::QueueFull
    }
    pub fn is_connect(&self) -> bool {
        self.0.kind == ErrorKind::Connect
    }

    /// Whether the same request may succeed if tried again later: the server's transient codes
    /// (internal, timeout, too many requests or pending, backend unavailable) and local
    /// connection trouble.
    pub fn is_transient(&self) -> bool {
        match self.0.kind {
            ErrorKind::Server => matches!(
                self.0.code,
                Some(
                    ErrorCode::INTERNAL
                        | ErrorCode::TIMEOUT
                        | ErrorCode::TOO_MANY_REQUESTS
                        | ErrorCode::TOO_MANY_PENDING
                        | ErrorCode::BACKEND_UNAVAILABLE
                )
            ),
            ErrorKind::Timeout
            | ErrorKind::Disconnected
            | ErrorKind::QueueFull
            | ErrorKind::Connect => true,
            _ => false,
        }
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientError");
        d.field("kind", &self.0.kind);
        if let Some(code) = self.0.code {
            d.field("code", &code.0);
        }
        d.field("message", &self.0.message);
        if let Some(data) = &self.0.data {
            d.field("data", data);
        }
        if let Some(close) = self.0.close_code {
            d.field("close_code", &close.0);
        }
        d.finish()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.kind, self.code()) {
            (ErrorKind::Server, Some(code)) => write!(f, "server error {code}: {}", self.0.message),
            (kind, _) => {
                write!(f, "{kind:?}: {}", self.0.message)?;
                if let Some(close) = self.0.close_code {
                    write!(f, " (close code {close})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_expose_code_message_and_data() {
        let body = ErrorBody {
            code: ErrorCode(1001),
            message: "nope".into(),
            data: Payload::json(&serde_json::json!({"why": 1}))
                .unwrap()
                .to_fields()
                .0,
        };
        let e = ClientError::server(body);
        assert!(e.is_server());
        assert_eq!(e.code(), Some(ErrorCode(1001)));
        assert_eq!(e.message(), "nope");
        assert_eq!(e.data().and_then(|d| d.as_json_str()), Some(r#"{"why":1}"#));
        assert_eq!(e.to_string(), "server error 1001: nope");
        assert!(!e.is_transient());
    }

    #[test]
    fn local_errors_have_no_server_code() {
        assert_eq!(ClientError::timeout().code(), None);
        assert!(ClientError::timeout().is_timeout());
        let e = ClientError::new(ErrorKind::AlreadySubscribed, "x");
        assert_eq!(e.code(), Some(ErrorCode::ALREADY_SUBSCRIBED));
        let c = ClientError::closed("kicked", Some(CloseCode::DISCONNECTED));
        assert!(c.is_closed());
        assert_eq!(c.close_code(), Some(CloseCode(4505)));
        assert!(c.to_string().contains("4505"));
    }
}

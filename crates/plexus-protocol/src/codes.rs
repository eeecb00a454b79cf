//! The one table of error codes (in replies) and close codes (on the WebSocket close frame).
//!
//! `docs/protocol.md` prints these tables; a test checks that the document and [`ERROR_CODES`] /
//! [`CLOSE_CODES`] agree, so a code is added here first. Codes are stable: a code keeps its number
//! and meaning forever.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A numeric error code carried in an error reply (`{"code", "message", "data"?}`).
///
/// Codes below 1000 are Plexus's own (the table in [`ERROR_CODES`]). Codes from 1000 up belong to
/// the application: command handlers and hooks choose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// The server failed while handling the request (a handler panicked or failed). Retry later.
    pub const INTERNAL: ErrorCode = ErrorCode(100);
    /// The request needs an authenticated connection and this one is not.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(101);
    /// The `op` of the frame is not an operation of this protocol version.
    pub const UNKNOWN_OPERATION: ErrorCode = ErrorCode(102);
    /// `call` named a method that no handler is registered for.
    pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode(103);
    /// The parameters of the request are missing, of the wrong type or invalid.
    pub const BAD_REQUEST: ErrorCode = ErrorCode(104);
    /// A namespace rule or a guard refused the subscribe, publish or call.
    pub const PERMISSION_DENIED: ErrorCode = ErrorCode(105);
    /// A per-connection limit was reached (for example subscriptions per connection).
    pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode(106);
    /// The channel name is empty, too long or contains forbidden characters.
    pub const BAD_CHANNEL: ErrorCode = ErrorCode(107);
    /// The connection is already subscribed to the channel.
    pub const ALREADY_SUBSCRIBED: ErrorCode = ErrorCode(108);
    /// The connection is not subscribed to the channel.
    pub const NOT_SUBSCRIBED: ErrorCode = ErrorCode(109);
    /// The server-side handler did not answer within its timeout.
    pub const TIMEOUT: ErrorCode = ErrorCode(110);
    /// The connection sent more requests per second than its limit allows.
    pub const TOO_MANY_REQUESTS: ErrorCode = ErrorCode(111);
    /// The token or the credentials were refused (malformed, wrongly signed, wrong password).
    pub const AUTH_FAILED: ErrorCode = ErrorCode(112);
    /// `connect` was sent on a connection that is already authenticated.
    pub const ALREADY_AUTHENTICATED: ErrorCode = ErrorCode(113);
    /// The feature is not enabled on this server or namespace.
    pub const NOT_AVAILABLE: ErrorCode = ErrorCode(114);
    /// The token has expired. Get a new token and connect again.
    pub const TOKEN_EXPIRED: ErrorCode = ErrorCode(115);
    /// Too many requests are waiting for an answer on this connection.
    pub const TOO_MANY_PENDING: ErrorCode = ErrorCode(116);
    /// The payload could not be converted (for example binary nested inside JSON data).
    pub const BAD_PAYLOAD: ErrorCode = ErrorCode(117);
    /// An external backend the server asked (a hook) is down, slow or answered garbage.
    pub const BACKEND_UNAVAILABLE: ErrorCode = ErrorCode(118);
    /// The named room, user or record does not exist.
    pub const NOT_FOUND: ErrorCode = ErrorCode(119);
    /// The target's state refuses the operation: a room or user of that name exists already, a
    /// user still has connections.
    pub const CONFLICT: ErrorCode = ErrorCode(120);
    /// A record write expected another version (compare-and-set); `data.version` is the current
    /// one. Read the record again and decide.
    pub const VERSION_CONFLICT: ErrorCode = ErrorCode(121);
    /// A JSON Patch is malformed or does not apply (a path that does not exist, a failed `test`);
    /// the record is unchanged.
    pub const BAD_PATCH: ErrorCode = ErrorCode(122);
    /// A record limit was reached: value size, operations per patch, or records per namespace.
    pub const RECORD_LIMIT: ErrorCode = ErrorCode(123);

    /// The first code an application may use for its own errors.
    pub const APPLICATION_MIN: u32 = 1000;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One row of the error-code table.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCodeInfo {
    pub code: ErrorCode,
    pub name: &'static str,
    pub meaning: &'static str,
}

/// Every error code Plexus itself sends, in order.
pub const ERROR_CODES: &[ErrorCodeInfo] = &[
    ErrorCodeInfo {
        code: ErrorCode::INTERNAL,
        name: "internal",
        meaning: "the server failed while handling the request",
    },
    ErrorCodeInfo {
        code: ErrorCode::UNAUTHORIZED,
        name: "unauthorized",
        meaning: "the request needs an authenticated connection",
    },
    ErrorCodeInfo {
        code: ErrorCode::UNKNOWN_OPERATION,
        name: "unknown_operation",
        meaning: "the op is not part of this protocol version",
    },
    ErrorCodeInfo {
        code: ErrorCode::METHOD_NOT_FOUND,
        name: "method_not_found",
        meaning: "no handler is registered for the called method",
    },
    ErrorCodeInfo {
        code: ErrorCode::BAD_REQUEST,
        name: "bad_request",
        meaning: "parameters missing, of the wrong type or invalid",
    },
    ErrorCodeInfo {
        code: ErrorCode::PERMISSION_DENIED,
        name: "permission_denied",
        meaning: "a namespace rule or guard refused the request",
    },
    ErrorCodeInfo {
        code: ErrorCode::LIMIT_EXCEEDED,
        name: "limit_exceeded",
        meaning: "a per-connection limit was reached",
    },
    ErrorCodeInfo {
        code: ErrorCode::BAD_CHANNEL,
        name: "bad_channel",
        meaning: "the channel name is empty, too long or invalid",
    },
    ErrorCodeInfo {
        code: ErrorCode::ALREADY_SUBSCRIBED,
        name: "already_subscribed",
        meaning: "the connection is already subscribed to the channel",
    },
    ErrorCodeInfo {
        code: ErrorCode::NOT_SUBSCRIBED,
        name: "not_subscribed",
        meaning: "the connection is not subscribed to the channel",
    },
    ErrorCodeInfo {
        code: ErrorCode::TIMEOUT,
        name: "timeout",
        meaning: "the handler did not answer within its timeout",
    },
    ErrorCodeInfo {
        code: ErrorCode::TOO_MANY_REQUESTS,
        name: "too_many_requests",
        meaning: "the per-connection request rate was exceeded",
    },
    ErrorCodeInfo {
        code: ErrorCode::AUTH_FAILED,
        name: "auth_failed",
        meaning: "the token or credentials were refused",
    },
    ErrorCodeInfo {
        code: ErrorCode::ALREADY_AUTHENTICATED,
        name: "already_authenticated",
        meaning: "connect on an authenticated connection",
    },
    ErrorCodeInfo {
        code: ErrorCode::NOT_AVAILABLE,
        name: "not_available",
        meaning: "the feature is not enabled here",
    },
    ErrorCodeInfo {
        code: ErrorCode::TOKEN_EXPIRED,
        name: "token_expired",
        meaning: "the token has expired",
    },
    ErrorCodeInfo {
        code: ErrorCode::TOO_MANY_PENDING,
        name: "too_many_pending",
        meaning: "too many requests are waiting for an answer",
    },
    ErrorCodeInfo {
        code: ErrorCode::BAD_PAYLOAD,
        name: "bad_payload",
        meaning: "the payload cannot be represented in JSON",
    },
    ErrorCodeInfo {
        code: ErrorCode::BACKEND_UNAVAILABLE,
        name: "backend_unavailable",
        meaning: "a backend hook is down, slow or answered garbage",
    },
    ErrorCodeInfo {
        code: ErrorCode::NOT_FOUND,
        name: "not_found",
        meaning: "the named room, user or record does not exist",
    },
    ErrorCodeInfo {
        code: ErrorCode::CONFLICT,
        name: "conflict",
        meaning: "the room or user exists already, or the user is online",
    },
    ErrorCodeInfo {
        code: ErrorCode::VERSION_CONFLICT,
        name: "version_conflict",
        meaning: "a record write expected another version",
    },
    ErrorCodeInfo {
        code: ErrorCode::BAD_PATCH,
        name: "bad_patch",
        meaning: "the JSON Patch is malformed or does not apply",
    },
    ErrorCodeInfo {
        code: ErrorCode::RECORD_LIMIT,
        name: "record_limit",
        meaning: "a record is too large, a patch too long, or a namespace full",
    },
];

/// A WebSocket close code sent by the server.
///
/// The rule a client follows is in the number: **4000–4499 means reconnect** (with backoff),
/// **4500–4999 means do not reconnect** (the same attempt would fail the same way). Standard
/// codes below 4000 keep their RFC 6455 meaning; a client reconnects after them except 1000
/// (a normal close it asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Normal close (RFC 6455), used when the client asked to close.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The server is shutting down or restarting. Reconnect (to another node, or soon).
    pub const SHUTDOWN: CloseCode = CloseCode(4000);
    /// The connection's outbound queue exceeded its byte limit (a slow consumer).
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4001);
    /// The client missed too many heartbeats.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4002);
    /// The client did not authenticate within the auth timeout.
    pub const AUTH_TIMEOUT: CloseCode = CloseCode(4003);
    /// The server detected missed publications; reconnect and recover.
    pub const INSUFFICIENT_STATE: CloseCode = CloseCode(4004);
    /// The server (its API or application code) asked the client to reconnect.
    pub const RECONNECT: CloseCode = CloseCode(4005);
    /// The client flooded the server with requests beyond its rate limit.
    pub const FLOOD: CloseCode = CloseCode(4006);
    /// A frame could not be decoded at all (not JSON / MessagePack, or not a frame).
    pub const BAD_FRAME: CloseCode = CloseCode(4500);
    /// The client asked for a protocol version this server does not speak.
    pub const UNSUPPORTED_VERSION: CloseCode = CloseCode(4501);
    /// Authentication failed (bad token or credentials).
    pub const AUTH_FAILED: CloseCode = CloseCode(4502);
    /// A WebSocket message exceeded the maximum message size (the standard RFC 6455 code, sent
    /// by the framing layer before the message is read).
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// The user already holds the maximum number of connections.
    pub const CONNECTION_LIMIT: CloseCode = CloseCode(4504);
    /// The server disconnected the client for good (kicked by the API or application code).
    pub const DISCONNECTED: CloseCode = CloseCode(4505);
    /// The token expired and the connection may not continue.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4506);
    /// No code: the peer's close frame had none (RFC 6455 §7.1.5). Never sent; lifecycle hooks
    /// report it for such a client close.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// The connection ended without a close handshake (RFC 6455 §7.1.5). Never sent; lifecycle
    /// hooks report it when the transport failed or ended.
    pub const CONNECTION_LOST: CloseCode = CloseCode(1006);

    /// Whether a client should reconnect after this close code.
    pub fn should_reconnect(self) -> bool {
        match self.0 {
            1000 => false,
            4000..=4499 => true,
            4500..=4999 => false,
            _ => true,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One row of the close-code table.
#[derive(Clone, Copy, Debug)]
pub struct CloseCodeInfo {
    pub code: CloseCode,
    pub name: &'static str,
    pub meaning: &'static str,
}

/// Every close code Plexus itself sends, in order.
pub const CLOSE_CODES: &[CloseCodeInfo] = &[
    CloseCodeInfo {
        code: CloseCode::NORMAL,
        name: "normal",
        meaning: "closed at the client's request",
    },
    CloseCodeInfo {
        code: CloseCode::MESSAGE_TOO_BIG,
        name: "message_too_big",
        meaning: "a message exceeded the size limit; reconnect",
    },
    CloseCodeInfo {
        code: CloseCode::SHUTDOWN,
        name: "shutdown",
        meaning: "the server is shutting down; reconnect",
    },
    CloseCodeInfo {
        code: CloseCode::SLOW_CONSUMER,
        name: "slow_consumer",
        meaning: "the outbound queue exceeded its byte limit",
    },
    CloseCodeInfo {
        code: CloseCode::HEARTBEAT_TIMEOUT,
        name: "heartbeat_timeout",
        meaning: "too many pings went unanswered",
    },
    CloseCodeInfo {
        code: CloseCode::AUTH_TIMEOUT,
        name: "auth_timeout",
        meaning: "no successful connect within the auth timeout",
    },
    CloseCodeInfo {
        code: CloseCode::INSUFFICIENT_STATE,
        name: "insufficient_state",
        meaning: "publications were missed; reconnect and recover",
    },
    CloseCodeInfo {
        code: CloseCode::RECONNECT,
        name: "reconnect",
        meaning: "the server asked the client to reconnect",
    },
    CloseCodeInfo {
        code: CloseCode::FLOOD,
        name: "flood",
        meaning: "requests far beyond the rate limit",
    },
    CloseCodeInfo {
        code: CloseCode::BAD_FRAME,
        name: "bad_frame",
        meaning: "a message could not be decoded",
    },
    CloseCodeInfo {
        code: CloseCode::UNSUPPORTED_VERSION,
        name: "unsupported_version",
        meaning: "the protocol version is not spoken here",
    },
    CloseCodeInfo {
        code: CloseCode::AUTH_FAILED,
        name: "auth_failed",
        meaning: "authentication failed",
    },
    CloseCodeInfo {
        code: CloseCode::CONNECTION_LIMIT,
        name: "connection_limit",
        meaning: "the user holds the maximum number of connections",
    },
    CloseCodeInfo {
        code: CloseCode::DISCONNECTED,
        name: "disconnected",
        meaning: "disconnected by the server for good",
    },
    CloseCodeInfo {
        code: CloseCode::TOKEN_EXPIRED,
        name: "token_expired",
        meaning: "the token expired",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_rule_follows_the_range() {
        for row in CLOSE_CODES {
            let expected = !(row.code.0 == 1000 || row.code.0 >= 4500);
            assert_eq!(row.code.should_reconnect(), expected, "{}", row.name);
        }
        assert!(CloseCode(1006).should_reconnect());
    }

    #[test]
    fn codes_are_unique_and_sorted() {
        let e: Vec<u32> = ERROR_CODES.iter().map(|r| r.code.0).collect();
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        let c: Vec<u16> = CLOSE_CODES.iter().map(|r| r.code.0).collect();
        assert!(c.windows(2).all(|w| w[0] < w[1]));
    }
}

//! The query string of an Engine.IO request, and the errors the reference server answers.
//!
//! v3 §URLs and v4 §HTTP long-polling > Query parameters: `EIO` (the revision), `transport`
//! (`polling` or `websocket`), `sid` (once the session exists), `b64` (revision 3: the client
//! wants binary data in base64), `t` (a cache buster, ignored), `j` (JSONP, not supported here).

use std::borrow::Cow;

use super::Version;

/// The transport of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Polling,
    Websocket,
}

/// What the query string of a request says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub version: Version,
    pub transport: Transport,
    /// The session id; `None` for a handshake (the reference server treats an empty `sid` as
    /// absent too).
    pub sid: Option<String>,
    /// Whether the client asked for binary data in base64: `b64` with any non-empty value, as
    /// the reference server reads it (`transport.ts`: `supportsBinary = !req._query.b64`). Pass
    /// `!b64` as `supports_binary` to [`encode_payload`](super::encode_payload) and
    /// [`encode_ws_frame`](super::encode_ws_frame).
    pub b64: bool,
    /// The cache buster, kept for logs.
    pub t: Option<String>,
}

/// Parses the query string of a request (with or without its leading `?`).
///
/// Keys and values are decoded as a browser's `URLSearchParams` does (`+` is a space, `%XX` a
/// byte, bad UTF-8 becomes U+FFFD); a repeated key keeps its last value. The checks come in the
/// reference server's order as far as the query alone decides (`server.ts` `verify`, then
/// `handshake`): an unknown or missing `transport` is [`HttpError::UnknownTransport`], then an
/// `EIO` other than `3` or `4` is [`HttpError::UnsupportedProtocolVersion`] (the reference server
/// reads any other value as 3, and refuses it only when revision 3 is disabled; it also checks
/// the version only on a handshake, after the method).
///
/// JSONP (`j` in the query with `polling`) is not supported and answers
/// [`HttpError::UnknownTransport`], as the reference server answers a transport it does not
/// offer. (A reference server with polling enabled would serve JSONP: `___eio[<j>]("…");`.)
pub fn parse_query(query: &str) -> Result<Query, HttpError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let (mut eio, mut transport, mut sid, mut b64, mut t, mut jsonp) =
        (None, None, None, None, None, false);
    for (key, value) in form_urlencoded(query) {
        match key.as_ref() {
            "EIO" => eio = Some(value),
            "transport" => transport = Some(value),
            "sid" => sid = Some(value),
            "b64" => b64 = Some(value),
            "t" => t = Some(value),
            "j" => jsonp = true,
            _ => {}
        }
    }
    let transport = match transport.as_deref() {
        Some("polling") if !jsonp => Transport::Polling,
        Some("websocket") => Transport::Websocket,
        _ => return Err(HttpError::UnknownTransport),
    };
    let version = eio
        .as_deref()
        .and_then(Version::from_query_value)
        .ok_or(HttpError::UnsupportedProtocolVersion)?;
    Ok(Query {
        version,
        transport,
        sid: sid.filter(|sid| !sid.is_empty()).map(Cow::into_owned),
        b64: b64.is_some_and(|b64| !b64.is_empty()),
        t: t.map(Cow::into_owned),
    })
}

impl Query {
    /// The checks the reference server makes on a request without `sid` (a handshake) beyond
    /// the query (`server.ts` `verify`): the method must be `GET`, and a WebSocket handshake
    /// must be an upgrade request. Requests with a `sid` are checked against the session by the
    /// caller: an unknown `sid` is [`HttpError::UnknownSid`], and a `transport` other than the
    /// session's, outside an upgrade, is [`HttpError::BadRequest`].
    pub fn check_handshake(&self, method: &str, is_upgrade: bool) -> Result<(), HttpError> {
        if self.sid.is_some() {
            return Ok(());
        }
        if method != "GET" {
            return Err(HttpError::BadHandshakeMethod);
        }
        if self.transport == Transport::Websocket && !is_upgrade {
            return Err(HttpError::BadRequest);
        }
        Ok(())
    }
}

/// The errors of the reference server (`server.ts` `Server.errors` and `errorMessages`), with
/// their codes. A polling request gets [`HttpError::http_status`] and [`HttpError::json_body`];
/// a WebSocket upgrade gets `HTTP/1.1 400 Bad Request`, `Content-type: text/html` and the
/// message as the body (`abortUpgrade`), then the socket is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum HttpError {
    #[error("Transport unknown")]
    UnknownTransport = 0,
    #[error("Session ID unknown")]
    UnknownSid = 1,
    #[error("Bad handshake method")]
    BadHandshakeMethod = 2,
    #[error("Bad request")]
    BadRequest = 3,
    #[error("Forbidden")]
    Forbidden = 4,
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion = 5,
}

impl HttpError {
    /// Every error, in code order.
    pub const ALL: [HttpError; 6] = [
        HttpError::UnknownTransport,
        HttpError::UnknownSid,
        HttpError::BadHandshakeMethod,
        HttpError::BadRequest,
        HttpError::Forbidden,
        HttpError::UnsupportedProtocolVersion,
    ];

    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The message the reference server writes.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::UnknownTransport => "Transport unknown",
            HttpError::UnknownSid => "Session ID unknown",
            HttpError::BadHandshakeMethod => "Bad handshake method",
            HttpError::BadRequest => "Bad request",
            HttpError::Forbidden => "Forbidden",
            HttpError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status of a polling answer: 403 for [`HttpError::Forbidden`], else 400
    /// (`abortRequest`).
    pub fn http_status(self) -> u16 {
        match self {
            HttpError::Forbidden => 403,
            _ => 400,
        }
    }

    /// The body of a polling answer (`Content-Type: application/json`), byte for byte as
    /// `abortRequest` writes it: `{"code":3,"message":"Bad request"}`.
    pub fn json_body(self) -> String {
        self.json_body_with_message(self.message())
    }

    /// The same body with another message (the reference server writes the refusal message of
    /// its `allowRequest` hook in place of "Forbidden").
    pub fn json_body_with_message(self, message: &str) -> String {
        // serde_json escapes a string exactly as `JSON.stringify` does (`"`, `\`, control
        // characters; `\u00XX` in lowercase hex for those without a short escape).
        let message = serde_json::to_string(message).expect("a string always serializes");
        format!("{{\"code\":{},\"message\":{message}}}", self.code())
    }
}

/// The pairs of an `application/x-www-form-urlencoded` string, decoded as `URLSearchParams`
/// decodes them (WHATWG URL §5.1): empty parts are skipped, the first `=` splits name and value,
/// `+` is a space, `%XX` is a byte (a `%` not followed by two hex digits stays as it is), and
/// the bytes are read as UTF-8 with U+FFFD for bad sequences.
/// The last value of `key` in a query string, decoded as [`parse_query`] decodes (for
/// parameters of the layers above Engine.IO, such as a Socket.IO 2 client's `token`).
pub fn query_value(query: &str, key: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded(query)
        .filter(|(k, _)| k == key)
        .last()
        .map(|(_, v)| v.into_owned())
}

/// The first `max` parameters of a query string, decoded, in order (a handshake's query, as
/// Socket.IO's `handshake.query`).
pub fn query_pairs(query: &str, max: usize) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded(query)
        .take(max)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn form_urlencoded(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(name), percent_decode(value))
        })
}

fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = match bytes[at] {
            b'+' => b' ',
            b'%' => match (hex(bytes.get(at + 1)), hex(bytes.get(at + 2))) {
                (Some(high), Some(low)) => {
                    at += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            other => other,
        };
        decoded.push(byte);
        at += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    char::from(*digit?).to_digit(16).map(|d| d as u8)
}

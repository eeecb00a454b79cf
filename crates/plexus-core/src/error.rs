//! The error a client sees: a stable numeric code, a message and optional data.

use plexus_protocol::{CloseCode, ErrorCode, Payload};
use std::fmt;

/// An error answered to a client request (`{code, message, data?}`), optionally followed by
/// closing the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Optional details for the client (any JSON value).
    pub data: Option<Payload>,
    /// When set, the connection is closed with this code after the error is sent.
    pub close: Option<CloseCode>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            data: None,
            close: None,
        }
    }

    /// An application error (codes from 1000 up belong to the application).
    pub fn app(code: u32, message: impl Into<String>) -> Error {
        Error::new(ErrorCode(code), message)
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Error {
        self.message = message.into();
        self
    }

    pub fn with_data(mut self, data: Payload) -> Error {
        self.data = Some(data);
        self
    }

    /// Closes the connection with `code` after this error is sent.
    pub fn and_close(mut self, code: CloseCode) -> Error {
        self.close = Some(code);
        self
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::INTERNAL, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::BAD_REQUEST, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::PERMISSION_DENIED, message)
    }

    pub fn unauthorized() -> Error {
        Error::new(ErrorCode::UNAUTHORIZED, "authentication required")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

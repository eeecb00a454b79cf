//! The native protocol v1 dialect (`docs/protocol.md`): its wire formats and its requests on the
//! shared connection loop.

pub(crate) mod format;
pub(crate) mod session;

pub use format::NativeFormat;
pub(crate) use format::record_push;
pub(crate) use session::Native;

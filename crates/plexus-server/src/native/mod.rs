//! The native protocol v1 dialect (`docs/protocol.md`): its wire formats and its session loop.

mod format;
mod session;

pub use format::NativeFormat;
pub(crate) use session::run;

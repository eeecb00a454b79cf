//! How Sockety connections get core events: a message with action `push` (no response
//! expected) whose data is the native protocol's JSON push.

use crate::native::NativeFormat;
use bytes::Bytes;
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::Encoding;
use plexus_sockety::wire;

/// Wire-format id of the Sockety dialect.
pub(crate) const SOCKETY_FORMAT_ID: usize = 8;

pub(crate) struct SocketyFormat {
    json: NativeFormat,
}

impl SocketyFormat {
    pub(crate) fn new() -> SocketyFormat {
        SocketyFormat {
            json: NativeFormat::new(Encoding::Json),
        }
    }
}

/// A whole message (start and data packets) with `action` and `data`, expecting no response.
pub(crate) fn message(action: &str, data: &[u8]) -> Bytes {
    let header = wire::Header {
        id: plexus_sockety::new_id(),
        parent: None,
        action: action.into(),
        data_size: data.len() as u64,
        files: vec![],
    };
    let mut out = Vec::with_capacity(24 + action.len() + data.len() + 8);
    wire::encode_start(&mut out, &header, false, false);
    wire::encode_data(&mut out, data);
    Bytes::from(out)
}

impl WireFormat for SocketyFormat {
    fn id(&self) -> usize {
        SOCKETY_FORMAT_ID
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        if matches!(event, Event::Ping) {
            return None;
        }
        let push = self.json.encode(event)?;
        // One frame per event (the fan-out's cache): every Sockety subscriber gets the same
        // message id, still unique on each connection.
        Some(message("push", &push))
    }

    /// Sockety has a heartbeat of its own (the connection's timeout, §5.1): the node's sweep
    /// only checks token expiry.
    fn node_heartbeat(&self) -> bool {
        false
    }
}

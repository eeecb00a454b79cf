//! How the native protocol writes core events: one [`WireFormat`] per encoding.

use bytes::Bytes;
use plexus_core::ClientInfo;
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::Encoding;
use plexus_protocol::server::{
    self, LatencyPush, MessagePush, PubPush, Push, SubscribedPush, UnsubscribedPush,
};

/// Wire-format ids of the native protocol (see `WireFormat::id`).
pub(crate) const JSON_FORMAT_ID: usize = 0;
pub(crate) const MSGPACK_FORMAT_ID: usize = 1;

/// The native protocol v1 in one encoding.
pub struct NativeFormat {
    encoding: Encoding,
    ping: Bytes,
}

impl NativeFormat {
    pub fn new(encoding: Encoding) -> NativeFormat {
        NativeFormat {
            encoding,
            ping: server::encode_push(encoding, &Push::Ping),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

fn client_info(info: &ClientInfo) -> server::ClientInfo {
    server::ClientInfo {
        conn: info.conn.to_string(),
        user: info.user.as_deref().map(str::to_owned),
        info: info.info.as_ref().and_then(|p| p.to_fields().0),
    }
}

impl WireFormat for NativeFormat {
    fn id(&self) -> usize {
        match self.encoding {
            Encoding::Json => JSON_FORMAT_ID,
            Encoding::Msgpack => MSGPACK_FORMAT_ID,
        }
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        let push = match event {
            Event::Ping => return Some(self.ping.clone()),
            Event::Publication(p) => {
                let (data, binary) = p.payload.to_fields();
                Push::Pub(PubPush {
                    channel: p.channel.to_string(),
                    offset: p.offset,
                    epoch: p.epoch.to_string(),
                    data,
                    binary,
                    publisher: p.publisher.as_ref().map(client_info),
                })
            }
            Event::Message { to, payload } => Push::Message(MessagePush::new(*to, payload)),
            Event::Subscribed { channel, position } => Push::Subscribed(SubscribedPush {
                channel: channel.to_string(),
                offset: position.offset,
                epoch: position.epoch.to_string(),
            }),
            Event::Unsubscribed { channel, reason } => Push::Unsubscribed(UnsubscribedPush {
                channel: channel.to_string(),
                reason: reason.to_string(),
            }),
            Event::Latency(rtt) => Push::Latency(LatencyPush {
                rtt_ms: rtt.as_secs_f64() * 1000.0,
            }),
        };
        Some(server::encode_push(self.encoding, &push))
    }
}

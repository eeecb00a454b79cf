//! How Mesa clients see core events: op 0 dispatches, op 1 heartbeats.

use bytes::Bytes;
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::mesa as wire;

/// The wire-format id of Mesa (see `WireFormat::id`).
pub(crate) const MESA_FORMAT_ID: usize = 4;

/// Mesa's frames for core events: a message, a publication or a notice is an op 0 whose `t`
/// is the event name (none for the default event) and whose `d` is the payload; a durable
/// message sent live is the Mesa message it stores; the node's ping is op 1. Presence, echoes,
/// subscriptions and latency have no Mesa frame. Binary payloads have none either.
pub struct MesaFormat {
    heartbeat: bool,
}

impl MesaFormat {
    pub(crate) fn new(heartbeat: bool) -> MesaFormat {
        MesaFormat { heartbeat }
    }
}

/// The frame of a stored Mesa message (`{op, d, t}`, as [`super::MesaMessage`] keeps it),
/// with `s` when redelivered; a payload that is not one is sent as the `d` of an op 0.
pub(crate) fn stored_frame(payload: &plexus_core::Payload, s: Option<u64>) -> Option<Bytes> {
    if let Some(text) = payload.as_json_str()
        && let Ok(frame) = wire::decode_frame(text.as_bytes())
        && frame.op == wire::op::DISPATCH
    {
        return wire::dispatch(&frame.payload(), frame.t.as_deref(), s);
    }
    wire::dispatch(payload, None, s)
}

impl WireFormat for MesaFormat {
    fn id(&self) -> usize {
        MESA_FORMAT_ID
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        match event {
            Event::Ping => Some(wire::heartbeat(0, 0)),
            Event::Message { payload, event, .. } => wire::dispatch(payload, *event, None),
            Event::Publication(p) => wire::dispatch(&p.payload, p.event.as_deref(), None),
            Event::Notice { event, payload, .. } => wire::dispatch(payload, *event, None),
            Event::Mail(mail) => stored_frame(&mail.payload, None),
            Event::Subscribed { .. }
            | Event::Unsubscribed { .. }
            | Event::Latency(_)
            | Event::Presence { .. }
            | Event::Echo { .. }
            | Event::Record(_) => None,
        }
    }

    fn node_heartbeat(&self) -> bool {
        self.heartbeat
    }

    fn heartbeat(&self, missed: u32, max: u32) -> Option<Bytes> {
        Some(wire::heartbeat(missed, max))
    }
}

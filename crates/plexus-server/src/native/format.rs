//! How the native protocol writes core events: one [`WireFormat`] per encoding.

use bytes::Bytes;
use plexus_core::engine::{PresenceEntry, PresenceEvent};
use plexus_core::model::{Event, WireFormat};
use plexus_core::{ClientInfo, Publication, RecordChange, RecordEvent};
use plexus_protocol::Encoding;
use plexus_protocol::server::{
    self, EchoPush, JoinPush, LatencyPush, MailPush, MessagePush, NoticePush, PresenceMember,
    PubPush, Push, RecordPush, StatePush, SubscribedPush, UnsubscribedPush,
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

/// A core publication as a `pub` push (also the shape of publications inside results).
pub(crate) fn pub_push(p: &Publication) -> PubPush {
    let (data, binary) = p.payload.to_fields();
    PubPush {
        channel: p.channel.to_string(),
        offset: p.offset,
        epoch: p.epoch.to_string(),
        data,
        binary,
        publisher: p.publisher.as_ref().map(client_info),
        event: p.event.as_deref().map(str::to_owned),
    }
}

/// A record change as a `record` push.
pub(crate) fn record_push(e: &RecordEvent) -> RecordPush {
    let mut push = RecordPush {
        record: e.id.to_string(),
        version: e.version,
        epoch: e.epoch.to_string(),
        value: None,
        patch: None,
        deleted: false,
    };
    match &e.change {
        RecordChange::Full(value) => push.value = Some(value.clone()),
        RecordChange::Patch(patch) => push.patch = Some(patch.clone()),
        RecordChange::Deleted => push.deleted = true,
    }
    push
}

/// A presence entry as a `presence` result member.
pub(crate) fn presence_member(e: &PresenceEntry) -> PresenceMember {
    PresenceMember {
        conn: e.conn.to_string(),
        user: e.user.as_deref().map(str::to_owned),
        info: e.info.as_ref().and_then(|p| p.to_fields().0),
        state: e.state.as_ref().and_then(|p| p.to_fields().0),
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
            Event::Publication(p) => Push::Pub(pub_push(p)),
            Event::Message { to, payload, event } => {
                Push::Message(MessagePush::new(*to, payload).with_event(*event))
            }
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
            Event::Presence {
                channel,
                conn,
                event,
            } => {
                let (channel, conn) = (channel.to_string(), conn.to_string());
                match event {
                    PresenceEvent::Join { user, info } => Push::Join(JoinPush {
                        channel,
                        conn,
                        user: user.as_deref().map(str::to_owned),
                        info: info.as_ref().and_then(|p| p.to_fields().0),
                    }),
                    PresenceEvent::Leave { user } => Push::Leave(JoinPush {
                        channel,
                        conn,
                        user: user.as_deref().map(str::to_owned),
                        info: None,
                    }),
                    PresenceEvent::State { user, state } => Push::State(StatePush {
                        channel,
                        conn,
                        user: user.as_deref().map(str::to_owned),
                        state: state.as_ref().and_then(|p| p.to_fields().0),
                    }),
                }
            }
            Event::Mail(mail) => {
                let (data, binary) = mail.payload.to_fields();
                Push::Mail(MailPush {
                    seq: mail.seq,
                    data,
                    binary,
                    sent_ms: mail.sent_ms,
                })
            }
            Event::Echo {
                conn,
                event,
                channel,
            } => Push::Echo(EchoPush {
                event: event.as_str().to_owned(),
                conn: conn.to_string(),
                channel: channel.map(str::to_owned),
            }),
            Event::Notice {
                channel,
                event,
                payload,
            } => Push::Notice(NoticePush::new(channel, *event, payload)),
            Event::Record(record) => Push::Record(record_push(record)),
        };
        Some(server::encode_push(self.encoding, &push))
    }
}

//! How publications and control messages are stored in Redis and carried over its pub/sub
//! (MessagePack with short field names). Only this crate knows these layouts.

use plexus_core::engine::{Control, EchoEvent, Mail, PresenceEvent};
use plexus_core::{ClientInfo, CloseCode, ConnId, Emit, Exclude, Payload};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::sync::Arc;

/// A payload: JSON text or bytes.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub(crate) struct PayloadWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    j: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<ByteBuf>,
}

impl PayloadWire {
    pub(crate) fn from(p: &Payload) -> PayloadWire {
        match p {
            Payload::Json(raw) => PayloadWire {
                j: Some(raw.get().to_owned()),
                b: None,
            },
            Payload::Binary(bytes) => PayloadWire {
                j: None,
                b: Some(ByteBuf::from(bytes.to_vec())),
            },
        }
    }

    pub(crate) fn into_payload(self) -> Option<Payload> {
        match (self.j, self.b) {
            (Some(j), _) => Payload::from_json_str(&j).ok(),
            (None, Some(b)) => Some(Payload::binary(b.into_vec())),
            (None, None) => None,
        }
    }
}

/// A publication as stored in a channel's stream and published (offset and epoch travel beside
/// it: the stream entry id, and a text prefix on pub/sub).
#[derive(Serialize, Deserialize, Debug, Default)]
pub(crate) struct PubWire {
    d: PayloadWire,
    /// Publisher connection, user, info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<PayloadWire>,
    /// Excluded connections and users (live delivery only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<(Vec<String>, Vec<String>)>,
    /// The event name ([`plexus_core::Publication::event`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
}

pub(crate) fn encode_pub(
    payload: &Payload,
    event: Option<&str>,
    publisher: Option<&ClientInfo>,
    exclude: Option<&Exclude>,
) -> Vec<u8> {
    let wire = PubWire {
        d: PayloadWire::from(payload),
        e: event.map(str::to_owned),
        c: publisher.map(|p| p.conn.to_string()),
        u: publisher.and_then(|p| p.user.as_deref().map(str::to_owned)),
        i: publisher
            .and_then(|p| p.info.as_ref())
            .map(PayloadWire::from),
        x: exclude_wire(exclude),
    };
    rmp_serde::to_vec_named(&wire).expect("publication encodes")
}

/// Decodes a stored publication: payload with its event name, publisher, exclusions.
pub(crate) fn decode_pub(bytes: &[u8]) -> Option<(Emit, Option<ClientInfo>, Option<Exclude>)> {
    let wire: PubWire = rmp_serde::from_slice(bytes).ok()?;
    let emit = Emit {
        event: wire.e.map(Arc::from),
        payload: wire.d.into_payload()?,
    };
    let publisher = match wire.c.and_then(|c| c.parse::<ConnId>().ok()) {
        Some(conn) => Some(ClientInfo {
            conn,
            user: wire.u.map(Arc::from),
            info: wire.i.and_then(PayloadWire::into_payload),
        }),
        None => None,
    };
    Some((emit, publisher, exclude_from(wire.x)))
}

/// A control message between nodes.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "t")]
enum ControlWire {
    Broadcast {
        p: PayloadWire,
        x: Option<(Vec<String>, Vec<String>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e: Option<String>,
    },
    SendToUser {
        u: String,
        p: PayloadWire,
        x: Option<(Vec<String>, Vec<String>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e: Option<String>,
    },
    SendToConnection {
        c: String,
        p: PayloadWire,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e: Option<String>,
    },
    SubscribeUser {
        u: String,
        ch: String,
    },
    UnsubscribeUser {
        u: String,
        ch: String,
        /// The reason; absent from nodes that sent none (read as the default one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        r: Option<String>,
    },
    ClearChannel {
        ch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        r: Option<String>,
    },
    Notice {
        ch: String,
        p: PayloadWire,
        x: Option<(Vec<String>, Vec<String>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e: Option<String>,
    },
    DisconnectUser {
        u: String,
        code: u16,
        r: String,
    },
    DisconnectConnection {
        c: String,
        code: u16,
        r: String,
    },
    Join {
        ch: String,
        c: String,
        u: Option<String>,
        i: Option<PayloadWire>,
    },
    Leave {
        ch: String,
        c: String,
        u: Option<String>,
    },
    State {
        ch: String,
        c: String,
        u: Option<String>,
        s: Option<PayloadWire>,
    },
    Mail {
        u: String,
        seq: u64,
        p: PayloadWire,
        ms: u64,
    },
    Echo {
        u: String,
        c: String,
        e: u8,
        ch: Option<String>,
    },
    /// `q`: the query as JSON (`plexus_core::inspect::InspectQuery`).
    Inspect {
        r: String,
        q: String,
    },
}

fn exclude_wire(e: Option<&Exclude>) -> Option<(Vec<String>, Vec<String>)> {
    e.map(|e| {
        (
            e.conns.iter().map(|c| c.to_string()).collect(),
            e.users.iter().map(|u| u.to_string()).collect(),
        )
    })
}

fn exclude_from(x: Option<(Vec<String>, Vec<String>)>) -> Option<Exclude> {
    x.map(|(conns, users)| Exclude {
        conns: conns.iter().filter_map(|c| c.parse().ok()).collect(),
        users: users.into_iter().map(Arc::from).collect(),
    })
}

fn echo_code(e: EchoEvent) -> u8 {
    match e {
        EchoEvent::Connected => 0,
        EchoEvent::Disconnected => 1,
        EchoEvent::Joined => 2,
        EchoEvent::Left => 3,
    }
}

pub(crate) fn encode_control(control: &Control) -> Vec<u8> {
    let s = |a: &Arc<str>| a.to_string();
    let wire = match control {
        Control::Broadcast { emit, exclude } => ControlWire::Broadcast {
            p: PayloadWire::from(&emit.payload),
            x: exclude_wire(exclude.as_ref()),
            e: emit.event.as_ref().map(s),
        },
        Control::SendToUser {
            user,
            emit,
            exclude,
        } => ControlWire::SendToUser {
            u: s(user),
            p: PayloadWire::from(&emit.payload),
            x: exclude_wire(exclude.as_ref()),
            e: emit.event.as_ref().map(s),
        },
        Control::SendToConnection { conn, emit } => ControlWire::SendToConnection {
            c: conn.to_string(),
            p: PayloadWire::from(&emit.payload),
            e: emit.event.as_ref().map(s),
        },
        Control::SubscribeUser { user, channel } => ControlWire::SubscribeUser {
            u: s(user),
            ch: s(channel),
        },
        Control::UnsubscribeUser {
            user,
            channel,
            reason,
        } => ControlWire::UnsubscribeUser {
            u: s(user),
            ch: s(channel),
            r: Some(s(reason)),
        },
        Control::ClearChannel { channel, reason } => ControlWire::ClearChannel {
            ch: s(channel),
            r: Some(s(reason)),
        },
        Control::Notice {
            channel,
            emit,
            exclude,
        } => ControlWire::Notice {
            ch: s(channel),
            p: PayloadWire::from(&emit.payload),
            x: exclude_wire(exclude.as_ref()),
            e: emit.event.as_ref().map(s),
        },
        Control::DisconnectUser { user, code, reason } => ControlWire::DisconnectUser {
            u: s(user),
            code: code.0,
            r: reason.clone(),
        },
        Control::DisconnectConnection { conn, code, reason } => ControlWire::DisconnectConnection {
            c: conn.to_string(),
            code: code.0,
            r: reason.clone(),
        },
        Control::Presence {
            channel,
            conn,
            event,
        } => match event {
            PresenceEvent::Join { user, info } => ControlWire::Join {
                ch: s(channel),
                c: conn.to_string(),
                u: user.as_deref().map(str::to_owned),
                i: info.as_ref().map(PayloadWire::from),
            },
            PresenceEvent::Leave { user } => ControlWire::Leave {
                ch: s(channel),
                c: conn.to_string(),
                u: user.as_deref().map(str::to_owned),
            },
            PresenceEvent::State { user, state } => ControlWire::State {
                ch: s(channel),
                c: conn.to_string(),
                u: user.as_deref().map(str::to_owned),
                s: state.as_ref().map(PayloadWire::from),
            },
        },
        Control::Mail { user, mail } => ControlWire::Mail {
            u: s(user),
            seq: mail.seq,
            p: PayloadWire::from(&mail.payload),
            ms: mail.sent_ms,
        },
        Control::Echo {
            user,
            conn,
            event,
            channel,
        } => ControlWire::Echo {
            u: s(user),
            c: conn.to_string(),
            e: echo_code(*event),
            ch: channel.as_deref().map(str::to_owned),
        },
        Control::Inspect { request, query } => ControlWire::Inspect {
            r: s(request),
            q: serde_json::to_string(query).expect("a query encodes"),
        },
    };
    rmp_serde::to_vec_named(&wire).expect("control encodes")
}

pub(crate) fn decode_control(bytes: &[u8]) -> Option<Control> {
    let wire: ControlWire = rmp_serde::from_slice(bytes).ok()?;
    let a = |s: String| -> Arc<str> { Arc::from(s) };
    let conn = |c: &str| c.parse::<ConnId>().ok();
    let emit = |p: PayloadWire, e: Option<String>| {
        Some(Emit {
            event: e.map(Arc::from),
            payload: p.into_payload()?,
        })
    };
    Some(match wire {
        ControlWire::Broadcast { p, x, e } => Control::Broadcast {
            emit: emit(p, e)?,
            exclude: exclude_from(x),
        },
        ControlWire::SendToUser { u, p, x, e } => Control::SendToUser {
            user: a(u),
            emit: emit(p, e)?,
            exclude: exclude_from(x),
        },
        ControlWire::SendToConnection { c, p, e } => Control::SendToConnection {
            conn: conn(&c)?,
            emit: emit(p, e)?,
        },
        ControlWire::SubscribeUser { u, ch } => Control::SubscribeUser {
            user: a(u),
            channel: a(ch),
        },
        ControlWire::UnsubscribeUser { u, ch, r } => Control::UnsubscribeUser {
            user: a(u),
            channel: a(ch),
            reason: a(r.unwrap_or_else(|| "unsubscribed by the server".into())),
        },
        ControlWire::ClearChannel { ch, r } => Control::ClearChannel {
            channel: a(ch),
            reason: a(r.unwrap_or_else(|| "channel cleared".into())),
        },
        ControlWire::Notice { ch, p, x, e } => Control::Notice {
            channel: a(ch),
            emit: emit(p, e)?,
            exclude: exclude_from(x),
        },
        ControlWire::DisconnectUser { u, code, r } => Control::DisconnectUser {
            user: a(u),
            code: CloseCode(code),
            reason: r,
        },
        ControlWire::DisconnectConnection { c, code, r } => Control::DisconnectConnection {
            conn: conn(&c)?,
            code: CloseCode(code),
            reason: r,
        },
        ControlWire::Join { ch, c, u, i } => Control::Presence {
            channel: a(ch),
            conn: conn(&c)?,
            event: PresenceEvent::Join {
                user: u.map(a),
                info: i.and_then(PayloadWire::into_payload),
            },
        },
        ControlWire::Leave { ch, c, u } => Control::Presence {
            channel: a(ch),
            conn: conn(&c)?,
            event: PresenceEvent::Leave { user: u.map(a) },
        },
        ControlWire::State { ch, c, u, s } => Control::Presence {
            channel: a(ch),
            conn: conn(&c)?,
            event: PresenceEvent::State {
                user: u.map(a),
                state: s.and_then(PayloadWire::into_payload),
            },
        },
        ControlWire::Mail { u, seq, p, ms } => Control::Mail {
            user: a(u),
            mail: Mail {
                seq,
                payload: p.into_payload()?,
                sent_ms: ms,
            },
        },
        ControlWire::Echo { u, c, e, ch } => Control::Echo {
            user: a(u),
            conn: conn(&c)?,
            event: match e {
                0 => EchoEvent::Connected,
                1 => EchoEvent::Disconnected,
                2 => EchoEvent::Joined,
                _ => EchoEvent::Left,
            },
            channel: ch.map(a),
        },
        ControlWire::Inspect { r, q } => Control::Inspect {
            request: a(r),
            query: serde_json::from_str(&q).ok()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::NodeId;

    #[test]
    fn publications_round_trip() {
        let conn = ConnId {
            node: NodeId(7),
            seq: 3,
        };
        let info = ClientInfo {
            conn,
            user: Some(Arc::from("ann")),
            info: Some(Payload::json(&1).unwrap()),
        };
        let bytes = encode_pub(
            &Payload::binary(vec![1u8, 2]),
            Some("chat"),
            Some(&info),
            Some(&Exclude::conn(conn)),
        );
        let (emit, publisher, exclude) = decode_pub(&bytes).unwrap();
        assert_eq!(emit, Emit::event("chat", Payload::binary(vec![1u8, 2])));
        assert_eq!(publisher, Some(info));
        assert_eq!(exclude, Some(Exclude::conn(conn)));
        let bytes = encode_pub(&Payload::null(), None, None, None);
        let (emit, publisher, exclude) = decode_pub(&bytes).unwrap();
        assert_eq!(emit, Emit::from(Payload::null()));
        assert_eq!((publisher, exclude), (None, None));
    }

    #[test]
    fn controls_round_trip() {
        let conn = ConnId {
            node: NodeId(7),
            seq: 3,
        };
        let controls = vec![
            Control::Broadcast {
                emit: Payload::null().into(),
                exclude: Some(Exclude::user("u")),
            },
            Control::SendToUser {
                user: Arc::from("u"),
                emit: Emit::event("chat", Payload::json(&[1, 2]).unwrap()),
                exclude: Some(Exclude::conn(conn)),
            },
            Control::SendToConnection {
                conn,
                emit: Emit::event("direct", Payload::binary(vec![3u8])),
            },
            Control::DisconnectConnection {
                conn,
                code: CloseCode::RECONNECT,
                reason: "r".into(),
            },
            Control::Presence {
                channel: Arc::from("c"),
                conn,
                event: PresenceEvent::State {
                    user: None,
                    state: Some(Payload::json(&"x").unwrap()),
                },
            },
            Control::Mail {
                user: Arc::from("u"),
                mail: Mail {
                    seq: 4,
                    payload: Payload::binary(vec![9u8]),
                    sent_ms: 5,
                },
            },
            Control::Echo {
                user: Arc::from("u"),
                conn,
                event: EchoEvent::Left,
                channel: Some(Arc::from("c")),
            },
            Control::UnsubscribeUser {
                user: Arc::from("u"),
                channel: Arc::from("chat:r"),
                reason: Arc::from("access removed"),
            },
            Control::ClearChannel {
                channel: Arc::from("chat:r"),
                reason: Arc::from("room deleted"),
            },
            Control::Notice {
                channel: Arc::from("chat:r"),
                emit: Emit::event("roomModeChanged", Payload::json(&["r", "x"]).unwrap()),
                exclude: Some(Exclude::user("u")),
            },
            Control::Notice {
                channel: Arc::from("c"),
                emit: Payload::binary(vec![1u8, 2]).into(),
                exclude: None,
            },
            Control::Inspect {
                request: Arc::from("0000abcd-1"),
                query: plexus_core::inspect::InspectQuery {
                    user: Some("u".into()),
                    conn: Some(conn),
                    limit: 10,
                    channels: None,
                },
            },
        ];
        for c in controls {
            assert_eq!(decode_control(&encode_control(&c)), Some(c));
        }
    }

    #[test]
    fn an_unsubscribe_without_a_reason_reads_as_the_default_one() {
        // What a node built before reasons were carried sends.
        #[derive(Serialize)]
        #[serde(tag = "t")]
        enum Old {
            UnsubscribeUser { u: String, ch: String },
        }
        let old = Old::UnsubscribeUser {
            u: "u".into(),
            ch: "c".into(),
        };
        let bytes = rmp_serde::to_vec_named(&old).unwrap();
        assert_eq!(
            decode_control(&bytes),
            Some(Control::UnsubscribeUser {
                user: Arc::from("u"),
                channel: Arc::from("c"),
                reason: Arc::from("unsubscribed by the server"),
            })
        );
    }
}

//! The few Engine.IO v4 and Socket.IO v4 packets a load-generating client needs, over
//! WebSocket only (no long-polling, no binary attachments, the default namespace). Sans-IO.
//!
//! One WebSocket text message carries one Engine.IO packet: a type digit, then data.
//!
//! | message | meaning |
//! |---|---|
//! | `0{"sid":…,"pingInterval":…}` | Engine.IO open (server → client, first message) |
//! | `2` / `3` | Engine.IO ping (server → client) / pong (the client's answer) |
//! | `1` | Engine.IO close |
//! | `40` / `40{"sid":…}` | Socket.IO connect to `/` (client) / its acceptance (server) |
//! | `41`, `44{…}` | Socket.IO disconnect, connect error |
//! | `42["event",arg…]`, `42<id>["event",arg…]` | an event, optionally asking for an ack |
//! | `43<id>[arg…]` | the ack of event `id` |

use crate::stamp::MaybeStamp;
use serde::Deserialize;
use std::fmt::Write as _;

/// The Engine.IO path with the query a WebSocket-only client uses.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// Socket.IO connect to the default namespace.
pub const CONNECT: &str = "40";
/// The Engine.IO pong.
pub const PONG: &str = "3";

/// What the Engine.IO open packet announces.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    pub sid: String,
    #[serde(default)]
    pub ping_interval: u64,
    #[serde(default)]
    pub ping_timeout: u64,
    #[serde(default)]
    pub max_payload: u64,
}

/// One packet received from a Socket.IO server.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet<'a> {
    Open(&'a str),
    Close,
    Ping,
    Pong,
    Noop,
    /// Socket.IO connect accepted (`40…`).
    Connected,
    /// Socket.IO disconnect or connect error, with its data.
    Refused(&'a str),
    /// An event; `args` is the JSON array `["name",arg…]`.
    Event {
        id: Option<u64>,
        args: &'a str,
    },
    /// An acknowledgement; `args` is the JSON array of the ack's arguments.
    Ack {
        id: u64,
        args: &'a str,
    },
}

/// Why a message is not a packet this client understands.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Splits `rest` into an optional decimal ack id and what follows.
fn ack_id(rest: &str) -> (Option<u64>, &str) {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (None, rest);
    }
    (rest[..digits].parse().ok(), &rest[digits..])
}

/// Parses one WebSocket text message.
pub fn parse(message: &str) -> Result<Packet<'_>, ParseError> {
    let bad = || ParseError(format!("not a Socket.IO packet: {:.80}", message));
    let mut chars = message.chars();
    let kind = chars.next().ok_or_else(bad)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(rest),
        '1' => Packet::Close,
        '2' => Packet::Ping,
        '3' => Packet::Pong,
        '6' => Packet::Noop,
        '4' => {
            let mut chars = rest.chars();
            let sio = chars.next().ok_or_else(bad)?;
            let mut rest = chars.as_str();
            // A namespace other than `/` is written `/nsp,` before the id; skip it.
            if rest.starts_with('/') {
                rest = rest.split_once(',').map_or("", |(_, r)| r);
            }
            match sio {
                '0' => Packet::Connected,
                '1' | '4' => Packet::Refused(rest),
                '2' => {
                    let (id, args) = ack_id(rest);
                    Packet::Event { id, args }
                }
                '3' => match ack_id(rest) {
                    (Some(id), args) => Packet::Ack { id, args },
                    (None, _) => return Err(bad()),
                },
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    })
}

/// Writes `42[id]["name",arg…]`; each argument is already JSON text.
pub fn event(id: Option<u64>, name: &str, args: &[&str]) -> String {
    let len = args.iter().map(|a| a.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(8 + name.len() + len + 16);
    out.push_str("42");
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
    out.push('[');
    out.push_str(&serde_json::to_string(name).expect("a string serializes"));
    for arg in args {
        out.push(',');
        out.push_str(arg);
    }
    out.push(']');
    out
}

/// The first argument of an event named `name` (`["name",arg…]`), read as a stamp; `None`
/// when the event has another name or no argument.
pub fn event_arg(args: &str, name: &str) -> Option<MaybeStamp> {
    let rest = args
        .strip_prefix("[\"")?
        .strip_prefix(name)?
        .strip_prefix("\",")?;
    first_value(rest)
}

/// The first argument of an ack (`[arg…]`), read as a stamp.
pub fn ack_arg(args: &str) -> Option<MaybeStamp> {
    let rest = args.strip_prefix('[')?;
    if rest.starts_with(']') {
        return None;
    }
    first_value(rest)
}

/// A Plexus Socket.IO ack: `[null, result]` is the result (read as a stamp), `[error]` the
/// error's text.
pub fn plexus_ack(args: &str) -> Result<Option<MaybeStamp>, String> {
    match args.strip_prefix("[null") {
        Some(rest) => Ok(rest.strip_prefix(',').and_then(first_value)),
        None => Err(format!("error ack {args:.120}")),
    }
}

fn first_value(text: &str) -> Option<MaybeStamp> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<MaybeStamp>()
        .next()
        .and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Stamp;

    #[test]
    fn plexus_acks_carry_the_result_second() {
        let stamp = Stamp { t: 4, s: 2, p: 1 };
        let json = stamp.to_json(32);
        assert_eq!(
            plexus_ack(&format!("[null,{json}]")).unwrap().unwrap().0,
            Some(stamp)
        );
        assert_eq!(
            plexus_ack(r#"[null,{"offset":1,"epoch":"e"}]"#)
                .unwrap()
                .unwrap()
                .0,
            None
        );
        assert!(plexus_ack(r#"[{"code":103,"message":"unknown"}]"#).is_err());
    }

    #[test]
    fn packets() {
        assert_eq!(
            parse(r#"0{"sid":"a","pingInterval":25000}"#).unwrap(),
            Packet::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(parse("2").unwrap(), Packet::Ping);
        assert_eq!(parse(r#"40{"sid":"x"}"#).unwrap(), Packet::Connected);
        assert_eq!(
            parse(r#"42["pub",{"t":1}]"#).unwrap(),
            Packet::Event {
                id: None,
                args: r#"["pub",{"t":1}]"#
            }
        );
        assert_eq!(
            parse(r#"4312["ok"]"#).unwrap(),
            Packet::Ack {
                id: 12,
                args: r#"["ok"]"#
            }
        );
        assert_eq!(
            parse(r#"42/chat,7["x"]"#).unwrap(),
            Packet::Event {
                id: Some(7),
                args: r#"["x"]"#
            }
        );
        assert_eq!(
            parse(r#"44{"message":"no"}"#).unwrap(),
            Packet::Refused(r#"{"message":"no"}"#)
        );
        assert!(parse("").is_err());
        assert!(parse("9").is_err());
        assert!(parse("43[]").is_err());
    }

    #[test]
    fn events_and_acks_round_trip() {
        let stamp = Stamp { t: 9, s: 3, p: 0 };
        let json = stamp.to_json(40);
        let msg = event(Some(5), "pub", &[r#""room""#, &json]);
        assert!(msg.starts_with(r#"425["pub","room",{"t":9"#));
        let delivered = format!(r#"42["pub",{json}]"#);
        let Packet::Event { id: None, args } = parse(&delivered).unwrap() else {
            panic!()
        };
        assert_eq!(event_arg(args, "pub").unwrap().0, Some(stamp));
        assert_eq!(event_arg(args, "other"), None);
        assert_eq!(ack_arg(&format!("[{json}]")).unwrap().0, Some(stamp));
        assert_eq!(ack_arg("[]"), None);
        assert_eq!(ack_arg(r#"["ok"]"#).unwrap().0, None);
    }
}

//! Socket.IO codec tests, as data: the cases of the reference parser's suite
//! (`packages/socket.io-parser/test/`), of the protocol test suite
//! (`docs/socket.io-protocol/v5-test-suite`) that concern packets, the examples of the
//! specifications (v4 §Packet encoding > Examples, v5 §Packet encoding > Examples), and the
//! socket.io 2 traces of `seeds-protocols.md` §2.1; plus malformed input of every kind.

use bytes::Bytes;
use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use PacketType::*;
use Version::{V4, V5};

const LIMITS: Limits = Limits {
    max_attachments: 10,
    max_depth: 128,
    max_packet_bytes: 1 << 20,
};

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&str>) -> Packet {
    Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        data: data.map(raw),
        attachments: Vec::new(),
    }
}

fn with_attachments(mut packet: Packet, attachments: &[&[u8]]) -> Packet {
    packet.attachments = attachments
        .iter()
        .map(|a| Bytes::copy_from_slice(a))
        .collect();
    packet
}

fn placeholder(num: usize) -> String {
    format!(r#"{{"_placeholder":true,"num":{num}}}"#)
}

/// Decodes the messages (text, then its attachments) with a fresh decoder.
fn decode(version: Version, text: &str, attachments: &[Bytes]) -> Result<Packet, DecodeError> {
    let mut decoder = Decoder::new(version, LIMITS);
    let mut packet = decoder.text(text)?;
    for attachment in attachments {
        assert!(packet.is_none(), "a packet before its last attachment");
        packet = decoder.binary(attachment.clone())?;
    }
    assert!(!decoder.is_awaiting_attachments());
    Ok(packet.expect("a complete packet"))
}

/// `packet` encodes to `text` (plus its attachments), and `text` decodes back to `packet` in
/// the given versions.
fn check(versions: &[Version], text: &str, packet: Packet) {
    assert_eq!(packet.encode(), text, "{packet:?}");
    for &version in versions {
        assert_eq!(
            decode(version, text, &packet.attachments).as_ref(),
            Ok(&packet),
            "{version:?} {text:?}"
        );
    }
}

#[test]
fn packets_round_trip() {
    let both = &[V4, V5];
    // v5 §Packet encoding > Examples.
    check(both, "0", packet(Connect, "/", None, None));
    check(
        &[V5],
        r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
        packet(
            Connect,
            "/admin",
            None,
            Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
        ),
    );
    check(
        both,
        r#"4{"message":"Not authorized"}"#,
        packet(
            ConnectError,
            "/",
            None,
            Some(r#"{"message":"Not authorized"}"#),
        ),
    );
    check(
        both,
        r#"2["foo"]"#,
        packet(Event, "/", None, Some(r#"["foo"]"#)),
    );
    check(
        both,
        r#"2/admin,["bar"]"#,
        packet(Event, "/admin", None, Some(r#"["bar"]"#)),
    );
    check(
        both,
        r#"212["foo"]"#,
        packet(Event, "/", Some(12), Some(r#"["foo"]"#)),
    );
    check(
        both,
        r#"3/admin,13["bar"]"#,
        packet(Ack, "/admin", Some(13), Some(r#"["bar"]"#)),
    );
    check(both, "1", packet(Disconnect, "/", None, None));
    check(both, "1/admin,", packet(Disconnect, "/admin", None, None));
    let baz = format!(r#"["baz",{}]"#, placeholder(0));
    check(
        both,
        &format!("51-{baz}"),
        with_attachments(packet(BinaryEvent, "/", None, Some(&baz)), &[&[1, 2, 3, 4]]),
    );
    let two = format!(r#"["baz",{},{}]"#, placeholder(0), placeholder(1));
    check(
        both,
        &format!("52-/admin,{two}"),
        with_attachments(
            packet(BinaryEvent, "/admin", None, Some(&two)),
            &[&[1, 2], &[3, 4]],
        ),
    );
    let bar = format!(r#"["bar",{}]"#, placeholder(0));
    check(
        both,
        &format!("61-15{bar}"),
        with_attachments(
            packet(BinaryAck, "/", Some(15), Some(&bar)),
            &[&[1, 2, 3, 4]],
        ),
    );
    // v4 §Packet encoding > Examples.
    check(both, "0/admin,", packet(Connect, "/admin", None, None));
    check(
        both,
        r#"2["hello",1]"#,
        packet(Event, "/", None, Some(r#"["hello",1]"#)),
    );
    check(
        both,
        r#"2/admin,456["project:delete",123]"#,
        packet(
            Event,
            "/admin",
            Some(456),
            Some(r#"["project:delete",123]"#),
        ),
    );
    check(
        both,
        "3/admin,456[]",
        packet(Ack, "/admin", Some(456), Some("[]")),
    );
    check(
        both,
        r#"4/admin,"Not authorized""#,
        packet(ConnectError, "/admin", None, Some(r#""Not authorized""#)),
    );
    let delete = format!(r#"["project:delete",{}]"#, placeholder(0));
    check(
        both,
        &format!("51-/admin,456{delete}"),
        with_attachments(
            packet(BinaryEvent, "/admin", Some(456), Some(&delete)),
            &[&[1, 2, 3]],
        ),
    );
    let ack = format!("[{}]", placeholder(0));
    check(
        both,
        &format!("61-/admin,456{ack}"),
        with_attachments(
            packet(BinaryAck, "/admin", Some(456), Some(&ack)),
            &[&[3, 2, 1]],
        ),
    );
    // socket.io-parser test/parser.js "encodes …".
    check(
        &[V5],
        r#"0/woot,{"token":"123"}"#,
        packet(Connect, "/woot", None, Some(r#"{"token":"123"}"#)),
    );
    check(both, "1/woot,", packet(Disconnect, "/woot", None, None));
    check(
        both,
        r#"2["a",1,{}]"#,
        packet(Event, "/", None, Some(r#"["a",1,{}]"#)),
    );
    check(
        both,
        r#"2[1,"a",{}]"#,
        packet(Event, "/", None, Some(r#"[1,"a",{}]"#)),
    );
    check(
        both,
        r#"2/test,1["a",1,{}]"#,
        packet(Event, "/test", Some(1), Some(r#"["a",1,{}]"#)),
    );
    check(
        both,
        r#"3123["a",1,{}]"#,
        packet(Ack, "/", Some(123), Some(r#"["a",1,{}]"#)),
    );
    check(
        both,
        r#"4"Unauthorized""#,
        packet(ConnectError, "/", None, Some(r#""Unauthorized""#)),
    );
    // The v5 test suite "message".
    check(
        both,
        r#"2["message",1,"2",{"3":[true]}]"#,
        packet(Event, "/", None, Some(r#"["message",1,"2",{"3":[true]}]"#)),
    );
    check(
        both,
        r#"3456[1,"2",{"3":[false]}]"#,
        packet(Ack, "/", Some(456), Some(r#"[1,"2",{"3":[false]}]"#)),
    );
    let message = format!(r#"["message",{},{}]"#, placeholder(0), placeholder(1));
    check(
        both,
        &format!("52-789{message}"),
        with_attachments(
            packet(BinaryEvent, "/", Some(789), Some(&message)),
            &[&[1, 2, 3], &[4, 5, 6]],
        ),
    );
    // seeds-protocols.md §2.1 (the socket.io part of `42/chat-service,1["roomJoin","r1"]`).
    check(
        &[V4],
        r#"2/chat-service,1["roomJoin","r1"]"#,
        packet(
            Event,
            "/chat-service",
            Some(1),
            Some(r#"["roomJoin","r1"]"#),
        ),
    );
    check(
        &[V4],
        r#"2/chat-service,2["roomMessage","r1",{"textMessage":"hi"}]"#,
        packet(
            Event,
            "/chat-service",
            Some(2),
            Some(r#"["roomMessage","r1",{"textMessage":"hi"}]"#),
        ),
    );
    check(
        &[V4],
        "0/chat-service,",
        packet(Connect, "/chat-service", None, None),
    );
    // A binary packet that announces no attachment is complete at once (`50-`).
    check(
        both,
        r#"50-["a"]"#,
        packet(BinaryEvent, "/", None, Some(r#"["a"]"#)),
    );
}

#[test]
fn decoding_reads_as_the_reference_parser_reads() {
    let cases: &[(&[Version], &str, Packet)] = &[
        // The v5 test suite: a namespace may end at the end of the string.
        (
            &[V4, V5],
            "0/custom",
            packet(Connect, "/custom", None, None),
        ),
        (
            &[V4, V5],
            "1/custom",
            packet(Disconnect, "/custom", None, None),
        ),
        (
            &[V5],
            r#"0{"token":"123"}"#,
            packet(Connect, "/", None, Some(r#"{"token":"123"}"#)),
        ),
        (
            &[V5],
            r#"0/custom,{"token":"abc"}"#,
            packet(Connect, "/custom", None, Some(r#"{"token":"abc"}"#)),
        ),
        // Protocol 4: the query of a CONNECT is its auth payload (v4 §CONNECT example and
        // `client.ts` `_parseNamespace`); a JSON payload is not used.
        (
            &[V4],
            "0/admin?token=1234&uid=abcd",
            packet(
                Connect,
                "/admin",
                None,
                Some(r#"{"token":"1234","uid":"abcd"}"#),
            ),
        ),
        (
            &[V4],
            "0/nsp?x=y,",
            packet(Connect, "/nsp", None, Some(r#"{"x":"y"}"#)),
        ),
        (
            &[V4],
            "0/?a=%22b%22+c&d&a=e,",
            packet(Connect, "/", None, Some(r#"{"a":"e","d":""}"#)),
        ),
        (
            &[V4],
            r#"0{"token":"123"}"#,
            packet(Connect, "/", None, None),
        ),
        // … and the query of any other packet is dropped.
        (
            &[V4],
            r#"2/nsp?x=1,["a"]"#,
            packet(Event, "/nsp", None, Some(r#"["a"]"#)),
        ),
        // Protocol 5 keeps it in the namespace (which then names no namespace).
        (&[V5], "0/nsp?x=y,", packet(Connect, "/nsp?x=y", None, None)),
        // A namespace is read only when it starts with `/`.
        (
            &[V4, V5],
            r#"2["a","/b,"]"#,
            packet(Event, "/", None, Some(r#"["a","/b,"]"#)),
        ),
        // Key order and number forms are kept as they came.
        (
            &[V4, V5],
            r#"2["a",{"b":1,"a":2.50}]"#,
            packet(Event, "/", None, Some(r#"["a",{"b":1,"a":2.50}]"#)),
        ),
        // JSON.parse skips whitespace around the value.
        (
            &[V4, V5],
            "2 [\"a\"] ",
            packet(Event, "/", None, Some(r#"["a"]"#)),
        ),
        // A placeholder in a packet that is not binary is plain JSON.
        (
            &[V5],
            r#"2["a",{"_placeholder":true,"num":0}]"#,
            packet(
                Event,
                "/",
                None,
                Some(r#"["a",{"_placeholder":true,"num":0}]"#),
            ),
        ),
        // An id of 0, and the largest one.
        (
            &[V5],
            r#"20["a"]"#,
            packet(Event, "/", Some(0), Some(r#"["a"]"#)),
        ),
        (
            &[V5],
            r#"318446744073709551615[]"#,
            packet(Ack, "/", Some(u64::MAX), Some("[]")),
        ),
        // A client may send CONNECT_ERROR; the packet decodes, and the server closes (`client.ts`
        // `ondecoded`: "invalid state").
        (&[V5], "4", packet(ConnectError, "/", None, None)),
    ];
    for (versions, text, expected) in cases {
        for &version in *versions {
            assert_eq!(
                decode(version, text, &[]).as_ref(),
                Ok(expected),
                "{version:?} {text:?}"
            );
        }
    }
}

#[test]
fn malformed_packets() {
    use DecodeError::*;
    let event_name = InvalidPayload("EVENT carries an array whose first element is an event name");
    let cases: &[(&str, DecodeError)] = &[
        // socket.io-parser test/parser.js "throw an error upon parsing error".
        (r#"442["some","data""#, InvalidJson(String::new())),
        (
            r#"0/admin,"invalid""#,
            InvalidPayload("CONNECT carries an object"),
        ),
        ("0[]", InvalidPayload("CONNECT carries an object")),
        ("1/admin,{}", InvalidPayload("DISCONNECT carries nothing")),
        (r#"2/admin,"invalid"#, InvalidJson(String::new())),
        ("2/admin,{}", event_name.clone()),
        (r#"2[{"toString":"foo"}]"#, event_name.clone()),
        (r#"2[true,"foo"]"#, event_name.clone()),
        (r#"2[null,"bar"]"#, event_name.clone()),
        (r#"2["connect"]"#, InvalidPayload("a reserved event name")),
        (
            r#"2["disconnect","123"]"#,
            InvalidPayload("a reserved event name"),
        ),
        ("5", IllegalAttachments),
        ("51", IllegalAttachments),
        ("5a-", IllegalAttachments),
        ("51.23-", IllegalAttachments),
        ("999", UnknownType(b'9')),
        // socket.io-parser test/parser.js "decodes a bad binary packet".
        // The other reserved names, escaped names too.
        (
            r#"2["connect_error"]"#,
            InvalidPayload("a reserved event name"),
        ),
        (
            r#"2["disconnecting"]"#,
            InvalidPayload("a reserved event name"),
        ),
        (
            r#"2["newListener"]"#,
            InvalidPayload("a reserved event name"),
        ),
        (
            r#"52-["removeListener"]"#,
            InvalidPayload("a reserved event name"),
        ),
        (
            r#"2["\u0063onnect"]"#,
            InvalidPayload("a reserved event name"),
        ),
        // The v5 test suite "closes the connection upon invalid format": `4abc`, `42{}`,
        // `42abc[…]` (here without the Engine.IO `4`).
        ("abc", UnknownType(b'a')),
        ("2{}", event_name.clone()),
        (
            r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#,
            InvalidJson(String::new()),
        ),
        // Empty, and types outside 0–6.
        ("", Empty),
        ("7", UnknownType(b'7')),
        ("€", UnknownType(0xe2)),
        (" 2[\"a\"]", UnknownType(b' ')),
        // Payloads that their type does not carry.
        ("2", InvalidPayload("an event or ack without payload")),
        ("2/nsp,", InvalidPayload("an event or ack without payload")),
        ("3", InvalidPayload("an event or ack without payload")),
        ("51-", InvalidPayload("an event or ack without payload")),
        ("2[]", event_name.clone()),
        ("2[[1]]", event_name.clone()),
        (r#"2[{"a":1}]"#, event_name.clone()),
        (r#"2"ev""#, event_name.clone()),
        ("3{}", InvalidPayload("ACK carries an array")),
        ("3null", InvalidPayload("ACK carries an array")),
        ("0null", InvalidPayload("CONNECT carries an object")),
        ("0 1", InvalidPayload("CONNECT carries an object")),
        (
            "4[]",
            InvalidPayload("CONNECT_ERROR carries a string or an object"),
        ),
        (
            "4true",
            InvalidPayload("CONNECT_ERROR carries a string or an object"),
        ),
        ("1\"x\"", InvalidPayload("DISCONNECT carries nothing")),
        // JSON that is not JSON.
        (r#"2["a"]x"#, InvalidJson(String::new())),
        (r#"2["a"]["b"]"#, InvalidJson(String::new())),
        ("2[\"a\u{1}\"]", InvalidJson(String::new())),
        ("2['a']", InvalidJson(String::new())),
        ("2[NaN]", InvalidJson(String::new())),
        // Attachment counts and ids that are not plain digits (JavaScript's `Number()` takes
        // `""` as 0 and `" "` as a digit).
        (r#"5-["a"]"#, IllegalAttachments),
        (r#"5 1-["a"]"#, IllegalAttachments),
        (r#"5+1-["a"]"#, IllegalAttachments),
        (
            r#"599999999999999999999999-["a"]"#,
            TooManyAttachments { max: 10 },
        ),
        (
            r#"518446744073709551616-["a"]"#,
            TooManyAttachments { max: 10 },
        ),
        (r#"218446744073709551616["a"]"#, InvalidId),
        // socket.io-parser test/parser.js "throws an error when receiving too many attachments"
        // (there with `maxAttachments: 2`; the limit here is 10).
        (r#"511-["hello"]"#, TooManyAttachments { max: 10 }),
    ];
    for (text, expected) in cases {
        for version in [V4, V5] {
            let got = decode(version, text, &[]);
            match (&got, expected) {
                // serde_json's message is not part of the contract.
                (Err(InvalidJson(_)), InvalidJson(_)) => {}
                _ => assert_eq!(got.as_ref(), Err(expected), "{version:?} {text:?}"),
            }
        }
    }
}

#[test]
fn the_server_forms_of_each_version() {
    let args = |values: &[serde_json::Value]| values.iter().cloned().map(Arg::from).collect();
    let cases: &[(Packet, &str)] = &[
        // v5 §Connection to a namespace; the v5 test suite "connect".
        (Packet::connect(V5, "/", "abc"), r#"0{"sid":"abc"}"#),
        (
            Packet::connect(V5, "/custom", "abc"),
            r#"0/custom,{"sid":"abc"}"#,
        ),
        // seeds-protocols.md §2.1 (socket.io 2.5.1): `40`, `40/chat-service,`.
        (Packet::connect(V4, "/", "abc"), "0"),
        (
            Packet::connect(V4, "/chat-service", "abc"),
            "0/chat-service,",
        ),
        // The v5 test suite "should disallow connection to an unknown namespace".
        (
            Packet::connect_error(V5, "/random", "Invalid namespace", None),
            r#"4/random,{"message":"Invalid namespace"}"#,
        ),
        (
            Packet::connect_error(V5, "/", "Not authorized", Some(raw(r#"{"a":1}"#))),
            r#"4{"message":"Not authorized","data":{"a":1}}"#,
        ),
        (
            Packet::connect_error(V5, "/", "say \"no\"", None),
            r#"4{"message":"say \"no\""}"#,
        ),
        // v4 §ERROR example; `socket._error(err.data || err.message)`.
        (
            Packet::connect_error(V4, "/admin", "Not authorized", None),
            r#"4/admin,"Not authorized""#,
        ),
        (
            Packet::connect_error(V4, "/admin", "Not authorized", Some(raw(r#"{"a":1}"#))),
            r#"4/admin,{"a":1}"#,
        ),
        // seeds-protocols.md §2.1: `41/chat-service,`, events and acks.
        (Packet::disconnect("/chat-service"), "1/chat-service,"),
        (Packet::disconnect("/"), "1"),
        (
            Packet::event(
                "/chat-service",
                None,
                args(&[
                    json!("loginConfirmed"),
                    json!("alice"),
                    json!({"id": "/chat-service#x"}),
                ]),
            ),
            r##"2/chat-service,["loginConfirmed","alice",{"id":"/chat-service#x"}]"##,
        ),
        (
            Packet::ack("/chat-service", 1, args(&[json!(null), json!(1)])),
            "3/chat-service,1[null,1]",
        ),
        (
            Packet::event("/nsp", Some(12), args(&[json!("ev")])),
            r#"2/nsp,12["ev"]"#,
        ),
        (Packet::ack("/", 12, vec![]), "312[]"),
        // The v5 test suite "message-back".
        (
            Packet::event(
                "/",
                None,
                args(&[
                    json!("message-back"),
                    json!(1),
                    json!("2"),
                    json!({"3": [true]}),
                ]),
            ),
            r#"2["message-back",1,"2",{"3":[true]}]"#,
        ),
    ];
    for (packet, text) in cases {
        assert_eq!(packet.encode(), *text);
        assert!(packet.attachments.is_empty());
    }
}

/// Arguments, the packet built from them, its string form and attachments.
struct BinaryCase {
    args: Vec<Arg>,
    build: fn(Vec<Arg>) -> Packet,
    text: String,
    attachments: Vec<&'static [u8]>,
}

#[test]
fn binary_arguments_travel_as_placeholders_and_attachments() {
    let json = |value: serde_json::Value| Arg::from(value);
    let bin = |bytes: &'static [u8]| Arg::Binary(Bytes::from_static(bytes));
    let obj = |entries: Vec<(&str, Arg)>| {
        Arg::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };
    let cases = vec![
        // socket.io-parser test/buffer.js "encodes a Buffer".
        BinaryCase {
            args: vec![json(json!("a")), bin(b"abc")],
            build: |args| Packet::event("/cool", Some(23), args),
            text: format!(r#"51-/cool,23["a",{}]"#, placeholder(0)),
            attachments: vec![b"abc"],
        },
        // "encodes a nested Buffer".
        BinaryCase {
            args: vec![
                json(json!("a")),
                obj(vec![("b", Arg::Array(vec![json(json!("c")), bin(b"abc")]))]),
            ],
            build: |args| Packet::event("/cool", Some(23), args),
            text: format!(r#"51-/cool,23["a",{{"b":["c",{}]}}]"#, placeholder(0)),
            attachments: vec![b"abc"],
        },
        // "encodes a binary ack with Buffer".
        BinaryCase {
            args: vec![json(json!("a")), bin(b"xxx"), json(json!({}))],
            build: |args| Packet::ack("/back", 127, args),
            text: format!(r#"61-/back,127["a",{},{{}}]"#, placeholder(0)),
            attachments: vec![b"xxx"],
        },
        // test/arraybuffer.js "encodes ArrayBuffers deep in JSON": key order kept.
        BinaryCase {
            args: vec![
                json(json!("a")),
                obj(vec![
                    ("a", json(json!("hi"))),
                    ("b", obj(vec![("why", bin(&[0; 3]))])),
                    (
                        "c",
                        obj(vec![
                            ("a", json(json!("bye"))),
                            ("b", obj(vec![("a", bin(&[0; 6]))])),
                        ]),
                    ),
                ]),
            ],
            build: |args| Packet::event("/deep", Some(999), args),
            text: format!(
                r#"52-/deep,999["a",{{"a":"hi","b":{{"why":{}}},"c":{{"a":"bye","b":{{"a":{}}}}}}}]"#,
                placeholder(0),
                placeholder(1)
            ),
            attachments: vec![&[0; 3], &[0; 6]],
        },
        // "encodes deep binary JSON with null values"; a part without binary comes back as one
        // JSON value.
        BinaryCase {
            args: vec![
                json(json!("a")),
                obj(vec![
                    ("a", json(json!("b"))),
                    ("c", json(json!(4))),
                    ("e", json(json!({"g": null}))),
                    ("h", bin(&[0; 9])),
                ]),
            ],
            build: |args| Packet::event("/", Some(600), args),
            text: format!(
                r#"51-600["a",{{"a":"b","c":4,"e":{{"g":null}},"h":{}}}]"#,
                placeholder(0)
            ),
            attachments: vec![&[0; 9]],
        },
        // "encodes an ArrayBuffer" / "encodes a TypedArray" (id 0; two attachments, in order).
        BinaryCase {
            args: vec![json(json!("a")), bin(&[1, 2, 3]), bin(&[4, 5, 6])],
            build: |args| Packet::event("/", Some(0), args),
            text: format!(r#"52-0["a",{},{}]"#, placeholder(0), placeholder(1)),
            attachments: vec![&[1, 2, 3], &[4, 5, 6]],
        },
        // An ack `[null, {…}, <bytes>]`.
        BinaryCase {
            args: vec![json(json!(null)), json(json!({"ok": true})), bin(b"z")],
            build: |args| Packet::ack("/", 5, args),
            text: format!(r#"61-5[null,{{"ok":true}},{}]"#, placeholder(0)),
            attachments: vec![b"z"],
        },
    ];
    for case in cases {
        let built = (case.build)(case.args.clone());
        assert_eq!(built.encode(), case.text);
        let attachments: Vec<Bytes> = case
            .attachments
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect();
        assert_eq!(built.attachments, attachments);
        for version in [V4, V5] {
            let decoded = decode(version, &case.text, &attachments).unwrap();
            assert_eq!(decoded, built);
            assert_eq!(decoded.args().unwrap(), case.args, "{}", case.text);
        }
    }
}

#[test]
fn reconstruction_reads_placeholders_as_json_parse_does() {
    let text = |arg: &Arg| arg.as_json().map(|raw| raw.get().to_owned());
    let one = [Bytes::from_static(b"x")];
    let cases: &[(&str, Vec<Arg>)] = &[
        // An escaped key is still `_placeholder`.
        (
            r#"51-["a",{"\u005fplaceholder":true,"num":0}]"#,
            vec![Arg::from(json!("a")), Arg::Binary(one[0].clone())],
        ),
        // A float that is an integer names an attachment (`typeof num === "number"`).
        (
            r#"51-["a",{"_placeholder":true,"num":0.0}]"#,
            vec![Arg::from(json!("a")), Arg::Binary(one[0].clone())],
        ),
        // The last of repeated keys counts.
        (
            r#"51-["a",{"_placeholder":false,"_placeholder":true,"num":5,"num":0}]"#,
            vec![Arg::from(json!("a")), Arg::Binary(one[0].clone())],
        ),
        // `_placeholder` must be `true`: otherwise the object is data.
        (
            r#"51-["a",{"_placeholder":1,"num":0},{"_placeholder":true,"num":0}]"#,
            vec![
                Arg::from(json!("a")),
                Arg::from(json!({"_placeholder": 1, "num": 0})),
                Arg::Binary(one[0].clone()),
            ],
        ),
    ];
    for (packet, args) in cases {
        let decoded = decode(V5, packet, &one).unwrap();
        assert_eq!(&decoded.args().unwrap(), args, "{packet}");
    }
    // Parts without binary keep their text when they need no walk, and their key order when
    // they do.
    let decoded = decode(
        V5,
        r#"51-["a", {"z":1.50,"y":[2]} ,{"k\"":{"z":1,"a":2},"p":{"_placeholder":true,"num":0}}]"#,
        &one,
    )
    .unwrap();
    let args = decoded.args().unwrap();
    assert_eq!(text(&args[1]).as_deref(), Some(r#"{"z":1.50,"y":[2]}"#));
    let Arg::Object(entries) = &args[2] else {
        panic!("{args:?}")
    };
    assert_eq!(entries[0].0, "k\"");
    assert_eq!(text(&entries[0].1).as_deref(), Some(r#"{"z":1,"a":2}"#));
    assert_eq!(entries[1], ("p".to_owned(), Arg::Binary(one[0].clone())));
    // Helpers.
    assert_eq!(args[0].to_str().as_deref(), Some("a"));
    assert_eq!(args[1].to_str(), None);
    assert_eq!(entries[1].1.as_binary(), Some(&one[0]));
    assert_eq!(Arg::json(&("a", 1)).unwrap(), Arg::from(json!(["a", 1])));
    assert_eq!(
        packet(Connect, "/", None, None).args(),
        Err(DecodeError::NoArguments)
    );
}

/// Messages fed to a decoder, and what each returns: a packet's string form (`Ok(None)` while
/// attachments are awaited), or an error.
enum Step {
    Text(&'static str),
    Binary(&'static [u8]),
    Reset,
}

#[test]
fn decoder_sequences() {
    use DecodeError::*;
    use Step::*;
    type Expect = Result<Option<&'static str>, DecodeError>;
    let cases: &[(&str, &[(Step, Expect)])] = &[
        (
            // The v5 test suite "should send a packet with binary attachments".
            "two attachments",
            &[
                (
                    Text(
                        r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                    ),
                    Ok(None),
                ),
                (Binary(&[1, 2, 3]), Ok(None)),
                (
                    Binary(&[4, 5, 6]),
                    Ok(Some(
                        r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                    )),
                ),
                (Text(r#"2["next"]"#), Ok(Some(r#"2["next"]"#))),
            ],
        ),
        (
            // test/buffer.js "throws an error when adding an attachment without header".
            "binary without header",
            &[(Binary(b"world"), Err(UnexpectedBinary))],
        ),
        (
            // test/buffer.js "throws an error when decoding a binary event without
            // attachments".
            "text while attachments are awaited",
            &[
                (
                    Text(r#"51-["hello",{"_placeholder":true,"num":0}]"#),
                    Ok(None),
                ),
                (Text(r#"2["hello"]"#), Err(UnexpectedText)),
                // The error dropped the pending packet.
                (Text(r#"2["hello"]"#), Ok(Some(r#"2["hello"]"#))),
            ],
        ),
        (
            // test/buffer.js "… an invalid 'num' attribute (string)", "(out-of-bound)": refused
            // with the header, before the attachments come.
            "num is a string",
            &[(
                Text(r#"51-["hello",{"_placeholder":true,"num":"splice"}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            "num out of bounds",
            &[(
                Text(r#"51-["hello",{"_placeholder":true,"num":1}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            "num negative",
            &[(
                Text(r#"51-["hello",{"_placeholder":true,"num":-1}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            "num not an integer",
            &[(
                Text(r#"52-["hello",{"_placeholder":true,"num":0.5}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            "num missing",
            &[(
                Text(r#"51-["hello",{"_placeholder":true}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            "num huge",
            &[(
                Text(r#"51-["hello",{"_placeholder":true,"num":1e300}]"#),
                Err(IllegalPlaceholder),
            )],
        ),
        (
            // test/parser.js "should resume decoding after calling destroy()".
            "reset",
            &[
                (Text(r#"51-["hello"]"#), Ok(None)),
                (Reset, Ok(None)),
                (Text(r#"2["hello"]"#), Ok(Some(r#"2["hello"]"#))),
            ],
        ),
        (
            "an attachment nobody names",
            &[
                (
                    Text(r#"52-["hello",{"_placeholder":true,"num":1}]"#),
                    Ok(None),
                ),
                (Binary(b""), Ok(None)),
                (
                    Binary(b"x"),
                    Ok(Some(r#"52-["hello",{"_placeholder":true,"num":1}]"#)),
                ),
            ],
        ),
        (
            "a binary message after the packet",
            &[
                (Text(r#"51-["a",{"_placeholder":true,"num":0}]"#), Ok(None)),
                (
                    Binary(b"x"),
                    Ok(Some(r#"51-["a",{"_placeholder":true,"num":0}]"#)),
                ),
                (Binary(b"y"), Err(UnexpectedBinary)),
            ],
        ),
    ];
    for (name, steps) in cases {
        let mut decoder = Decoder::new(V5, LIMITS);
        for (n, (step, expected)) in steps.iter().enumerate() {
            let got = match step {
                Text(text) => decoder.text(text),
                Binary(bytes) => decoder.binary(Bytes::from_static(bytes)),
                Reset => {
                    decoder.reset();
                    Ok(None)
                }
            };
            let got = got.map(|packet| packet.map(|p| p.encode()));
            let expected = expected.clone().map(|text| text.map(str::to_owned));
            assert_eq!(got, expected, "{name}, step {n}");
        }
    }
}

#[test]
fn every_limit_is_hit() {
    let limits = Limits {
        max_attachments: 2,
        max_depth: 4,
        max_packet_bytes: 40,
    };
    let mut decoder = Decoder::new(V5, limits);
    // test/parser.js "throws an error when receiving too many attachments".
    assert_eq!(
        decoder.text(r#"53-["hello"]"#),
        Err(DecodeError::TooManyAttachments { max: 2 })
    );
    assert_eq!(decoder.text(r#"52-["a"]"#), Ok(None));
    assert_eq!(decoder.binary(Bytes::new()), Ok(None));
    assert!(decoder.binary(Bytes::new()).unwrap().is_some());
    // Nesting: 4 levels pass, 5 do not.
    assert!(decoder.text(r#"2["a",[[[1]]]]"#).unwrap().is_some());
    assert_eq!(
        decoder.text(r#"2["a",[[[[1]]]]]"#),
        Err(DecodeError::TooDeep { max: 4 })
    );
    // 128 levels, a placeholder at the bottom: decoded, and its arguments read back.
    let bottom = format!(
        r#"51-["a",{}{}{}]"#,
        "[".repeat(126),
        r#"{"_placeholder":true,"num":0}"#,
        "]".repeat(126)
    );
    let mut deepest = Decoder::new(
        V5,
        Limits {
            max_depth: 128,
            max_packet_bytes: 1000,
            ..limits
        },
    );
    assert_eq!(deepest.text(&bottom), Ok(None));
    let packet = deepest.binary(Bytes::from_static(b"x")).unwrap().unwrap();
    assert_eq!(packet.args().unwrap().len(), 2);
    // A bound above serde_json's own limit counts as 128.
    let deep = format!(r#"2["a",{}{}]"#, "[".repeat(200), "]".repeat(200));
    let mut lax = Decoder::new(
        V5,
        Limits {
            max_depth: 1000,
            max_packet_bytes: 1000,
            ..limits
        },
    );
    assert_eq!(lax.text(&deep), Err(DecodeError::TooDeep { max: 128 }));
    // Bytes: the string form alone, then with its attachments.
    let long = format!(r#"2["{}"]"#, "x".repeat(36));
    assert_eq!(long.len(), 41);
    assert_eq!(decoder.text(&long), Err(DecodeError::TooLarge { max: 40 }));
    let just = format!(r#"2["{}"]"#, "x".repeat(35));
    assert!(decoder.text(&just).unwrap().is_some());
    let header = r#"51-["a",{"_placeholder":true,"num":0}]"#;
    assert_eq!(header.len(), 38);
    assert_eq!(decoder.text(header), Ok(None));
    assert!(decoder.binary(Bytes::from_static(b"xy")).unwrap().is_some());
    assert_eq!(decoder.text(header), Ok(None));
    assert_eq!(
        decoder.binary(Bytes::from_static(b"xyz")),
        Err(DecodeError::TooLarge { max: 40 })
    );
    assert!(!decoder.is_awaiting_attachments());
}

#[test]
fn versions_follow_engine_io() {
    assert_eq!(Version::from(crate::engineio::Version::V3), V4);
    assert_eq!(Version::from(crate::engineio::Version::V4), V5);
}

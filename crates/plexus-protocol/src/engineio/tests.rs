//! Engine.IO codec tests, as data: the cases of the reference parsers' suites
//! (`packages/engine.io-parser/test/`, `engine.io-parser` 2.x `test/`), of the protocol test
//! suites (`docs/engine.io-protocol/v3-test-suite`, `v4-test-suite`) that concern bytes, and the
//! examples of the specifications, re-expressed; plus malformed input of every kind.

use bytes::Bytes;

use super::*;
use Version::{V3, V4};

fn text(data: &str) -> Packet {
    Packet::Message(Data::Text(data.to_owned()))
}

fn binary(data: &[u8]) -> Packet {
    Packet::Message(Data::Binary(Bytes::copy_from_slice(data)))
}

fn ping(data: &str) -> Packet {
    Packet::Ping(Some(data.to_owned()))
}

fn pong(data: &str) -> Packet {
    Packet::Pong(Some(data.to_owned()))
}

/// The handshake of the sample sessions; `maxPayload` exists in revision 4 only.
fn handshake(version: Version, upgrades: &[&str]) -> Handshake {
    Handshake {
        sid: "lv_VI97HAXpY6yYWAAAC".to_owned(),
        upgrades: upgrades.iter().map(|u| u.to_string()).collect(),
        ping_interval_ms: 25000,
        ping_timeout_ms: 5000,
        max_payload: if version == V4 { 1_000_000 } else { 0 },
    }
}

const HANDSHAKE_V3: &str = r#"{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
const HANDSHAKE_V4: &str = r#"{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;

/// A text packet decodes to `packet`, and `packet` encodes back to the same text frame.
fn check_text(versions: &[Version], frame: &str, packet: Packet) {
    for &version in versions {
        assert_eq!(
            decode_ws_text(version, frame).as_ref(),
            Ok(&packet),
            "{version:?} {frame:?}"
        );
        assert_eq!(
            encode_ws_frame(version, &packet, true),
            WsFrame::Text(frame.to_owned()),
            "{version:?} {packet:?}"
        );
    }
}

#[test]
fn text_packets() {
    let both = &[V3, V4];
    // engine.io-parser test/index.ts "should encode/decode a string"; 2.x test/parser.js
    // "encoding and decoding".
    check_text(both, "4test", text("test"));
    check_text(both, "4", text(""));
    check_text(both, "4aaa", text("aaa"));
    check_text(both, "4utf8 — string", text("utf8 — string"));
    check_text(both, "4€€€", text("€€€"));
    check_text(both, "1", Packet::Close);
    check_text(both, "21", ping("1"));
    check_text(both, "31", pong("1"));
    check_text(both, "2", Packet::Ping(None));
    check_text(both, "3", Packet::Pong(None));
    // The upgrade probe (v3 §Transport upgrading, v4 §Upgrade).
    check_text(both, "2probe", ping("probe"));
    check_text(both, "3probe", pong("probe"));
    check_text(both, "5", Packet::Upgrade);
    check_text(both, "6", Packet::Noop);
    // The handshake as the reference server writes it, key order included (v3 and v4 sample
    // sessions); `maxPayload` only in revision 4.
    let open = |version| Packet::Open(handshake(version, &["websocket"]));
    check_text(&[V3], &format!("0{HANDSHAKE_V3}"), open(V3));
    check_text(&[V4], &format!("0{HANDSHAKE_V4}"), open(V4));
}

#[test]
fn handshake_json_is_written_as_the_servers_write_it() {
    // seeds-protocols.md §2.1: socket.io 2.5.1 over WebSocket.
    let seeds = Handshake {
        sid: "abc".into(),
        upgrades: vec![],
        ping_interval_ms: 25000,
        ping_timeout_ms: 20000,
        max_payload: 1_000_000,
    };
    let open = Packet::Open(seeds);
    assert_eq!(
        encode_ws_frame(V3, &open, true),
        WsFrame::Text(
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#.into()
        )
    );
    // v4 §Handshake example, and the v4 test suite: exactly these five keys.
    assert_eq!(
        encode_ws_frame(V4, &open, true),
        WsFrame::Text(
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#.into()
        )
    );
    // A sid that needs escaping is escaped.
    let odd = Handshake {
        sid: "a\"b\\c".into(),
        ..handshake(V4, &[])
    };
    assert!(odd.to_json(V4).starts_with(r#"{"sid":"a\"b\\c","#));
    // v3 §Sample session with WebSocket only: no `upgrades`.
    assert_eq!(
        Handshake::from_json(
            r#"{"sid":"lv_VI97HAXpY6yYWAAAC","pingInterval":25000,"pingTimeout":5000}"#
        ),
        Ok(Handshake {
            upgrades: vec![],
            ..handshake(V3, &[])
        })
    );
    // A v3 handshake read back has no maxPayload.
    assert_eq!(
        Handshake::from_json(HANDSHAKE_V3).map(|h| h.max_payload),
        Ok(0)
    );
}

#[test]
fn binary_in_text_packets_is_base64() {
    // engine.io-parser test/node.ts "should encode/decode a Buffer as base64"; 2.x
    // "should encode/decode an ArrayBuffer as b64"; v4 §Packet encoding example `bAQIDBA==`.
    let data = binary(&[1, 2, 3, 4]);
    assert_eq!(
        encode_ws_frame(V4, &data, false),
        WsFrame::Text("bAQIDBA==".into())
    );
    assert_eq!(
        encode_ws_frame(V3, &data, false),
        WsFrame::Text("b4AQIDBA==".into())
    );
    assert_eq!(decode_ws_text(V4, "bAQIDBA==").as_ref(), Ok(&data));
    assert_eq!(decode_ws_text(V3, "b4AQIDBA==").as_ref(), Ok(&data));
    // Node's decoder does not need the padding, and neither does this one.
    assert_eq!(decode_ws_text(V4, "bAQIDBA").as_ref(), Ok(&data));
    assert_eq!(decode_ws_text(V4, "b"), Ok(binary(&[])));
    assert_eq!(decode_ws_text(V3, "b4"), Ok(binary(&[])));
}

#[test]
fn binary_frames() {
    // engine.io-parser test/node.ts "should encode/decode a Buffer"; v4 test suite "sends and
    // receives a binary packet": the frame is the data.
    let data = binary(&[1, 2, 3, 4]);
    assert_eq!(
        encode_ws_frame(V4, &data, true),
        WsFrame::Binary(Bytes::from_static(&[1, 2, 3, 4]))
    );
    assert_eq!(
        decode_ws_binary(V4, Bytes::from_static(&[1, 2, 3, 4])),
        Ok(data.clone())
    );
    assert_eq!(decode_ws_binary(V4, Bytes::new()), Ok(binary(&[])));
    // v3 test suite "sends and receives a binary packet": the type byte 4 comes first; 2.x
    // test/node "should decode an ArrayBuffer as binary".
    assert_eq!(
        encode_ws_frame(V3, &data, true),
        WsFrame::Binary(Bytes::from_static(&[4, 1, 2, 3, 4]))
    );
    assert_eq!(
        decode_ws_binary(V3, Bytes::from_static(&[4, 1, 2, 3, 4])),
        Ok(data)
    );
    assert_eq!(
        decode_ws_binary(V3, Bytes::from_static(&[4])),
        Ok(binary(&[]))
    );
}

#[test]
fn malformed_packets() {
    use DecodeError::*;
    let cases: &[(&[Version], &str, DecodeError)] = &[
        // engine.io-parser test/index.ts "should fail to decode a malformed packet".
        (&[V3, V4], "", Empty),
        (&[V3, V4], "a123", UnknownType(b'a')),
        // 2.x test/parser.js "decoding error handing".
        (&[V3, V4], ":::", UnknownType(b':')),
        (&[V3, V4], "94103", UnknownType(b'9')),
        (&[V3, V4], "7", UnknownType(b'7')),
        (&[V3, V4], "\u{1e}", UnknownType(0x1e)),
        (&[V3, V4], "€", UnknownType(0xe2)),
        // v4 test suite "closes the session upon invalid packet format".
        (&[V3, V4], "abc", UnknownType(b'a')),
        // Base64.
        (&[V4], "b!!!!", Base64),
        (&[V4], "bAQ=ID", Base64),
        (&[V3], "b4!!!!", Base64),
        (&[V3], "b", Empty),
        (&[V3], "b9AAAA", UnknownType(b'9')),
        (&[V3], "b2AAAA", BinaryNotMessage(2)),
        (&[V3], "bAQIDBA==", UnknownType(b'A')),
    ];
    for (versions, frame, error) in cases {
        for &version in *versions {
            assert_eq!(
                decode_ws_text(version, frame).as_ref(),
                Err(error),
                "{version:?} {frame:?}"
            );
        }
    }
    // An `open` packet must carry the handshake.
    for frame in ["0", "0[]", "0{}", r#"0{"sid":1}"#] {
        for version in [V3, V4] {
            assert!(
                matches!(decode_ws_text(version, frame), Err(Handshake(_))),
                "{version:?} {frame:?}"
            );
        }
    }
    let binary_cases: &[(&[u8], DecodeError)] = &[
        (&[], Empty),
        (&[2, 1, 2], BinaryNotMessage(2)),
        (&[0], BinaryNotMessage(0)),
        (&[7, 1], UnknownType(7)),
        (b"4hello", UnknownType(b'4')),
    ];
    for (frame, error) in binary_cases {
        assert_eq!(
            decode_ws_binary(V3, Bytes::copy_from_slice(frame)).as_ref(),
            Err(error),
            "{frame:?}"
        );
    }
}

/// A polling body decodes to `packets`; `packets` encode back to the same body with its content
/// type.
fn check_payload(version: Version, supports_binary: bool, body: &[u8], packets: &[Packet]) {
    let is_binary = body.first().is_some_and(|&b| b <= 1);
    let content_type = if is_binary {
        CONTENT_TYPE_BINARY
    } else {
        CONTENT_TYPE_TEXT
    };
    assert_eq!(
        decode_payload(version, &Bytes::copy_from_slice(body), is_binary, 100).as_deref(),
        Ok(packets),
        "{version:?} {:?}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(
        encode_payload(version, packets, supports_binary),
        EncodedPayload {
            content_type,
            body: Bytes::copy_from_slice(body)
        },
        "{version:?} {packets:?}"
    );
}

#[test]
fn v4_payloads() {
    let open = Packet::Open(handshake(V4, &["websocket"]));
    let cases: &[(&str, &[Packet])] = &[
        // v4 test suite "message" / "HTTP long-polling".
        ("4hello", &[text("hello")]),
        (
            "4test1\x1e4test2\x1e4test3",
            &[text("test1"), text("test2"), text("test3")],
        ),
        (
            "4hello\x1ebAQIDBA==",
            &[text("hello"), binary(&[1, 2, 3, 4])],
        ),
        // v4 test suite heartbeat and close: what the server writes and reads.
        ("2", &[Packet::Ping(None)]),
        ("3", &[Packet::Pong(None)]),
        ("1", &[Packet::Close]),
        ("6", &[Packet::Noop]),
        // v4 §Packet encoding > HTTP long-polling example.
        (
            "4hello\x1e2\x1e4world",
            &[text("hello"), Packet::Ping(None), text("world")],
        ),
        // engine.io-parser test/node.ts "should encode/decode a string + Buffer payload".
        ("4test\x1ebAQIDBA==", &[text("test"), binary(&[1, 2, 3, 4])]),
        // UTF-8 text, no lengths to count.
        ("4€\x1e4😀", &[text("€"), text("😀")]),
    ];
    for (body, packets) in cases {
        for supports_binary in [true, false] {
            check_payload(V4, supports_binary, body.as_bytes(), packets);
        }
    }
    // engine.io-parser test/index.ts "should encode/decode all packet types" (the `open`
    // packet carries its handshake here).
    let all = [
        open,
        Packet::Close,
        ping("probe"),
        pong("probe"),
        text("test"),
    ];
    let body = format!("0{HANDSHAKE_V4}\x1e1\x1e2probe\x1e3probe\x1e4test");
    check_payload(V4, true, body.as_bytes(), &all);
}

#[test]
fn v3_text_payloads() {
    let open = Packet::Open(handshake(V3, &["websocket"]));
    let sample = format!("96:0{HANDSHAKE_V3}");
    let cases: &[(&str, &[Packet])] = &[
        // v3 §Sample session.
        (&sample, &[open]),
        ("4:4hey", &[text("hey")]),
        ("6:4hello6:4world", &[text("hello"), text("world")]),
        // v3 test suite.
        ("6:4hello", &[text("hello")]),
        (
            "6:4test16:4test26:4test3",
            &[text("test1"), text("test2"), text("test3")],
        ),
        ("1:2", &[Packet::Ping(None)]),
        ("1:3", &[Packet::Pong(None)]),
        ("1:1", &[Packet::Close]),
        ("1:6", &[Packet::Noop]),
        // v3 §Payload: lengths count characters, not bytes …
        ("6:4hello2:4€", &[text("hello"), text("€")]),
        // … 2.x test/parser.js "should not utf8 encode when dealing with strings only" …
        ("4:4€€€2:4α", &[text("€€€"), text("α")]),
        // … and, as in JavaScript, UTF-16 code units: a character outside the BMP counts 2.
        ("3:4😀", &[text("😀")]),
        ("5:4a😀b1:2", &[text("a😀b"), Packet::Ping(None)]),
        // An empty list (2.x "should encode/decode empty payloads").
        ("0:", &[]),
    ];
    for (body, packets) in cases {
        check_payload(V3, true, body.as_bytes(), packets);
        check_payload(V3, false, body.as_bytes(), packets);
    }
    // Binary data in a text payload, when the client asked for base64: v3 §Payload example and
    // the v3 test suite "… (base64 encoded)".
    let packets = [text("hello"), binary(&[1, 2, 3, 4])];
    check_payload(V3, false, b"6:4hello10:b4AQIDBA==", &packets);
    check_payload(
        V3,
        false,
        "2:4€10:b4AQIDBA==".as_bytes(),
        &[text("€"), binary(&[1, 2, 3, 4])],
    );
    // A client may send `0:` between packets; it holds no packet.
    assert_eq!(
        decode_payload(V3, &Bytes::from_static(b"0:1:20:"), false, 10),
        Ok(vec![Packet::Ping(None)])
    );
    // Leading zeros are digits too (`Number("06")` is 6).
    assert_eq!(
        decode_payload(V3, &Bytes::from_static(b"06:4hello"), false, 10),
        Ok(vec![text("hello")])
    );
}

#[test]
fn v3_binary_payloads() {
    // The v3 test suite "… (binary)": the server's answer to `6:4hello10:b4AQIDBA==` for a
    // client that reads binary.
    let packets = [text("hello"), binary(&[1, 2, 3, 4])];
    check_payload(
        V3,
        true,
        &[
            0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4,
        ],
        &packets,
    );
    // v3 §Payload example: text in UTF-8, its length in bytes. (The document's binary part,
    // `01 04 ff 01 02 03 04`, leaves out the type byte that every implementation writes, as
    // the test suite's bytes above show.)
    check_payload(
        V3,
        true,
        &[0, 4, 255, 0x34, 0xe2, 0x82, 0xac, 1, 5, 255, 4, 1, 2, 3, 4],
        &[text("€"), binary(&[1, 2, 3, 4])],
    );
    // 2.x test/node "should encode mixed binary and string contents as binary": a 123-byte
    // buffer (length digits 1 2 4), UTF-8 text, a close.
    let buffer: Vec<u8> = (0..123).collect();
    let mut body = vec![1, 1, 2, 4, 255, 4];
    body.extend(&buffer);
    body.extend([0, 1, 0, 255]);
    body.extend("4hello 亜".as_bytes());
    body.extend([0, 1, 255, b'1']);
    check_payload(
        V3,
        true,
        &body,
        &[binary(&buffer), text("hello 亜"), Packet::Close],
    );
    // 2.x "should encode binary contents as binary".
    check_payload(
        V3,
        true,
        &[1, 6, 255, 4, 0, 1, 2, 3, 4, 1, 5, 255, 4, 5, 6, 7, 8],
        &[binary(&[0, 1, 2, 3, 4]), binary(&[5, 6, 7, 8])],
    );
    // An empty body holds no packet, as in the reference parser.
    assert_eq!(decode_payload(V3, &Bytes::new(), true, 10), Ok(vec![]));
    // 2.x "should encode string payloads as strings even if binary supported".
    assert_eq!(
        encode_payload(V3, &[Packet::Ping(None), Packet::Pong(None)], true),
        EncodedPayload {
            content_type: CONTENT_TYPE_TEXT,
            body: Bytes::from_static(b"1:21:3")
        }
    );
    assert_eq!(
        encode_payload(V3, &[], true).body,
        Bytes::from_static(b"0:")
    );
    assert_eq!(encode_payload(V4, &[], true).body, Bytes::new());
}

#[test]
fn malformed_payloads() {
    use DecodeError::*;
    let cases: &[(Version, bool, &[u8], DecodeError)] = &[
        // engine.io-parser test/index.ts "should fail to decode a malformed payload".
        (V4, false, b"{", UnknownType(b'{')),
        (V4, false, b"{}", UnknownType(b'{')),
        (V4, false, br#"["a123", "a456"]"#, UnknownType(b'[')),
        // An empty body, an empty packet, a trailing separator.
        (V4, false, b"", Empty),
        (V4, false, b"4a\x1e", Empty),
        (V4, false, b"\x1e4a", Empty),
        (V4, false, b"4a\x1e\x1e4b", Empty),
        // The v4 test suite "closes the session upon invalid packet format".
        (V4, false, b"abc", UnknownType(b'a')),
        (V4, false, b"4a\x1ebAQ=ID", Base64),
        (V4, false, b"4\xff", Utf8),
        // v4 §Headers: revision 4 has no binary payload.
        (V4, true, b"4hello", BinaryPayloadV4),
        // 2.x test/parser.js "should err on bad payload format", "bad payload length", "bad
        // packet format".
        (V3, false, b"1!", Payload("a length without `:`")),
        (V3, false, b"", Payload("empty payload")),
        (V3, false, b"))", Payload("a length without `:`")),
        (
            V3,
            false,
            b"1:",
            Payload("a length beyond the end of the payload"),
        ),
        (V3, false, b"3:99:", UnknownType(b'9')),
        (V3, false, b"1:aa", UnknownType(b'a')),
        (V3, false, b"1:a2:b", UnknownType(b'a')),
        // v3 test suite "closes the session upon invalid packet format".
        (V3, false, b"abc", Payload("a length without `:`")),
        // Lengths that are not plain digits (JavaScript's `Number()` takes some of these).
        (V3, false, b":4", Payload("a length that is not a number")),
        (
            V3,
            false,
            b" 2:4a",
            Payload("a length that is not a number"),
        ),
        (
            V3,
            false,
            b"+2:4a",
            Payload("a length that is not a number"),
        ),
        (
            V3,
            false,
            b"0x2:4a",
            Payload("a length that is not a number"),
        ),
        (
            V3,
            false,
            b"2.0:4a",
            Payload("a length that is not a number"),
        ),
        (
            V3,
            false,
            b"99999999999999999999999:4",
            Payload("a length that is not a number"),
        ),
        // A length beyond the end, or ending inside a character of two UTF-16 units.
        (
            V3,
            false,
            b"7:4hello",
            Payload("a length beyond the end of the payload"),
        ),
        (
            V3,
            false,
            "5:4€".as_bytes(),
            Payload("a length beyond the end of the payload"),
        ),
        (
            V3,
            false,
            "2:4😀".as_bytes(),
            Payload("a length beyond the end of the payload"),
        ),
        // Trailing bytes that are not a packet.
        (V3, false, b"2:4a2", Payload("a length without `:`")),
        (V3, false, b"\xff", Utf8),
        (V3, false, b"2:b2", BinaryNotMessage(2)),
        (V3, false, b"3:b4!", Base64),
        // 2.x test/parser.js: a binary payload of one byte 64.
        (
            V3,
            true,
            &[64],
            Payload("a packet header that is not 0 or 1"),
        ),
        (V3, true, &[0], Payload("a length without its `ff` end")),
        (
            V3,
            true,
            &[0, 1, 2],
            Payload("a length without its `ff` end"),
        ),
        (
            V3,
            true,
            &[0, 255, 0x34],
            Payload("a length that is not a number"),
        ),
        (
            V3,
            true,
            &[0, 10, 255, 0x34],
            Payload("a length that is not a number"),
        ),
        (
            V3,
            true,
            &[0, 2, 255, 0x34],
            Payload("a length beyond the end of the payload"),
        ),
        (
            V3,
            true,
            &[0, 1, 255],
            Payload("a length beyond the end of the payload"),
        ),
        (V3, true, &[0, 0, 255], Empty),
        (V3, true, &[1, 0, 255], Empty),
        (V3, true, &[1, 2, 255, 2, 1], BinaryNotMessage(2)),
        (V3, true, &[0, 2, 255, 0x34, 0xff], Utf8),
        (V3, true, &[0, 1, 255, b'a'], UnknownType(b'a')),
        // 2.x test/parser.js "should disallow invalid utf8" (there `4\uffff`, bytes of a
        // character above 0xFF; here bytes that are not UTF-8).
        (V3, true, &[0, 3, 255, 0x34, 0xc3, 0x28], Utf8),
        (
            V3,
            true,
            &[1, 1, 255, 4, 2, 1, 255, 4],
            Payload("a packet header that is not 0 or 1"),
        ),
        (
            V3,
            true,
            &[0, 1, 1, 255, 0x34],
            Payload("a length beyond the end of the payload"),
        ),
        (
            V3,
            true,
            &[
                0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 255,
            ],
            Payload("a length that is not a number"),
        ),
    ];
    for (version, binary, body, error) in cases {
        assert_eq!(
            decode_payload(*version, &Bytes::copy_from_slice(body), *binary, 100).as_ref(),
            Err(error),
            "{version:?} {binary} {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn max_packets_is_a_limit_in_every_format() {
    let cases: &[(Version, bool, &[u8])] = &[
        (V4, false, b"4a\x1e4b\x1e4c"),
        (V3, false, b"2:4a2:4b2:4c"),
        (
            V3,
            true,
            &[
                0, 2, 255, b'4', b'a', 0, 2, 255, b'4', b'b', 0, 2, 255, b'4', b'c',
            ],
        ),
    ];
    for (version, binary, body) in cases {
        let body = Bytes::copy_from_slice(body);
        assert_eq!(
            decode_payload(*version, &body, *binary, 3).map(|p| p.len()),
            Ok(3)
        );
        assert_eq!(
            decode_payload(*version, &body, *binary, 2),
            Err(DecodeError::TooManyPackets { max: 2 })
        );
    }
}

#[test]
fn content_types() {
    assert!(is_binary_content_type("application/octet-stream"));
    assert!(is_binary_content_type("Application/Octet-Stream; x=y"));
    assert!(!is_binary_content_type("text/plain;charset=UTF-8"));
    assert!(!is_binary_content_type(""));
}

#[test]
fn queries() {
    let query = |version, transport, sid: Option<&str>, b64, t: Option<&str>| Query {
        version,
        transport,
        sid: sid.map(str::to_owned),
        b64,
        t: t.map(str::to_owned),
    };
    use HttpError::*;
    use Transport::*;
    let cases: &[(&str, Result<Query, HttpError>)] = &[
        // v3 and v4 sample sessions.
        (
            "EIO=4&transport=polling",
            Ok(query(V4, Polling, None, false, None)),
        ),
        (
            "?EIO=3&transport=polling&t=N8hyd7H&sid=lv_VI97HAXpY6yYWAAAC",
            Ok(query(
                V3,
                Polling,
                Some("lv_VI97HAXpY6yYWAAAC"),
                false,
                Some("N8hyd7H"),
            )),
        ),
        (
            "EIO=3&transport=websocket&b64=1",
            Ok(query(V3, Websocket, None, true, None)),
        ),
        // `b64` with any non-empty value; an empty `sid` is no sid.
        (
            "EIO=3&transport=polling&b64=0",
            Ok(query(V3, Polling, None, true, None)),
        ),
        (
            "EIO=3&transport=polling&b64=&sid=",
            Ok(query(V3, Polling, None, false, None)),
        ),
        // Query-string decoding: `+`, `%XX`, a stray `%`, a repeated key (the last wins), extra
        // keys.
        (
            "EIO=4&transport=polling&sid=a%2Bb+c%zz&user=alice",
            Ok(query(V4, Polling, Some("a+b c%zz"), false, None)),
        ),
        (
            "EIO=3&EIO=4&transport=websocket",
            Ok(query(V4, Websocket, None, false, None)),
        ),
        (
            "transport=%70olling&EIO=%34",
            Ok(query(V4, Polling, None, false, None)),
        ),
        // v4 test suite "fails with an invalid 'transport' query parameter".
        ("EIO=4", Err(UnknownTransport)),
        ("EIO=4&transport=abc", Err(UnknownTransport)),
        ("EIO=4&transport=webtransport", Err(UnknownTransport)),
        ("EIO=4&transport=Polling", Err(UnknownTransport)),
        // JSONP is not supported.
        ("EIO=3&transport=polling&j=0", Err(UnknownTransport)),
        // v4 test suite "fails with an invalid 'EIO' query parameter".
        ("transport=polling", Err(UnsupportedProtocolVersion)),
        ("EIO=abc&transport=polling", Err(UnsupportedProtocolVersion)),
        ("EIO=2&transport=websocket", Err(UnsupportedProtocolVersion)),
        ("EIO=5&transport=websocket", Err(UnsupportedProtocolVersion)),
        ("", Err(UnknownTransport)),
    ];
    for (raw, expected) in cases {
        assert_eq!(&parse_query(raw), expected, "{raw:?}");
    }
}

#[test]
fn handshake_requests() {
    let polling = parse_query("EIO=4&transport=polling").unwrap();
    let websocket = parse_query("EIO=4&transport=websocket").unwrap();
    let with_sid = parse_query("EIO=4&transport=polling&sid=x").unwrap();
    let cases: &[(&Query, &str, bool, Result<(), HttpError>)] = &[
        (&polling, "GET", false, Ok(())),
        // v4 test suite "fails with an invalid request method".
        (&polling, "POST", false, Err(HttpError::BadHandshakeMethod)),
        (&polling, "PUT", false, Err(HttpError::BadHandshakeMethod)),
        (&websocket, "GET", true, Ok(())),
        (&websocket, "GET", false, Err(HttpError::BadRequest)),
        (&with_sid, "POST", false, Ok(())),
    ];
    for (query, method, upgrade, expected) in cases {
        assert_eq!(
            &query.check_handshake(method, *upgrade),
            expected,
            "{query:?} {method}"
        );
    }
}

#[test]
fn http_errors_are_written_as_engine_io_writes_them() {
    let expected = [
        (0, 400, r#"{"code":0,"message":"Transport unknown"}"#),
        (1, 400, r#"{"code":1,"message":"Session ID unknown"}"#),
        (2, 400, r#"{"code":2,"message":"Bad handshake method"}"#),
        (3, 400, r#"{"code":3,"message":"Bad request"}"#),
        (4, 403, r#"{"code":4,"message":"Forbidden"}"#),
        (
            5,
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
    ];
    for (error, (code, status, body)) in HttpError::ALL.iter().zip(expected) {
        assert_eq!(error.code(), code);
        assert_eq!(error.http_status(), status);
        assert_eq!(error.json_body(), body);
        assert_eq!(error.to_string(), error.message());
    }
    assert_eq!(
        HttpError::Forbidden.json_body_with_message("no \"way\"\n\u{1}é"),
        r#"{"code":4,"message":"no \"way\"\n\u0001é"}"#
    );
}

#[test]
fn query_pairs_are_decoded_in_order_and_bounded() {
    assert_eq!(
        query_pairs("?user=al%20ice&EIO=4&user=bob", 8),
        [
            ("user".to_owned(), "al ice".to_owned()),
            ("EIO".to_owned(), "4".to_owned()),
            ("user".to_owned(), "bob".to_owned()),
        ]
    );
    let long: String = (0..100).map(|i| format!("k{i}=v&")).collect();
    let pairs = query_pairs(&long, 64);
    assert_eq!(pairs.len(), 64);
    assert_eq!(pairs[63].0, "k63");
}

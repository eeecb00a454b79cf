//! The worked bytes of `seeds-protocols.md` §5.1, round trips, the multiplexing rules, and the
//! defects fixed.

use super::*;

const ID: [u8; 16] = [
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x41, 0x11, 0x91, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
];
const PARENT: [u8; 16] = [
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x42, 0x22, 0xA2, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
];

fn packet(p: Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(&mut out, &p);
    out
}

fn message(action: &str, data_size: u64, files: Vec<FileHeader>) -> Header {
    Header {
        id: ID,
        parent: None,
        action: action.into(),
        data_size,
        files,
    }
}

#[test]
fn connection_headers() {
    assert_eq!(encode_header(4096), [0xE3]);
    assert_eq!(encode_header(1), [0xE0]);
    assert_eq!(encode_header(255), [0xE1, 0xFF]);
    // Sockety wrote 256 as a u8 (0); the 16-bit form holds it.
    assert_eq!(encode_header(256), [0xE2, 0x00, 0x01]);
    for n in [1u16, 2, 255, 256, 300, 4095, 4096] {
        let bytes = encode_header(n);
        assert_eq!(decode_header(&bytes), Ok(Some((n, bytes.len()))), "{n}");
        for cut in 0..bytes.len() {
            assert_eq!(decode_header(&bytes[..cut]), Ok(None), "{n} cut at {cut}");
        }
    }
    assert_eq!(decode_header(&[]), Ok(None));
    assert!(
        decode_header(&[0xF0]).is_err(),
        "a bad header byte is an error"
    );
    assert!(decode_header(&[0xE1, 0x00]).is_err(), "zero channels");
    assert!(decode_header(&[0xE2, 0x01, 0x10]).is_err(), "over 4096");
}

#[test]
fn the_worked_bytes() {
    // Message "ping" expecting a response, no data.
    let body = encode_header_body(&message("ping", 0, vec![]));
    let bytes = packet(Packet::Message {
        has_stream: false,
        expects_response: true,
        bytes: &body,
    });
    let mut expected = vec![0x21, 0x16, 0x00];
    expected.extend_from_slice(&ID);
    expected.extend_from_slice(&[0x04, b'p', b'i', b'n', b'g']);
    assert_eq!(bytes, expected);

    // Fast replies: Accept (0) and 300.
    let mut accept = vec![0x30];
    accept.extend_from_slice(&ID);
    assert_eq!(packet(Packet::FastReply { code: 0, id: ID }), accept);
    let mut code300 = vec![0x41, 0x2C];
    code300.extend_from_slice(&ID);
    assert_eq!(packet(Packet::FastReply { code: 300, id: ID }), code300);

    // A response with data "pong".
    let response = Header {
        id: ID,
        parent: Some(PARENT),
        action: String::new(),
        data_size: 4,
        files: vec![],
    };
    let body = encode_header_body(&response);
    let bytes = packet(Packet::Response {
        has_stream: false,
        expects_response: false,
        bytes: &body,
    });
    let mut expected = vec![0x50, 0x22, 0x40];
    expected.extend_from_slice(&PARENT);
    expected.extend_from_slice(&ID);
    expected.push(0x04);
    assert_eq!(bytes, expected);
    assert_eq!(
        packet(Packet::Data(b"pong")),
        [0xE0, 0x04, b'p', b'o', b'n', b'g']
    );

    // A message with data "abc" and one 5-byte file "a.txt".
    let header = message(
        "x",
        3,
        vec![FileHeader {
            name: "a.txt".into(),
            size: 5,
        }],
    );
    let body = encode_header_body(&header);
    assert_eq!(body[0], 0x50);
    assert_eq!(
        &body[1 + 16 + 1 + 1..],
        &[
            0x03, 0x01, 0x05, 0x00, 0x00, 0x05, 0x05, b'a', b'.', b't', b'x', b't'
        ]
    );
    assert_eq!(
        &packet(Packet::File {
            index: 0,
            bytes: b"hello"
        })[..2],
        &[0xC0, 0x05]
    );
    assert_eq!(packet(Packet::FileEnd { index: 0 }), [0xD0]);

    // Switch channel 5 and 300.
    assert_eq!(packet(Packet::SwitchChannel(5)), [0x05]);
    assert_eq!(packet(Packet::SwitchChannel(300)), [0x11, 0x2C]);
    // The one-byte packets; abort is 0x90 (Sockety wrote 0xB0, go-away).
    assert_eq!(packet(Packet::StreamEnd), [0x80]);
    assert_eq!(packet(Packet::Abort), [0x90]);
    assert_eq!(packet(Packet::Heartbeat), [0xA0]);
    assert_eq!(packet(Packet::GoAway), [0xB0]);
}

#[test]
fn every_packet_round_trips() {
    let big = vec![7u8; 70_000];
    let packets = [
        Packet::SwitchChannel(0),
        Packet::SwitchChannel(15),
        Packet::SwitchChannel(16),
        Packet::SwitchChannel(4095),
        Packet::Message {
            has_stream: true,
            expects_response: false,
            bytes: b"abc",
        },
        Packet::Response {
            has_stream: false,
            expects_response: true,
            bytes: &big,
        },
        Packet::FastReply { code: 15, id: ID },
        Packet::FastReply { code: 4095, id: ID },
        Packet::Continue(b""),
        Packet::Stream(&big),
        Packet::Data(b"d"),
        Packet::StreamEnd,
        Packet::Abort,
        Packet::Heartbeat,
        Packet::GoAway,
        Packet::File {
            index: 0,
            bytes: b"f",
        },
        Packet::File {
            index: 300,
            bytes: &big,
        },
        Packet::File {
            index: 70_000,
            bytes: b"",
        },
        Packet::FileEnd { index: 0 },
        Packet::FileEnd { index: 2 },
        Packet::FileEnd { index: 70_000 },
    ];
    for p in packets {
        let bytes = packet(p.clone());
        assert_eq!(
            decode_packet(&bytes),
            Ok(Some((p.clone(), bytes.len()))),
            "{p:?}"
        );
        // Any prefix is incomplete, never an error.
        for cut in 0..bytes.len().min(40) {
            assert_eq!(decode_packet(&bytes[..cut]), Ok(None), "{p:?} cut at {cut}");
        }
    }
}

#[test]
fn headers_round_trip_with_every_width() {
    for header in [
        message("", 0, vec![]),
        message(&"a".repeat(300), 255, vec![]),
        message("act", 70_000, vec![]),
        message("act", 1 << 40, vec![]),
        message(
            "files",
            0,
            vec![
                FileHeader {
                    name: "a".into(),
                    size: 0,
                },
                FileHeader {
                    name: "é".repeat(200),
                    size: 1 << 33,
                },
            ],
        ),
        Header {
            id: ID,
            parent: Some(PARENT),
            action: String::new(),
            data_size: 9,
            files: vec![FileHeader {
                name: "r".into(),
                size: 3,
            }],
        },
    ] {
        let body = encode_header_body(&header);
        let response = header.parent.is_some();
        assert_eq!(
            decode_header_body(&body, response),
            Ok(Some((header.clone(), body.len())))
        );
        for cut in 0..body.len() {
            assert_eq!(decode_header_body(&body[..cut], response), Ok(None));
        }
    }
}

fn frames(items: &[Packet<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in items {
        encode_packet(&mut out, p);
    }
    out
}

#[test]
fn the_reader_multiplexes_channels() {
    let a = encode_header_body(&message(
        "upload",
        3,
        vec![FileHeader {
            name: "a.txt".into(),
            size: 5,
        }],
    ));
    let b = encode_header_body(&message("ping", 0, vec![]));
    // Message a starts on channel 0, its header split in two; message b goes on channel 1
    // meanwhile; a's data and file follow on channel 0.
    let bytes = frames(&[
        Packet::Message {
            has_stream: true,
            expects_response: true,
            bytes: &a[..10],
        },
        Packet::Continue(&a[10..]),
        Packet::SwitchChannel(1),
        Packet::Message {
            has_stream: false,
            expects_response: true,
            bytes: &b,
        },
        Packet::SwitchChannel(0),
        Packet::Data(b"abc"),
        Packet::File {
            index: 0,
            bytes: b"hel",
        },
        Packet::File {
            index: 0,
            bytes: b"lo",
        },
        Packet::FileEnd { index: 0 },
        Packet::Stream(b"s1"),
        Packet::StreamEnd,
        Packet::Heartbeat,
    ]);
    let mut reader = Reader::new(2);
    let mut events = Vec::new();
    // Fed a byte at a time: the same events.
    let mut buf = Vec::new();
    for &byte in &bytes {
        buf.push(byte);
        let used = reader.read(&buf, &mut events).unwrap();
        buf.drain(..used);
    }
    assert!(buf.is_empty());
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Header {
                channel, header, ..
            } => format!("header {channel} {}", header.action),
            Event::Data { channel, bytes } => format!("data {channel} {}", bytes.len()),
            Event::File {
                channel,
                index,
                bytes,
            } => format!("file {channel} {index} {}", bytes.len()),
            Event::FileEnd { channel, index } => format!("file end {channel} {index}"),
            Event::Stream { channel, .. } => format!("stream {channel}"),
            Event::StreamEnd { channel } => format!("stream end {channel}"),
            Event::Done { channel } => format!("done {channel}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "header 0 upload",
            "header 1 ping",
            "done 1",
            "data 0 3",
            "file 0 0 3",
            "file 0 0 2",
            "file end 0 0",
            "stream 0",
            "stream end 0",
            "done 0",
            "Heartbeat",
        ]
    );
}

#[test]
fn the_reader_refuses_what_breaks_the_rules() {
    let ping = encode_header_body(&message("ping", 0, vec![]));
    let with_data = encode_header_body(&message(
        "d",
        2,
        vec![FileHeader {
            name: "f".into(),
            size: 2,
        }],
    ));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a channel over the announced",
            frames(&[Packet::SwitchChannel(2)]),
        ),
        (
            "a second message on a busy channel",
            frames(&[
                Packet::Message {
                    has_stream: true,
                    expects_response: false,
                    bytes: &ping,
                },
                Packet::Message {
                    has_stream: false,
                    expects_response: false,
                    bytes: &ping,
                },
            ]),
        ),
        (
            "data with nothing in progress",
            frames(&[Packet::Data(b"x")]),
        ),
        (
            "data beyond the announced size",
            frames(&[
                Packet::Message {
                    has_stream: false,
                    expects_response: false,
                    bytes: &with_data,
                },
                Packet::Data(b"xyz"),
            ]),
        ),
        (
            "a file ended early",
            frames(&[
                Packet::Message {
                    has_stream: false,
                    expects_response: false,
                    bytes: &with_data,
                },
                Packet::File {
                    index: 0,
                    bytes: b"1",
                },
                Packet::FileEnd { index: 0 },
            ]),
        ),
        (
            "a file that was not announced",
            frames(&[
                Packet::Message {
                    has_stream: false,
                    expects_response: false,
                    bytes: &with_data,
                },
                Packet::File {
                    index: 1,
                    bytes: b"1",
                },
            ]),
        ),
        (
            "stream bytes without a stream",
            frames(&[
                Packet::Message {
                    has_stream: false,
                    expects_response: false,
                    bytes: &with_data,
                },
                Packet::Stream(b"s"),
            ]),
        ),
        (
            "bytes after a complete header",
            frames(&[Packet::Message {
                has_stream: false,
                expects_response: false,
                bytes: &[ping.as_slice(), b"??"].concat(),
            }]),
        ),
        (
            "an abort with nothing in progress",
            frames(&[Packet::Abort]),
        ),
        ("an unknown packet type", vec![0xF0]),
        ("reserved bits", vec![0x81]),
        (
            "a packet over the bound",
            vec![0xEC, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
    ];
    for (what, bytes) in cases {
        let mut reader = Reader::new(2);
        assert!(reader.read(&bytes, &mut Vec::new()).is_err(), "{what}");
    }
    // An abort frees the channel for the next message.
    let mut reader = Reader::new(1);
    let mut events = Vec::new();
    let bytes = frames(&[
        Packet::Message {
            has_stream: true,
            expects_response: false,
            bytes: &ping,
        },
        Packet::Abort,
        Packet::Message {
            has_stream: false,
            expects_response: false,
            bytes: &ping,
        },
    ]);
    reader.read(&bytes, &mut events).unwrap();
    assert!(events.contains(&Event::Aborted { channel: 0 }));
    assert!(events.ends_with(&[Event::Done { channel: 0 }]));
}

#[test]
fn header_and_file_bounds() {
    // A header growing past MAX_HEADER_BYTES through continuations is refused.
    let mut reader = Reader::new(1);
    let mut out = Vec::new();
    // Flags: an action length in u16 (G), so the header waits for a 65 000-byte action.
    let mut start = vec![0x02];
    start.extend_from_slice(&ID);
    start.extend_from_slice(&65_000u16.to_le_bytes());
    let chunk = vec![b'a'; 4000];
    let mut bytes = frames(&[Packet::Message {
        has_stream: false,
        expects_response: false,
        bytes: &start,
    }]);
    for _ in 0..15 {
        encode_packet(&mut bytes, &Packet::Continue(&chunk));
    }
    assert!(
        reader.read(&bytes, &mut out).is_ok(),
        "60 000 bytes of action fit"
    );
    let mut more = Vec::new();
    encode_packet(&mut more, &Packet::Continue(&vec![b'a'; 6000]));
    let e = reader.read(&more, &mut out).unwrap_err();
    assert!(e.0.contains("header over"), "{e}");

    // More than MAX_FILES files is refused.
    let mut header = vec![0x20]; // EE = u16 file count
    header.extend_from_slice(&ID);
    header.push(0); // empty action
    header.extend_from_slice(&((MAX_FILES as u16) + 1).to_le_bytes());
    let e = decode_header_body(&header, false).unwrap_err();
    assert!(e.0.contains("files"), "{e}");
    let mut header = vec![0x20];
    header.extend_from_slice(&ID);
    header.push(0);
    header.extend_from_slice(&(MAX_FILES as u16).to_le_bytes());
    assert_eq!(
        decode_header_body(&header, false),
        Ok(None),
        "1024 files may follow"
    );
}

#[test]
fn ids_that_are_not_version_4_uuids_close() {
    let mut reader = Reader::new(4);
    let mut bytes = Vec::new();
    let header = Header {
        id: [0x11; 16],
        parent: None,
        action: "a".into(),
        data_size: 0,
        files: vec![],
    };
    encode_start(&mut bytes, &header, false, true);
    let e = reader.read(&bytes, &mut Vec::new()).unwrap_err();
    assert!(e.0.contains("UUID"), "{e}");
    let mut fast = vec![0x30];
    fast.extend_from_slice(&[0u8; 16]);
    assert!(Reader::new(1).read(&fast, &mut Vec::new()).is_err());
    assert!(is_uuid_v4(&to_uuid_v4([0xFF; 16])));
    assert!(is_uuid_v4(&to_uuid_v4([0; 16])));
}

#[test]
fn the_writer_takes_free_channels_round_robin_and_switches_only_when_needed() {
    let mut channels = Channels::new(3);
    let a = channels.take().unwrap();
    let b = channels.take().unwrap();
    let c = channels.take().unwrap();
    assert_eq!((a, b, c), (0, 1, 2));
    assert_eq!(channels.take(), None, "every channel busy");
    channels.release(1);
    channels.release(1);
    assert_eq!(channels.in_use(), 2);
    assert_eq!(channels.take(), Some(1));
    let mut out = Vec::new();
    channels.switch(&mut out, 0);
    assert!(out.is_empty(), "channel 0 is current");
    channels.switch(&mut out, 2);
    channels.switch(&mut out, 2);
    assert_eq!(out, [0x02]);
}

#[test]
fn a_whole_message_written_with_the_helpers_reads_back() {
    let header = Header {
        id: ID,
        parent: None,
        action: "upload".into(),
        data_size: 3,
        files: vec![],
    };
    let mut bytes = Vec::new();
    encode_start(&mut bytes, &header, false, false);
    encode_data(&mut bytes, b"abc");
    let mut events = Vec::new();
    let mut reader = Reader::new(1);
    assert_eq!(reader.read(&bytes, &mut events).unwrap(), bytes.len());
    assert!(matches!(events.last(), Some(Event::Done { channel: 0 })));
}

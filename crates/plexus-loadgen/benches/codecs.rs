//! Micro-benchmarks of the native protocol's codecs, in both encodings: encoding and decoding
//! a `pub` push (what the hub writes once per publication and wire format, and what every
//! client reads), and a `publish` request (what the server decodes for every publication).
//!
//! `cargo bench -p plexus-loadgen --bench codecs`

use divan::{Bencher, black_box};
use plexus_protocol::client::{Op, PublishParams, Request, decode_request, encode_request};
use plexus_protocol::server::{PubPush, Push, decode_server_frame, encode_push};
use plexus_protocol::{Encoding, Payload};

fn main() {
    divan::main();
}

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Msgpack];
/// Payload sizes, bytes of JSON.
const SIZES: [usize; 2] = [100, 1000];

fn payload(bytes: usize) -> Payload {
    let stamp = plexus_loadgen::stamp::Stamp {
        t: 1_234_567,
        s: 42,
        p: 3,
    };
    Payload::from_json_str(&stamp.to_json(bytes)).expect("valid JSON")
}

fn pub_push(bytes: usize) -> Push {
    let (data, binary) = payload(bytes).to_fields();
    Push::Pub(PubPush {
        channel: "chat:lobby".into(),
        offset: 123_456,
        epoch: "b3e1f09c".into(),
        data,
        binary,
        publisher: None,
        event: None,
    })
}

fn publish_request(bytes: usize) -> Request {
    Request {
        id: Some(77),
        op: Op::Publish(PublishParams::new("chat:lobby", &payload(bytes))),
    }
}

#[divan::bench(args = ENCODINGS, consts = SIZES)]
fn encode_pub<const B: usize>(bencher: Bencher, encoding: Encoding) {
    let push = pub_push(B);
    bencher.bench(|| encode_push(encoding, black_box(&push)));
}

#[divan::bench(args = ENCODINGS, consts = SIZES)]
fn decode_pub<const B: usize>(bencher: Bencher, encoding: Encoding) {
    let frame = encode_push(encoding, &pub_push(B));
    bencher.bench(|| decode_server_frame(encoding, black_box(&frame)).expect("decodes"));
}

#[divan::bench(args = ENCODINGS, consts = SIZES)]
fn encode_publish<const B: usize>(bencher: Bencher, encoding: Encoding) {
    let request = publish_request(B);
    bencher.bench(|| encode_request(encoding, black_box(&request)));
}

#[divan::bench(args = ENCODINGS, consts = SIZES)]
fn decode_publish<const B: usize>(bencher: Bencher, encoding: Encoding) {
    let frame = encode_request(encoding, &publish_request(B));
    bencher.bench(|| decode_request(encoding, black_box(&frame)).expect("decodes"));
}

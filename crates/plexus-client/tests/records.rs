//! Records through the Rust client against the real server: reads and writes, and a
//! [`RecordWatch`] that follows changes in full and patch mode and resyncs by itself after a
//! dropped connection or a lagging push stream.

use plexus_client::{Client, CloseCode, Encoding, ErrorCode, RecordMode, RecordWatch};
use plexus_core::RecordWrite;
use serde_json::{Value, json};

mod support;

use support::{any_port, both, conn_id, dev, start, within};

/// Reads states until the watch holds `version`.
async fn follow_to(w: &mut RecordWatch, version: u64) {
    while w.current().version < version {
        within("a record change", w.next())
            .await
            .expect("the client runs")
            .expect("a resync succeeds");
    }
}

#[tokio::test]
async fn reads_writes_and_compare_and_set() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let client = Client::connect(support::config(server.ws_url(), enc))
            .await
            .unwrap();
        let absent = client.record("r").await.unwrap();
        assert_eq!((absent.value, absent.version), (Value::Null, 0));
        let v1 = client
            .set_record("r", json!({"a": 1}), Some(0))
            .await
            .unwrap();
        assert_eq!(v1.version, 1);
        let e = client.set_record("r", json!(0), Some(0)).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::VERSION_CONFLICT), "{enc:?}");
        let v2 = client
            .patch_record(
                "r",
                json!([{"op": "add", "path": "/b", "value": 2}]),
                Some(1),
            )
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        let e = client
            .patch_record("r", json!([{"op": "remove", "path": "/zz"}]), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BAD_PATCH));
        assert_eq!(
            client.record("r").await.unwrap().value,
            json!({"a": 1, "b": 2})
        );
        assert_eq!(client.delete_record("r", None).await.unwrap().version, 3);
        client.disconnect().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_watch_exposes_the_current_value_in_both_modes() {
    let server = start(dev(any_port())).await;
    let client = Client::connect(support::config(server.ws_url(), Encoding::Json))
        .await
        .unwrap();
    let mut full = client.watch_record("doc", RecordMode::Full).await.unwrap();
    let mut patch = client
        .watch_record("doc2", RecordMode::Patch)
        .await
        .unwrap();
    for id in ["doc", "doc2"] {
        client.set_record(id, json!({"n": 1}), None).await.unwrap();
        client
            .patch_record(
                id,
                json!([{"op": "replace", "path": "/n", "value": 2}]),
                None,
            )
            .await
            .unwrap();
    }
    follow_to(&mut full, 2).await;
    follow_to(&mut patch, 2).await;
    assert_eq!(full.current().value, json!({"n": 2}));
    assert_eq!(patch.current().value, json!({"n": 2}));
    assert_eq!((full.resyncs(), patch.resyncs()), (0, 0));
    client.delete_record("doc2", None).await.unwrap();
    follow_to(&mut patch, 3).await;
    assert_eq!(patch.current().value, Value::Null);
    patch.unsubscribe().await.unwrap();
}

#[tokio::test]
async fn a_watch_resyncs_after_a_dropped_connection() {
    let server = start(dev(any_port())).await;
    let node = server.node();
    let client = Client::connect(support::config(server.ws_url(), Encoding::Msgpack))
        .await
        .unwrap();
    node.write_record("w", RecordWrite::Set(json!({"n": 0})), None)
        .await
        .unwrap();
    let mut w = client.watch_record("w", RecordMode::Patch).await.unwrap();
    assert_eq!(w.current().version, 1);

    // The server drops the connection; the record changes meanwhile.
    node.disconnect_connection(conn_id(&client), CloseCode::RECONNECT, "move")
        .await
        .unwrap();
    for n in 1..=2 {
        node.write_record(
            "w",
            RecordWrite::Patch(json!([{"op": "replace", "path": "/n", "value": n}])),
            None,
        )
        .await
        .unwrap();
    }
    while w.resyncs() == 0 || w.current().version < 3 {
        within("a record change", w.next()).await.unwrap().unwrap();
    }
    assert_eq!(w.current().value, json!({"n": 2}));

    // Subscribed again: the next change comes as a patch on the new connection.
    node.write_record(
        "w",
        RecordWrite::Patch(json!([{"op": "replace", "path": "/n", "value": 3}])),
        None,
    )
    .await
    .unwrap();
    follow_to(&mut w, 4).await;
    assert_eq!(w.current().value, json!({"n": 3}));
    assert_eq!(client.record("w").await.unwrap().value, json!({"n": 3}));
}

#[tokio::test]
async fn a_watch_whose_push_stream_lags_reads_the_record_again() {
    let server = start(dev(any_port())).await;
    let node = server.node();
    let mut config = support::config(server.ws_url(), Encoding::Json);
    config.push_buffer = 1;
    let client = Client::connect(config).await.unwrap();
    let mut w = client.watch_record("lag", RecordMode::Patch).await.unwrap();
    node.write_record("lag", RecordWrite::Set(json!([])), None)
        .await
        .unwrap();
    for n in 0..20 {
        node.write_record(
            "lag",
            RecordWrite::Patch(json!([{"op": "add", "path": "/-", "value": n}])),
            None,
        )
        .await
        .unwrap();
    }
    follow_to(&mut w, 21).await;
    let expected: Vec<i32> = (0..20).collect();
    assert_eq!(w.current().value, json!(expected));
    assert_eq!(w.current().value, client.record("lag").await.unwrap().value);
}

//! Records over the native protocol, on a real WebSocket: versions, JSON Patch, compare-and-set,
//! guards, limits, and subscriptions in `full` and `patch` mode. Runs on the in-memory engine,
//! and on Redis with `PLEXUS_TEST_ENGINE=redis` (the test command runs both).

mod common;

use common::*;
use plexus_core::records::{RecordAction, RecordGuardRequest, apply_patch, parse_patch};
use plexus_core::{Access, ChannelMatch, Error, RecordNamespace, RecordPolicy};
use plexus_protocol::Encoding;
use plexus_protocol::client::{
    Op, RecordDeleteParams, RecordParams, RecordPatchParams, RecordSetParams, RecordSubscribeParams,
};
use plexus_protocol::server::{
    Empty, ErrorBody, Push, RecordPush, RecordResult, RecordWriteResult,
};
use serde_json::{Value, json};

fn get(id: &str) -> Op {
    Op::RecordGet(RecordParams { id: id.into() })
}

fn set(id: &str, value: Value, expect: Option<u64>) -> Op {
    Op::RecordSet(RecordSetParams {
        id: id.into(),
        value,
        expect,
    })
}

fn patch(id: &str, patch: Value, expect: Option<u64>) -> Op {
    Op::RecordPatch(RecordPatchParams {
        id: id.into(),
        patch,
        expect,
    })
}

fn delete(id: &str, expect: Option<u64>) -> Op {
    Op::RecordDelete(RecordDeleteParams {
        id: id.into(),
        expect,
    })
}

fn subscribe(id: &str, mode: Option<&str>) -> Op {
    Op::RecordSubscribe(RecordSubscribeParams {
        id: id.into(),
        mode: mode.map(str::to_owned),
    })
}

async fn write(c: &mut TestClient, op: Op) -> RecordWriteResult {
    c.request(op).await.expect("the write succeeds")
}

async fn refused(c: &mut TestClient, op: Op) -> ErrorBody {
    c.request::<Value>(op).await.expect_err("the request fails")
}

async fn read(c: &mut TestClient, id: &str) -> RecordResult {
    c.request(get(id)).await.expect("the read succeeds")
}

async fn next_record(c: &mut TestClient) -> RecordPush {
    loop {
        if let Push::Record(r) = c.next_push().await {
            return r;
        }
    }
}

/// What a client following the rule of docs/protocol.md §6.15 holds.
struct Local {
    value: Value,
    version: u64,
    epoch: String,
}

impl Local {
    fn from(r: &RecordResult) -> Local {
        Local {
            value: r.value.clone(),
            version: r.version,
            epoch: r.epoch.clone(),
        }
    }

    /// Applies a push; false when the client must read the record again.
    fn apply(&mut self, push: &RecordPush) -> bool {
        if push.deleted {
            (self.value, self.version) = (Value::Null, push.version);
        } else if let Some(value) = &push.value {
            self.value = value.clone();
            self.version = push.version;
        } else if let Some(ops) = &push.patch {
            if push.epoch != self.epoch || push.version != self.version + 1 {
                return false;
            }
            apply_patch(&mut self.value, &parse_patch(ops).unwrap()).unwrap();
            self.version = push.version;
        }
        self.epoch = push.epoch.clone();
        true
    }
}

#[tokio::test]
async fn versions_go_up_by_one_per_write_and_a_new_record_after_a_delete_starts_a_new_epoch() {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let absent = read(&mut c, "profile:1").await;
    assert_eq!((absent.value, absent.version), (Value::Null, 0));

    let v1 = write(&mut c, set("profile:1", json!({"name": "Ada"}), None)).await;
    assert_eq!(v1.version, 1);
    let v2 = write(
        &mut c,
        patch(
            "profile:1",
            json!([{"op": "add", "path": "/langs", "value": ["en"]}]),
            None,
        ),
    )
    .await;
    assert_eq!((v2.version, &v2.epoch), (2, &v1.epoch));
    let now = read(&mut c, "profile:1").await;
    assert_eq!(now.value, json!({"name": "Ada", "langs": ["en"]}));
    assert_eq!(now.version, 2);

    let deleted = write(&mut c, delete("profile:1", None)).await;
    assert_eq!(deleted.version, 3);
    assert_eq!(read(&mut c, "profile:1").await.version, 0);
    let gone = refused(&mut c, delete("profile:1", None)).await;
    assert_eq!(gone.code.0, 119, "{gone:?}");

    let again = write(&mut c, set("profile:1", json!(1), None)).await;
    assert_eq!(again.version, 1);
    assert_ne!(again.epoch, v1.epoch, "a new record is a new epoch");
}

#[tokio::test]
async fn compare_and_set_conflicts_are_errors_and_nothing_is_written() {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Msgpack).await;
    write(&mut c, set("cas", json!({"n": 1}), Some(0))).await;
    let taken = refused(&mut c, set("cas", json!({"n": 99}), Some(0))).await;
    assert_eq!(taken.code.0, 121, "{taken:?}");
    let data: Value = serde_json::from_str(taken.data.unwrap().0.get()).unwrap();
    assert_eq!(data, json!({"version": 1}));

    assert_eq!(
        write(&mut c, set("cas", json!({"n": 2}), Some(1)))
            .await
            .version,
        2
    );
    let stale = refused(
        &mut c,
        patch(
            "cas",
            json!([{"op": "replace", "path": "/n", "value": 0}]),
            Some(1),
        ),
    )
    .await;
    assert_eq!(stale.code.0, 121);
    let stale = refused(&mut c, delete("cas", Some(7))).await;
    assert_eq!(stale.code.0, 121);
    let now = read(&mut c, "cas").await;
    assert_eq!((now.value, now.version), (json!({"n": 2}), 2));
}

#[tokio::test]
async fn a_patch_that_does_not_apply_is_refused_whole() {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    write(&mut c, set("p", json!({"a": 1, "list": [1, 2]}), None)).await;
    for bad in [
        // The first operation would apply; the failed test undoes it.
        json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}]),
        json!([{"op": "remove", "path": "/missing"}]),
        json!([{"op": "frobnicate", "path": "/a"}]),
        json!({"op": "add", "path": "/a", "value": 1}),
        json!([{"op": "add", "path": "/list/9", "value": 3}]),
    ] {
        let e = refused(&mut c, patch("p", bad.clone(), None)).await;
        assert_eq!(e.code.0, 122, "{bad}: {e:?}");
    }
    let now = read(&mut c, "p").await;
    assert_eq!(
        (now.value, now.version),
        (json!({"a": 1, "list": [1, 2]}), 1)
    );
}

#[tokio::test]
async fn bad_ids_and_modes_are_bad_requests() {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    for id in ["", "a\u{1}b", &"x".repeat(256)] {
        assert_eq!(refused(&mut c, get(id)).await.code.0, 104, "{id:?}");
    }
    assert_eq!(
        refused(&mut c, subscribe("r", Some("diff"))).await.code.0,
        104
    );
    let e = refused(
        &mut c,
        Op::RecordUnsubscribe(RecordParams { id: "r".into() }),
    )
    .await;
    assert_eq!(e.code.0, 109);
    let _: RecordResult = c.request(subscribe("r", None)).await.unwrap();
    assert_eq!(
        refused(&mut c, subscribe("r", Some("patch"))).await.code.0,
        108
    );
}

#[tokio::test]
async fn every_record_limit_is_enforced() {
    let mut policy = RecordPolicy::default();
    policy.add_namespace(
        RecordNamespace::new("small", ChannelMatch::Prefix("small:".into()))
            .read(Access::Anyone)
            .write(Access::Anyone)
            .max_records(2)
            .max_value_bytes(32)
            .max_patch_ops(2),
    );
    let mut builder = dev().records(policy);
    builder.limits_mut().max_subscriptions = 2;
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;

    let big = refused(&mut c, set("small:1", json!("x".repeat(40)), None)).await;
    assert_eq!(big.code.0, 123, "{big:?}");
    write(&mut c, set("small:1", json!({}), None)).await;
    let ops = json!([
        {"op": "add", "path": "/a", "value": 1},
        {"op": "add", "path": "/b", "value": 1},
        {"op": "add", "path": "/c", "value": 1}
    ]);
    assert_eq!(
        refused(&mut c, patch("small:1", ops, None)).await.code.0,
        123
    );
    let grows = json!([{"op": "add", "path": "/s", "value": "y".repeat(40)}]);
    assert_eq!(
        refused(&mut c, patch("small:1", grows, None)).await.code.0,
        123
    );

    write(&mut c, set("small:2", json!(2), None)).await;
    let full = refused(&mut c, set("small:3", json!(3), None)).await;
    assert_eq!(full.code.0, 123, "{full:?}");
    // A delete makes room.
    write(&mut c, delete("small:2", None)).await;
    write(&mut c, set("small:3", json!(3), None)).await;

    // Record subscriptions count against the connection's subscriptions.
    let _: RecordResult = c.request(subscribe("small:1", None)).await.unwrap();
    let _: RecordResult = c.request(subscribe("small:3", None)).await.unwrap();
    assert_eq!(
        refused(&mut c, subscribe("small:2", None)).await.code.0,
        106
    );

    // No namespace: no record.
    assert_eq!(refused(&mut c, get("other")).await.code.0, 105);
}

#[tokio::test]
async fn namespaces_and_guards_decide_who_reads_and_writes() {
    let mut policy = RecordPolicy::default();
    policy.add_namespace(
        RecordNamespace::new("public", ChannelMatch::Prefix("pub:".into())).read(Access::Anyone),
    );
    policy.add_namespace(
        RecordNamespace::new("open", ChannelMatch::Any)
            .read(Access::Anyone)
            .write(Access::Anyone),
    );
    policy.add_guard(
        ChannelMatch::regex(r"secret:\d+").unwrap(),
        &[RecordAction::Read],
        |r: RecordGuardRequest| async move {
            Err(Error::permission_denied(format!("no reading {}", r.id)))
        },
    );
    policy.add_guard(
        ChannelMatch::Prefix("locked:".into()),
        &[RecordAction::Write],
        |_r: RecordGuardRequest| async move { Err(Error::permission_denied("locked")) },
    );
    let server = start(dev().records(policy)).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;

    assert_eq!(read(&mut c, "pub:1").await.version, 0);
    assert_eq!(
        refused(&mut c, set("pub:1", json!(1), None)).await.code.0,
        105
    );
    assert_eq!(refused(&mut c, get("secret:7")).await.code.0, 105);
    assert_eq!(
        refused(&mut c, subscribe("secret:7", None)).await.code.0,
        105
    );
    // A write guard does not guard reads, nor a read guard writes.
    write(&mut c, set("secret:7", json!(1), None)).await;
    assert_eq!(read(&mut c, "locked:1").await.version, 0);
    let e = refused(&mut c, set("locked:1", json!(1), None)).await;
    assert_eq!((e.code.0, e.message.as_str()), (105, "locked"));
}

#[tokio::test]
async fn subscribers_in_full_and_patch_mode_follow_every_version() {
    let server = start(dev()).await;
    let mut full = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let mut patched = TestClient::connect(&server.ws_url(), Encoding::Msgpack).await;
    let mut writer = TestClient::connect(&server.ws_url(), Encoding::Json).await;

    let first: RecordResult = full.request(subscribe("doc", None)).await.unwrap();
    assert_eq!((first.value, first.version), (Value::Null, 0));
    let first: RecordResult = patched
        .request(subscribe("doc", Some("patch")))
        .await
        .unwrap();
    let mut local = Local::from(&first);

    write(&mut writer, set("doc", json!({"count": 1}), None)).await;
    write(
        &mut writer,
        set("doc", json!({"count": 2, "name": "x"}), None),
    )
    .await;
    write(
        &mut writer,
        patch("doc", json!([{"op": "remove", "path": "/count"}]), None),
    )
    .await;
    write(&mut writer, delete("doc", None)).await;
    write(&mut writer, set("doc", json!([1]), None)).await;

    let expected_full = [
        (1, Some(json!({"count": 1}))),
        (2, Some(json!({"count": 2, "name": "x"}))),
        (3, Some(json!({"name": "x"}))),
        (4, None),
        (1, Some(json!([1]))),
    ];
    for (version, value) in &expected_full {
        let push = next_record(&mut full).await;
        assert_eq!(push.record, "doc");
        assert_eq!(push.version, *version);
        assert_eq!(push.patch, None, "full mode gets no patches");
        match value {
            Some(v) => assert_eq!(push.value.as_ref(), Some(v)),
            None => assert!(push.deleted),
        }
    }

    let creation = next_record(&mut patched).await;
    assert_eq!(
        creation.value,
        Some(json!({"count": 1})),
        "a creation is a value"
    );
    assert!(local.apply(&creation));
    let second = next_record(&mut patched).await;
    assert!(
        second.patch.is_some() && second.value.is_none(),
        "{second:?}"
    );
    assert!(local.apply(&second));
    let third = next_record(&mut patched).await;
    assert_eq!(
        third.patch,
        Some(json!([{"op": "remove", "path": "/count"}]))
    );
    assert!(local.apply(&third));
    assert_eq!(local.value, json!({"name": "x"}));
    assert!(next_record(&mut patched).await.deleted);
    let recreated = next_record(&mut patched).await;
    assert_eq!((recreated.version, recreated.value), (1, Some(json!([1]))));
}

#[tokio::test]
async fn an_unsubscribed_connection_gets_no_more_changes() {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: RecordResult = c.request(subscribe("a", None)).await.unwrap();
    let _: RecordResult = c.request(subscribe("b", None)).await.unwrap();
    write(&mut c, set("a", json!(1), None)).await;
    assert_eq!(next_record(&mut c).await.record, "a");
    let _: Empty = c
        .request(Op::RecordUnsubscribe(RecordParams { id: "a".into() }))
        .await
        .unwrap();
    write(&mut c, set("a", json!(2), None)).await;
    write(&mut c, set("b", json!(3), None)).await;
    // Changes of one connection's records arrive in write order: `b` comes, `a` never did.
    let next = next_record(&mut c).await;
    assert_eq!((next.record.as_str(), next.value), ("b", Some(json!(3))));
}

#[tokio::test]
async fn a_client_that_reconnects_reads_again_and_continues_with_patches() {
    let server = start(dev()).await;
    let mut writer = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    write(&mut writer, set("r", json!({"n": 0}), None)).await;

    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let subscribed: RecordResult = c.request(subscribe("r", Some("patch"))).await.unwrap();
    let mut local = Local::from(&subscribed);
    let inc = |n: i64| json!([{"op": "replace", "path": "/n", "value": n}]);
    write(&mut writer, patch("r", inc(1), None)).await;
    assert!(local.apply(&next_record(&mut c).await));
    assert_eq!(local.version, 2);

    // The connection drops; two writes happen meanwhile.
    drop(c);
    write(&mut writer, patch("r", inc(2), None)).await;
    write(&mut writer, patch("r", inc(3), None)).await;

    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let again: RecordResult = c.request(subscribe("r", Some("patch"))).await.unwrap();
    // A patch for version 5 would not apply to version 2: the client rule reads again.
    assert_eq!(again.version, 4);
    local = Local::from(&again);
    write(&mut writer, patch("r", inc(4), None)).await;
    let push = next_record(&mut c).await;
    assert!(local.apply(&push), "{push:?}");
    assert_eq!((local.value, local.version), (json!({"n": 4}), 5));
    assert_eq!(read(&mut writer, "r").await.value, json!({"n": 4}));
}

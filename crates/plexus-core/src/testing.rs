//! Contract tests an engine runs against its stores, so that every engine keeps the same
//! contract (the in-memory engine in its unit tests, `plexus-redis` against a real Redis).
//! They panic on the first broken promise.

use crate::engine::{DirectChange, DirectChanged, EngineError, RoomChange, RoomChanged, RoomStore};
use crate::rooms::{DirectList, DirectState, Names, RoomConfig, RoomList, RoomState};
use std::sync::Arc;

fn names(list: &[&str]) -> Names {
    list.iter().map(|n| Arc::from(*n)).collect()
}

fn arcs(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|n| Arc::from(*n)).collect()
}

async fn done(store: &dyn RoomStore, room: &str, change: RoomChange) -> u64 {
    match store.change_room(room, &change, None).await.unwrap() {
        RoomChanged::Done { version } => version,
        other => panic!("{change:?} on {room}: {other:?}"),
    }
}

async fn state(store: &dyn RoomStore, room: &str) -> RoomState {
    store.room(room).await.unwrap().expect("the room exists")
}

/// Every promise of [`RoomStore`] that does not depend on the store's bounds. Room and user
/// names are unusual on purpose (braces, colons, spaces, non-ASCII), as channel names may be.
pub async fn room_store_contract(store: &dyn RoomStore) {
    rooms_are_created_once_and_deleted(store).await;
    list_changes_are_bounded_and_idempotent(store).await;
    settings_change_and_each_change_is_a_version(store).await;
    a_stale_version_changes_nothing(store).await;
    views_restrict_lists_to_the_users_asked(store).await;
    users_and_their_direct_lists(store).await;
    concurrent_adds_never_exceed_the_maximum(store).await;
}

async fn rooms_are_created_once_and_deleted(store: &dyn RoomStore) {
    let room = "rooms:{a}b: lobby é";
    assert_eq!(store.room(room).await.unwrap(), None);
    let config = RoomConfig::default()
        .owner("own{er}")
        .whitelist_only(true)
        .list(RoomList::Whitelist, ["w1", "w 2"])
        .list(RoomList::Blacklist, ["b1"])
        .list(RoomList::Adminlist, ["a1"])
        .history_max_size(7)
        .notifications(true, false);
    assert!(
        store
            .create_room(room, &config.clone().into())
            .await
            .unwrap()
    );
    let created = state(store, room).await;
    let mut expected = RoomState::from(config);
    expected.version = 1;
    assert_eq!(created, expected);
    let other = RoomState::from(RoomConfig::default().owner("someone else"));
    assert!(
        !store.create_room(room, &other).await.unwrap(),
        "a room is created once"
    );
    assert_eq!(state(store, room).await, expected, "and kept as it was");
    // A name that extends another is another room.
    let longer = format!("{room}:x");
    assert_eq!(store.room(&longer).await.unwrap(), None);
    assert!(store.create_room(&longer, &other).await.unwrap());
    assert!(store.delete_room(room).await.unwrap());
    assert!(!store.delete_room(room).await.unwrap(), "deleted once");
    assert_eq!(store.room(room).await.unwrap(), None);
    assert_eq!(store.room_view(room, &arcs(&["w1"])).await.unwrap(), None);
    assert_eq!(
        store
            .change_room(room, &RoomChange::WhitelistOnly(false), None)
            .await
            .unwrap(),
        RoomChanged::NoRoom
    );
    assert_eq!(
        state(store, &longer).await.owner.as_deref(),
        Some("someone else")
    );
    // A deleted room comes back empty.
    assert!(
        store
            .create_room(room, &RoomState::default())
            .await
            .unwrap()
    );
    let fresh = state(store, room).await;
    assert!(fresh.whitelist.is_empty() && fresh.blacklist.is_empty() && fresh.owner.is_none());
    assert_eq!(fresh.history_max_size, None);
    assert!(store.delete_room(room).await.unwrap());
    assert!(store.delete_room(&longer).await.unwrap());
}

async fn list_changes_are_bounded_and_idempotent(store: &dyn RoomStore) {
    let room = "lists";
    assert!(
        store
            .create_room(room, &RoomState::default())
            .await
            .unwrap()
    );
    let add = |list, n: &[&str], max| RoomChange::Add {
        list,
        names: arcs(n),
        max,
    };
    // "honour room list size limit": limit 1, add 2 → refused, nothing added.
    assert_eq!(
        store
            .change_room(room, &add(RoomList::Whitelist, &["a", "b"], 1), None)
            .await
            .unwrap(),
        RoomChanged::ListFull
    );
    assert!(state(store, room).await.whitelist.is_empty());
    done(store, room, add(RoomList::Whitelist, &["a"], 2)).await;
    // The names already there count: one there, two new, limit 2.
    assert_eq!(
        store
            .change_room(room, &add(RoomList::Whitelist, &["b", "c"], 2), None)
            .await
            .unwrap(),
        RoomChanged::ListFull
    );
    // Names already there are not new: a duplicate add fits a full list.
    done(store, room, add(RoomList::Whitelist, &["a", "b"], 2)).await;
    done(store, room, add(RoomList::Whitelist, &["a", "b", "a"], 2)).await;
    assert_eq!(state(store, room).await.whitelist, names(&["a", "b"]));
    // Lists are separate.
    done(store, room, add(RoomList::Blacklist, &["a"], 1)).await;
    done(store, room, add(RoomList::Adminlist, &["x{y}"], 1)).await;
    // Removing a name that is not there is fine.
    done(
        store,
        room,
        RoomChange::Remove {
            list: RoomList::Whitelist,
            names: arcs(&["a", "nobody"]),
        },
    )
    .await;
    let s = state(store, room).await;
    assert_eq!(s.whitelist, names(&["b"]));
    assert_eq!(s.blacklist, names(&["a"]));
    assert_eq!(s.adminlist, names(&["x{y}"]));
    assert!(store.delete_room(room).await.unwrap());
}

async fn settings_change_and_each_change_is_a_version(store: &dyn RoomStore) {
    let room = "settings";
    assert!(
        store
            .create_room(room, &RoomState::default())
            .await
            .unwrap()
    );
    assert_eq!(state(store, room).await.version, 1);
    assert_eq!(done(store, room, RoomChange::WhitelistOnly(true)).await, 2);
    assert_eq!(
        done(store, room, RoomChange::Owner(Some(Arc::from("ann")))).await,
        3
    );
    done(store, room, RoomChange::HistoryMaxSize(Some(0))).await;
    done(
        store,
        room,
        RoomChange::Notifications {
            userlist: Some(true),
            access_lists: None,
        },
    )
    .await;
    let s = state(store, room).await;
    assert!(s.whitelist_only && s.notify_userlist && !s.notify_access_lists);
    assert_eq!(s.owner.as_deref(), Some("ann"));
    assert_eq!(s.history_max_size, Some(0));
    assert_eq!(s.version, 5);
    done(
        store,
        room,
        RoomChange::Notifications {
            userlist: None,
            access_lists: Some(true),
        },
    )
    .await;
    done(store, room, RoomChange::Owner(None)).await;
    done(store, room, RoomChange::HistoryMaxSize(None)).await;
    done(store, room, RoomChange::WhitelistOnly(false)).await;
    let s = state(store, room).await;
    assert!(!s.whitelist_only && s.notify_userlist && s.notify_access_lists);
    assert_eq!((s.owner, s.history_max_size, s.version), (None, None, 9));
    assert!(store.delete_room(room).await.unwrap());
}

async fn a_stale_version_changes_nothing(store: &dyn RoomStore) {
    let room = "versions";
    assert!(
        store
            .create_room(room, &RoomState::default())
            .await
            .unwrap()
    );
    let change = RoomChange::WhitelistOnly(true);
    assert_eq!(
        store.change_room(room, &change, Some(2)).await.unwrap(),
        RoomChanged::Stale
    );
    assert!(!state(store, room).await.whitelist_only);
    assert_eq!(
        store.change_room(room, &change, Some(1)).await.unwrap(),
        RoomChanged::Done { version: 2 }
    );
    assert_eq!(
        store
            .change_room(room, &RoomChange::WhitelistOnly(false), Some(1))
            .await
            .unwrap(),
        RoomChanged::Stale
    );
    assert!(state(store, room).await.whitelist_only);
    assert!(store.delete_room(room).await.unwrap());
}

async fn views_restrict_lists_to_the_users_asked(store: &dyn RoomStore) {
    let room = "views";
    let config = RoomConfig::default()
        .owner("own")
        .list(RoomList::Whitelist, ["a", "b"])
        .list(RoomList::Blacklist, ["c"])
        .list(RoomList::Adminlist, ["d", "a"]);
    assert!(store.create_room(room, &config.into()).await.unwrap());
    let view = store
        .room_view(room, &arcs(&["a", "c", "zed"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.whitelist, names(&["a"]));
    assert_eq!(view.blacklist, names(&["c"]));
    assert_eq!(view.adminlist, names(&["a"]));
    assert_eq!(view.owner.as_deref(), Some("own"));
    assert_eq!(view.version, 1);
    let empty = store.room_view(room, &[]).await.unwrap().unwrap();
    assert!(empty.whitelist.is_empty() && empty.adminlist.is_empty());
    for user in ["a", "b", "c", "d", "own", "zed"] {
        let view = store
            .room_view(room, &arcs(&[user]))
            .await
            .unwrap()
            .unwrap();
        let full = state(store, room).await;
        assert_eq!(view.has_access(user), full.has_access(user), "{user}");
        assert_eq!(view.is_admin(user), full.is_admin(user), "{user}");
    }
    assert!(store.delete_room(room).await.unwrap());
}

async fn users_and_their_direct_lists(store: &dyn RoomStore) {
    let user = "us{er}: é";
    assert!(!store.user_exists(user).await.unwrap());
    assert_eq!(store.direct(user).await.unwrap(), None);
    assert_eq!(
        store
            .change_direct(user, &DirectChange::WhitelistOnly(true))
            .await
            .unwrap(),
        DirectChanged::NoUser
    );
    let initial = DirectState {
        whitelist: names(&["w"]),
        blacklist: names(&["b", "c"]),
        whitelist_only: true,
    };
    assert!(store.add_user(user, &initial).await.unwrap());
    assert!(
        !store.add_user(user, &DirectState::default()).await.unwrap(),
        "a user is added once"
    );
    assert!(store.user_exists(user).await.unwrap());
    assert_eq!(store.direct(user).await.unwrap(), Some(initial.clone()));
    let add = |list, n: &[&str], max| DirectChange::Add {
        list,
        names: arcs(n),
        max,
    };
    // "honour direct list size limit", counting the names already there.
    assert_eq!(
        store
            .change_direct(user, &add(DirectList::Blacklist, &["d"], 2))
            .await
            .unwrap(),
        DirectChanged::ListFull
    );
    assert_eq!(
        store
            .change_direct(user, &add(DirectList::Blacklist, &["b", "c"], 2))
            .await
            .unwrap(),
        DirectChanged::Done,
        "a duplicate add is fine"
    );
    assert_eq!(
        store
            .change_direct(user, &add(DirectList::Whitelist, &["x", "y"], 3))
            .await
            .unwrap(),
        DirectChanged::Done
    );
    assert_eq!(
        store
            .change_direct(
                user,
                &DirectChange::Remove {
                    list: DirectList::Blacklist,
                    names: arcs(&["c", "missing"]),
                }
            )
            .await
            .unwrap(),
        DirectChanged::Done
    );
    assert_eq!(
        store
            .change_direct(user, &DirectChange::WhitelistOnly(false))
            .await
            .unwrap(),
        DirectChanged::Done
    );
    let s = store.direct(user).await.unwrap().unwrap();
    assert_eq!(s.whitelist, names(&["w", "x", "y"]));
    assert_eq!(s.blacklist, names(&["b"]));
    assert!(!s.whitelist_only);
    let view = store
        .direct_view(user, &arcs(&["x", "b", "q"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.whitelist, names(&["x"]));
    assert_eq!(view.blacklist, names(&["b"]));
    assert!(store.delete_user(user).await.unwrap());
    assert!(!store.delete_user(user).await.unwrap());
    assert!(!store.user_exists(user).await.unwrap());
    assert_eq!(store.direct_view(user, &[]).await.unwrap(), None);
    // A user added again starts clean.
    assert!(store.add_user(user, &DirectState::default()).await.unwrap());
    assert_eq!(
        store.direct(user).await.unwrap(),
        Some(DirectState::default())
    );
    assert!(store.delete_user(user).await.unwrap());
}

async fn concurrent_adds_never_exceed_the_maximum(store: &dyn RoomStore) {
    let room = "race";
    assert!(
        store
            .create_room(room, &RoomState::default())
            .await
            .unwrap()
    );
    let adds = (0..20).map(|i| {
        let change = RoomChange::Add {
            list: RoomList::Blacklist,
            names: vec![Arc::from(format!("u{i}"))],
            max: 10,
        };
        async move { store.change_room(room, &change, None).await.unwrap() }
    });
    let outcomes = futures_util::future::join_all(adds).await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, RoomChanged::Done { .. }))
        .count();
    assert_eq!(applied, 10, "{outcomes:?}");
    assert_eq!(state(store, room).await.blacklist.len(), 10);
    assert_eq!(state(store, room).await.version, 11);
    assert!(store.delete_room(room).await.unwrap());
}

/// The bounds: at most `max_rooms` rooms and `max_users` users (the store must be empty).
pub async fn room_store_bounds(store: &dyn RoomStore, max_rooms: usize, max_users: usize) {
    for i in 0..max_rooms {
        assert!(
            store
                .create_room(&format!("r{i}"), &RoomState::default())
                .await
                .unwrap()
        );
    }
    let refused = store.create_room("one more", &RoomState::default()).await;
    assert!(matches!(refused, Err(EngineError::Limit(_))), "{refused:?}");
    assert!(
        !store
            .create_room("r0", &RoomState::default())
            .await
            .unwrap(),
        "an existing name is not a new room"
    );
    assert!(store.delete_room("r0").await.unwrap());
    assert!(
        store
            .create_room("one more", &RoomState::default())
            .await
            .unwrap(),
        "a deleted room frees its place"
    );
    for i in 0..max_users {
        assert!(
            store
                .add_user(&format!("u{i}"), &DirectState::default())
                .await
                .unwrap()
        );
    }
    let refused = store.add_user("one more", &DirectState::default()).await;
    assert!(matches!(refused, Err(EngineError::Limit(_))), "{refused:?}");
    assert!(store.delete_user("u0").await.unwrap());
    assert!(
        store
            .add_user("one more", &DirectState::default())
            .await
            .unwrap()
    );
}

/// Every promise of [`crate::engine::WorkQueue`]: bounded pushes, leases, redelivery after a
/// lease runs out (a dead worker), acknowledgements. Waits are bounded (10 s), never timed.
pub async fn work_queue_contract(q: &dyn crate::engine::WorkQueue) {
    use bytes::Bytes;
    use std::time::{Duration, Instant};
    let queue = format!("contract {{q}}:{}", fastrand::u64(..));
    for i in 1..=3 {
        assert!(
            q.push(&queue, Bytes::from(format!("e{i}")), 3)
                .await
                .unwrap()
        );
    }
    // The backlog's bound: the newest is refused.
    assert!(!q.push(&queue, Bytes::from_static(b"e4"), 3).await.unwrap());
    assert_eq!(q.len(&queue).await.unwrap(), 3);
    // A worker that will die: a short lease.
    let dying = q
        .take(&queue, "dying", 2, Duration::from_millis(50))
        .await
        .unwrap();
    let payloads: Vec<&[u8]> = dying.iter().map(|i| &i.payload[..]).collect();
    assert_eq!(payloads, vec![&b"e1"[..], b"e2"]);
    assert!(dying.iter().all(|i| i.redeliveries == 0));
    // Another worker gets what nobody holds, and nothing twice.
    let live = q
        .take(&queue, "live", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(&live[0].payload[..], b"e3");
    assert_eq!(q.ack(&queue, &[live[0].id.clone()]).await.unwrap(), 1);
    assert_eq!(q.ack(&queue, &[live[0].id.clone()]).await.unwrap(), 0);
    assert_eq!(q.ack(&queue, &["nope".into()]).await.unwrap(), 0);
    // The dying worker acknowledges one, then dies: the other comes back once its lease ran out.
    assert_eq!(q.ack(&queue, &[dying[0].id.clone()]).await.unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let items = q
            .take(&queue, "live", 10, Duration::from_secs(60))
            .await
            .unwrap();
        if !items.is_empty() {
            break items;
        }
        assert!(Instant::now() < deadline, "the expired lease came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].payload[..], b"e2");
    assert_eq!(again[0].redeliveries, 1);
    // The room the acknowledgements made is usable again.
    assert!(q.push(&queue, Bytes::from_static(b"e5"), 3).await.unwrap());
    assert_eq!(q.ack(&queue, &[again[0].id.clone()]).await.unwrap(), 1);
    let last = q
        .take(&queue, "live", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(&last[0].payload[..], b"e5");
    q.ack(&queue, &[last[0].id.clone()]).await.unwrap();
    assert_eq!(q.len(&queue).await.unwrap(), 0);
}

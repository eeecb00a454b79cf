//! Presence on a real `redis-server`: the members of a node that died expire, and their
//! departures are handed out once, bounded.

use plexus_core::engine::{Departure, PresenceEntry};
use plexus_core::{ConnId, NodeId};
use plexus_redis::testing::{RedisServer, unique_prefix};
use plexus_redis::{RedisConfig, redis_engine_with_broker};
use std::sync::Arc;
use std::time::Duration;

fn member(node: NodeId, seq: u64, user: Option<&str>) -> PresenceEntry {
    PresenceEntry {
        conn: ConnId { node, seq },
        user: user.map(Arc::from),
        info: None,
        state: None,
    }
}

/// A node dies with members in a channel: once they expire, another node's `departed` gets each
/// once — the user's last connection marked, anonymous members each a user of their own — and a
/// second call gets none. The departures kept are bounded (the newest 1000).
#[tokio::test]
async fn a_dead_nodes_members_depart_once_and_the_departures_are_bounded() {
    let redis = RedisServer::start().expect("redis-server starts");
    let prefix = unique_prefix();
    let config = || {
        let mut c = RedisConfig::new(redis.url()).prefix(prefix.clone());
        c.presence_ttl = Duration::from_secs(1);
        c
    };
    let (doomed, doomed_broker) = redis_engine_with_broker(config()).await.unwrap();
    let (survivor, _broker) = redis_engine_with_broker(config()).await.unwrap();
    assert_eq!(
        survivor.presence.departure_interval(),
        Some(Duration::from_secs(1) / 3)
    );
    let node = NodeId::random();
    // bob twice, ann once, one anonymous member.
    for (seq, user) in [
        (1, Some("bob")),
        (2, Some("bob")),
        (3, Some("ann")),
        (4, None),
    ] {
        doomed
            .presence
            .add("room", member(node, seq, user))
            .await
            .unwrap();
    }
    // A member the survivor holds (and refreshes) stays.
    let alive = NodeId::random();
    survivor
        .presence
        .add("room", member(alive, 1, Some("carol")))
        .await
        .unwrap();
    doomed_broker.halt();
    drop(doomed);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut departed: Vec<Departure> = Vec::new();
    while departed.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "departures: {departed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        departed.extend(survivor.presence.departed("room").await.unwrap());
    }
    departed.sort_by_key(|d| d.conn.seq);
    let summary: Vec<(u64, Option<&str>, bool)> = departed
        .iter()
        .map(|d| (d.conn.seq, d.user.as_deref(), d.last))
        .collect();
    // One of bob's two is his last: the one found second.
    let bob_last = summary
        .iter()
        .filter(|(_, u, l)| *u == Some("bob") && *l)
        .count();
    assert_eq!(bob_last, 1, "{summary:?}");
    assert!(summary.contains(&(3, Some("ann"), true)), "{summary:?}");
    assert!(summary.contains(&(4, None, true)), "{summary:?}");
    assert_eq!(summary.len(), 4, "{summary:?}");
    assert!(survivor.presence.departed("room").await.unwrap().is_empty());
    let members = survivor.presence.get("room").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| m.user.as_deref())
            .collect::<Vec<_>>(),
        [Some("carol")]
    );

    // The bound: 1005 departures not told, 1000 kept (the oldest found go first).
    let (doomed, doomed_broker) = redis_engine_with_broker(config()).await.unwrap();
    let node = NodeId::random();
    for seq in 1..=1005u64 {
        let user = format!("u{seq}");
        doomed
            .presence
            .add("crowd", member(node, seq, Some(&user)))
            .await
            .unwrap();
    }
    // Someone alive in the channel keeps its keys (a channel whose members all died simply
    // expires: nobody is left to tell).
    survivor
        .presence
        .add("crowd", member(alive, 2, Some("carol")))
        .await
        .unwrap();
    doomed_broker.halt();
    drop(doomed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A read finds them expired (and keeps their departures for a node to tell).
    assert_eq!(survivor.presence.get("crowd").await.unwrap().len(), 1);
    let departed = survivor.presence.departed("crowd").await.unwrap();
    assert_eq!(departed.len(), 1000);
    let seqs: std::collections::BTreeSet<u64> = departed.iter().map(|d| d.conn.seq).collect();
    assert_eq!(seqs.len(), 1000, "each once");
    assert!(seqs.iter().all(|s| (1..=1005).contains(s)));
    assert!(departed.iter().all(|d| d.last));
}

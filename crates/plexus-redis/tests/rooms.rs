//! The room store keeps the engine contract on a real `redis-server`
//! (`plexus_core::testing`, the same checks the in-memory store passes).

use plexus_redis::testing::{RedisServer, unique_prefix};
use plexus_redis::{RedisConfig, redis_engine};

async fn engine(redis: &RedisServer, config: impl FnOnce(&mut RedisConfig)) -> plexus_core::Engine {
    let mut c = RedisConfig::new(redis.url()).prefix(unique_prefix());
    config(&mut c);
    redis_engine(c).await.expect("redis engine")
}

#[tokio::test]
async fn the_room_store_keeps_the_contract() {
    let redis = RedisServer::start().expect("redis-server starts");
    let engine = engine(&redis, |_| {}).await;
    plexus_core::testing::room_store_contract(&*engine.rooms).await;
}

#[tokio::test]
async fn rooms_and_users_are_bounded() {
    let redis = RedisServer::start().expect("redis-server starts");
    let engine = engine(&redis, |c| {
        c.max_rooms = 2;
        c.max_users = 2;
    })
    .await;
    plexus_core::testing::room_store_bounds(&*engine.rooms, 2, 2).await;
}

#[tokio::test]
async fn engines_on_one_redis_share_rooms_and_prefixes_keep_them_apart() {
    let redis = RedisServer::start().expect("redis-server starts");
    let prefix = unique_prefix();
    let shared = |p: String| RedisConfig::new(redis.url()).prefix(p);
    let a = redis_engine(shared(prefix.clone())).await.unwrap();
    let b = redis_engine(shared(prefix)).await.unwrap();
    let other = redis_engine(shared(unique_prefix())).await.unwrap();
    let state = plexus_core::rooms::RoomState::default();
    assert!(a.rooms.create_room("chat:r", &state).await.unwrap());
    assert!(b.rooms.room("chat:r").await.unwrap().is_some());
    assert!(!b.rooms.create_room("chat:r", &state).await.unwrap());
    assert!(other.rooms.room("chat:r").await.unwrap().is_none());
}

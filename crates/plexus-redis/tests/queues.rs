//! Work queues keep the engine contract on a real `redis-server` (`plexus_core::testing`, the
//! same checks the in-memory queues pass): Redis Streams consumer groups, leases, redelivery.

use plexus_redis::testing::{RedisServer, unique_prefix};
use plexus_redis::{RedisConfig, redis_engine};

#[tokio::test]
async fn work_queues_keep_the_contract() {
    let redis = RedisServer::start().expect("redis-server starts");
    let engine = redis_engine(RedisConfig::new(redis.url()).prefix(unique_prefix()))
        .await
        .expect("redis engine");
    plexus_core::testing::work_queue_contract(&*engine.queues).await;
}

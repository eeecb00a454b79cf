//! Key/value state in Redis: one key per entry, and an index (a sorted set by name) that bounds
//! the number of keys and answers prefix scans.

use crate::{Shared, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use plexus_core::engine::{EngineError, KvStore};
use redis::{AsyncCommands, Script};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// KEYS: value key, index, expiry index. ARGV: name, value, ttl ms (0: none), max keys, now ms.
/// Returns 1 when stored, 0 when the store is full.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('zscore', KEYS[2], ARGV[1]) == false then
  -- Forget expired names first, then check the bound.
  local expired = redis.call('zrangebyscore', KEYS[3], '-inf', ARGV[5])
  for _, name in ipairs(expired) do
    redis.call('zrem', KEYS[2], name)
    redis.call('zrem', KEYS[3], name)
  end
  if redis.call('zcard', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
end
redis.call('zadd', KEYS[2], 0, ARGV[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('zadd', KEYS[3], tonumber(ARGV[5]) + tonumber(ARGV[3]), ARGV[1])
else
  redis.call('set', KEYS[1], ARGV[2])
  redis.call('zrem', KEYS[3], ARGV[1])
end
return 1
",
    )
});

/// Key/value state in Redis.
pub struct RedisKv {
    shared: Arc<Shared>,
}

impl RedisKv {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisKv {
        RedisKv { shared }
    }

    fn expiry_index(&self) -> String {
        format!("{}:exp", self.shared.keys.kv_index())
    }
}

#[async_trait]
impl KvStore for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, EngineError> {
        let mut conn = self.shared.conn();
        let value: Option<Vec<u8>> = self.shared.run(conn.get(self.shared.keys.kv(key))).await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), EngineError> {
        let stored: i64 = self
            .shared
            .run(
                SET.key(self.shared.keys.kv(key))
                    .key(self.shared.keys.kv_index())
                    .key(self.expiry_index())
                    .arg(key)
                    .arg(value.to_vec())
                    .arg(ttl.map_or(0, |t| t.as_millis().max(1) as u64))
                    .arg(self.shared.config.max_kv_keys)
                    .arg(now_ms())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        if stored == 1 {
            Ok(())
        } else {
            Err(EngineError::Limit(format!(
                "{} keys",
                self.shared.config.max_kv_keys
            )))
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, EngineError> {
        let mut conn = self.shared.conn();
        let (deleted, _, _): (i64, i64, i64) = self
            .shared
            .run(
                redis::pipe()
                    .del(self.shared.keys.kv(key))
                    .zrem(self.shared.keys.kv_index(), key)
                    .zrem(self.expiry_index(), key)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, EngineError> {
        let mut conn = self.shared.conn();
        // Names sort lexicographically in the index: [prefix, prefix + 0xff) is the range.
        let mut end = prefix.as_bytes().to_vec();
        end.push(0xff);
        let names: Vec<String> = self
            .shared
            .run(
                redis::cmd("ZRANGE")
                    .arg(self.shared.keys.kv_index())
                    .arg(format!("[{prefix}").into_bytes())
                    .arg([b"(".as_slice(), &end].concat())
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn),
            )
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.shared.keys.kv(n)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .shared
            .run(redis::cmd("MGET").arg(keys).query_async(&mut conn))
            .await?;
        Ok(names
            .into_iter()
            .zip(values)
            .filter_map(|(n, v)| Some((n, Bytes::from(v?))))
            .collect())
    }
}

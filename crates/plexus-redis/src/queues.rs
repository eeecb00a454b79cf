//! At-least-once work queues on Redis Streams with one consumer group (`workers`) per queue
//! (`plexus_core::engine::WorkQueue`): `XADD` under a length bound (the overflow policy refuses
//! the newest); a take first `XCLAIM`s entries whose lease ended — their worker died or is too
//! slow; leases are a sorted set beside the stream, so each item keeps the lease it was taken
//! with — then `XREADGROUP`s new ones; `XACK` + `XDEL` on acknowledgement. Entries leave the
//! stream only when acknowledged, so its length is the backlog. Each operation is one script.

use crate::{Shared, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use plexus_core::engine::{EngineError, WorkItem, WorkQueue};
use redis::{Script, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// KEYS: stream. ARGV: max length, payload. Returns 1 when added, 0 when full.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
pcall(redis.call, 'xgroup', 'create', KEYS[1], 'workers', '0', 'MKSTREAM')
if redis.call('xlen', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('xadd', KEYS[1], '*', 'p', ARGV[2])
return 1
",
    )
});

/// KEYS: stream, leases (a sorted set: entry id → lease end, ms). ARGV: worker, max, lease ms,
/// now ms. Takes over entries whose lease ended (`XCLAIM`), then reads new ones (`XREADGROUP`),
/// and leases them all to the worker. Returns {id, payload, redeliveries, …}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
pcall(redis.call, 'xgroup', 'create', KEYS[1], 'workers', '0', 'MKSTREAM')
local max, until_ms = tonumber(ARGV[2]), tonumber(ARGV[4]) + tonumber(ARGV[3])
local out, n = {}, 0
local function payload(fields)
  for i = 1, #fields, 2 do if fields[i] == 'p' then return fields[i + 1] end end
  return ''
end
for _, id in ipairs(redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, max)) do
  local claimed = redis.call('xclaim', KEYS[1], 'workers', ARGV[1], 0, id)
  local e = claimed[1]
  if e then
    local pending = redis.call('xpending', KEYS[1], 'workers', id, id, 1)
    redis.call('zadd', KEYS[2], until_ms, id)
    out[#out + 1] = id
    out[#out + 1] = payload(e[2])
    out[#out + 1] = pending[1][4] - 1
    n = n + 1
  else
    redis.call('zrem', KEYS[2], id)
  end
end
if n < max then
  local fresh = redis.call('xreadgroup', 'GROUP', 'workers', ARGV[1], 'COUNT', max - n, 'STREAMS', KEYS[1], '>')
  if fresh then
    for _, e in ipairs(fresh[1][2]) do
      redis.call('zadd', KEYS[2], until_ms, e[1])
      out[#out + 1] = e[1]
      out[#out + 1] = payload(e[2])
      out[#out + 1] = 0
    end
  end
end
return out
",
    )
});

/// KEYS: stream, leases. ARGV: ids. Returns how many were acknowledged.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for _, id in ipairs(ARGV) do
  local acked = redis.call('xack', KEYS[1], 'workers', id)
  if acked == 1 then
    redis.call('xdel', KEYS[1], id)
    n = n + 1
  end
  redis.call('zrem', KEYS[2], id)
end
return n
",
    )
});

/// Work queues in Redis.
pub struct RedisQueues {
    shared: Arc<Shared>,
}

impl RedisQueues {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisQueues {
        RedisQueues { shared }
    }
}

fn is_stream_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

#[async_trait]
impl WorkQueue for RedisQueues {
    async fn push(&self, queue: &str, payload: Bytes, max_len: usize) -> Result<bool, EngineError> {
        let [key, _] = self.shared.keys.queue(queue);
        let added: i64 = self
            .shared
            .run(
                PUSH.key(key)
                    .arg(max_len)
                    .arg(payload.as_ref())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        Ok(added == 1)
    }

    async fn take(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WorkItem>, EngineError> {
        let [stream, leases] = self.shared.keys.queue(queue);
        let reply: Value = self
            .shared
            .run(
                TAKE.key(stream)
                    .key(leases)
                    .arg(worker)
                    .arg(max.max(1))
                    .arg(lease.as_millis().max(1) as u64)
                    .arg(now_ms())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        Ok(items
            .chunks(3)
            .filter_map(|item| match item {
                [
                    Value::BulkString(id),
                    Value::BulkString(payload),
                    Value::Int(redeliveries),
                ] => Some(WorkItem {
                    id: String::from_utf8(id.clone()).ok()?,
                    payload: Bytes::copy_from_slice(payload),
                    redeliveries: (*redeliveries).max(0) as u64,
                }),
                _ => None,
            })
            .collect())
    }

    async fn ack(&self, queue: &str, ids: &[String]) -> Result<u64, EngineError> {
        let ids: Vec<&String> = ids.iter().filter(|id| is_stream_id(id)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let [stream, leases] = self.shared.keys.queue(queue);
        self.shared
            .run(
                ACK.key(stream)
                    .key(leases)
                    .arg(&ids)
                    .invoke_async(&mut self.shared.conn()),
            )
            .await
    }

    async fn len(&self, queue: &str) -> Result<u64, EngineError> {
        let [key, _] = self.shared.keys.queue(queue);
        let mut conn = self.shared.conn();
        self.shared
            .run(redis::cmd("XLEN").arg(key).query_async(&mut conn))
            .await
    }
}

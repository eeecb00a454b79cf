//! Records in Redis ([`plexus_core::engine::RecordStore`]): per record a hash (`v` version, `e`
//! epoch, `d` the value as JSON) and per namespace a set of its record ids (its size is the
//! records-per-namespace limit). Both carry the **namespace** as their hash tag, so the write
//! script touches one slot (valid on Redis Cluster) and counts the namespace atomically; the
//! price is that one namespace's records live on one shard.
//!
//! A write is **one Lua script**: compare (version, epoch) with the expected ones, store, and
//! publish the change on the record's internal channel in the broker's format (`version:epoch:`
//! then the publication), so it reaches every node subscribed to the record, in version order,
//! like any publication. Records have no expiry: they survive node restarts for as long as
//! Redis keeps its data.

use crate::wire::encode_pub;
use crate::{Shared, unavailable};
use async_trait::async_trait;
use plexus_core::engine::{EngineError, RecordPut, RecordPutOutcome, RecordStore};
use plexus_core::records::{Record, Written, record_channel};
use redis::{Script, Value};
use std::sync::{Arc, LazyLock};

/// KEYS: record hash, namespace index. ARGV: expected version ('0': must not exist), expected
/// epoch, new epoch, value JSON ('' deletes), max records, pub/sub channel ('': the caller
/// publishes), publication blob, record id. Returns `{status, version, epoch}`: status 1 written, 0 conflict (with the current
/// version), 2 namespace full.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = tonumber(redis.call('hget', KEYS[1], 'v') or '0')
local e = redis.call('hget', KEYS[1], 'e') or ''
if v ~= tonumber(ARGV[1]) or (v > 0 and e ~= ARGV[2]) then return {0, v, e} end
if ARGV[4] == '' then
  if v == 0 then return {0, 0, ''} end
  redis.call('del', KEYS[1])
  redis.call('srem', KEYS[2], ARGV[8])
else
  if v == 0 then
    if redis.call('scard', KEYS[2]) >= tonumber(ARGV[5]) then return {2, 0, ''} end
    e = ARGV[3]
    redis.call('sadd', KEYS[2], ARGV[8])
  end
  redis.call('hset', KEYS[1], 'v', v + 1, 'e', e, 'd', ARGV[4])
end
if ARGV[6] ~= '' then
  redis.call('publish', ARGV[6], (v + 1) .. ':' .. e .. ':' .. ARGV[7])
end
return {1, v + 1, e}
",
    )
});

fn new_epoch() -> String {
    (0..8).map(|_| fastrand::alphanumeric()).collect()
}

/// Records over Redis.
pub struct RedisRecords {
    shared: Arc<Shared>,
}

impl RedisRecords {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisRecords {
        RedisRecords { shared }
    }
}

#[async_trait]
impl RecordStore for RedisRecords {
    async fn get(&self, namespace: &str, id: &str) -> Result<Option<Record>, EngineError> {
        let key = self.shared.keys.record(namespace, id);
        let (v, e, d): (Option<u64>, Option<String>, Option<String>) = self
            .shared
            .run(async {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("e")
                    .arg("d")
                    .query_async(&mut self.shared.conn())
                    .await
            })
            .await?;
        let (Some(version), Some(epoch), Some(d)) = (v, e, d) else {
            return Ok(None);
        };
        let value = serde_json::from_str(&d).map_err(unavailable)?;
        Ok(Some(Record {
            id: Arc::from(id),
            value,
            version,
            epoch: Arc::from(epoch),
        }))
    }

    async fn put(&self, put: RecordPut) -> Result<RecordPutOutcome, EngineError> {
        let keys = &self.shared.keys;
        let (expect_version, expect_epoch) =
            put.expect.as_ref().map_or((0, ""), |(v, e)| (*v, &**e));
        let value = match &put.change.v {
            Some(v) => serde_json::to_string(v).map_err(unavailable)?,
            None => String::new(),
        };
        let blob = encode_pub(&put.change.payload(), None, None, None);
        // On a Redis Cluster the record's shard channel lives in another slot than the
        // namespace's keys: the change is `SPUBLISH`ed right after the script (a subscriber that
        // sees versions out of order or missing reads the record again).
        let cluster = self.shared.cluster();
        let channel = keys.pubsub(&record_channel(&put.id));
        let reply: Value = self
            .shared
            .run(
                PUT.key(keys.record(&put.namespace, &put.id))
                    .key(keys.record_index(&put.namespace))
                    .arg(expect_version)
                    .arg(expect_epoch)
                    .arg(new_epoch())
                    .arg(value)
                    .arg(put.max_records)
                    .arg(if cluster { "" } else { channel.as_str() })
                    .arg(&blob)
                    .arg(&*put.id)
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        let bad = || EngineError::Unavailable("malformed record reply".into());
        let Value::Array(items) = reply else {
            return Err(bad());
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        };
        let status = int(items.first()).ok_or_else(bad)?;
        let version = int(items.get(1)).ok_or_else(bad)?;
        let epoch = match items.get(2) {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => return Err(bad()),
        };
        if status == 1 && cluster {
            let mut message = format!("{version}:{epoch}:").into_bytes();
            message.extend_from_slice(&blob);
            // The write is done whatever happens to its notice: a notice lost here is repaired
            // by the next write's gap or the subscribers' resubscription.
            let published: Result<Value, _> = self
                .shared
                .run(async {
                    redis::cmd("SPUBLISH")
                        .arg(&channel)
                        .arg(message)
                        .query_async(&mut self.shared.conn())
                        .await
                })
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "a record change was stored but not published");
            }
        }
        Ok(match status {
            1 => RecordPutOutcome::Done(Written {
                version,
                epoch: Arc::from(epoch),
            }),
            2 => RecordPutOutcome::Full,
            _ => RecordPutOutcome::Conflict { version },
        })
    }
}

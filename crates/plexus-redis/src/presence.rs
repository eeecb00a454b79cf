//! Presence in Redis: a hash of members per channel with an expiry set refreshed by the node
//! that holds each member, per-user counts for O(1) stats and first/last detection, and a
//! bounded "last seen" set. A member whose node died expires within `presence_ttl`; the script
//! that finds it expired records its departure (a bounded list per channel) for one node to
//! tell the channel ([`PresenceStore::departed`]).

use crate::wire::PayloadWire;
use crate::{Shared, now_ms};
use async_trait::async_trait;
use plexus_core::engine::{Departure, EngineError, PresenceEntry, PresenceStats, PresenceStore};
use plexus_core::{ConnId, Payload};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// KEYS of every script: data (conn → entry), exp (conn → expires at ms), users (user → count),
// seen (user → last seen ms), conn users (conn → user), gone (departures not yet told:
// "conn last user").

/// ARGV: conn, entry, expires at ms, user ('' when anonymous), key ttl ms. Returns 1 when this is
/// the user's first connection in the channel.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('hexists', KEYS[1], ARGV[1])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], ARGV[3], ARGV[1])
local first = 1
if existed == 1 then
  first = 0
elseif ARGV[4] ~= '' then
  redis.call('hset', KEYS[5], ARGV[1], ARGV[4])
  if redis.call('hincrby', KEYS[3], ARGV[4], 1) > 1 then first = 0 end
end
for i = 1, 5 do
  if i ~= 4 then redis.call('pexpire', KEYS[i], ARGV[5]) end
end
return first
",
    )
});

/// Removes one member and, for a user's last connection, records when it was seen.
/// Shared by REMOVE and PURGE.
const FORGET: &str = r"
local function forget(conn, now, max_seen, seen_ttl)
  if redis.call('hdel', KEYS[1], conn) == 0 then
    redis.call('zrem', KEYS[2], conn)
    return 0
  end
  redis.call('zrem', KEYS[2], conn)
  local user = redis.call('hget', KEYS[5], conn)
  if not user then return 1 end
  redis.call('hdel', KEYS[5], conn)
  if redis.call('hincrby', KEYS[3], user, -1) > 0 then return 0 end
  redis.call('hdel', KEYS[3], user)
  redis.call('zadd', KEYS[4], now, user)
  local over = redis.call('zcard', KEYS[4]) - tonumber(max_seen)
  if over > 0 then redis.call('zremrangebyrank', KEYS[4], 0, over - 1) end
  redis.call('pexpire', KEYS[4], seen_ttl)
  return 1
end
local function purge(now, max_seen, seen_ttl, gone_max, gone_ttl)
  for _, conn in ipairs(redis.call('zrangebyscore', KEYS[2], '-inf', now)) do
    if redis.call('hexists', KEYS[1], conn) == 1 then
      local user = redis.call('hget', KEYS[5], conn) or ''
      local last = forget(conn, now, max_seen, seen_ttl)
      redis.call('rpush', KEYS[6], conn .. ' ' .. last .. ' ' .. user)
      redis.call('ltrim', KEYS[6], -tonumber(gone_max), -1)
      redis.call('pexpire', KEYS[6], gone_ttl)
    else
      redis.call('zrem', KEYS[2], conn)
    end
  end
end
";

/// ARGV: conn, now ms, max seen, seen ttl ms. Returns 1 when it was the user's last connection.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FORGET}\nreturn forget(ARGV[1], ARGV[2], ARGV[3], ARGV[4])"
    ))
});

/// ARGV: now ms, max seen, seen ttl ms, gone max, gone ttl ms, what ('get' or 'stats').
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FORGET}
purge(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] == 'stats' then
  return {{redis.call('hlen', KEYS[1]), redis.call('hlen', KEYS[3])}}
end
return {{redis.call('hgetall', KEYS[1]), redis.call('hgetall', KEYS[5])}}
"
    ))
});

/// ARGV: now ms, max seen, seen ttl ms, gone max, gone ttl ms. Returns the departures not told
/// yet ("conn last user"), and forgets them.
static DEPARTED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FORGET}
purge(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local gone = redis.call('lrange', KEYS[6], 0, -1)
redis.call('del', KEYS[6])
return gone
"
    ))
});

/// ARGV: conn, entry. Returns 1 when the member exists (and was updated).
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('hexists', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// How long the "last seen" set of a channel lives after its last update.
const SEEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Departures a channel keeps until a node tells them (the oldest go first).
const GONE_MAX: usize = 1000;

#[derive(Serialize, Deserialize, Default, Clone)]
struct EntryWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<PayloadWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<PayloadWire>,
}

fn encode_entry(info: Option<&Payload>, state: Option<&Payload>) -> Vec<u8> {
    let wire = EntryWire {
        i: info.map(PayloadWire::from),
        s: state.map(PayloadWire::from),
    };
    rmp_serde::to_vec_named(&wire).expect("presence entry encodes")
}

/// The members this node added: (channel, connection) → user.
type LocalMembers = HashMap<(String, ConnId), Option<Arc<str>>>;

/// Presence in Redis.
pub struct RedisPresence {
    shared: Arc<Shared>,
    /// What this node added, refreshed every third of the TTL so its members stay alive.
    local: Arc<Mutex<LocalMembers>>,
}

impl RedisPresence {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisPresence {
        let local = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(refresh_task(shared.clone(), Arc::downgrade(&local)));
        RedisPresence { shared, local }
    }

    fn keys(&self, channel: &str) -> [String; 6] {
        self.shared.keys.presence(channel)
    }

    fn invocation<'a>(&self, script: &'a Script, channel: &str) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys(channel) {
            inv.key(key);
        }
        inv
    }

    fn ttl_ms(&self) -> u64 {
        self.shared.config.presence_ttl.as_millis() as u64
    }

    /// Runs a script that purges expired members (READ, DEPARTED) with its purge arguments
    /// and `extra`.
    async fn purging(
        &self,
        script: &Script,
        channel: &str,
        extra: Option<&str>,
    ) -> Result<Value, EngineError> {
        let mut inv = self.invocation(script, channel);
        inv.arg(now_ms())
            .arg(self.shared.config.max_last_seen_per_channel)
            .arg(SEEN_TTL.as_millis() as u64)
            .arg(GONE_MAX)
            // Long enough for a node to come and tell them; not forever.
            .arg(self.ttl_ms().saturating_mul(3));
        if let Some(extra) = extra {
            inv.arg(extra);
        }
        self.shared
            .run(inv.invoke_async(&mut self.shared.conn()))
            .await
    }

    async fn read(&self, channel: &str, what: &str) -> Result<Value, EngineError> {
        self.purging(&READ, channel, Some(what)).await
    }
}

async fn refresh_task(shared: Arc<Shared>, local: Weak<Mutex<LocalMembers>>) {
    let every = shared.config.presence_ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        let Some(local) = local.upgrade() else { return };
        if shared.halted() {
            return;
        }
        let mut members: Vec<(String, ConnId)> = local.lock().unwrap().keys().cloned().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        drop(local);
        let ttl = shared.config.presence_ttl.as_millis() as u64;
        let expires = now_ms() + ttl;
        // On a cluster one pipeline holds one channel's keys (one slot).
        let chunks: Vec<&[(String, ConnId)]> = if shared.cluster() {
            members.chunk_by(|a, b| a.0 == b.0).collect()
        } else {
            members.chunks(500).collect()
        };
        for chunk in chunks {
            let mut pipe = redis::pipe();
            for (channel, conn) in chunk {
                let [data, exp, users, _seen, conn_users, _gone] = shared.keys.presence(channel);
                // XX: never resurrect a member that was removed meanwhile.
                pipe.cmd("ZADD")
                    .arg(&exp)
                    .arg("XX")
                    .arg(expires)
                    .arg(conn.to_string())
                    .ignore();
                for key in [data, exp, users, conn_users] {
                    pipe.pexpire(key, ttl as i64).ignore();
                }
            }
            if let Err(e) = shared.run(pipe.query_async::<()>(&mut shared.conn())).await {
                tracing::warn!(error = %e, "presence refresh failed");
            }
        }
    }
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn pairs(v: &Value) -> Vec<(&[u8], &[u8])> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| Some((bulk(p.first()?)?, bulk(p.get(1)?)?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((bulk(k)?, bulk(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

fn int(v: &Value) -> usize {
    match v {
        Value::Int(i) => *i as usize,
        _ => 0,
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn add(&self, channel: &str, entry: PresenceEntry) -> Result<bool, EngineError> {
        let blob = encode_entry(entry.info.as_ref(), entry.state.as_ref());
        let mut inv = self.invocation(&ADD, channel);
        inv.arg(entry.conn.to_string())
            .arg(blob)
            .arg(now_ms() + self.ttl_ms())
            .arg(entry.user.as_deref().unwrap_or(""))
            .arg(self.ttl_ms());
        let first: i64 = self
            .shared
            .run(inv.invoke_async(&mut self.shared.conn()))
            .await?;
        self.local
            .lock()
            .unwrap()
            .insert((channel.to_owned(), entry.conn), entry.user);
        Ok(first == 1)
    }

    async fn remove(&self, channel: &str, conn: ConnId) -> Result<bool, EngineError> {
        self.local
            .lock()
            .unwrap()
            .remove(&(channel.to_owned(), conn));
        let mut inv = self.invocation(&REMOVE, channel);
        inv.arg(conn.to_string())
            .arg(now_ms())
            .arg(self.shared.config.max_last_seen_per_channel)
            .arg(SEEN_TTL.as_millis() as u64);
        let last: i64 = self
            .shared
            .run(inv.invoke_async(&mut self.shared.conn()))
            .await?;
        Ok(last == 1)
    }

    async fn get(&self, channel: &str) -> Result<Vec<PresenceEntry>, EngineError> {
        let reply = self.read(channel, "get").await?;
        let Value::Array(parts) = reply else {
            return Ok(Vec::new());
        };
        let users: HashMap<&[u8], &[u8]> = parts
            .get(1)
            .map(pairs)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut members = Vec::new();
        for (conn, blob) in parts.first().map(pairs).unwrap_or_default() {
            let Some(id) = std::str::from_utf8(conn)
                .ok()
                .and_then(|c| c.parse::<ConnId>().ok())
            else {
                continue;
            };
            let wire: EntryWire = rmp_serde::from_slice(blob).unwrap_or_default();
            members.push(PresenceEntry {
                conn: id,
                user: users
                    .get(conn)
                    .and_then(|u| std::str::from_utf8(u).ok())
                    .map(Arc::from),
                info: wire.i.and_then(PayloadWire::into_payload),
                state: wire.s.and_then(PayloadWire::into_payload),
            });
        }
        members.sort_by_key(|m| m.conn);
        Ok(members)
    }

    async fn stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let reply = self.read(channel, "stats").await?;
        let Value::Array(counts) = reply else {
            return Ok(PresenceStats::default());
        };
        Ok(PresenceStats {
            connections: counts.first().map_or(0, int),
            users: counts.get(1).map_or(0, int),
        })
    }

    async fn set_state(
        &self,
        channel: &str,
        conn: ConnId,
        state: Option<Payload>,
    ) -> Result<bool, EngineError> {
        let current = self
            .get(channel)
            .await?
            .into_iter()
            .find(|m| m.conn == conn);
        let Some(current) = current else {
            return Ok(false);
        };
        let mut inv = self.invocation(&SET, channel);
        inv.arg(conn.to_string())
            .arg(encode_entry(current.info.as_ref(), state.as_ref()));
        let updated: i64 = self
            .shared
            .run(inv.invoke_async(&mut self.shared.conn()))
            .await?;
        Ok(updated == 1)
    }

    async fn last_seen(
        &self,
        channel: &str,
        user: &str,
    ) -> Result<Option<SystemTime>, EngineError> {
        let [_, _, _, seen, _, _] = self.shared.keys.presence(channel);
        let mut conn = self.shared.conn();
        let score: Option<f64> = self
            .shared
            .run(
                redis::cmd("ZSCORE")
                    .arg(seen)
                    .arg(user)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(score.map(|ms| UNIX_EPOCH + Duration::from_millis(ms as u64)))
    }

    fn departure_interval(&self) -> Option<Duration> {
        Some(self.shared.config.presence_ttl / 3)
    }

    async fn departed(&self, channel: &str) -> Result<Vec<Departure>, EngineError> {
        let reply = self.purging(&DEPARTED, channel, None).await?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        Ok(items
            .iter()
            .filter_map(|item| {
                let text = std::str::from_utf8(bulk(item)?).ok()?;
                let mut parts = text.splitn(3, ' ');
                let conn = parts.next()?.parse::<ConnId>().ok()?;
                let last = parts.next()? == "1";
                let user = parts.next().filter(|u| !u.is_empty()).map(Arc::from);
                Some(Departure { conn, user, last })
            })
            .collect())
    }
}

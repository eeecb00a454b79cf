//! Durable per-user inboxes in Redis: a hash holding the user's sequence counter (its existence
//! is the registration, with the inbox lifetime as its TTL) and a stream of messages whose entry
//! id is the sequence number.

use crate::wire::PayloadWire;
use crate::{Shared, now_ms};
use async_trait::async_trait;
use plexus_core::Payload;
use plexus_core::engine::{EngineError, Mail, MailboxStore};
use redis::{Script, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// KEYS: inbox, messages. ARGV: lifetime ms.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('hsetnx', KEYS[1], 'seq', 0)
local ttl = math.max(redis.call('pttl', KEYS[1]), tonumber(ARGV[1]))
redis.call('pexpire', KEYS[1], ttl)
if redis.call('exists', KEYS[2]) == 1 then redis.call('pexpire', KEYS[2], ttl) end
return ttl
",
    )
});

/// Drops expired messages at the head of the stream. Shared by PUSH, PENDING and ACK.
const DROP_EXPIRED: &str = r"
local function drop_expired(now)
  for _, e in ipairs(redis.call('xrange', KEYS[2], '-', '+', 'COUNT', 100)) do
    local f = e[2]
    local expires = 0
    for i = 1, #f, 2 do if f[i] == 'x' then expires = tonumber(f[i + 1]) end end
    if expires > tonumber(now) then return end
    redis.call('xdel', KEYS[2], e[1])
  end
end
";

/// ARGV: payload blob, ttl ms, max messages, now ms. Returns {seq, sent_ms}, {-1} when the user
/// has no inbox, {-2} when it is full.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{DROP_EXPIRED}
if redis.call('exists', KEYS[1]) == 0 then return {{-1}} end
drop_expired(ARGV[4])
if redis.call('xlen', KEYS[2]) >= tonumber(ARGV[3]) then return {{-2}} end
local seq = redis.call('hincrby', KEYS[1], 'seq', 1)
redis.call('xadd', KEYS[2], seq .. '-0', 'd', ARGV[1], 't', ARGV[4], 'x', tonumber(ARGV[4]) + tonumber(ARGV[2]))
redis.call('pexpire', KEYS[2], redis.call('pttl', KEYS[1]))
return {{seq, tonumber(ARGV[4])}}
"
    ))
});

/// ARGV: acknowledged seq ('0': none), now ms. Returns the waiting messages as
/// {seq, sent, expires, blob, …}.
static PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{DROP_EXPIRED}
if tonumber(ARGV[1]) > 0 then redis.call('xtrim', KEYS[2], 'MINID', (tonumber(ARGV[1]) + 1) .. '-0') end
drop_expired(ARGV[2])
local out = {{}}
for _, e in ipairs(redis.call('xrange', KEYS[2], '-', '+')) do
  local id, f = e[1], e[2]
  local m = {{}}
  for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  if tonumber(m['x']) > tonumber(ARGV[2]) then
    out[#out + 1] = tonumber(string.sub(id, 1, string.find(id, '-') - 1))
    out[#out + 1] = tonumber(m['t'])
    out[#out + 1] = m['d']
  end
end
return out
"
    ))
});

/// Durable inboxes in Redis.
pub struct RedisMailbox {
    shared: Arc<Shared>,
}

impl RedisMailbox {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisMailbox {
        RedisMailbox { shared }
    }

    async fn pending_after_ack(&self, user: &str, ack: u64) -> Result<Vec<Mail>, EngineError> {
        let [inbox, messages] = self.shared.keys.mailbox(user);
        let reply: Value = self
            .shared
            .run(
                PENDING
                    .key(inbox)
                    .key(messages)
                    .arg(ack)
                    .arg(now_ms())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        let mut mails = Vec::new();
        for m in items.chunks(3) {
            let [Value::Int(seq), Value::Int(sent), Value::BulkString(blob)] = m else {
                continue;
            };
            let Some(payload) = rmp_serde::from_slice::<PayloadWire>(blob)
                .ok()
                .and_then(PayloadWire::into_payload)
            else {
                continue;
            };
            mails.push(Mail {
                seq: *seq as u64,
                payload,
                sent_ms: *sent as u64,
            });
        }
        Ok(mails)
    }
}

#[async_trait]
impl MailboxStore for RedisMailbox {
    async fn register(&self, user: &str, lifetime: Duration) -> Result<(), EngineError> {
        let [inbox, messages] = self.shared.keys.mailbox(user);
        let _: i64 = self
            .shared
            .run(
                REGISTER
                    .key(inbox)
                    .key(messages)
                    .arg(lifetime.as_millis() as u64)
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        Ok(())
    }

    async fn is_registered(&self, user: &str) -> Result<bool, EngineError> {
        let [inbox, _] = self.shared.keys.mailbox(user);
        let mut conn = self.shared.conn();
        self.shared
            .run(redis::cmd("EXISTS").arg(inbox).query_async(&mut conn))
            .await
    }

    async fn push(
        &self,
        user: &str,
        payload: Payload,
        ttl: Duration,
        max_messages: usize,
    ) -> Result<Mail, EngineError> {
        let [inbox, messages] = self.shared.keys.mailbox(user);
        let blob = rmp_serde::to_vec_named(&PayloadWire::from(&payload)).expect("payload encodes");
        let reply: Vec<i64> = self
            .shared
            .run(
                PUSH.key(inbox)
                    .key(messages)
                    .arg(blob)
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(max_messages)
                    .arg(now_ms())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        match reply.as_slice() {
            [-1] => Err(EngineError::Limit(format!("user `{user}` has no mailbox"))),
            [-2] => Err(EngineError::Limit(format!(
                "mailbox of `{user}` is full ({max_messages} messages)"
            ))),
            [seq, sent] => Ok(Mail {
                seq: *seq as u64,
                payload,
                sent_ms: *sent as u64,
            }),
            _ => Err(EngineError::Unavailable("unexpected mailbox reply".into())),
        }
    }

    async fn pending(&self, user: &str) -> Result<Vec<Mail>, EngineError> {
        self.pending_after_ack(user, 0).await
    }

    async fn ack(&self, user: &str, seq: u64) -> Result<u64, EngineError> {
        Ok(self.pending_after_ack(user, seq).await?.len() as u64)
    }
}

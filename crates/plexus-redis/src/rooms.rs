//! Rooms and users in Redis ([`plexus_core::engine::RoomStore`]): per room a hash (version,
//! owner, mode, history size, notification switches) and three sets (whitelist, blacklist,
//! adminlist); per user a hash (mode) and two sets. A room's keys share the room's hash tag and a
//! user's keys the user's, so every script touches one slot and stays valid on Redis Cluster.
//! Every change is one script, so it is atomic; a list's maximum counts the names already on it
//! plus the new ones, inside the script.
//!
//! How many rooms and users exist is counted in one key each (another slot, so a separate step:
//! a place is reserved before a create and given back when the name existed or on a delete). A
//! failure between the two steps can only leave the count high by one place, never let it
//! exceed its bound.

use crate::Shared;
use async_trait::async_trait;
use plexus_core::engine::{
    DirectChange, DirectChanged, EngineError, RoomChange, RoomChanged, RoomStore,
};
use plexus_core::rooms::{DirectList, DirectState, Names, RoomList, RoomState};
use redis::{Script, Value};
use std::sync::{Arc, LazyLock};

/// KEYS: counter. ARGV: max. Returns 1 when a place was taken, 0 when none is left.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(redis.call('get', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('incr', KEYS[1])
return 1
",
    )
});

/// KEYS: counter. Gives a place back.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(redis.call('get', KEYS[1]) or '0') > 0 then redis.call('decr', KEYS[1]) end
return 1
",
    )
});

/// Fills sets KEYS[first..] from ARGV starting at `i`: for each set a count, then its names.
/// Shared by CREATE_ROOM and ADD_USER.
const FILL_SETS: &str = r"
local function fill_sets(first, i)
  for k = first, #KEYS do
    redis.call('del', KEYS[k])
    local n = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, n do
      redis.call('sadd', KEYS[k], ARGV[i])
      i = i + 1
    end
  end
end
";

/// KEYS: room hash, whitelist, blacklist, adminlist. ARGV: owner ('' none), whitelist-only
/// ('1'/'0'), history size ('' none), notify userlist, notify access lists, then the three
/// lists (a count, then names). Returns 1 when created, 0 when the room exists.
static CREATE_ROOM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FILL_SETS}
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], 'v', 1, 'w', ARGV[2], 'nu', ARGV[4], 'na', ARGV[5])
if ARGV[1] ~= '' then redis.call('hset', KEYS[1], 'o', ARGV[1]) end
if ARGV[3] ~= '' then redis.call('hset', KEYS[1], 'h', ARGV[3]) end
fill_sets(2, 6)
return 1
"
    ))
});

/// KEYS: a room's or a user's keys. Returns 1 when it existed.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('exists', KEYS[1])
redis.call('del', unpack(KEYS))
return existed
",
    )
});

/// KEYS: a room's or a user's hash, then its sets. ARGV: 'all', or 'view' and the users the
/// view is restricted to. Returns nil when it does not exist, else {hash fields, set 1, …}.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('hgetall', KEYS[1])
if #h == 0 then return false end
local out = {h}
for k = 2, #KEYS do
  if ARGV[1] == 'all' then
    out[k] = redis.call('smembers', KEYS[k])
  else
    local m = {}
    for i = 2, #ARGV do
      if redis.call('sismember', KEYS[k], ARGV[i]) == 1 then m[#m + 1] = ARGV[i] end
    end
    out[k] = m
  end
end
return out
",
    )
});

/// Adds ARGV[from..] to set KEYS[key] if its size plus the new names fits `max`; false when it
/// would not. Shared by CHANGE_ROOM and CHANGE_USER.
const ADD_NAMES: &str = r"
local function add_names(key, max, from)
  local new, seen = 0, {}
  for i = from, #ARGV do
    local name = ARGV[i]
    if not seen[name] and redis.call('sismember', key, name) == 0 then new = new + 1 end
    seen[name] = true
  end
  if redis.call('scard', key) + new > tonumber(max) then return false end
  for i = from, #ARGV do redis.call('sadd', key, ARGV[i]) end
  return true
end
";

/// KEYS: room hash, whitelist, blacklist, adminlist. ARGV: expected version ('' any), the
/// change ('add' list max names… | 'rem' list names… | 'w' 0/1 | 'o' owner | 'h' size |
/// 'n' userlist access-lists, '' keeping one), lists numbered 1-3. Returns the new version,
/// -1 no room, -2 stale, -3 list full.
static CHANGE_ROOM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_NAMES}
if redis.call('exists', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' and redis.call('hget', KEYS[1], 'v') ~= ARGV[1] then return -2 end
local op = ARGV[2]
if op == 'add' then
  if not add_names(KEYS[1 + tonumber(ARGV[3])], ARGV[4], 5) then return -3 end
elseif op == 'rem' then
  local key = KEYS[1 + tonumber(ARGV[3])]
  for i = 4, #ARGV do redis.call('srem', key, ARGV[i]) end
elseif op == 'w' then
  redis.call('hset', KEYS[1], 'w', ARGV[3])
elseif op == 'o' or op == 'h' then
  if ARGV[3] == '' then redis.call('hdel', KEYS[1], op) else redis.call('hset', KEYS[1], op, ARGV[3]) end
elseif op == 'n' then
  if ARGV[3] ~= '' then redis.call('hset', KEYS[1], 'nu', ARGV[3]) end
  if ARGV[4] ~= '' then redis.call('hset', KEYS[1], 'na', ARGV[4]) end
end
return redis.call('hincrby', KEYS[1], 'v', 1)
"
    ))
});

/// KEYS: user hash, whitelist, blacklist. ARGV: whitelist-only, then the two lists (a count,
/// then names). Returns 1 when added, 0 when the user exists.
static ADD_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FILL_SETS}
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], 'w', ARGV[1])
fill_sets(2, 2)
return 1
"
    ))
});

/// KEYS: user hash, whitelist, blacklist. ARGV: the change ('add' list max names… | 'rem'
/// list names… | 'w' 0/1), lists numbered 1-2. Returns 1, -1 no user, -3 list full.
static CHANGE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_NAMES}
if redis.call('exists', KEYS[1]) == 0 then return -1 end
local op = ARGV[1]
if op == 'add' then
  if not add_names(KEYS[1 + tonumber(ARGV[2])], ARGV[3], 4) then return -3 end
elseif op == 'rem' then
  local key = KEYS[1 + tonumber(ARGV[2])]
  for i = 3, #ARGV do redis.call('srem', key, ARGV[i]) end
elseif op == 'w' then
  redis.call('hset', KEYS[1], 'w', ARGV[2])
end
return 1
"
    ))
});

fn room_list_number(list: RoomList) -> u8 {
    match list {
        RoomList::Whitelist => 1,
        RoomList::Blacklist => 2,
        RoomList::Adminlist => 3,
    }
}

fn direct_list_number(list: DirectList) -> u8 {
    match list {
        DirectList::Whitelist => 1,
        DirectList::Blacklist => 2,
    }
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn malformed() -> EngineError {
    EngineError::Unavailable("malformed room store reply".into())
}

/// What READ returns of a room or user: its hash's fields and its sets, in key order.
type Read = (Vec<(String, String)>, Vec<Names>);

/// A READ reply: nil, or the hash's fields and the sets.
fn parse_read(reply: Value) -> Result<Option<Read>, EngineError> {
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(malformed()),
    };
    let mut items = items.into_iter();
    let Some(Value::Array(hash)) = items.next() else {
        return Err(malformed());
    };
    let fields = hash
        .chunks(2)
        .filter_map(|p| Some((text(p.first()?)?.to_owned(), text(p.get(1)?)?.to_owned())))
        .collect();
    let mut sets = Vec::new();
    for set in items {
        let Value::Array(names) = set else {
            return Err(malformed());
        };
        sets.push(names.iter().filter_map(text).map(Arc::from).collect());
    }
    Ok(Some((fields, sets)))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn room_state(fields: &[(String, String)], mut sets: Vec<Names>) -> Result<RoomState, EngineError> {
    if sets.len() != 3 {
        return Err(malformed());
    }
    let adminlist = sets.pop().unwrap_or_default();
    let blacklist = sets.pop().unwrap_or_default();
    let whitelist = sets.pop().unwrap_or_default();
    let on = |name| field(fields, name) == Some("1");
    Ok(RoomState {
        owner: field(fields, "o").map(Arc::from),
        whitelist,
        blacklist,
        adminlist,
        whitelist_only: on("w"),
        history_max_size: field(fields, "h").and_then(|h| h.parse().ok()),
        notify_userlist: on("nu"),
        notify_access_lists: on("na"),
        version: field(fields, "v")
            .and_then(|v| v.parse().ok())
            .ok_or_else(malformed)?,
    })
}

fn direct_state(
    fields: &[(String, String)],
    mut sets: Vec<Names>,
) -> Result<DirectState, EngineError> {
    if sets.len() != 2 {
        return Err(malformed());
    }
    let blacklist = sets.pop().unwrap_or_default();
    let whitelist = sets.pop().unwrap_or_default();
    Ok(DirectState {
        whitelist,
        blacklist,
        whitelist_only: field(fields, "w") == Some("1"),
    })
}

/// Rooms and users in Redis.
pub struct RedisRooms {
    shared: Arc<Shared>,
}

impl RedisRooms {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisRooms {
        RedisRooms { shared }
    }

    fn invocation<'a>(&self, script: &'a Script, keys: &[String]) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in keys {
            inv.key(key);
        }
        inv
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, EngineError> {
        self.shared
            .run(inv.invoke_async(&mut self.shared.conn()))
            .await
    }

    /// Takes one of `max` places in `counter`; false when none is left.
    async fn reserve(&self, counter: String, max: usize) -> Result<bool, EngineError> {
        let mut inv = self.invocation(&RESERVE, &[counter]);
        inv.arg(max);
        Ok(self.invoke::<i64>(inv).await? == 1)
    }

    async fn release(&self, counter: String) -> Result<(), EngineError> {
        self.invoke::<i64>(self.invocation(&RELEASE, &[counter]))
            .await
            .map(drop)
    }

    /// Runs a create script within the counter's bound: a place is taken first and given back
    /// when the name existed or the script failed.
    async fn create_counted(
        &self,
        hash: &str,
        counter: String,
        max: usize,
        what: &str,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<bool, EngineError> {
        if !self.reserve(counter.clone(), max).await? {
            // Full: a name that exists is still "exists", not "full".
            if self.exists(hash).await? {
                return Ok(false);
            }
            return Err(EngineError::Limit(format!("{max} {what}")));
        }
        let created = self.invoke::<i64>(inv).await;
        if !matches!(created, Ok(1)) {
            self.release(counter).await?;
        }
        Ok(created? == 1)
    }

    async fn exists(&self, key: &str) -> Result<bool, EngineError> {
        self.shared
            .run(
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async(&mut self.shared.conn()),
            )
            .await
    }

    async fn delete_counted(&self, keys: &[String], counter: String) -> Result<bool, EngineError> {
        let existed = self.invoke::<i64>(self.invocation(&DELETE, keys)).await? == 1;
        if existed {
            self.release(counter).await?;
        }
        Ok(existed)
    }

    async fn read(
        &self,
        keys: &[String],
        view: Option<&[Arc<str>]>,
    ) -> Result<Option<Read>, EngineError> {
        let mut inv = self.invocation(&READ, keys);
        match view {
            None => {
                inv.arg("all");
            }
            Some(users) => {
                inv.arg("view");
                for user in users {
                    inv.arg(&**user);
                }
            }
        }
        parse_read(self.invoke::<Value>(inv).await?)
    }

    async fn read_room(
        &self,
        room: &str,
        view: Option<&[Arc<str>]>,
    ) -> Result<Option<RoomState>, EngineError> {
        match self.read(&self.shared.keys.room(room), view).await? {
            Some((fields, sets)) => room_state(&fields, sets).map(Some),
            None => Ok(None),
        }
    }

    async fn read_user(
        &self,
        user: &str,
        view: Option<&[Arc<str>]>,
    ) -> Result<Option<DirectState>, EngineError> {
        match self.read(&self.shared.keys.user(user), view).await? {
            Some((fields, sets)) => direct_state(&fields, sets).map(Some),
            None => Ok(None),
        }
    }
}

/// Appends lists to a create script's arguments: for each, its size and its names.
fn list_args<'a>(
    inv: &mut redis::ScriptInvocation<'_>,
    lists: impl IntoIterator<Item = &'a Names>,
) {
    for list in lists {
        inv.arg(list.len());
        for name in list {
            inv.arg(&**name);
        }
    }
}

#[async_trait]
impl RoomStore for RedisRooms {
    async fn create_room(&self, room: &str, state: &RoomState) -> Result<bool, EngineError> {
        let mut inv = self.invocation(&CREATE_ROOM, &self.shared.keys.room(room));
        inv.arg(state.owner.as_deref().unwrap_or(""))
            .arg(flag(state.whitelist_only))
            .arg(
                state
                    .history_max_size
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
            )
            .arg(flag(state.notify_userlist))
            .arg(flag(state.notify_access_lists));
        list_args(
            &mut inv,
            [&state.whitelist, &state.blacklist, &state.adminlist],
        );
        let [hash, ..] = self.shared.keys.room(room);
        let counter = self.shared.keys.rooms_count();
        self.create_counted(&hash, counter, self.shared.config.max_rooms, "rooms", inv)
            .await
    }

    async fn delete_room(&self, room: &str) -> Result<bool, EngineError> {
        self.delete_counted(&self.shared.keys.room(room), self.shared.keys.rooms_count())
            .await
    }

    async fn room(&self, room: &str) -> Result<Option<RoomState>, EngineError> {
        self.read_room(room, None).await
    }

    async fn room_view(
        &self,
        room: &str,
        users: &[Arc<str>],
    ) -> Result<Option<RoomState>, EngineError> {
        self.read_room(room, Some(users)).await
    }

    async fn change_room(
        &self,
        room: &str,
        change: &RoomChange,
        expect: Option<u64>,
    ) -> Result<RoomChanged, EngineError> {
        let mut inv = self.invocation(&CHANGE_ROOM, &self.shared.keys.room(room));
        inv.arg(expect.map(|v| v.to_string()).unwrap_or_default());
        let opt = |b: Option<bool>| b.map_or("", flag);
        match change {
            RoomChange::Add { list, names, max } => {
                inv.arg("add").arg(room_list_number(*list)).arg(*max);
                for name in names {
                    inv.arg(&**name);
                }
            }
            RoomChange::Remove { list, names } => {
                inv.arg("rem").arg(room_list_number(*list));
                for name in names {
                    inv.arg(&**name);
                }
            }
            RoomChange::WhitelistOnly(on) => {
                inv.arg("w").arg(flag(*on));
            }
            RoomChange::Owner(owner) => {
                inv.arg("o").arg(owner.as_deref().unwrap_or(""));
            }
            RoomChange::HistoryMaxSize(size) => {
                inv.arg("h")
                    .arg(size.map(|s| s.to_string()).unwrap_or_default());
            }
            RoomChange::Notifications {
                userlist,
                access_lists,
            } => {
                inv.arg("n").arg(opt(*userlist)).arg(opt(*access_lists));
            }
        }
        Ok(match self.invoke::<i64>(inv).await? {
            -1 => RoomChanged::NoRoom,
            -2 => RoomChanged::Stale,
            -3 => RoomChanged::ListFull,
            version => RoomChanged::Done {
                version: u64::try_from(version).map_err(|_| malformed())?,
            },
        })
    }

    async fn add_user(&self, user: &str, state: &DirectState) -> Result<bool, EngineError> {
        let mut inv = self.invocation(&ADD_USER, &self.shared.keys.user(user));
        inv.arg(flag(state.whitelist_only));
        list_args(&mut inv, [&state.whitelist, &state.blacklist]);
        let [hash, ..] = self.shared.keys.user(user);
        let counter = self.shared.keys.users_count();
        self.create_counted(&hash, counter, self.shared.config.max_users, "users", inv)
            .await
    }

    async fn delete_user(&self, user: &str) -> Result<bool, EngineError> {
        self.delete_counted(&self.shared.keys.user(user), self.shared.keys.users_count())
            .await
    }

    async fn user_exists(&self, user: &str) -> Result<bool, EngineError> {
        let [hash, ..] = self.shared.keys.user(user);
        self.exists(&hash).await
    }

    async fn direct(&self, user: &str) -> Result<Option<DirectState>, EngineError> {
        self.read_user(user, None).await
    }

    async fn direct_view(
        &self,
        user: &str,
        users: &[Arc<str>],
    ) -> Result<Option<DirectState>, EngineError> {
        self.read_user(user, Some(users)).await
    }

    async fn change_direct(
        &self,
        user: &str,
        change: &DirectChange,
    ) -> Result<DirectChanged, EngineError> {
        let mut inv = self.invocation(&CHANGE_USER, &self.shared.keys.user(user));
        match change {
            DirectChange::Add { list, names, max } => {
                inv.arg("add").arg(direct_list_number(*list)).arg(*max);
                for name in names {
                    inv.arg(&**name);
                }
            }
            DirectChange::Remove { list, names } => {
                inv.arg("rem").arg(direct_list_number(*list));
                for name in names {
                    inv.arg(&**name);
                }
            }
            DirectChange::WhitelistOnly(on) => {
                inv.arg("w").arg(flag(*on));
            }
        }
        Ok(match self.invoke::<i64>(inv).await? {
            -1 => DirectChanged::NoUser,
            -3 => DirectChanged::ListFull,
            _ => DirectChanged::Done,
        })
    }
}

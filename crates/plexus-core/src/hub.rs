//! The node-local hub: connections, users and channel subscribers, sharded for concurrency.
//!
//! Shape borrowed from Centrifuge's hub: 64 shards, each a `Mutex<HashMap>`. Delivery copies the
//! subscriber list under the shard lock and pushes to the connections' queues after releasing
//! it, so a fan-out never holds a lock while encoding or queueing.

use crate::connection::Connection;
use crate::ids::ConnId;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

struct Sharded<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }
}

type ConnMap = HashMap<u64, Arc<Connection>>;

/// A channel's local subscribers, and the last position delivered to them.
#[derive(Default)]
struct ChannelSubs {
    conns: ConnMap,
    last: Option<(Arc<str>, u64)>,
}

/// Whether a publication continues the positions this node delivered for its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The next offset of the same epoch, or the first publication this node sees.
    Continuous,
    /// An offset was skipped or the epoch changed: publications were lost on the way.
    Gap,
    /// An offset at or below the last delivered one (a duplicate); not delivered again.
    Stale,
}

/// Connections by id, by user, and by channel.
pub struct Hub {
    conns: Sharded<u64, Arc<Connection>>,
    users: Sharded<Arc<str>, ConnMap>,
    channels: Sharded<Arc<str>, ChannelSubs>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            conns: Sharded::new(),
            users: Sharded::new(),
            channels: Sharded::new(),
        }
    }

    pub fn add_connection(&self, conn: Arc<Connection>) {
        self.conns
            .shard(&conn.id.seq)
            .lock()
            .unwrap()
            .insert(conn.id.seq, conn);
    }

    pub fn remove_connection(&self, id: ConnId) -> Option<Arc<Connection>> {
        self.conns.shard(&id.seq).lock().unwrap().remove(&id.seq)
    }

    pub fn connection(&self, id: ConnId) -> Option<Arc<Connection>> {
        self.conns
            .shard(&id.seq)
            .lock()
            .unwrap()
            .get(&id.seq)
            .cloned()
    }

    /// Registers `conn` under `user`; returns the user's connection count after adding, or
    /// `Err(count)` when the user already holds `max` (0 = unlimited) connections.
    pub fn add_user_connection(
        &self,
        user: &Arc<str>,
        conn: &Arc<Connection>,
        max: usize,
    ) -> Result<usize, usize> {
        let mut shard = self.users.shard(&**user).lock().unwrap();
        let conns = shard.entry(user.clone()).or_default();
        if max > 0 && conns.len() >= max {
            return Err(conns.len());
        }
        conns.insert(conn.id.seq, conn.clone());
        Ok(conns.len())
    }

    pub fn remove_user_connection(&self, user: &str, id: ConnId) {
        let mut shard = self.users.shard(user).lock().unwrap();
        if let Some(conns) = shard.get_mut(user) {
            conns.remove(&id.seq);
            if conns.is_empty() {
                shard.remove(user);
            }
        }
    }

    pub fn user_connections(&self, user: &str) -> Vec<Arc<Connection>> {
        let shard = self.users.shard(user).lock().unwrap();
        shard
            .get(user)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a subscriber; returns true when it is the channel's first on this node.
    pub fn subscribe(&self, channel: &Arc<str>, conn: &Arc<Connection>) -> bool {
        let mut shard = self.channels.shard(&**channel).lock().unwrap();
        let subs = shard.entry(channel.clone()).or_default();
        subs.conns.insert(conn.id.seq, conn.clone());
        subs.conns.len() == 1
    }

    /// Removes a subscriber; returns true when the channel has no subscriber left on this node.
    pub fn unsubscribe(&self, channel: &str, id: ConnId) -> bool {
        let mut shard = self.channels.shard(channel).lock().unwrap();
        let Some(subs) = shard.get_mut(channel) else {
            return false;
        };
        if subs.conns.remove(&id.seq).is_none() {
            return false;
        }
        if subs.conns.is_empty() {
            shard.remove(channel);
            return true;
        }
        false
    }

    pub fn subscribers(&self, channel: &str) -> Vec<Arc<Connection>> {
        let shard = self.channels.shard(channel).lock().unwrap();
        shard
            .get(channel)
            .map(|c| c.conns.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscribers a publication goes to, and whether it continues the channel's delivered
    /// positions (which it then records).
    pub fn subscribers_at(
        &self,
        channel: &str,
        epoch: &Arc<str>,
        offset: u64,
    ) -> (Vec<Arc<Connection>>, Continuity) {
        let mut shard = self.channels.shard(channel).lock().unwrap();
        let Some(subs) = shard.get_mut(channel) else {
            return (Vec::new(), Continuity::Continuous);
        };
        let continuity = match &subs.last {
            Some((e, last)) if e == epoch && offset <= *last => Continuity::Stale,
            Some((e, last)) if e != epoch || offset != last + 1 => Continuity::Gap,
            _ => Continuity::Continuous,
        };
        if continuity != Continuity::Stale {
            subs.last = Some((epoch.clone(), offset));
        }
        (subs.conns.values().cloned().collect(), continuity)
    }

    /// The last position delivered for a channel, if any.
    pub fn last_position(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        self.channels
            .shard(channel)
            .lock()
            .unwrap()
            .get(channel)
            .and_then(|c| c.last.clone())
    }

    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels
            .shard(channel)
            .lock()
            .unwrap()
            .get(channel)
            .map_or(0, |c| c.conns.len())
    }

    /// Channels with at least one subscriber on this node.
    pub fn channels(&self) -> Vec<Arc<str>> {
        self.channels
            .shards
            .iter()
            .flat_map(|s| s.lock().unwrap().keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Every connection on this node.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.conns
            .shards
            .iter()
            .flat_map(|s| s.lock().unwrap().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.conns
            .shards
            .iter()
            .map(|s| s.lock().unwrap().len())
            .sum()
    }

    /// Every user with a connection on this node.
    pub fn users(&self) -> Vec<Arc<str>> {
        self.users
            .shards
            .iter()
            .flat_map(|s| s.lock().unwrap().keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    pub fn user_count(&self) -> usize {
        self.users
            .shards
            .iter()
            .map(|s| s.lock().unwrap().len())
            .sum()
    }
}

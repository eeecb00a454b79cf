//! The in-memory engine: one process, nothing to install.

use crate::engine::{
    Broker, Control, Engine, EngineError, EngineHandler, HistoryPage, HistoryQuery, KvStore,
    PresenceEntry, PresenceStats, PresenceStore, PublishOptions,
};
use crate::ids::ConnId;
use crate::model::{ClientInfo, Publication, StreamPosition};
use async_trait::async_trait;
use bytes::Bytes;
use plexus_protocol::Payload;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bounds of the in-memory engine.
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// A channel's offset and epoch are forgotten this long after its last publication (and
    /// after its history expired); the next publish then starts a new epoch.
    pub stream_meta_ttl: Duration,
    /// Channels whose position is kept at once; a publish to a new channel beyond it fails.
    pub max_streams: usize,
    /// Keys the key/value store holds at once.
    pub max_kv_keys: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            stream_meta_ttl: Duration::from_secs(24 * 3600),
            max_streams: 1_000_000,
            max_kv_keys: 1_000_000,
        }
    }
}

/// Builds the in-memory engine.
pub fn memory_engine(options: MemoryOptions) -> Engine {
    Engine {
        broker: Arc::new(MemoryBroker::new(options.clone())),
        presence: Arc::new(MemoryPresence::default()),
        kv: Arc::new(MemoryKv::new(options.max_kv_keys)),
    }
}

fn new_epoch() -> Arc<str> {
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        s.push(fastrand::alphanumeric());
    }
    Arc::from(s)
}

struct Stream {
    offset: u64,
    epoch: Arc<str>,
    /// Kept publications with their expiry, oldest first.
    items: VecDeque<(Publication, Instant)>,
    last_publish: Instant,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            offset: 0,
            epoch: new_epoch(),
            items: VecDeque::new(),
            last_publish: Instant::now(),
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }

    fn trim(&mut self, now: Instant) {
        while self
            .items
            .front()
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.items.pop_front();
        }
    }
}

/// Publications, history and control for one process.
pub struct MemoryBroker {
    options: MemoryOptions,
    streams: Mutex<HashMap<Arc<str>, Arc<Mutex<Stream>>>>,
    handler: OnceLock<Arc<dyn EngineHandler>>,
}

impl MemoryBroker {
    pub fn new(options: MemoryOptions) -> MemoryBroker {
        MemoryBroker {
            options,
            streams: Mutex::new(HashMap::new()),
            handler: OnceLock::new(),
        }
    }

    fn stream(
        &self,
        channel: &str,
        create: bool,
    ) -> Result<Option<Arc<Mutex<Stream>>>, EngineError> {
        let mut streams = self.streams.lock().unwrap();
        if let Some(s) = streams.get(channel) {
            return Ok(Some(s.clone()));
        }
        if !create {
            return Ok(None);
        }
        if streams.len() >= self.options.max_streams {
            self.evict_expired(&mut streams);
            if streams.len() >= self.options.max_streams {
                return Err(EngineError::Limit(format!(
                    "{} channels",
                    self.options.max_streams
                )));
            }
        }
        let s = Arc::new(Mutex::new(Stream::new()));
        streams.insert(Arc::from(channel), s.clone());
        Ok(Some(s))
    }

    fn evict_expired(&self, streams: &mut HashMap<Arc<str>, Arc<Mutex<Stream>>>) {
        let now = Instant::now();
        let ttl = self.options.stream_meta_ttl;
        streams.retain(|_, s| {
            let mut s = s.lock().unwrap();
            s.trim(now);
            !s.items.is_empty() || now.duration_since(s.last_publish) < ttl
        });
    }

    /// Forgets channels whose history and meta expired. Called periodically by `run`.
    pub fn sweep(&self) {
        let mut streams = self.streams.lock().unwrap();
        self.evict_expired(&mut streams);
    }

    fn handler(&self) -> &Arc<dyn EngineHandler> {
        self.handler.get().expect("Broker::run was not called")
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn run(&self, handler: Arc<dyn EngineHandler>) {
        let _ = self.handler.set(handler);
    }

    async fn publish(
        &self,
        channel: &str,
        payload: Payload,
        publisher: Option<ClientInfo>,
        options: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let stream = self.stream(channel, true)?.expect("created");
        let mut s = stream.lock().unwrap();
        let now = Instant::now();
        s.offset += 1;
        s.last_publish = now;
        let publication = Publication {
            channel: Arc::from(channel),
            offset: s.offset,
            epoch: s.epoch.clone(),
            payload,
            publisher,
        };
        if let Some(history) = options.history.filter(|h| h.size > 0) {
            s.items.push_back((publication.clone(), now + history.ttl));
            while s.items.len() > history.size {
                s.items.pop_front();
            }
            s.trim(now);
        }
        // Delivered under the stream lock: publications of one channel reach the hub in offset
        // order even with concurrent publishers.
        self.handler()
            .publication(&publication, options.exclude.as_deref());
        Ok(s.position())
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
        Ok(self
            .stream(channel, true)?
            .expect("created")
            .lock()
            .unwrap()
            .position())
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, EngineError> {
        let stream = self.stream(channel, true)?.expect("created");
        let mut s = stream.lock().unwrap();
        s.trim(Instant::now());
        let mut publications: Vec<Publication> = Vec::new();
        if query.limit > 0 {
            let since = query.since.unwrap_or(0);
            let kept = s.items.iter().map(|(p, _)| p).filter(|p| p.offset > since);
            publications = if query.reverse {
                kept.rev().take(query.limit).cloned().collect()
            } else {
                kept.take(query.limit).cloned().collect()
            };
        }
        Ok(HistoryPage {
            publications,
            position: s.position(),
        })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        if let Some(stream) = self.stream(channel, false)? {
            stream.lock().unwrap().items.clear();
        }
        Ok(())
    }

    async fn control(&self, control: Control) -> Result<(), EngineError> {
        self.handler().control(control);
        Ok(())
    }

    async fn remote_connection_exists(&self, _conn: ConnId) -> Result<bool, EngineError> {
        Ok(false)
    }
}

#[derive(Default)]
struct ChannelPresence {
    members: HashMap<ConnId, PresenceEntry>,
    /// Connections per user, so unique-user counts are O(1).
    users: HashMap<Arc<str>, usize>,
}

/// Presence for one process.
#[derive(Default)]
pub struct MemoryPresence {
    channels: Mutex<HashMap<Arc<str>, ChannelPresence>>,
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn add(&self, channel: &str, entry: PresenceEntry) -> Result<(), EngineError> {
        let mut channels = self.channels.lock().unwrap();
        let ch = channels.entry(Arc::from(channel)).or_default();
        if let Some(user) = &entry.user
            && !ch.members.contains_key(&entry.conn)
        {
            *ch.users.entry(user.clone()).or_default() += 1;
        }
        ch.members.insert(entry.conn, entry);
        Ok(())
    }

    async fn remove(&self, channel: &str, conn: ConnId) -> Result<(), EngineError> {
        let mut channels = self.channels.lock().unwrap();
        let Some(ch) = channels.get_mut(channel) else {
            return Ok(());
        };
        if let Some(entry) = ch.members.remove(&conn)
            && let Some(user) = entry.user
            && let Some(n) = ch.users.get_mut(&user)
        {
            *n -= 1;
            if *n == 0 {
                ch.users.remove(&user);
            }
        }
        if ch.members.is_empty() {
            channels.remove(channel);
        }
        Ok(())
    }

    async fn get(&self, channel: &str) -> Result<Vec<PresenceEntry>, EngineError> {
        let channels = self.channels.lock().unwrap();
        Ok(channels
            .get(channel)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let channels = self.channels.lock().unwrap();
        Ok(channels
            .get(channel)
            .map(|c| PresenceStats {
                connections: c.members.len(),
                users: c.users.len(),
            })
            .unwrap_or_default())
    }
}

/// Key/value state for one process.
pub struct MemoryKv {
    max_keys: usize,
    entries: Mutex<HashMap<String, (Bytes, Option<Instant>)>>,
}

impl MemoryKv {
    pub fn new(max_keys: usize) -> MemoryKv {
        MemoryKv {
            max_keys,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, EngineError> {
        let mut entries = self.entries.lock().unwrap();
        match entries.get(key) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                entries.remove(key);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), EngineError> {
        let mut entries = self.entries.lock().unwrap();
        if !entries.contains_key(key) && entries.len() >= self.max_keys {
            let now = Instant::now();
            entries.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
            if entries.len() >= self.max_keys {
                return Err(EngineError::Limit(format!("{} keys", self.max_keys)));
            }
        }
        entries.insert(key.to_owned(), (value, ttl.map(|t| Instant::now() + t)));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, EngineError> {
        Ok(self.entries.lock().unwrap().remove(key).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HistoryOptions;
    use crate::model::Exclude;

    #[derive(Default)]
    struct Collect(Mutex<Vec<u64>>);
    impl EngineHandler for Collect {
        fn publication(&self, p: &Publication, _: Option<&Exclude>) {
            self.0.lock().unwrap().push(p.offset);
        }
        fn control(&self, _: Control) {}
    }

    #[tokio::test]
    async fn offsets_grow_by_one_and_history_is_bounded() {
        let broker = MemoryBroker::new(MemoryOptions::default());
        let seen = Arc::new(Collect::default());
        broker.run(seen.clone());
        let history = Some(HistoryOptions {
            size: 3,
            ttl: Duration::from_secs(60),
        });
        for i in 0..5 {
            let pos = broker
                .publish(
                    "c",
                    Payload::json(&i).unwrap(),
                    None,
                    PublishOptions {
                        history,
                        exclude: None,
                    },
                )
                .await
                .unwrap();
            assert_eq!(pos.offset, i + 1);
        }
        assert_eq!(*seen.0.lock().unwrap(), vec![1, 2, 3, 4, 5]);
        let page = broker
            .history(
                "c",
                HistoryQuery {
                    since: None,
                    limit: 10,
                    reverse: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let page = broker
            .history(
                "c",
                HistoryQuery {
                    since: Some(3),
                    limit: 1,
                    reverse: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(page.position.offset, 5);
    }

    #[tokio::test]
    async fn stream_limit_is_enforced() {
        let broker = MemoryBroker::new(MemoryOptions {
            max_streams: 2,
            ..Default::default()
        });
        broker.run(Arc::new(Collect::default()));
        for ch in ["a", "b"] {
            broker
                .publish(ch, Payload::null(), None, PublishOptions::default())
                .await
                .unwrap();
        }
        let err = broker
            .publish("c", Payload::null(), None, PublishOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Limit(_)));
    }

    #[tokio::test]
    async fn presence_counts_unique_users() {
        let p = MemoryPresence::default();
        let node = crate::ids::NodeId(1);
        let entry = |seq, user: &str| PresenceEntry {
            conn: ConnId { node, seq },
            user: Some(Arc::from(user)),
            info: None,
        };
        p.add("c", entry(1, "ann")).await.unwrap();
        p.add("c", entry(2, "ann")).await.unwrap();
        p.add("c", entry(2, "ann")).await.unwrap();
        p.add("c", entry(3, "bob")).await.unwrap();
        assert_eq!(
            p.stats("c").await.unwrap(),
            PresenceStats {
                connections: 3,
                users: 2
            }
        );
        p.remove("c", ConnId { node, seq: 1 }).await.unwrap();
        p.remove("c", ConnId { node, seq: 3 }).await.unwrap();
        assert_eq!(
            p.stats("c").await.unwrap(),
            PresenceStats {
                connections: 1,
                users: 1
            }
        );
    }

    #[tokio::test]
    async fn kv_bound_and_expiry() {
        let kv = MemoryKv::new(1);
        kv.set(
            "a",
            Bytes::from_static(b"1"),
            Some(Duration::from_millis(1)),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("a").await.unwrap(), None);
        kv.set("b", Bytes::from_static(b"2"), None).await.unwrap();
        assert!(matches!(
            kv.set("c", Bytes::new(), None).await,
            Err(EngineError::Limit(_))
        ));
        assert!(kv.delete("b").await.unwrap());
    }
}

//! The in-memory engine: one process, nothing to install.

use crate::engine::{
    Broker, Control, DirectChange, DirectChanged, Engine, EngineError, EngineHandler, HistoryPage,
    HistoryQuery, KvStore, Mail, MailboxStore, PresenceEntry, PresenceStats, PresenceStore,
    PublishOptions, RecordPut, RecordPutOutcome, RecordStore, RoomChange, RoomChanged, RoomStore,
};
use crate::ids::ConnId;
use crate::model::{ClientInfo, Publication, StreamPosition};
use crate::records::{Record, Written, record_channel};
use crate::rooms::{DirectState, Names, RoomState, list_fits};
use async_trait::async_trait;
use bytes::Bytes;
use plexus_protocol::Payload;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Bounds of the in-memory engine.
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// A channel's offset and epoch may be forgotten this long after its last publication (and
    /// after its history expired): when the table is full, such channels are evicted to make
    /// room, and their next publish starts a new epoch.
    pub stream_meta_ttl: Duration,
    /// Channels whose position is kept at once; a publish to a new channel beyond it, with no
    /// expired channel to evict, fails.
    pub max_streams: usize,
    /// Keys the key/value store holds at once.
    pub max_kv_keys: usize,
    /// (channel, user) pairs whose last-seen time is remembered; the oldest are forgotten first.
    pub max_last_seen: usize,
    /// Users with an inbox at once.
    pub max_mailboxes: usize,
    /// Rooms that exist at once ([`RoomStore`]).
    pub max_rooms: usize,
    /// Users that exist at once ([`RoomStore`]).
    pub max_users: usize,
    /// Work queues that exist at once ([`crate::engine::WorkQueue`]).
    pub max_queues: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            stream_meta_ttl: Duration::from_secs(24 * 3600),
            max_streams: 1_000_000,
            max_kv_keys: 1_000_000,
            max_last_seen: 1_000_000,
            max_mailboxes: 1_000_000,
            max_rooms: 1_000_000,
            max_users: 1_000_000,
            max_queues: 1024,
        }
    }
}

/// Builds the in-memory engine.
pub fn memory_engine(options: MemoryOptions) -> Engine {
    let broker = Arc::new(MemoryBroker::new(options.clone()));
    Engine {
        records: Arc::new(MemoryRecords::new(broker.clone())),
        broker,
        presence: Arc::new(MemoryPresence::new(options.max_last_seen)),
        kv: Arc::new(MemoryKv::new(options.max_kv_keys)),
        mailbox: Arc::new(MemoryMailbox::new(options.max_mailboxes)),
        rooms: Arc::new(MemoryRooms::new(options.max_rooms, options.max_users)),
        queues: Arc::new(crate::queue::MemoryQueues::new(options.max_queues)),
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

    fn handler(&self) -> &Arc<dyn EngineHandler> {
        self.handler.get().expect("Broker::run was not called")
    }
}

/// A record as the in-memory engine keeps it.
struct StoredRecord {
    value: serde_json::Value,
    version: u64,
    epoch: Arc<str>,
}

/// Records of one process: a map per namespace under one lock, changes delivered under it (so
/// in version order).
pub struct MemoryRecords {
    broker: Arc<MemoryBroker>,
    namespaces: Mutex<HashMap<String, HashMap<Arc<str>, StoredRecord>>>,
}

impl MemoryRecords {
    pub fn new(broker: Arc<MemoryBroker>) -> MemoryRecords {
        MemoryRecords {
            broker,
            namespaces: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RecordStore for MemoryRecords {
    async fn get(&self, namespace: &str, id: &str) -> Result<Option<Record>, EngineError> {
        let namespaces = self.namespaces.lock().unwrap();
        Ok(namespaces.get(namespace).and_then(|ns| {
            ns.get(id).map(|r| Record {
                id: Arc::from(id),
                value: r.value.clone(),
                version: r.version,
                epoch: r.epoch.clone(),
            })
        }))
    }

    async fn put(&self, put: RecordPut) -> Result<RecordPutOutcome, EngineError> {
        let mut namespaces = self.namespaces.lock().unwrap();
        let ns = namespaces.entry(put.namespace.clone()).or_default();
        let current = ns.get(&put.id).map(|r| (r.version, r.epoch.clone()));
        if current != put.expect {
            return Ok(RecordPutOutcome::Conflict {
                version: current.map_or(0, |(v, _)| v),
            });
        }
        let (version, epoch) = match (current, &put.change.v) {
            (Some((version, epoch)), None) => {
                ns.remove(&put.id);
                (version + 1, epoch)
            }
            (None, None) => return Ok(RecordPutOutcome::Conflict { version: 0 }),
            (current, Some(value)) => {
                if current.is_none() && ns.len() >= put.max_records {
                    return Ok(RecordPutOutcome::Full);
                }
                let (version, epoch) =
                    current.map_or_else(|| (1, new_epoch()), |(v, e)| (v + 1, e));
                ns.insert(
                    put.id.clone(),
                    StoredRecord {
                        value: value.clone(),
                        version,
                        epoch: epoch.clone(),
                    },
                );
                (version, epoch)
            }
        };
        let publication = Publication {
            channel: Arc::from(record_channel(&put.id)),
            offset: version,
            epoch: epoch.clone(),
            payload: put.change.payload(),
            publisher: None,
            event: None,
        };
        // Delivered under the lock: a record's changes reach the hub in version order.
        self.broker.handler().publication(&publication, None);
        Ok(RecordPutOutcome::Done(Written { version, epoch }))
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn run(&self, _node: crate::ids::NodeId, handler: Arc<dyn EngineHandler>) {
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
            event: options.event,
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
pub struct MemoryPresence {
    channels: Mutex<HashMap<Arc<str>, ChannelPresence>>,
    last_seen: Mutex<LastSeen>,
}

/// When each (channel, user) was last seen, bounded: the oldest entries are forgotten first.
struct LastSeen {
    max: usize,
    at: HashMap<(Arc<str>, Arc<str>), (SystemTime, u64)>,
    order: std::collections::BTreeMap<u64, (Arc<str>, Arc<str>)>,
    tick: u64,
}

impl LastSeen {
    fn record(&mut self, channel: &str, user: &Arc<str>) {
        self.tick += 1;
        let key = (Arc::from(channel), user.clone());
        if let Some((_, old)) = self.at.insert(key.clone(), (SystemTime::now(), self.tick)) {
            self.order.remove(&old);
        }
        self.order.insert(self.tick, key);
        while self.at.len() > self.max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.at.remove(&oldest);
        }
    }
}

impl MemoryPresence {
    pub fn new(max_last_seen: usize) -> MemoryPresence {
        MemoryPresence {
            channels: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(LastSeen {
                max: max_last_seen.max(1),
                at: HashMap::new(),
                order: Default::default(),
                tick: 0,
            }),
        }
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn add(&self, channel: &str, entry: PresenceEntry) -> Result<bool, EngineError> {
        let mut channels = self.channels.lock().unwrap();
        let ch = channels.entry(Arc::from(channel)).or_default();
        // A refresh of a present connection is never a first.
        let mut first = !ch.members.contains_key(&entry.conn);
        if let Some(user) = &entry.user
            && first
        {
            let n = ch.users.entry(user.clone()).or_default();
            *n += 1;
            first = *n == 1;
        }
        ch.members.insert(entry.conn, entry);
        Ok(first)
    }

    async fn remove(&self, channel: &str, conn: ConnId) -> Result<bool, EngineError> {
        let mut channels = self.channels.lock().unwrap();
        let Some(ch) = channels.get_mut(channel) else {
            return Ok(false);
        };
        let Some(entry) = ch.members.remove(&conn) else {
            return Ok(false);
        };
        let mut last = true;
        if let Some(user) = entry.user
            && let Some(n) = ch.users.get_mut(&user)
        {
            *n -= 1;
            last = *n == 0;
            if last {
                ch.users.remove(&user);
                self.last_seen.lock().unwrap().record(channel, &user);
            }
        }
        if ch.members.is_empty() {
            channels.remove(channel);
        }
        Ok(last)
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

    async fn set_state(
        &self,
        channel: &str,
        conn: ConnId,
        state: Option<Payload>,
    ) -> Result<bool, EngineError> {
        let mut channels = self.channels.lock().unwrap();
        match channels
            .get_mut(channel)
            .and_then(|c| c.members.get_mut(&conn))
        {
            Some(entry) => {
                entry.state = state;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn last_seen(
        &self,
        channel: &str,
        user: &str,
    ) -> Result<Option<SystemTime>, EngineError> {
        let seen = self.last_seen.lock().unwrap();
        Ok(seen
            .at
            .get(&(Arc::from(channel), Arc::from(user)))
            .map(|(t, _)| *t))
    }
}

struct Inbox {
    next_seq: u64,
    messages: VecDeque<(Mail, Instant)>,
    registered_until: Instant,
}

/// Durable inboxes for one process.
pub struct MemoryMailbox {
    max_users: usize,
    inboxes: Mutex<HashMap<Arc<str>, Inbox>>,
}

impl MemoryMailbox {
    pub fn new(max_users: usize) -> MemoryMailbox {
        MemoryMailbox {
            max_users,
            inboxes: Mutex::new(HashMap::new()),
        }
    }

    fn live<'a>(inboxes: &'a mut HashMap<Arc<str>, Inbox>, user: &str) -> Option<&'a mut Inbox> {
        let now = Instant::now();
        if inboxes.get(user).is_some_and(|i| i.registered_until <= now) {
            inboxes.remove(user);
        }
        let inbox = inboxes.get_mut(user)?;
        inbox.messages.retain(|(_, expires)| *expires > now);
        Some(inbox)
    }
}

#[async_trait]
impl MailboxStore for MemoryMailbox {
    async fn register(&self, user: &str, lifetime: Duration) -> Result<(), EngineError> {
        let mut inboxes = self.inboxes.lock().unwrap();
        let until = Instant::now() + lifetime;
        if let Some(inbox) = Self::live(&mut inboxes, user) {
            inbox.registered_until = inbox.registered_until.max(until);
            return Ok(());
        }
        if inboxes.len() >= self.max_users {
            let now = Instant::now();
            inboxes.retain(|_, i| i.registered_until > now);
            if inboxes.len() >= self.max_users {
                return Err(EngineError::Limit(format!("{} mailboxes", self.max_users)));
            }
        }
        inboxes.insert(
            Arc::from(user),
            Inbox {
                next_seq: 1,
                messages: VecDeque::new(),
                registered_until: until,
            },
        );
        Ok(())
    }

    async fn is_registered(&self, user: &str) -> Result<bool, EngineError> {
        Ok(Self::live(&mut self.inboxes.lock().unwrap(), user).is_some())
    }

    async fn push(
        &self,
        user: &str,
        payload: Payload,
        ttl: Duration,
        max_messages: usize,
    ) -> Result<Mail, EngineError> {
        let mut inboxes = self.inboxes.lock().unwrap();
        let Some(inbox) = Self::live(&mut inboxes, user) else {
            return Err(EngineError::Limit(format!("user `{user}` has no mailbox")));
        };
        if inbox.messages.len() >= max_messages {
            return Err(EngineError::Limit(format!(
                "mailbox of `{user}` is full ({max_messages} messages)"
            )));
        }
        let sent_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mail = Mail {
            seq: inbox.next_seq,
            payload,
            sent_ms,
        };
        inbox.next_seq += 1;
        inbox
            .messages
            .push_back((mail.clone(), Instant::now() + ttl));
        Ok(mail)
    }

    async fn pending(&self, user: &str) -> Result<Vec<Mail>, EngineError> {
        let mut inboxes = self.inboxes.lock().unwrap();
        Ok(Self::live(&mut inboxes, user)
            .map(|i| i.messages.iter().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default())
    }

    async fn ack(&self, user: &str, seq: u64) -> Result<u64, EngineError> {
        let mut inboxes = self.inboxes.lock().unwrap();
        let Some(inbox) = Self::live(&mut inboxes, user) else {
            return Ok(0);
        };
        while inbox.messages.front().is_some_and(|(m, _)| m.seq <= seq) {
            inbox.messages.pop_front();
        }
        Ok(inbox.messages.len() as u64)
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

    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, EngineError> {
        let entries = self.entries.lock().unwrap();
        let now = Instant::now();
        let mut found: Vec<(String, Bytes)> = entries
            .iter()
            .filter(|(k, (_, exp))| k.starts_with(prefix) && exp.is_none_or(|e| e > now))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        Ok(found)
    }
}

/// Rooms and users for one process.
pub struct MemoryRooms {
    max_rooms: usize,
    max_users: usize,
    rooms: Mutex<HashMap<Arc<str>, RoomState>>,
    users: Mutex<HashMap<Arc<str>, DirectState>>,
}

impl MemoryRooms {
    pub fn new(max_rooms: usize, max_users: usize) -> MemoryRooms {
        MemoryRooms {
            max_rooms,
            max_users,
            rooms: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        }
    }
}

/// Adds `names` to `list` if the names already there plus the new ones fit in `max`.
fn add_names(list: &mut Names, names: &[Arc<str>], max: usize) -> bool {
    let new: Names = names
        .iter()
        .filter(|n| !list.contains(&***n))
        .cloned()
        .collect();
    if !list_fits(list.len(), new.len(), max) {
        return false;
    }
    list.extend(new);
    true
}

fn remove_names(list: &mut Names, names: &[Arc<str>]) {
    for name in names {
        list.remove(name);
    }
}

/// `list` restricted to `users`.
fn restrict(list: &Names, users: &[Arc<str>]) -> Names {
    users
        .iter()
        .filter(|u| list.contains(&***u))
        .cloned()
        .collect()
}

#[async_trait]
impl RoomStore for MemoryRooms {
    async fn create_room(&self, room: &str, state: &RoomState) -> Result<bool, EngineError> {
        let mut rooms = self.rooms.lock().unwrap();
        if rooms.contains_key(room) {
            return Ok(false);
        }
        if rooms.len() >= self.max_rooms {
            return Err(EngineError::Limit(format!("{} rooms", self.max_rooms)));
        }
        let mut state = state.clone();
        state.version = 1;
        rooms.insert(Arc::from(room), state);
        Ok(true)
    }

    async fn delete_room(&self, room: &str) -> Result<bool, EngineError> {
        Ok(self.rooms.lock().unwrap().remove(room).is_some())
    }

    async fn room(&self, room: &str) -> Result<Option<RoomState>, EngineError> {
        Ok(self.rooms.lock().unwrap().get(room).cloned())
    }

    async fn room_view(
        &self,
        room: &str,
        users: &[Arc<str>],
    ) -> Result<Option<RoomState>, EngineError> {
        let rooms = self.rooms.lock().unwrap();
        Ok(rooms.get(room).map(|s| RoomState {
            owner: s.owner.clone(),
            whitelist: restrict(&s.whitelist, users),
            blacklist: restrict(&s.blacklist, users),
            adminlist: restrict(&s.adminlist, users),
            ..*s
        }))
    }

    async fn change_room(
        &self,
        room: &str,
        change: &RoomChange,
        expect: Option<u64>,
    ) -> Result<RoomChanged, EngineError> {
        let mut rooms = self.rooms.lock().unwrap();
        let Some(state) = rooms.get_mut(room) else {
            return Ok(RoomChanged::NoRoom);
        };
        if expect.is_some_and(|v| v != state.version) {
            return Ok(RoomChanged::Stale);
        }
        match change {
            RoomChange::Add { list, names, max } => {
                if !add_names(state.list_mut(*list), names, *max) {
                    return Ok(RoomChanged::ListFull);
                }
            }
            RoomChange::Remove { list, names } => remove_names(state.list_mut(*list), names),
            RoomChange::WhitelistOnly(on) => state.whitelist_only = *on,
            RoomChange::Owner(owner) => state.owner = owner.clone(),
            RoomChange::HistoryMaxSize(size) => state.history_max_size = *size,
            RoomChange::Notifications {
                userlist,
                access_lists,
            } => {
                state.notify_userlist = userlist.unwrap_or(state.notify_userlist);
                state.notify_access_lists = access_lists.unwrap_or(state.notify_access_lists);
            }
        }
        state.version += 1;
        Ok(RoomChanged::Done {
            version: state.version,
        })
    }

    async fn add_user(&self, user: &str, state: &DirectState) -> Result<bool, EngineError> {
        let mut users = self.users.lock().unwrap();
        if users.contains_key(user) {
            return Ok(false);
        }
        if users.len() >= self.max_users {
            return Err(EngineError::Limit(format!("{} users", self.max_users)));
        }
        users.insert(Arc::from(user), state.clone());
        Ok(true)
    }

    async fn delete_user(&self, user: &str) -> Result<bool, EngineError> {
        Ok(self.users.lock().unwrap().remove(user).is_some())
    }

    async fn user_exists(&self, user: &str) -> Result<bool, EngineError> {
        Ok(self.users.lock().unwrap().contains_key(user))
    }

    async fn direct(&self, user: &str) -> Result<Option<DirectState>, EngineError> {
        Ok(self.users.lock().unwrap().get(user).cloned())
    }

    async fn direct_view(
        &self,
        user: &str,
        users: &[Arc<str>],
    ) -> Result<Option<DirectState>, EngineError> {
        Ok(self.users.lock().unwrap().get(user).map(|s| DirectState {
            whitelist: restrict(&s.whitelist, users),
            blacklist: restrict(&s.blacklist, users),
            whitelist_only: s.whitelist_only,
        }))
    }

    async fn change_direct(
        &self,
        user: &str,
        change: &DirectChange,
    ) -> Result<DirectChanged, EngineError> {
        let mut users = self.users.lock().unwrap();
        let Some(state) = users.get_mut(user) else {
            return Ok(DirectChanged::NoUser);
        };
        match change {
            DirectChange::Add { list, names, max } => {
                if !add_names(state.list_mut(*list), names, *max) {
                    return Ok(DirectChanged::ListFull);
                }
            }
            DirectChange::Remove { list, names } => remove_names(state.list_mut(*list), names),
            DirectChange::WhitelistOnly(on) => state.whitelist_only = *on,
        }
        Ok(DirectChanged::Done)
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
        broker.run(crate::ids::NodeId(1), seen.clone());
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
                        event: None,
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
    async fn a_full_table_evicts_idle_channels_which_then_start_a_new_epoch() {
        let options = MemoryOptions {
            max_streams: 1,
            stream_meta_ttl: Duration::from_millis(1),
            ..Default::default()
        };
        let broker = MemoryBroker::new(options);
        broker.run(crate::ids::NodeId(1), Arc::new(Collect::default()));
        let first = broker
            .publish("a", Payload::null(), None, PublishOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        broker
            .publish("b", Payload::null(), None, PublishOptions::default())
            .await
            .unwrap();
        let again = broker.position("a").await;
        assert!(
            again.is_err(),
            "b now holds the only slot, and it is not idle"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = broker
            .publish("a", Payload::null(), None, PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(again.offset, 1);
        assert_ne!(
            again.epoch, first.epoch,
            "a forgotten channel starts a new epoch"
        );
    }

    #[tokio::test]
    async fn stream_limit_is_enforced() {
        let broker = MemoryBroker::new(MemoryOptions {
            max_streams: 2,
            ..Default::default()
        });
        broker.run(crate::ids::NodeId(1), Arc::new(Collect::default()));
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
        let p = MemoryPresence::new(10);
        let node = crate::ids::NodeId(1);
        let entry = |seq, user: &str| PresenceEntry {
            conn: ConnId { node, seq },
            user: Some(Arc::from(user)),
            info: None,
            state: None,
        };
        assert!(
            p.add("c", entry(1, "ann")).await.unwrap(),
            "ann's first connection"
        );
        assert!(!p.add("c", entry(2, "ann")).await.unwrap());
        assert!(!p.add("c", entry(2, "ann")).await.unwrap(), "idempotent");
        assert!(p.add("c", entry(3, "bob")).await.unwrap());
        assert_eq!(
            p.stats("c").await.unwrap(),
            PresenceStats {
                connections: 3,
                users: 2
            }
        );
        assert!(
            !p.remove("c", ConnId { node, seq: 1 }).await.unwrap(),
            "ann still has a connection"
        );
        assert!(
            p.remove("c", ConnId { node, seq: 3 }).await.unwrap(),
            "bob's last"
        );
        assert_eq!(
            p.stats("c").await.unwrap(),
            PresenceStats {
                connections: 1,
                users: 1
            }
        );
        assert!(p.last_seen("c", "bob").await.unwrap().is_some());
        assert!(p.last_seen("c", "ann").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn last_seen_is_bounded() {
        let p = MemoryPresence::new(2);
        let node = crate::ids::NodeId(1);
        for (seq, user) in [(1, "a"), (2, "b"), (3, "c")] {
            let e = PresenceEntry {
                conn: ConnId { node, seq },
                user: Some(Arc::from(user)),
                info: None,
                state: None,
            };
            p.add("ch", e).await.unwrap();
            p.remove("ch", ConnId { node, seq }).await.unwrap();
        }
        assert!(
            p.last_seen("ch", "a").await.unwrap().is_none(),
            "the oldest was forgotten"
        );
        assert!(p.last_seen("ch", "c").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn mailboxes_are_ordered_bounded_and_acknowledged() {
        let m = MemoryMailbox::new(1);
        let ttl = Duration::from_secs(60);
        assert!(!m.is_registered("u").await.unwrap());
        assert!(
            m.push("u", Payload::null(), ttl, 10).await.is_err(),
            "unregistered"
        );
        m.register("u", Duration::from_secs(60)).await.unwrap();
        assert!(
            matches!(m.register("v", ttl).await, Err(EngineError::Limit(_))),
            "one mailbox at most"
        );
        for i in 1..=3 {
            assert_eq!(
                m.push("u", Payload::json(&i).unwrap(), ttl, 3)
                    .await
                    .unwrap()
                    .seq,
                i
            );
        }
        assert!(
            matches!(
                m.push("u", Payload::null(), ttl, 3).await,
                Err(EngineError::Limit(_))
            ),
            "full is an error"
        );
        assert_eq!(m.ack("u", 2).await.unwrap(), 1);
        assert_eq!(
            m.pending("u")
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>(),
            vec![3]
        );
        m.push("u", Payload::null(), Duration::from_millis(1), 3)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            m.pending("u").await.unwrap().len(),
            1,
            "expired messages are gone"
        );
    }

    #[tokio::test]
    async fn an_inbox_unused_for_its_lifetime_is_forgotten() {
        let m = MemoryMailbox::new(10);
        m.register("u", Duration::from_millis(1)).await.unwrap();
        assert!(m.is_registered("u").await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !m.is_registered("u").await.unwrap(),
            "the user is no longer registered"
        );
        assert!(
            m.push("u", Payload::null(), Duration::from_secs(1), 10)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_room_store_keeps_the_contract() {
        crate::testing::room_store_contract(&MemoryRooms::new(1000, 1000)).await;
    }

    #[tokio::test]
    async fn rooms_and_users_are_bounded() {
        crate::testing::room_store_bounds(&MemoryRooms::new(2, 2), 2, 2).await;
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

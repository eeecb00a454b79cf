//! Room and direct-message access control on the node: the [`Rooms`] handle (the server-side
//! API: `node.rooms()`) and the checks a [`crate::Session`] runs on the channels of a `rooms`
//! namespace. The rules themselves are pure functions in [`crate::rooms`]; the state is the
//! engine's [`crate::engine::RoomStore`].
//!
//! A change decided by a user's rights is applied only if the room did not change since it was
//! read (the store compares versions), so a right revoked meanwhile is never used. After a
//! change that can take access away, the room's members (its presence, on every node) are
//! judged again and those who lost access leave at once: every connection of theirs gets
//! `unsubscribed` with [`ACCESS_REMOVED`].

use crate::channels::validate_channel;
use crate::connection::Connection;
use crate::engine::{
    DirectChange, DirectChanged, PresenceEntry, RoomChange, RoomChanged, RoomStore,
};
use crate::error::Error;
use crate::node::{Node, engine_error};
use crate::rooms::{
    ACCESS_REMOVED, DirectList, DirectState, Names, ROOM_DELETED, Reason, RoomConfig, RoomList,
    RoomState, has_direct_access, may_edit_direct_list,
};
use plexus_protocol::ErrorCode;
use std::sync::Arc;
use std::time::SystemTime;

/// Whose authority a change is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor<'a> {
    /// A user: the rules of [`crate::rooms`] decide.
    User(&'a str),
    /// The server (its API, application code): the rules are bypassed.
    Server,
}

/// What a change of a room's access did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomUpdate {
    /// The room's version after the change.
    pub version: u64,
    /// Members who lost access, sorted: every connection of theirs was unsubscribed, on every
    /// node, with [`ACCESS_REMOVED`].
    pub removed: Vec<Arc<str>>,
}

/// How many times a change decided on a read is tried again when the room changed meanwhile.
const CHANGE_ATTEMPTS: usize = 16;

/// The presence channel that records a user's connections, on nodes with rooms (so that a user
/// with connections on any node is not deleted). Its name starts with a control character,
/// which no client channel may contain.
fn online_channel(user: &str) -> String {
    format!("\u{1}online:{user}")
}

/// Whether a change can take someone's access away (the others only grant it).
fn may_take_access(change: &RoomChange) -> bool {
    match change {
        RoomChange::Add { list, .. } => *list == RoomList::Blacklist,
        RoomChange::Remove { list, .. } => *list != RoomList::Blacklist,
        RoomChange::WhitelistOnly(on) => *on,
        RoomChange::Owner(_) => true,
        RoomChange::HistoryMaxSize(_) | RoomChange::Notifications { .. } => false,
    }
}

impl Node {
    /// Rooms and users: create, change and delete them, check access (see [`Rooms`]).
    pub fn rooms(&self) -> Rooms<'_> {
        Rooms { node: self }
    }

    /// Whether `user` has an authenticated connection on any node — counted per connection, so
    /// a user with two connections stays online when one closes. Without rooms or
    /// [`crate::NodeBuilder::track_online`], only this node's connections are known.
    pub async fn is_user_online(&self, user: &str) -> Result<bool, Error> {
        if !self.hub().user_connections(user).is_empty() {
            return Ok(true);
        }
        if !self.tracks_online() {
            return Ok(false);
        }
        let stats = self
            .engine()
            .presence
            .stats(&online_channel(user))
            .await
            .map_err(engine_error)?;
        Ok(stats.connections > 0)
    }

    /// Records that the connection's user has a connection (nodes with rooms, or tracking).
    pub(crate) async fn user_online(&self, conn: &Connection) {
        let Some(user) = conn.user().filter(|_| self.tracks_online()) else {
            return;
        };
        let entry = PresenceEntry {
            conn: conn.id,
            user: Some(Arc::from(user)),
            info: None,
            state: None,
        };
        if let Err(e) = self
            .engine()
            .presence
            .add(&online_channel(user), entry)
            .await
        {
            tracing::warn!(%user, error = %e, "recording a user's connection failed");
        }
    }

    pub(crate) async fn user_offline(&self, conn: &Connection) {
        let Some(user) = conn.user().filter(|_| self.tracks_online()) else {
            return;
        };
        if let Err(e) = self
            .engine()
            .presence
            .remove(&online_channel(user), conn.id)
            .await
        {
            tracing::warn!(%user, error = %e, "forgetting a user's connection failed");
        }
    }

    /// A session's check that `user` may be in the room `channel` (subscribe, publish):
    /// an authenticated user (101), a room (`noRoom`), access (`notAllowed`). Returns the room
    /// as the user sees it.
    pub(crate) async fn room_admits(
        &self,
        channel: &str,
        user: Option<&str>,
    ) -> Result<RoomState, Error> {
        let user = user.ok_or_else(room_needs_user)?;
        let view = self.rooms().view(channel, &[Arc::from(user)]).await?;
        if !view.has_access(user) {
            return Err(Reason::NotAllowed.error(&[]));
        }
        Ok(view)
    }

    /// A session's check that `user` may read the room `channel` (history, presence, last seen,
    /// metadata): a member — this connection is subscribed (`subscribed`) or another of the
    /// user's is — or an admin (`notJoined` otherwise).
    pub(crate) async fn room_readable(
        &self,
        channel: &str,
        user: Option<&str>,
        subscribed: bool,
    ) -> Result<(), Error> {
        let user = user.ok_or_else(room_needs_user)?;
        let view = self.rooms().view(channel, &[Arc::from(user)]).await?;
        if subscribed || view.is_admin(user) {
            return Ok(());
        }
        let joined = self
            .rooms()
            .members(channel)
            .await?
            .iter()
            .any(|m| **m == *user);
        if view.may_read(user, joined) {
            Ok(())
        } else {
            Err(Reason::NotJoined.error(&[channel]))
        }
    }
}

fn room_needs_user() -> Error {
    Error::new(
        ErrorCode::UNAUTHORIZED,
        "rooms admit authenticated users only",
    )
}

/// The rooms and users of a node's engine, with the rules applied. Get it with
/// [`Node::rooms`]. Room names are channel names of a `rooms` namespace (a channel of another
/// namespace is no room: `noRoom`, and creating one there is `notAllowed`); user names are 1 to
/// `max_channel_bytes` bytes without control characters (104). Refusals carry a [`Reason`].
#[derive(Clone, Copy)]
pub struct Rooms<'a> {
    node: &'a Node,
}

impl Rooms<'_> {
    fn store(&self) -> &Arc<dyn RoomStore> {
        &self.node.engine().rooms
    }

    /// A room name: a valid channel name (107), of a namespace with rooms — a channel of another
    /// namespace is no room (`noRoom`).
    fn check_room(&self, room: &str) -> Result<(), Error> {
        validate_channel(room, self.node.limits().max_channel_bytes)?;
        if !self.node.channels().is_room(room) {
            return Err(Reason::NoRoom.error(&[room]));
        }
        Ok(())
    }

    fn check_user(&self, user: &str) -> Result<(), Error> {
        let max = self.node.limits().max_channel_bytes;
        let problem = if user.is_empty() {
            "empty user name".to_owned()
        } else if user.len() > max {
            format!("user name longer than {max} bytes")
        } else if user.chars().any(char::is_control) {
            "control character in a user name".to_owned()
        } else {
            return Ok(());
        };
        Err(Error::bad_request(problem))
    }

    /// Checks names given for `list` (at most `max` of them) and dedups them.
    fn check_names<S: AsRef<str>>(
        &self,
        list: &str,
        names: &[S],
        max: usize,
    ) -> Result<Vec<Arc<str>>, Error> {
        if names.len() > max {
            return Err(Reason::ListLimitExceeded.error(&[list]));
        }
        let mut out: Names = Names::new();
        for name in names {
            self.check_user(name.as_ref())?;
            out.insert(Arc::from(name.as_ref()));
        }
        Ok(out.into_iter().collect())
    }

    fn check_config(&self, config: &RoomConfig) -> Result<(), Error> {
        if let Some(owner) = &config.owner {
            self.check_user(owner)?;
        }
        let max = self.node.limits().room_list_max;
        for list in RoomList::ALL {
            let names: Vec<Arc<str>> = match list {
                RoomList::Whitelist => &config.whitelist,
                RoomList::Blacklist => &config.blacklist,
                RoomList::Adminlist => &config.adminlist,
            }
            .iter()
            .cloned()
            .collect();
            self.check_names(list.as_str(), &names, max)?;
        }
        Ok(())
    }

    /// Creates a room (`roomExists` when it exists; `notAllowed` for a channel outside a
    /// namespace with rooms). With Redis, every node sees it at once.
    pub async fn create(&self, room: &str, config: RoomConfig) -> Result<(), Error> {
        validate_channel(room, self.node.limits().max_channel_bytes)?;
        if !self.node.channels().is_room(room) {
            return Err(Reason::NotAllowed.error(&[]).with_message(format!(
                "rooms are created in namespaces with rooms, not `{room}`"
            )));
        }
        self.check_config(&config)?;
        let created = self
            .store()
            .create_room(room, &RoomState::from(config))
            .await
            .map_err(engine_error)?;
        if created {
            Ok(())
        } else {
            Err(Reason::RoomExists.error(&[room]))
        }
    }

    /// Deletes a room — as its owner, or as the server — with its history: every member leaves
    /// at once, on every node, told [`ROOM_DELETED`]. Returns the users who were in it.
    pub async fn delete(&self, actor: Actor<'_>, room: &str) -> Result<Vec<Arc<str>>, Error> {
        self.check_room(room)?;
        if let Actor::User(user) = actor {
            let view = self.view(room, &[Arc::from(user)]).await?;
            if !view.may_delete(user) {
                return Err(Reason::NotAllowed.error(&[]));
            }
        }
        let members = self.members(room).await?;
        if !self.store().delete_room(room).await.map_err(engine_error)? {
            return Err(Reason::NoRoom.error(&[room]));
        }
        if let Err(e) = self.node.engine().broker.remove_history(room).await {
            tracing::warn!(%room, error = %e, "removing a deleted room's history failed");
        }
        self.node.clear_channel_because(room, ROOM_DELETED).await?;
        Ok(members)
    }

    /// Whether the room exists (false for a channel outside a namespace with rooms).
    pub async fn exists(&self, room: &str) -> Result<bool, Error> {
        validate_channel(room, self.node.limits().max_channel_bytes)?;
        if !self.node.channels().is_room(room) {
            return Ok(false);
        }
        Ok(self
            .store()
            .room_view(room, &[])
            .await
            .map_err(engine_error)?
            .is_some())
    }

    /// The room's whole state (`noRoom`).
    pub async fn state(&self, room: &str) -> Result<RoomState, Error> {
        self.check_room(room)?;
        self.store()
            .room(room)
            .await
            .map_err(engine_error)?
            .ok_or_else(|| Reason::NoRoom.error(&[room]))
    }

    /// The room's state with its lists restricted to `users` — enough to judge them
    /// ([`crate::engine::RoomStore::room_view`]) (`noRoom`).
    pub async fn view(&self, room: &str, users: &[Arc<str>]) -> Result<RoomState, Error> {
        self.store()
            .room_view(room, users)
            .await
            .map_err(engine_error)?
            .ok_or_else(|| Reason::NoRoom.error(&[room]))
    }

    /// The users in the room (with a connection subscribed to it, on any node), sorted.
    pub async fn members(&self, room: &str) -> Result<Vec<Arc<str>>, Error> {
        let entries = self
            .node
            .engine()
            .presence
            .get(room)
            .await
            .map_err(engine_error)?;
        let users: Names = entries.into_iter().filter_map(|e| e.user).collect();
        Ok(users.into_iter().collect())
    }

    /// Applies `change`: as `actor` when `allowed` says the actor may (judged on a view of the
    /// room for the actor, and applied only if the room did not change since), or as the
    /// server. Then removes the members who lost access.
    async fn change(
        &self,
        actor: Actor<'_>,
        room: &str,
        change: RoomChange,
        allowed: impl Fn(&RoomState, &str) -> bool,
    ) -> Result<RoomUpdate, Error> {
        self.check_room(room)?;
        for _ in 0..CHANGE_ATTEMPTS {
            let expect = match actor {
                Actor::Server => None,
                Actor::User(user) => {
                    let view = self.view(room, &[Arc::from(user)]).await?;
                    if !allowed(&view, user) {
                        return Err(Reason::NotAllowed.error(&[]));
                    }
                    Some(view.version)
                }
            };
            let outcome = self
                .store()
                .change_room(room, &change, expect)
                .await
                .map_err(engine_error)?;
            let version = match outcome {
                RoomChanged::Done { version } => version,
                RoomChanged::Stale => continue,
                RoomChanged::NoRoom => return Err(Reason::NoRoom.error(&[room])),
                RoomChanged::ListFull => {
                    let list = match &change {
                        RoomChange::Add { list, .. } => list.as_str(),
                        _ => "list",
                    };
                    return Err(Reason::ListLimitExceeded.error(&[list]));
                }
            };
            let removed = if may_take_access(&change) {
                self.remove_lost(room).await?
            } else {
                Vec::new()
            };
            return Ok(RoomUpdate { version, removed });
        }
        Err(Error::new(
            ErrorCode::CONFLICT,
            format!("room `{room}` kept changing; try again"),
        ))
    }

    /// Judges the room's members again; those without access leave at once, on every node.
    async fn remove_lost(&self, room: &str) -> Result<Vec<Arc<str>>, Error> {
        let members = self.members(room).await?;
        if members.is_empty() {
            return Ok(members);
        }
        let Some(view) = self
            .store()
            .room_view(room, &members)
            .await
            .map_err(engine_error)?
        else {
            return Ok(Vec::new());
        };
        let lost: Vec<Arc<str>> = members
            .into_iter()
            .filter(|m| !view.has_access(m))
            .collect();
        for user in &lost {
            self.node
                .unsubscribe_user_because(user, room, ACCESS_REMOVED)
                .await?;
        }
        Ok(lost)
    }

    /// Adds names to a list (owner: every list; admins: the whitelist and the blacklist, not
    /// naming the owner). A full list refuses the whole change (`listLimitExceeded`); names
    /// already there are fine.
    pub async fn add_to_list<S: AsRef<str>>(
        &self,
        actor: Actor<'_>,
        room: &str,
        list: RoomList,
        names: &[S],
    ) -> Result<RoomUpdate, Error> {
        let max = self.node.limits().room_list_max;
        let names = self.check_names(list.as_str(), names, max)?;
        let change = RoomChange::Add {
            list,
            names: names.clone(),
            max,
        };
        self.change(actor, room, change, |state, user| {
            state.may_edit_list(user, list, &names)
        })
        .await
    }

    /// Removes names from a list, with the rights of [`Rooms::add_to_list`]; names not on it
    /// are fine.
    pub async fn remove_from_list<S: AsRef<str>>(
        &self,
        actor: Actor<'_>,
        room: &str,
        list: RoomList,
        names: &[S],
    ) -> Result<RoomUpdate, Error> {
        let names = self.check_names(list.as_str(), names, self.node.limits().room_list_max)?;
        let change = RoomChange::Remove {
            list,
            names: names.clone(),
        };
        self.change(actor, room, change, |state, user| {
            state.may_edit_list(user, list, &names)
        })
        .await
    }

    /// Switches whitelist-only mode (admins).
    pub async fn set_whitelist_only(
        &self,
        actor: Actor<'_>,
        room: &str,
        on: bool,
    ) -> Result<RoomUpdate, Error> {
        self.change(actor, room, RoomChange::WhitelistOnly(on), |state, user| {
            state.may_change_mode(user)
        })
        .await
    }

    /// Gives the room to another owner, or none (server side).
    pub async fn set_owner(&self, room: &str, owner: Option<&str>) -> Result<RoomUpdate, Error> {
        if let Some(owner) = owner {
            self.check_user(owner)?;
        }
        let change = RoomChange::Owner(owner.map(Arc::from));
        self.change(Actor::Server, room, change, |_, _| true).await
    }

    /// Sets how many publications the room keeps, within the namespace's history size; `None`:
    /// the namespace's (server side).
    pub async fn set_history_size(&self, room: &str, size: Option<usize>) -> Result<(), Error> {
        let change = RoomChange::HistoryMaxSize(size);
        self.change(Actor::Server, room, change, |_, _| true)
            .await
            .map(drop)
    }

    /// Switches the room's notifications; `None` leaves one as it is (server side).
    pub async fn set_notifications(
        &self,
        room: &str,
        userlist: Option<bool>,
        access_lists: Option<bool>,
    ) -> Result<(), Error> {
        let change = RoomChange::Notifications {
            userlist,
            access_lists,
        };
        self.change(Actor::Server, room, change, |_, _| true)
            .await
            .map(drop)
    }

    /// Whether `user` may be in the room (`noRoom`).
    pub async fn has_access(&self, room: &str, user: &str) -> Result<bool, Error> {
        self.check_room(room)?;
        self.check_user(user)?;
        Ok(self.view(room, &[Arc::from(user)]).await?.has_access(user))
    }

    /// Whether `user` is in the room now, and when it was last there (`noRoom`).
    pub async fn user_seen(
        &self,
        room: &str,
        user: &str,
    ) -> Result<(bool, Option<SystemTime>), Error> {
        self.check_room(room)?;
        self.check_user(user)?;
        self.view(room, &[]).await?;
        self.node.last_seen(room, user).await
    }

    /// Adds a user with its direct-message state (`userExists`).
    pub async fn add_user(&self, user: &str, state: DirectState) -> Result<(), Error> {
        self.check_user(user)?;
        let max = self.node.limits().direct_list_max;
        for list in DirectList::ALL {
            let names: Vec<Arc<str>> = state.list(list).iter().cloned().collect();
            self.check_names(list.as_str(), &names, max)?;
        }
        if self
            .store()
            .add_user(user, &state)
            .await
            .map_err(engine_error)?
        {
            Ok(())
        } else {
            Err(Reason::UserExists.error(&[user]))
        }
    }

    /// Adds the user unless it exists; true when it was added.
    pub async fn ensure_user(&self, user: &str) -> Result<bool, Error> {
        self.check_user(user)?;
        self.store()
            .add_user(user, &DirectState::default())
            .await
            .map_err(engine_error)
    }

    /// Deletes a user with no connection (`userOnline`, `noUser`).
    pub async fn delete_user(&self, user: &str) -> Result<(), Error> {
        self.check_user(user)?;
        if self.is_online(user).await? {
            return Err(Reason::UserOnline.error(&[user]));
        }
        if self.store().delete_user(user).await.map_err(engine_error)? {
            Ok(())
        } else {
            Err(Reason::NoUser.error(&[user]))
        }
    }

    pub async fn has_user(&self, user: &str) -> Result<bool, Error> {
        self.check_user(user)?;
        self.store().user_exists(user).await.map_err(engine_error)
    }

    /// Whether `user` has a connection on any node (on nodes without rooms: on this node).
    pub async fn is_online(&self, user: &str) -> Result<bool, Error> {
        self.node.is_user_online(user).await
    }

    /// The user's direct-message state (`noUser`).
    pub async fn direct_state(&self, user: &str) -> Result<DirectState, Error> {
        self.check_user(user)?;
        self.store()
            .direct(user)
            .await
            .map_err(engine_error)?
            .ok_or_else(|| Reason::NoUser.error(&[user]))
    }

    async fn direct_change(&self, user: &str, change: DirectChange) -> Result<(), Error> {
        let list = match &change {
            DirectChange::Add { list, .. } | DirectChange::Remove { list, .. } => list.as_str(),
            DirectChange::WhitelistOnly(_) => "list",
        };
        match self
            .store()
            .change_direct(user, &change)
            .await
            .map_err(engine_error)?
        {
            DirectChanged::Done => Ok(()),
            DirectChanged::NoUser => Err(Reason::NoUser.error(&[user])),
            DirectChanged::ListFull => Err(Reason::ListLimitExceeded.error(&[list])),
        }
    }

    /// Puts names on one of `user`'s own direct lists (never `user` itself: `notAllowed`).
    pub async fn direct_add_to_list<S: AsRef<str>>(
        &self,
        user: &str,
        list: DirectList,
        names: &[S],
    ) -> Result<(), Error> {
        self.check_user(user)?;
        let max = self.node.limits().direct_list_max;
        let names = self.check_names(list.as_str(), names, max)?;
        if !may_edit_direct_list(user, &names) {
            return Err(Reason::NotAllowed.error(&[]));
        }
        self.direct_change(user, DirectChange::Add { list, names, max })
            .await
    }

    /// Takes names off one of `user`'s own direct lists (never `user` itself: `notAllowed`).
    pub async fn direct_remove_from_list<S: AsRef<str>>(
        &self,
        user: &str,
        list: DirectList,
        names: &[S],
    ) -> Result<(), Error> {
        self.check_user(user)?;
        let names = self.check_names(list.as_str(), names, self.node.limits().direct_list_max)?;
        if !may_edit_direct_list(user, &names) {
            return Err(Reason::NotAllowed.error(&[]));
        }
        self.direct_change(user, DirectChange::Remove { list, names })
            .await
    }

    pub async fn direct_set_whitelist_only(&self, user: &str, on: bool) -> Result<(), Error> {
        self.check_user(user)?;
        self.direct_change(user, DirectChange::WhitelistOnly(on))
            .await
    }

    /// Whether `sender` may send `recipient` a direct message (`noUser` for an unknown
    /// recipient).
    pub async fn has_direct_access(&self, sender: &str, recipient: &str) -> Result<bool, Error> {
        self.check_user(sender)?;
        self.check_user(recipient)?;
        let view = self
            .store()
            .direct_view(recipient, &[Arc::from(sender)])
            .await
            .map_err(engine_error)?
            .ok_or_else(|| Reason::NoUser.error(&[recipient]))?;
        Ok(has_direct_access(sender, recipient, &view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UpgradeRequest;
    use crate::channels::{Access, ChannelMatch, ChannelPolicy, Namespace};
    use crate::engine::HistoryOptions;
    use crate::model::{Emit, Event, Identity, WireFormat};
    use crate::session::{Session, SubscribeRequest};
    use bytes::Bytes;
    use plexus_protocol::Payload;
    use std::time::Duration;

    /// Writes the events a test looks for as text.
    struct Text;
    impl WireFormat for Text {
        fn id(&self) -> usize {
            0
        }
        fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
            let text = match event {
                Event::Unsubscribed { channel, reason } => {
                    format!("unsubscribed {channel} {reason}")
                }
                Event::Notice { channel, event, .. } => format!("notice {channel} {event:?}"),
                Event::Publication(p) => format!("pub {} {}", p.channel, p.offset),
                _ => return None,
            };
            Some(Bytes::from(text))
        }
    }

    fn node() -> Node {
        let mut policy = ChannelPolicy::default();
        policy.add_namespace(
            Namespace::new("rooms", ChannelMatch::Prefix("room:".into()))
                .subscribe(Access::Authenticated)
                .publish(Access::Subscribers)
                .history(HistoryOptions {
                    size: 10,
                    ttl: Duration::from_secs(60),
                })
                .rooms(true),
        );
        policy.add_namespace(
            Namespace::new("open", ChannelMatch::Any)
                .subscribe(Access::Anyone)
                .publish(Access::Anyone),
        );
        Node::builder().channels(policy).build()
    }

    async fn session(node: &Node, user: &str) -> Session {
        let mut s = Session::open(
            node,
            Arc::new(Text),
            Arc::new(UpgradeRequest::default()),
            Some(Identity::new(user)),
        )
        .unwrap();
        s.finish_auth().await;
        s
    }

    async fn subscribe(s: &mut Session, channel: &str) -> Result<(), Error> {
        let request = SubscribeRequest {
            channel: channel.into(),
            ..Default::default()
        };
        s.subscribe(request).await.map(drop)
    }

    fn events(s: &Session) -> Vec<String> {
        let mut out = Vec::new();
        s.connection().outbox().drain(&mut out, usize::MAX);
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// Waits until the room has `n` members: leaving its presence finishes in a task.
    async fn members_settle(rooms: &Rooms<'_>, room: &str, n: usize) {
        for _ in 0..500 {
            if rooms.members(room).await.unwrap().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{room} never had {n} members");
    }

    fn reason(e: &Error) -> Reason {
        Reason::of(e)
            .unwrap_or_else(|| panic!("no reason in {e:?}"))
            .0
    }

    #[tokio::test]
    async fn a_room_admits_by_its_lists_and_a_blacklisting_removes_at_once() {
        let node = node();
        let rooms = node.rooms();
        let (mut ann, mut bob) = (session(&node, "ann").await, session(&node, "bob").await);
        let e = subscribe(&mut bob, "room:1").await.unwrap_err();
        assert_eq!(reason(&e), Reason::NoRoom, "a room exists once created");
        rooms
            .create("room:1", RoomConfig::default().owner("ann"))
            .await
            .unwrap();
        let e = rooms
            .create("room:1", RoomConfig::default())
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::RoomExists);
        subscribe(&mut ann, "room:1").await.unwrap();
        subscribe(&mut bob, "room:1").await.unwrap();
        assert_eq!(rooms.members("room:1").await.unwrap().len(), 2);
        let update = rooms
            .add_to_list(Actor::User("ann"), "room:1", RoomList::Blacklist, &["bob"])
            .await
            .unwrap();
        assert_eq!(update.removed, vec![Arc::from("bob")]);
        assert!(!bob.connection().is_subscribed("room:1"));
        assert!(ann.connection().is_subscribed("room:1"));
        assert!(events(&bob).contains(&"unsubscribed room:1 access removed".to_owned()));
        let e = subscribe(&mut bob, "room:1").await.unwrap_err();
        assert_eq!(
            (e.code, reason(&e)),
            (ErrorCode::PERMISSION_DENIED, Reason::NotAllowed)
        );
        let e = bob.publish("room:1", Payload::null()).await.unwrap_err();
        assert_eq!(reason(&e), Reason::NotJoined);
        members_settle(&rooms, "room:1", 1).await;
        let e = bob.history("room:1", None, None, false).await.unwrap_err();
        assert_eq!(reason(&e), Reason::NotJoined, "reads need membership");
        assert!(ann.history("room:1", None, None, false).await.is_ok());
        // Whitelist-only mode removes who is not on the whitelist, never the owner.
        rooms
            .remove_from_list(Actor::Server, "room:1", RoomList::Blacklist, &["bob"])
            .await
            .unwrap();
        subscribe(&mut bob, "room:1").await.unwrap();
        let update = rooms
            .set_whitelist_only(Actor::User("ann"), "room:1", true)
            .await
            .unwrap();
        assert_eq!(update.removed, vec![Arc::from("bob")]);
        assert!(ann.connection().is_subscribed("room:1"), "the owner stays");
        members_settle(&rooms, "room:1", 1).await;
        // Deleting the room unsubscribes everyone.
        let e = rooms
            .delete(Actor::User("bob"), "room:1")
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::NotAllowed, "only the owner deletes");
        events(&ann);
        let members = rooms.delete(Actor::User("ann"), "room:1").await.unwrap();
        assert_eq!(members, vec![Arc::from("ann")]);
        assert!(!ann.connection().is_subscribed("room:1"));
        assert_eq!(events(&ann), vec!["unsubscribed room:1 room deleted"]);
        let e = rooms.state("room:1").await.unwrap_err();
        assert_eq!(reason(&e), Reason::NoRoom);
    }

    #[tokio::test]
    async fn actors_change_what_their_rights_allow_and_the_server_anything() {
        let node = node();
        let rooms = node.rooms();
        rooms
            .create(
                "room:r",
                RoomConfig::default()
                    .owner("own")
                    .list(RoomList::Adminlist, ["adm"]),
            )
            .await
            .unwrap();
        let refused = [
            rooms
                .add_to_list(Actor::User("adm"), "room:r", RoomList::Adminlist, &["x"])
                .await,
            rooms
                .add_to_list(Actor::User("adm"), "room:r", RoomList::Blacklist, &["own"])
                .await,
            rooms
                .add_to_list(Actor::User("joe"), "room:r", RoomList::Whitelist, &["x"])
                .await,
            rooms
                .set_whitelist_only(Actor::User("joe"), "room:r", true)
                .await,
        ];
        for r in refused {
            assert_eq!(reason(&r.unwrap_err()), Reason::NotAllowed);
        }
        rooms
            .add_to_list(
                Actor::User("adm"),
                "room:r",
                RoomList::Whitelist,
                &["x", "y"],
            )
            .await
            .unwrap();
        rooms
            .add_to_list(Actor::Server, "room:r", RoomList::Blacklist, &["own"])
            .await
            .unwrap();
        assert!(
            rooms.has_access("room:r", "own").await.unwrap(),
            "the owner is an admin"
        );
        rooms.set_owner("room:r", Some("x")).await.unwrap();
        assert!(!rooms.has_access("room:r", "own").await.unwrap());
        let state = rooms.state("room:r").await.unwrap();
        assert_eq!(state.owner.as_deref(), Some("x"));
        assert_eq!(state.whitelist.len(), 2);
        let e = rooms
            .add_to_list(Actor::Server, "room:nope", RoomList::Whitelist, &["x"])
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::NoRoom);
        let e = rooms
            .create("elsewhere", RoomConfig::default())
            .await
            .unwrap_err();
        assert_eq!(
            reason(&e),
            Reason::NotAllowed,
            "rooms live in rooms namespaces"
        );
        let e = rooms.state("elsewhere").await.unwrap_err();
        assert_eq!(reason(&e), Reason::NoRoom);
        let e = rooms
            .add_to_list(Actor::Server, "room:r", RoomList::Whitelist, &[""])
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn list_limits_count_the_names_already_on_the_list() {
        let mut node_builder = Node::builder();
        *node_builder.channels_mut() = node().channels().clone();
        node_builder.limits_mut().room_list_max = 2;
        node_builder.limits_mut().direct_list_max = 1;
        let node = node_builder.build();
        let rooms = node.rooms();
        rooms.create("room:l", RoomConfig::default()).await.unwrap();
        let e = rooms
            .add_to_list(
                Actor::Server,
                "room:l",
                RoomList::Whitelist,
                &["a", "b", "c"],
            )
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::ListLimitExceeded);
        rooms
            .add_to_list(Actor::Server, "room:l", RoomList::Whitelist, &["a"])
            .await
            .unwrap();
        let e = rooms
            .add_to_list(Actor::Server, "room:l", RoomList::Whitelist, &["b", "c"])
            .await
            .unwrap_err();
        assert_eq!(
            (e.code, reason(&e)),
            (ErrorCode::LIMIT_EXCEEDED, Reason::ListLimitExceeded)
        );
        rooms.add_user("u", DirectState::default()).await.unwrap();
        rooms
            .direct_add_to_list("u", DirectList::Blacklist, &["x"])
            .await
            .unwrap();
        let e = rooms
            .direct_add_to_list("u", DirectList::Blacklist, &["y"])
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::ListLimitExceeded);
    }

    #[tokio::test]
    async fn users_direct_lists_and_online_users() {
        let node = node();
        let rooms = node.rooms();
        rooms.add_user("bob", DirectState::default()).await.unwrap();
        let e = rooms
            .add_user("bob", DirectState::default())
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::UserExists);
        assert!(!rooms.ensure_user("bob").await.unwrap());
        assert!(rooms.has_direct_access("ann", "bob").await.unwrap());
        assert!(!rooms.has_direct_access("bob", "bob").await.unwrap());
        let e = rooms.has_direct_access("ann", "nobody").await.unwrap_err();
        assert_eq!(reason(&e), Reason::NoUser);
        let e = rooms
            .direct_add_to_list("bob", DirectList::Blacklist, &["bob"])
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::NotAllowed, "not oneself");
        rooms
            .direct_add_to_list("bob", DirectList::Blacklist, &["ann"])
            .await
            .unwrap();
        assert!(!rooms.has_direct_access("ann", "bob").await.unwrap());
        rooms
            .direct_add_to_list("bob", DirectList::Whitelist, &["cid"])
            .await
            .unwrap();
        rooms.direct_set_whitelist_only("bob", true).await.unwrap();
        assert!(rooms.has_direct_access("cid", "bob").await.unwrap());
        rooms
            .direct_remove_from_list("bob", DirectList::Whitelist, &["cid"])
            .await
            .unwrap();
        assert!(!rooms.has_direct_access("cid", "bob").await.unwrap());
        assert!(rooms.direct_state("bob").await.unwrap().whitelist_only);
        let mut s = session(&node, "bob").await;
        assert!(rooms.is_online("bob").await.unwrap());
        let e = rooms.delete_user("bob").await.unwrap_err();
        assert_eq!(reason(&e), Reason::UserOnline);
        s.close(plexus_protocol::CloseCode::NORMAL, "bye").await;
        assert!(!rooms.is_online("bob").await.unwrap());
        rooms.delete_user("bob").await.unwrap();
        assert_eq!(
            reason(&rooms.delete_user("bob").await.unwrap_err()),
            Reason::NoUser
        );
        assert!(!rooms.has_user("bob").await.unwrap());
    }

    #[tokio::test]
    async fn notices_reach_subscribers_and_take_no_offset() {
        let node = node();
        let (mut a, mut b) = (session(&node, "a").await, session(&node, "b").await);
        subscribe(&mut a, "news").await.unwrap();
        subscribe(&mut b, "news").await.unwrap();
        node.publish("news", Payload::null()).await.unwrap();
        node.notify(
            "news",
            Emit::event("roomModeChanged", Payload::null()),
            Some(crate::Exclude::user("b")),
        )
        .await
        .unwrap();
        let position = node.publish("news", Payload::null()).await.unwrap();
        assert_eq!(position.offset, 2, "the notice took no offset");
        assert_eq!(
            events(&a),
            vec![
                "pub news 1",
                "notice news Some(\"roomModeChanged\")",
                "pub news 2"
            ]
        );
        assert_eq!(events(&b), vec!["pub news 1", "pub news 2"], "excluded");
    }

    #[tokio::test]
    async fn a_room_keeps_at_most_its_history_size() {
        let node = node();
        let rooms = node.rooms();
        rooms
            .create("room:h", RoomConfig::default().history_max_size(2))
            .await
            .unwrap();
        for _ in 0..4 {
            node.publish("room:h", Payload::null()).await.unwrap();
        }
        let query = crate::engine::HistoryQuery {
            since: None,
            limit: 10,
            reverse: false,
        };
        let kept = node.engine().broker.history("room:h", query).await.unwrap();
        assert_eq!(kept.publications.len(), 2);
        let e = node
            .publish("room:none", Payload::null())
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::NoRoom);
    }
}

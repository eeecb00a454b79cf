//! Rooms: channels with an owner and access lists, and users' direct-message lists — the model
//! and the rules, dialect-blind (chat-service's permissions, `seeds-protocols.md` §2.3 "Room
//! permissions"; `docs/chat-service.md`, "Rooms are channels with an access list").
//!
//! A room is a channel of a namespace marked `rooms` ([`crate::Namespace::rooms`]); its state
//! lives in the engine's [`crate::engine::RoomStore`], its members are the channel's presence.
//! Every rule is a pure function here, so the node, the sessions of every dialect and the
//! chat-service layer decide alike. The node applies them in [`crate::access`].
//!
//! Differences from chat-service, each a defect fixed:
//! - the owner always keeps access (chat-service removed a joined owner who was on neither the
//!   whitelist nor the adminlist when whitelist-only mode was switched on);
//! - a list's size limit counts the names already on it plus the new ones (chat-service counted
//!   only the names being added).
//!
//! # Errors
//!
//! A refusal is a [`crate::Error`] whose code comes from `plexus_protocol::codes` and whose
//! `data` is `{"reason": <chat-service error name>, "args": [<strings>]}` — see [`Reason`]; read
//! it back with [`Reason::of`]. The chat-service layer maps the reason to its own error.

use crate::engine::HistoryOptions;
use crate::error::Error;
use plexus_protocol::{ErrorCode, Payload};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The `unsubscribed` reason of a member whose access a change took away (stable).
pub const ACCESS_REMOVED: &str = "access removed";
/// The `unsubscribed` reason of every member of a deleted room (stable).
pub const ROOM_DELETED: &str = "room deleted";

/// A set of user names, sorted (so that lists read the same on every engine).
pub type Names = BTreeSet<Arc<str>>;

/// An editable list of a room. chat-service's fourth list, `userlist`, is the room's presence
/// and is never edited: [`RoomList::parse`] refuses it with `notAllowed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomList {
    Whitelist,
    Blacklist,
    Adminlist,
}

impl RoomList {
    pub const ALL: [RoomList; 3] = [
        RoomList::Whitelist,
        RoomList::Blacklist,
        RoomList::Adminlist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoomList::Whitelist => "whitelist",
            RoomList::Blacklist => "blacklist",
            RoomList::Adminlist => "adminlist",
        }
    }

    /// A list by its chat-service name: `userlist` is `notAllowed` (105), anything else unknown
    /// is `noList` (104).
    pub fn parse(name: &str) -> Result<RoomList, Error> {
        match name {
            "whitelist" => Ok(RoomList::Whitelist),
            "blacklist" => Ok(RoomList::Blacklist),
            "adminlist" => Ok(RoomList::Adminlist),
            "userlist" => Err(Reason::NotAllowed.error(&[])),
            other => Err(Reason::NoList.error(&[other])),
        }
    }
}

/// A list of a user's direct messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DirectList {
    Whitelist,
    Blacklist,
}

impl DirectList {
    pub const ALL: [DirectList; 2] = [DirectList::Whitelist, DirectList::Blacklist];

    pub fn as_str(self) -> &'static str {
        match self {
            DirectList::Whitelist => "whitelist",
            DirectList::Blacklist => "blacklist",
        }
    }

    /// A list by its chat-service name; anything else is `noList` (104).
    pub fn parse(name: &str) -> Result<DirectList, Error> {
        match name {
            "whitelist" => Ok(DirectList::Whitelist),
            "blacklist" => Ok(DirectList::Blacklist),
            other => Err(Reason::NoList.error(&[other])),
        }
    }
}

/// How a room is created ([`crate::access::Rooms::create`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomConfig {
    pub owner: Option<Arc<str>>,
    pub whitelist: Names,
    pub blacklist: Names,
    pub adminlist: Names,
    pub whitelist_only: bool,
    /// Publications the room keeps, at most the namespace's history size; `None`: the
    /// namespace's.
    pub history_max_size: Option<usize>,
    /// Tell members when a user joins or leaves (chat-service `enableUserlistUpdates`).
    pub notify_userlist: bool,
    /// Tell members when an access list or the mode changes (`enableAccessListsUpdates`).
    pub notify_access_lists: bool,
}

impl RoomConfig {
    pub fn owner(mut self, owner: impl Into<Arc<str>>) -> RoomConfig {
        self.owner = Some(owner.into());
        self
    }

    pub fn whitelist_only(mut self, on: bool) -> RoomConfig {
        self.whitelist_only = on;
        self
    }

    /// Puts `names` on `list`.
    pub fn list<S: Into<Arc<str>>>(
        mut self,
        list: RoomList,
        names: impl IntoIterator<Item = S>,
    ) -> RoomConfig {
        let set = match list {
            RoomList::Whitelist => &mut self.whitelist,
            RoomList::Blacklist => &mut self.blacklist,
            RoomList::Adminlist => &mut self.adminlist,
        };
        set.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn history_max_size(mut self, size: usize) -> RoomConfig {
        self.history_max_size = Some(size);
        self
    }

    pub fn notifications(mut self, userlist: bool, access_lists: bool) -> RoomConfig {
        self.notify_userlist = userlist;
        self.notify_access_lists = access_lists;
        self
    }
}

/// A room's state as the store keeps it.
///
/// A *view* ([`crate::engine::RoomStore::room_view`]) is the same state with its lists
/// restricted to some users: every rule about those users answers as on the full state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomState {
    pub owner: Option<Arc<str>>,
    pub whitelist: Names,
    pub blacklist: Names,
    pub adminlist: Names,
    pub whitelist_only: bool,
    /// `None`: the namespace's history size.
    pub history_max_size: Option<usize>,
    pub notify_userlist: bool,
    pub notify_access_lists: bool,
    /// +1 on every change, so that a change decided on a read can be applied only if nothing
    /// changed meanwhile.
    pub version: u64,
}

impl From<RoomConfig> for RoomState {
    fn from(c: RoomConfig) -> RoomState {
        RoomState {
            owner: c.owner,
            whitelist: c.whitelist,
            blacklist: c.blacklist,
            adminlist: c.adminlist,
            whitelist_only: c.whitelist_only,
            history_max_size: c.history_max_size,
            notify_userlist: c.notify_userlist,
            notify_access_lists: c.notify_access_lists,
            version: 1,
        }
    }
}

impl RoomState {
    pub fn list(&self, list: RoomList) -> &Names {
        match list {
            RoomList::Whitelist => &self.whitelist,
            RoomList::Blacklist => &self.blacklist,
            RoomList::Adminlist => &self.adminlist,
        }
    }

    pub fn list_mut(&mut self, list: RoomList) -> &mut Names {
        match list {
            RoomList::Whitelist => &mut self.whitelist,
            RoomList::Blacklist => &mut self.blacklist,
            RoomList::Adminlist => &mut self.adminlist,
        }
    }

    pub fn is_owner(&self, user: &str) -> bool {
        self.owner.as_deref() == Some(user)
    }

    /// The owner and the users on the adminlist.
    pub fn is_admin(&self, user: &str) -> bool {
        self.is_owner(user) || self.adminlist.contains(user)
    }

    /// Whether `user` may be in the room: admins (the owner included) always; otherwise the
    /// blacklist refuses, and in whitelist-only mode only the whitelist admits.
    pub fn has_access(&self, user: &str) -> bool {
        if self.is_admin(user) {
            return true;
        }
        if self.blacklist.contains(user) {
            return false;
        }
        !self.whitelist_only || self.whitelist.contains(user)
    }

    /// Whether `actor` may add `names` to, or remove them from, `list`: the owner every list;
    /// admins the whitelist and the blacklist, without naming the owner; nobody else anything.
    pub fn may_edit_list<S: AsRef<str>>(&self, actor: &str, list: RoomList, names: &[S]) -> bool {
        if self.is_owner(actor) {
            return true;
        }
        if list == RoomList::Adminlist || !self.adminlist.contains(actor) {
            return false;
        }
        !names.iter().any(|n| self.is_owner(n.as_ref()))
    }

    /// Whether `actor` may switch whitelist-only mode: admins.
    pub fn may_change_mode(&self, actor: &str) -> bool {
        self.is_admin(actor)
    }

    /// Whether `actor` may delete the room: its owner.
    pub fn may_delete(&self, actor: &str) -> bool {
        self.is_owner(actor)
    }

    /// Whether `actor` may read the room (its lists, owner, mode, history, who is in it):
    /// members (`joined`) and admins.
    pub fn may_read(&self, actor: &str, joined: bool) -> bool {
        joined || self.is_admin(actor)
    }
}

/// A user's direct-message permissions (chat-service `DirectMessaging`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectState {
    pub whitelist: Names,
    pub blacklist: Names,
    pub whitelist_only: bool,
}

impl DirectState {
    pub fn list(&self, list: DirectList) -> &Names {
        match list {
            DirectList::Whitelist => &self.whitelist,
            DirectList::Blacklist => &self.blacklist,
        }
    }

    pub fn list_mut(&mut self, list: DirectList) -> &mut Names {
        match list {
            DirectList::Whitelist => &mut self.whitelist,
            DirectList::Blacklist => &mut self.blacklist,
        }
    }
}

/// Whether `sender` may send a direct message to `recipient`, whose state is `recipient_state`:
/// never to oneself; the blacklist refuses; in whitelist-only mode only the whitelist admits.
pub fn has_direct_access(sender: &str, recipient: &str, recipient_state: &DirectState) -> bool {
    if sender == recipient || recipient_state.blacklist.contains(sender) {
        return false;
    }
    !recipient_state.whitelist_only || recipient_state.whitelist.contains(sender)
}

/// The history a publication to a room keeps: the namespace's (`namespace`), within the
/// room's own size.
pub fn room_history(namespace: Option<HistoryOptions>, room: &RoomState) -> Option<HistoryOptions> {
    let mut history = namespace?;
    if let Some(size) = room.history_max_size {
        history.size = history.size.min(size);
    }
    Some(history)
}

/// Whether `user` may put `names` on (or take them off) its own direct lists: not itself.
pub fn may_edit_direct_list<S: AsRef<str>>(user: &str, names: &[S]) -> bool {
    !names.iter().any(|n| n.as_ref() == user)
}

/// Whether a list holding `existing` names may take `new` more (names not on it yet) within
/// `max`: the names already there count (chat-service counted only the new ones).
pub fn list_fits(existing: usize, new: usize, max: usize) -> bool {
    existing.saturating_add(new) <= max
}

/// Why a room or user operation was refused: chat-service's error names, each with a Plexus
/// error code. The error's `data` is `{"reason": <name>, "args": [..]}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No such room (119). Args: the room.
    NoRoom,
    /// A room of that name exists (120). Args: the room.
    RoomExists,
    /// The rules refuse the user or the change (105). No args.
    NotAllowed,
    /// A list would exceed its size limit (106). Args: the list.
    ListLimitExceeded,
    /// No such list (104). Args: the list.
    NoList,
    /// No such user (119). Args: the user.
    NoUser,
    /// A user of that name exists (120). Args: the user.
    UserExists,
    /// The user still has connections (120). Args: the user.
    UserOnline,
    /// The user is not in the room (109). Args: the room.
    NotJoined,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::NoRoom,
        Reason::RoomExists,
        Reason::NotAllowed,
        Reason::ListLimitExceeded,
        Reason::NoList,
        Reason::NoUser,
        Reason::UserExists,
        Reason::UserOnline,
        Reason::NotJoined,
    ];

    /// chat-service's name of the error.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRoom => "noRoom",
            Reason::RoomExists => "roomExists",
            Reason::NotAllowed => "notAllowed",
            Reason::ListLimitExceeded => "listLimitExceeded",
            Reason::NoList => "noList",
            Reason::NoUser => "noUser",
            Reason::UserExists => "userExists",
            Reason::UserOnline => "userOnline",
            Reason::NotJoined => "notJoined",
        }
    }

    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The Plexus error code it is answered with.
    pub fn code(self) -> ErrorCode {
        match self {
            Reason::NoRoom | Reason::NoUser => ErrorCode::NOT_FOUND,
            Reason::RoomExists | Reason::UserExists | Reason::UserOnline => ErrorCode::CONFLICT,
            Reason::NotAllowed => ErrorCode::PERMISSION_DENIED,
            Reason::ListLimitExceeded => ErrorCode::LIMIT_EXCEEDED,
            Reason::NoList => ErrorCode::BAD_REQUEST,
            Reason::NotJoined => ErrorCode::NOT_SUBSCRIBED,
        }
    }

    fn message(self, args: &[&str]) -> String {
        let arg = args.first().copied().unwrap_or_default();
        match self {
            Reason::NoRoom => format!("no room `{arg}`"),
            Reason::RoomExists => format!("room `{arg}` exists already"),
            Reason::NotAllowed => "not allowed".to_owned(),
            Reason::ListLimitExceeded => format!("the {arg} would exceed its size limit"),
            Reason::NoList => format!("no list `{arg}`"),
            Reason::NoUser => format!("no user `{arg}`"),
            Reason::UserExists => format!("user `{arg}` exists already"),
            Reason::UserOnline => format!("user `{arg}` is online"),
            Reason::NotJoined => format!("not joined to `{arg}`"),
        }
    }

    /// The error for this reason, with `args` in its message and data.
    pub fn error(self, args: &[&str]) -> Error {
        let data = serde_json::json!({"reason": self.as_str(), "args": args});
        let error = Error::new(self.code(), self.message(args));
        match Payload::json(&data) {
            Ok(data) => error.with_data(data),
            Err(_) => error,
        }
    }

    /// The reason and arguments an error made by [`Reason::error`] carries.
    pub fn of(error: &Error) -> Option<(Reason, Vec<String>)> {
        let text = error.data.as_ref()?.as_json_str()?;
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let reason = Reason::parse(value.get("reason")?.as_str()?)?;
        let args = value
            .get("args")?
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        Some((reason, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    /// The room of the permission table: owner `own`, admin `adm`, whitelisted `wl`,
    /// blacklisted `bl`, an admin also on the blacklist `adb`, someone on both lists `both`,
    /// and `nobody`, on no list.
    fn room(whitelist_only: bool) -> RoomState {
        RoomState::from(
            RoomConfig::default()
                .owner("own")
                .whitelist_only(whitelist_only)
                .list(RoomList::Adminlist, ["adm", "adb"])
                .list(RoomList::Whitelist, ["wl", "both"])
                .list(RoomList::Blacklist, ["bl", "adb", "both"]),
        )
    }

    #[test]
    fn access_in_normal_and_whitelist_only_mode() {
        // (user, access in normal mode, access in whitelist-only mode)
        let table = [
            ("own", true, true),
            ("adm", true, true),
            ("adb", true, true),
            ("wl", true, true),
            ("bl", false, false),
            ("both", false, false),
            ("nobody", true, false),
        ];
        for (user, normal, wl_only) in table {
            assert_eq!(
                room(false).has_access(user),
                normal,
                "{user} in normal mode"
            );
            assert_eq!(
                room(true).has_access(user),
                wl_only,
                "{user} in whitelist mode"
            );
        }
    }

    #[test]
    fn the_owner_keeps_access_in_whitelist_only_mode_on_no_list() {
        // chat-service removed such an owner when the mode was switched on (a defect).
        let state = RoomState::from(RoomConfig::default().owner("own").whitelist_only(true));
        assert!(state.has_access("own"));
        assert!(!state.has_access("guest"));
        let ownerless = RoomState::from(RoomConfig::default().whitelist_only(true));
        assert!(!ownerless.has_access("own"));
    }

    #[test]
    fn admins_are_the_owner_and_the_adminlist() {
        let r = room(false);
        for (user, admin) in [
            ("own", true),
            ("adm", true),
            ("adb", true),
            ("wl", false),
            ("bl", false),
            ("nobody", false),
        ] {
            assert_eq!(r.is_admin(user), admin, "{user}");
            assert_eq!(r.may_change_mode(user), admin, "{user}");
            assert_eq!(r.may_delete(user), user == "own", "{user}");
        }
    }

    #[test]
    fn who_may_edit_which_list() {
        let r = room(false);
        // (actor, list, names, allowed)
        let table: &[(&str, RoomList, &[&str], bool)] = &[
            ("own", RoomList::Whitelist, &["x"], true),
            ("own", RoomList::Blacklist, &["x"], true),
            ("own", RoomList::Adminlist, &["x"], true),
            ("own", RoomList::Blacklist, &["own"], true),
            ("adm", RoomList::Whitelist, &["x"], true),
            ("adm", RoomList::Blacklist, &["x", "adm"], true),
            ("adm", RoomList::Adminlist, &["x"], false),
            ("adm", RoomList::Whitelist, &["x", "own"], false),
            ("adm", RoomList::Blacklist, &["own"], false),
            ("wl", RoomList::Whitelist, &["x"], false),
            ("wl", RoomList::Blacklist, &["x"], false),
            ("wl", RoomList::Adminlist, &["x"], false),
            ("nobody", RoomList::Whitelist, &["nobody"], false),
            ("bl", RoomList::Blacklist, &["bl"], false),
        ];
        for (actor, list, names, allowed) in table {
            assert_eq!(
                r.may_edit_list(actor, *list, names),
                *allowed,
                "{actor} edits the {} with {names:?}",
                list.as_str()
            );
        }
    }

    #[test]
    fn reading_needs_membership_or_admin_rights() {
        let r = room(false);
        assert!(r.may_read("nobody", true));
        assert!(!r.may_read("nobody", false));
        assert!(r.may_read("adm", false));
        assert!(r.may_read("own", false));
        assert!(!r.may_read("wl", false));
    }

    #[test]
    fn list_names_and_the_userlist() {
        for list in RoomList::ALL {
            assert_eq!(RoomList::parse(list.as_str()).unwrap(), list);
        }
        for list in DirectList::ALL {
            assert_eq!(DirectList::parse(list.as_str()).unwrap(), list);
        }
        let e = RoomList::parse("userlist").unwrap_err();
        assert_eq!(e.code, ErrorCode::PERMISSION_DENIED);
        assert_eq!(Reason::of(&e), Some((Reason::NotAllowed, vec![])));
        let e = RoomList::parse("greylist").unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_REQUEST);
        assert_eq!(
            Reason::of(&e),
            Some((Reason::NoList, vec!["greylist".to_owned()]))
        );
        for bad in ["adminlist", "userlist", ""] {
            let e = DirectList::parse(bad).unwrap_err();
            assert_eq!(Reason::of(&e).unwrap().0, Reason::NoList, "{bad}");
        }
    }

    #[test]
    fn direct_access() {
        let open = DirectState::default();
        assert!(has_direct_access("ann", "bob", &open));
        assert!(!has_direct_access("bob", "bob", &open), "never to oneself");
        let blocking = DirectState {
            blacklist: names(&["ann"]),
            ..Default::default()
        };
        assert!(!has_direct_access("ann", "bob", &blocking));
        assert!(has_direct_access("cid", "bob", &blocking));
        let whitelist_only = DirectState {
            whitelist: names(&["ann", "cid"]),
            blacklist: names(&["cid"]),
            whitelist_only: true,
        };
        assert!(has_direct_access("ann", "bob", &whitelist_only));
        assert!(
            !has_direct_access("cid", "bob", &whitelist_only),
            "blacklist beats whitelist"
        );
        assert!(!has_direct_access("dan", "bob", &whitelist_only));
        assert!(may_edit_direct_list("bob", &["ann", "cid"]));
        assert!(!may_edit_direct_list("bob", &["ann", "bob"]));
    }

    #[test]
    fn list_limits_count_the_names_already_there() {
        assert!(list_fits(0, 1, 1));
        assert!(!list_fits(0, 2, 1), "limit 1, add 2");
        assert!(!list_fits(1, 1, 1), "one there, one more");
        assert!(
            list_fits(1, 0, 1),
            "adding names already there adds nothing"
        );
        assert!(list_fits(9, 1, 10));
        assert!(!list_fits(usize::MAX, 1, 10));
    }

    #[test]
    fn reasons_round_trip_through_errors() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
            let e = reason.error(&["chat:r1"]);
            assert_eq!(e.code, reason.code());
            assert_eq!(Reason::of(&e), Some((reason, vec!["chat:r1".to_owned()])));
        }
        assert_eq!(Reason::of(&Error::internal("x")), None);
        assert_eq!(Reason::NoRoom.code(), ErrorCode::NOT_FOUND);
        assert_eq!(Reason::UserOnline.code(), ErrorCode::CONFLICT);
        assert_eq!(Reason::NotJoined.code(), ErrorCode::NOT_SUBSCRIBED);
    }
}

//! chat-service's rooms and users on the core: access lists and modes (`plexus_core::rooms`),
//! membership (presence), messages (history: a message id is its offset).

use super::ChatServiceConfig;
use super::format::payload_value;
use super::socket::chat_error;
use plexus_core::engine::HistoryQuery;
use plexus_core::{Node, Publication};
use plexus_protocol::chatservice::{ChatError, ErrorKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn err(kind: ErrorKind, args: Vec<Value>) -> ChatError {
    ChatError::new(kind, args)
}

fn engine(e: plexus_core::EngineError) -> ChatError {
    err(ErrorKind::InternalError, vec![json!(e.to_string())])
}

/// Whether `user` has a socket in the room's channel (chat-service's `userlist`).
pub(super) async fn is_member(node: &Node, channel: &str, user: &str) -> Result<bool, ChatError> {
    Ok(joined_sockets(node, channel, user).await? > 0)
}

/// The sockets of `user` in a channel, on every node.
pub(super) async fn joined_sockets(
    node: &Node,
    channel: &str,
    user: &str,
) -> Result<usize, ChatError> {
    let entries = node.presence(channel).await.map_err(chat_error)?;
    Ok(entries
        .iter()
        .filter(|e| e.user.as_deref() == Some(user))
        .count())
}

/// The users with a socket in a channel, sorted.
pub(super) async fn userlist(node: &Node, channel: &str) -> Result<Vec<String>, ChatError> {
    let entries = node.presence(channel).await.map_err(chat_error)?;
    let users: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.user.as_deref().map(str::to_owned))
        .collect();
    Ok(users.into_iter().collect())
}

/// Whether `user` has a socket of the service on any node.
pub(super) async fn is_online(
    node: &Node,
    config: &ChatServiceConfig,
    user: &str,
) -> Result<bool, ChatError> {
    let entries = node
        .presence(&config.user_channel(user))
        .await
        .map_err(chat_error)?;
    Ok(!entries.is_empty())
}

/// The most messages a room keeps: its own size, within the service's.
fn max_size(config: &ChatServiceConfig, state: &RoomState) -> usize {
    state
        .history_max_size
        .unwrap_or(config.history_max_size)
        .min(config.history_max_size)
}

/// A stored message with its id (the offset).
fn message(p: &Publication) -> Value {
    let mut value = match payload_value(&p.payload) {
        Some(Value::Object(o)) => o,
        Some(other) => [("data".to_owned(), other)].into_iter().collect(),
        None => serde_json::Map::new(),
    };
    value.insert("id".into(), json!(p.offset));
    Value::Object(value)
}

/// The room channel's messages after `after` that the room still keeps: the oldest `limit`,
/// newest first (`roomHistoryGet`).
pub(super) async fn history(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    state: &RoomState,
    after: u64,
    limit: usize,
) -> Result<Vec<Value>, ChatError> {
    let channel = config.room_channel(room);
    let keep = max_size(config, state) as u64;
    let position = node
        .engine()
        .broker
        .position(&channel)
        .await
        .map_err(engine)?;
    // A room whose size was lowered keeps only its newest `keep`, whatever the store holds.
    let floor = position.offset.saturating_sub(keep);
    if limit == 0 || keep == 0 {
        return Ok(Vec::new());
    }
    let query = HistoryQuery {
        since: Some(after.max(floor)),
        limit,
        reverse: false,
    };
    let page = node
        .engine()
        .broker
        .history(&channel, query)
        .await
        .map_err(engine)?;
    Ok(page.publications.iter().rev().map(message).collect())
}

/// The newest `history_max_get_messages` messages, newest first (`roomRecentHistory`).
pub(super) async fn recent(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    state: &RoomState,
) -> Result<Vec<Value>, ChatError> {
    let channel = config.room_channel(room);
    let keep = max_size(config, state);
    let limit = config.history_max_get_messages.min(keep);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let query = HistoryQuery {
        since: None,
        limit,
        reverse: true,
    };
    let page = node
        .engine()
        .broker
        .history(&channel, query)
        .await
        .map_err(engine)?;
    Ok(page.publications.iter().map(message).collect())
}

/// `roomHistoryInfo`: `{historySize, historyMaxSize, historyMaxGetMessages, lastMessageId}`.
pub(super) async fn history_info(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    state: &RoomState,
) -> Result<Value, ChatError> {
    let channel = config.room_channel(room);
    let keep = max_size(config, state) as u64;
    let query = HistoryQuery {
        since: None,
        limit: 0,
        reverse: false,
    };
    let page = node
        .engine()
        .broker
        .history(&channel, query)
        .await
        .map_err(engine)?;
    let last = page.position.offset;
    Ok(json!({
        "historySize": last.min(keep),
        "historyMaxSize": keep,
        "historyMaxGetMessages": config.history_max_get_messages,
        "lastMessageId": last,
    }))
}

pub(super) use plexus_core::rooms::RoomState;
use plexus_core::rooms::{DirectList, RoomConfig, RoomList};
use plexus_core::{Actor, Error};
use std::sync::Arc;

fn actor(user: &str, bypass: bool) -> Actor<'_> {
    if bypass {
        Actor::Server
    } else {
        Actor::User(user)
    }
}

/// A list name of a room's access lists (`noList` otherwise).
fn room_list(name: &str) -> Result<RoomList, ChatError> {
    RoomList::parse(name).map_err(|_| err(ErrorKind::NoList, vec![json!(name)]))
}

fn direct_list_of(name: &str) -> Result<DirectList, ChatError> {
    DirectList::parse(name).map_err(|_| err(ErrorKind::NoList, vec![json!(name)]))
}

fn core(e: Error) -> ChatError {
    chat_error(e)
}

/// Makes sure the user exists (a login creates it).
pub(super) async fn ensure_user(node: &Node, user: &str) -> Result<(), ChatError> {
    node.rooms().ensure_user(user).await.map(drop).map_err(core)
}

/// A room's state (`noRoom` when there is none).
pub(super) async fn state(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
) -> Result<RoomState, ChatError> {
    node.rooms()
        .state(&config.room_channel(room))
        .await
        .map_err(|e| room_error(e, room))
}

/// A core error about a room channel, with the room's name (not its channel) in the message.
fn room_error(e: Error, room: &str) -> ChatError {
    let mut chat = core(e);
    if matches!(
        chat.kind,
        ErrorKind::NoRoom | ErrorKind::RoomExists | ErrorKind::NotJoined
    ) {
        chat.args = vec![json!(room)];
    }
    chat
}

/// A room's access list by name.
pub(super) fn list(state: &RoomState, name: &str) -> Result<Vec<String>, ChatError> {
    let list = room_list(name)?;
    Ok(state.list(list).iter().map(|n| n.to_string()).collect())
}

/// Creates a room owned by `owner`, with the service's notification defaults.
pub(super) async fn create(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    owner: Option<Arc<str>>,
    whitelist_only: bool,
) -> Result<(), ChatError> {
    let mut room_config = RoomConfig::default()
        .whitelist_only(whitelist_only)
        .notifications(
            config.enable_userlist_updates,
            config.enable_access_lists_updates,
        );
    if let Some(owner) = owner {
        room_config = room_config.owner(owner);
    }
    node.rooms()
        .create(&config.room_channel(room), room_config)
        .await
        .map_err(|e| room_error(e, room))
}

/// Deletes a room (its members are told `roomAccessRemoved`).
pub(super) async fn delete(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    user: &str,
    bypass: bool,
) -> Result<Vec<Arc<str>>, ChatError> {
    node.rooms()
        .delete(actor(user, bypass), &config.room_channel(room))
        .await
        .map_err(|e| room_error(e, room))
}

/// Adds names to (or removes them from) a room list as `user`; the users who lost access.
#[allow(clippy::too_many_arguments)]
pub(super) async fn edit_list(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    user: &str,
    list: &str,
    names: &[String],
    add: bool,
    bypass: bool,
) -> Result<Vec<Arc<str>>, ChatError> {
    if list == "userlist" {
        return Err(err(ErrorKind::NotAllowed, vec![]));
    }
    let list = room_list(list)?;
    let channel = config.room_channel(room);
    let rooms = node.rooms();
    let update = if add {
        rooms
            .add_to_list(actor(user, bypass), &channel, list, names)
            .await
    } else {
        rooms
            .remove_from_list(actor(user, bypass), &channel, list, names)
            .await
    };
    update.map(|u| u.removed).map_err(|e| room_error(e, room))
}

/// Switches a room's whitelist-only mode as `user`; the users who lost access.
pub(super) async fn set_mode(
    node: &Node,
    config: &ChatServiceConfig,
    room: &str,
    user: &str,
    mode: bool,
    bypass: bool,
) -> Result<Vec<Arc<str>>, ChatError> {
    node.rooms()
        .set_whitelist_only(actor(user, bypass), &config.room_channel(room), mode)
        .await
        .map(|u| u.removed)
        .map_err(|e| room_error(e, room))
}

/// Adds names to (or removes them from) the user's own direct-message list.
pub(super) async fn direct_edit(
    node: &Node,
    user: &str,
    list: &str,
    names: &[String],
    add: bool,
) -> Result<(), ChatError> {
    let list = direct_list_of(list)?;
    let rooms = node.rooms();
    let done = if add {
        rooms.direct_add_to_list(user, list, names).await
    } else {
        rooms.direct_remove_from_list(user, list, names).await
    };
    done.map(drop).map_err(core)
}

pub(super) async fn direct_list(
    node: &Node,
    user: &str,
    list: &str,
) -> Result<Vec<String>, ChatError> {
    let list = direct_list_of(list)?;
    let state = node.rooms().direct_state(user).await.map_err(core)?;
    Ok(state.list(list).iter().map(|n| n.to_string()).collect())
}

pub(super) async fn direct_mode(node: &Node, user: &str) -> Result<bool, ChatError> {
    Ok(node
        .rooms()
        .direct_state(user)
        .await
        .map_err(core)?
        .whitelist_only)
}

pub(super) async fn direct_set_mode(node: &Node, user: &str, mode: bool) -> Result<(), ChatError> {
    node.rooms()
        .direct_set_whitelist_only(user, mode)
        .await
        .map_err(core)
}

/// Whether `sender` may message `to`: `noUser` for a user never seen, `notAllowed` when the
/// recipient's lists refuse it.
pub(super) async fn check_direct(
    node: &Node,
    sender: &str,
    to: &str,
    bypass: bool,
) -> Result<(), ChatError> {
    let rooms = node.rooms();
    if !rooms.has_user(to).await.map_err(core)? {
        return Err(err(ErrorKind::NoUser, vec![json!(to)]));
    }
    if bypass || rooms.has_direct_access(sender, to).await.map_err(core)? {
        Ok(())
    } else {
        Err(err(ErrorKind::NotAllowed, vec![]))
    }
}

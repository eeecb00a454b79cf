//! Records: JSON documents with a version (Mesh `exposeRecord` / `publishRecordUpdate`, made
//! atomic).
//!
//! A record has an id, a JSON value, a **version** that goes up by exactly one per write, and an
//! **epoch** that changes when the record is created anew (after a delete). A write replaces
//! the value, applies an RFC 6902 JSON Patch, or deletes; any of them may be a compare-and-set
//! against an expected version (a mismatch is `version_conflict`, never a lost update).
//!
//! Every write is one [`RecordStore::put`], a compare-and-set on (version, epoch) that also
//! hands the change to every node subscribed to the record — on Redis one Lua script. The node
//! reads, computes the new value and its patch, and puts; when another writer got in between,
//! it reads again and retries (bounded by [`WRITE_ATTEMPTS`]), unless the caller asked for a
//! version, in which case the conflict is the answer.
//!
//! Subscribers receive each change as an [`Event::Record`] in their mode: `full` (the value) or
//! `patch` (the patch from the previous version). Changes travel as publications of an internal
//! channel ([`record_channel`]: a name no client can subscribe to, since channel names may not
//! hold control characters) whose offsets are the record's versions and whose epoch is the
//! record's, so the hub's continuity check sees every gap: after one (a message lost between
//! the engine and the node, a pub/sub reconnect), the node sends the **full value** to every
//! subscriber, patch mode included. A subscriber therefore never applies a patch to the wrong
//! version: a patch always follows the version it was computed from on that connection, and a
//! client that sees a version other than its own plus one (a reconnect) reads the value again.

use crate::channels::{Access, ChannelMatch};
use crate::commands::BoxFuture;
use crate::connection::{Connection, HoldKey};
use crate::engine::{RecordPut, RecordPutOutcome};
use crate::error::Error;
use crate::ids::ConnId;
use crate::model::{EncodeCache, Event, Publication};
use crate::node::{Node, engine_error};
use plexus_protocol::{ErrorCode, Payload};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// Prefix of a record's internal channel.
pub const RECORD_CHANNEL_PREFIX: &str = "\u{1}rec:";

/// Times a write without an expected version reads and tries again when other writers keep
/// getting in between; beyond it the write fails with `version_conflict`.
pub const WRITE_ATTEMPTS: usize = 32;

/// The internal channel that carries a record's changes.
pub fn record_channel(id: &str) -> String {
    format!("{RECORD_CHANNEL_PREFIX}{id}")
}

/// The record id of an internal record channel.
pub fn record_id(channel: &str) -> Option<&str> {
    channel.strip_prefix(RECORD_CHANNEL_PREFIX)
}

/// How a subscriber receives changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// The whole value at every version.
    #[default]
    Full,
    /// The RFC 6902 patch from the previous version (the whole value after a gap).
    Patch,
}

impl RecordMode {
    pub fn parse(s: &str) -> Option<RecordMode> {
        match s {
            "full" => Some(RecordMode::Full),
            "patch" => Some(RecordMode::Patch),
            _ => None,
        }
    }
}

/// A record as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: Arc<str>,
    pub value: Value,
    /// +1 per write, starting at 1 when the record is created.
    pub version: u64,
    /// Changes when the record is created again after a delete.
    pub epoch: Arc<str>,
}

/// What a write does.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordWrite {
    /// Replace the value.
    Set(Value),
    /// Apply an RFC 6902 JSON Patch (a JSON array of operations) to the value (`null` when the
    /// record does not exist).
    Patch(Value),
    /// Delete the record.
    Delete,
}

/// The outcome of a write: the record's new version (and epoch), or for a delete the version
/// the deletion took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    pub epoch: Arc<str>,
}

/// What a subscriber is told.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordChange {
    /// The whole value.
    Full(Value),
    /// The patch from `version - 1`.
    Patch(Value),
    /// The record was deleted (its next creation starts a new epoch at version 1).
    Deleted,
}

/// A change of a record, for one subscriber mode.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordEvent {
    pub id: Arc<str>,
    pub version: u64,
    pub epoch: Arc<str>,
    pub change: RecordChange,
}

/// A change as it travels between nodes (the payload of the internal channel's publication).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordChangeWire {
    /// The new value (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<Value>,
    /// The patch from the previous version (absent for a delete or a creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Value>,
    /// Deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub d: bool,
}

impl RecordChangeWire {
    pub fn payload(&self) -> Payload {
        Payload::json(self).expect("a record change serializes")
    }
}

/// Which action a record guard judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAction {
    Read,
    Write,
}

/// What a record guard is asked.
#[derive(Clone, Debug)]
pub struct RecordGuardRequest {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub id: Arc<str>,
    pub action: RecordAction,
}

/// A record guard: `Ok(())` allows; an error refuses with that error.
pub trait RecordGuard: Send + Sync + 'static {
    fn check(&self, request: RecordGuardRequest) -> BoxFuture<Result<(), Error>>;
}

impl<F, Fut> RecordGuard for F
where
    F: Fn(RecordGuardRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    fn check(&self, request: RecordGuardRequest) -> BoxFuture<Result<(), Error>> {
        Box::pin(self(request))
    }
}

/// Options of the records a namespace matches. Its name is the records' storage group: the
/// records-per-namespace limit counts it, and on Redis it is the keys' hash tag.
#[derive(Clone, Debug)]
pub struct RecordNamespace {
    pub name: String,
    pub records: ChannelMatch,
    /// Who may read and subscribe.
    pub read: Access,
    /// Who may write (writers may also read).
    pub write: Access,
    /// Records that may exist in the namespace at once.
    pub max_records: usize,
    /// The largest value, in bytes of JSON.
    pub max_value_bytes: usize,
    /// Operations one JSON Patch may hold.
    pub max_patch_ops: usize,
}

impl RecordNamespace {
    /// A closed namespace (nobody reads or writes) with the default limits.
    pub fn new(name: impl Into<String>, records: ChannelMatch) -> RecordNamespace {
        RecordNamespace {
            name: name.into(),
            records,
            read: Access::Nobody,
            write: Access::Nobody,
            max_records: 100_000,
            max_value_bytes: 64 * 1024,
            max_patch_ops: 100,
        }
    }

    /// Development mode's namespace: every record readable and writable by anyone.
    pub fn development() -> RecordNamespace {
        RecordNamespace::new("development", ChannelMatch::Any)
            .read(Access::Anyone)
            .write(Access::Anyone)
    }

    pub fn read(mut self, access: Access) -> RecordNamespace {
        self.read = access;
        self
    }

    pub fn write(mut self, access: Access) -> RecordNamespace {
        self.write = access;
        self
    }

    pub fn max_records(mut self, n: usize) -> RecordNamespace {
        self.max_records = n;
        self
    }

    pub fn max_value_bytes(mut self, n: usize) -> RecordNamespace {
        self.max_value_bytes = n;
        self
    }

    pub fn max_patch_ops(mut self, n: usize) -> RecordNamespace {
        self.max_patch_ops = n;
        self
    }
}

struct GuardRule {
    records: ChannelMatch,
    actions: Vec<RecordAction>,
    guard: Arc<dyn RecordGuard>,
}

/// The record namespaces and guards of a node. The first namespace matching an id applies; a
/// record no namespace matches does not exist for anyone (closed by default, open in
/// development mode).
#[derive(Default, Clone)]
pub struct RecordPolicy {
    namespaces: Vec<RecordNamespace>,
    guards: Vec<Arc<GuardRule>>,
}

/// The longest record id, in bytes.
pub const MAX_RECORD_ID_BYTES: usize = 255;

impl RecordPolicy {
    /// Every record open to anyone ([`RecordNamespace::development`]).
    pub fn open() -> RecordPolicy {
        let mut policy = RecordPolicy::default();
        policy.add_namespace(RecordNamespace::development());
        policy
    }

    pub fn add_namespace(&mut self, namespace: RecordNamespace) {
        self.namespaces.push(namespace);
    }

    /// Adds a guard for `actions` on the records `records` matches (Mesh `exposeRecord` /
    /// `exposeWritableRecord` guards). Every matching guard must allow.
    pub fn add_guard(
        &mut self,
        records: ChannelMatch,
        actions: &[RecordAction],
        guard: impl RecordGuard,
    ) {
        self.guards.push(Arc::new(GuardRule {
            records,
            actions: actions.to_vec(),
            guard: Arc::new(guard),
        }));
    }

    pub fn namespace(&self, id: &str) -> Option<&RecordNamespace> {
        self.namespaces.iter().find(|ns| ns.records.matches(id))
    }

    /// The namespace of a valid record id, or the error a client gets.
    pub fn resolve(&self, id: &str) -> Result<&RecordNamespace, Error> {
        validate_record_id(id)?;
        self.namespace(id).ok_or_else(|| {
            Error::permission_denied(format!("no record namespace allows record `{id}`"))
        })
    }

    /// Checks a client's read or write.
    pub async fn check(&self, request: RecordGuardRequest) -> Result<(), Error> {
        let ns = self.resolve(&request.id)?;
        let user = request.user.is_some();
        // Writers may also read; "subscribers" means nothing for records.
        let (ok, access) = match request.action {
            RecordAction::Read => (
                ns.read.allows(user, false) || ns.write.allows(user, false),
                ns.read,
            ),
            RecordAction::Write => (ns.write.allows(user, false), ns.write),
        };
        if !ok {
            return Err(access.refusal(format!(
                "{:?} is not allowed on record `{}`",
                request.action, request.id
            )));
        }
        for rule in &self.guards {
            if rule.actions.contains(&request.action) && rule.records.matches(&request.id) {
                rule.guard.check(request.clone()).await?;
            }
        }
        Ok(())
    }
}

/// Checks a record id: 1 to [`MAX_RECORD_ID_BYTES`] bytes, no control characters.
pub fn validate_record_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_RECORD_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "a record id has 1 to {MAX_RECORD_ID_BYTES} bytes and no control characters"
        )));
    }
    Ok(())
}

/// Parses a JSON Patch document (an array of RFC 6902 operations).
pub fn parse_patch(patch: &Value) -> Result<json_patch::Patch, Error> {
    serde_json::from_value::<json_patch::Patch>(patch.clone())
        .map_err(|e| Error::new(ErrorCode::BAD_PATCH, format!("not a JSON Patch: {e}")))
}

/// Applies a JSON Patch to a value, atomically: on any failure (a `test` that does not hold, a
/// path that does not exist) the value is left as it was and the error is `bad_patch`.
///
/// It works on a copy: `json_patch::patch`'s own undo does not restore the source of a `move`
/// whose target cannot be added (found by the `json_patch` fuzz target).
pub fn apply_patch(value: &mut Value, patch: &json_patch::Patch) -> Result<(), Error> {
    let mut patched = value.clone();
    json_patch::patch_unsafe(&mut patched, patch).map_err(|e| {
        Error::new(
            ErrorCode::BAD_PATCH,
            format!("the patch does not apply: {e}"),
        )
    })?;
    *value = patched;
    Ok(())
}

/// The JSON Patch that turns `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Value {
    serde_json::to_value(json_patch::diff(from, to)).expect("a patch serializes")
}

/// A `version_conflict` error telling the current version.
fn conflict(current: u64, message: impl Into<String>) -> Error {
    Error::new(ErrorCode::VERSION_CONFLICT, message)
        .with_data(Payload::json(&serde_json::json!({ "version": current })).expect("json"))
}

/// A completed record subscribe. Queue the reply, then drop it: dropping releases the changes
/// held back since the subscribe started (only those after `record`'s version).
pub struct RecordSubscription {
    pub id: Arc<str>,
    /// The value when subscribed (`None`: no such record).
    pub record: Option<Record>,
    release: Option<(Node, Arc<Connection>, Arc<str>)>,
}

impl Drop for RecordSubscription {
    fn drop(&mut self) {
        if let Some((node, conn, channel)) = self.release.take() {
            let after = self.record.as_ref().map_or(0, |r| r.version);
            node.release(&conn, &channel, after);
        }
    }
}

impl Node {
    /// Reads a record (server side: no access check).
    pub async fn record(&self, id: &str) -> Result<Option<Record>, Error> {
        let ns = self.records().resolve(id)?;
        self.engine()
            .records
            .get(&ns.name, id)
            .await
            .map_err(engine_error)
    }

    /// Writes a record (server side: no access check). With `expect`, the write happens only
    /// while the record's version is `expect` (0: the record must not exist); otherwise it is
    /// `version_conflict` (data `{"version": current}`).
    pub async fn write_record(
        &self,
        id: &str,
        write: RecordWrite,
        expect: Option<u64>,
    ) -> Result<Written, Error> {
        let ns = self.records().resolve(id)?.clone();
        let patch = match &write {
            RecordWrite::Patch(ops) => {
                let patch = parse_patch(ops)?;
                if patch.0.len() > ns.max_patch_ops {
                    return Err(Error::new(
                        ErrorCode::RECORD_LIMIT,
                        format!(
                            "a patch may hold at most {} operations in `{}`",
                            ns.max_patch_ops, ns.name
                        ),
                    ));
                }
                Some(patch)
            }
            _ => None,
        };
        let store = &self.engine().records;
        for _ in 0..WRITE_ATTEMPTS {
            let current = store.get(&ns.name, id).await.map_err(engine_error)?;
            let version = current.as_ref().map_or(0, |r| r.version);
            if let Some(expect) = expect
                && expect != version
            {
                return Err(conflict(
                    version,
                    format!("record `{id}` is at version {version}, not {expect}"),
                ));
            }
            let old = current.as_ref().map(|r| &r.value);
            let change = match (&write, &patch) {
                (RecordWrite::Delete, _) => {
                    if current.is_none() {
                        return Err(Error::new(
                            ErrorCode::NOT_FOUND,
                            format!("no record `{id}`"),
                        ));
                    }
                    RecordChangeWire {
                        v: None,
                        p: None,
                        d: true,
                    }
                }
                (RecordWrite::Set(value), _) => RecordChangeWire {
                    p: old.map(|old| diff(old, value)),
                    v: Some(value.clone()),
                    d: false,
                },
                (RecordWrite::Patch(ops), Some(patch)) => {
                    let mut value = old.cloned().unwrap_or(Value::Null);
                    apply_patch(&mut value, patch)?;
                    RecordChangeWire {
                        p: old.map(|_| ops.clone()),
                        v: Some(value),
                        d: false,
                    }
                }
                (RecordWrite::Patch(_), None) => unreachable!("parsed above"),
            };
            if let Some(value) = &change.v {
                let bytes = serde_json::to_vec(value).map_or(usize::MAX, |b| b.len());
                if bytes > ns.max_value_bytes {
                    return Err(Error::new(
                        ErrorCode::RECORD_LIMIT,
                        format!(
                            "a record in `{}` holds at most {} bytes of JSON ({bytes} given)",
                            ns.name, ns.max_value_bytes
                        ),
                    ));
                }
            }
            let put = RecordPut {
                namespace: ns.name.clone(),
                id: Arc::from(id),
                expect: current.as_ref().map(|r| (r.version, r.epoch.clone())),
                change,
                max_records: ns.max_records,
            };
            match store.put(put).await.map_err(engine_error)? {
                RecordPutOutcome::Done(written) => return Ok(written),
                RecordPutOutcome::Full => {
                    return Err(Error::new(
                        ErrorCode::RECORD_LIMIT,
                        format!(
                            "namespace `{}` holds its maximum of {} records",
                            ns.name, ns.max_records
                        ),
                    ));
                }
                RecordPutOutcome::Conflict { version } => {
                    if expect.is_some() {
                        return Err(conflict(
                            version,
                            format!("record `{id}` changed meanwhile (now version {version})"),
                        ));
                    }
                }
            }
        }
        Err(conflict(
            0,
            format!("record `{id}` kept changing: {WRITE_ATTEMPTS} attempts failed"),
        ))
    }

    /// Subscribes a local connection to a record in `mode` and reads its value. The caller
    /// queues its answer with the value, then drops the returned [`RecordSubscription`].
    pub(crate) async fn subscribe_record(
        &self,
        conn: &Arc<Connection>,
        id: &str,
        mode: RecordMode,
    ) -> Result<RecordSubscription, Error> {
        let ns = self.records().resolve(id)?.name.clone();
        let channel: Arc<str> = Arc::from(record_channel(id));
        if conn.is_subscribed(&channel) {
            return Err(Error::new(
                ErrorCode::ALREADY_SUBSCRIBED,
                format!("already subscribed to record `{id}`"),
            ));
        }
        // Set before the first change can be delivered.
        conn.set_record_mode(&channel, mode);
        self.join_stream(conn, &channel, &format!("record `{id}`"))
            .await?;
        let mut subscription = RecordSubscription {
            id: Arc::from(id),
            record: None,
            release: Some((self.clone(), conn.clone(), channel.clone())),
        };
        match self.engine().records.get(&ns, id).await {
            Ok(record) => {
                subscription.record = record;
                Ok(subscription)
            }
            Err(e) => {
                drop(subscription);
                self.unsubscribe_record(conn, id).await;
                Err(engine_error(e))
            }
        }
    }

    /// Ends a connection's record subscription; false when there was none.
    pub(crate) async fn unsubscribe_record(&self, conn: &Arc<Connection>, id: &str) -> bool {
        let channel: Arc<str> = Arc::from(record_channel(id));
        if !conn.remove_subscription(&channel) {
            return false;
        }
        conn.set_record_mode(&channel, RecordMode::Full);
        let _ = conn.release(&HoldKey::Channel(channel.clone()), u64::MAX);
        self.leave_stream(&channel, conn.id).await;
        true
    }

    /// Changes of a record may have been lost on their way to this node (a Redis pub/sub
    /// reconnect): reads the record and hands it to the subscribers as a change — the whole
    /// value when versions were skipped (a delete when it is gone), nothing when none were.
    pub(crate) async fn resync_record(&self, channel: &str) {
        let Some(id) = record_id(channel) else {
            return;
        };
        let record = match self.record(id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(record = %id, error = %e.message, "record resync failed");
                return;
            }
        };
        let (offset, epoch, change) = match record {
            Some(r) => (
                r.version,
                r.epoch,
                RecordChangeWire {
                    v: Some(r.value),
                    p: None,
                    d: false,
                },
            ),
            None => {
                let Some((epoch, last)) = self.hub().last_position(channel) else {
                    return;
                };
                let deleted = RecordChangeWire {
                    v: None,
                    p: None,
                    d: true,
                };
                (last + 1, epoch, deleted)
            }
        };
        let publication = Publication {
            channel: Arc::from(channel),
            offset,
            epoch,
            payload: change.payload(),
            publisher: None,
            event: None,
        };
        self.deliver_record(id, &publication);
    }

    /// Hands a record change to the node's subscribers of the record, in their modes.
    pub(crate) fn deliver_record(&self, id: &str, publication: &Publication) {
        let (subscribers, continuity) =
            self.hub()
                .subscribers_at(&publication.channel, &publication.epoch, publication.offset);
        let gap = match continuity {
            crate::hub::Continuity::Stale => return,
            crate::hub::Continuity::Gap => true,
            crate::hub::Continuity::Continuous => false,
        };
        let Ok(change) = publication.payload.to_value::<RecordChangeWire>() else {
            tracing::warn!(record = %id, "undecodable record change");
            return;
        };
        let key = HoldKey::Channel(publication.channel.clone());
        if gap {
            tracing::debug!(record = %id, version = publication.offset, "gap in a record's versions: sending the full value");
            for conn in &subscribers {
                conn.clear_floor(&key);
            }
        }
        let event = |change: RecordChange| RecordEvent {
            id: Arc::from(id),
            version: publication.offset,
            epoch: publication.epoch.clone(),
            change,
        };
        let (full, patch) = match (change.d, change.v, change.p) {
            (true, _, _) => (event(RecordChange::Deleted), event(RecordChange::Deleted)),
            (false, Some(v), Some(p)) if !gap => {
                (event(RecordChange::Full(v)), event(RecordChange::Patch(p)))
            }
            (false, v, _) => {
                let full = event(RecordChange::Full(v.unwrap_or(Value::Null)));
                (full.clone(), full)
            }
        };
        let mut full_cache = EncodeCache::new(Event::Record(&full));
        let mut patch_cache = EncodeCache::new(Event::Record(&patch));
        for conn in subscribers {
            let cache = match conn.record_mode(&publication.channel) {
                RecordMode::Full => &mut full_cache,
                RecordMode::Patch => &mut patch_cache,
            };
            if let Some(frame) = cache.frame(conn.format()) {
                self.count_push(conn.send_sequenced(&key, publication.offset, frame));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_that_fails_leaves_the_value_as_it_was() {
        // The fuzz target's find: a move whose target parent does not exist.
        let before = json!({"a": {"b": [1, 3, 3]}});
        let ops = json!([
            {"op": "move", "from": "/a/b/0", "path": "/rpa/c"},
            {"op": "test", "path": "/a/`c", "value": 0}
        ]);
        let mut value = before.clone();
        let e = apply_patch(&mut value, &parse_patch(&ops).unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_PATCH);
        assert_eq!(value, before);
    }

    #[test]
    fn a_diff_turns_one_value_into_the_other() {
        let (from, to) = (
            json!({"a": [1, 2, 3], "b": 1}),
            json!({"a": [1], "c": {"d": null}}),
        );
        let mut value = from.clone();
        apply_patch(&mut value, &parse_patch(&diff(&from, &to)).unwrap()).unwrap();
        assert_eq!(value, to);
    }
}

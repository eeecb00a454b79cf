//! Records (`docs/records.md`): read, write and watch JSON documents with versions.
//!
//! [`RecordWatch`] follows one record and always exposes its current value: it applies `patch`
//! pushes only to the version they follow (same epoch, version + 1), and reads the record again
//! by itself whenever it cannot — a push it missed, a push stream that lagged, a reconnect
//! (after which it also subscribes again). It never applies a patch to the wrong version.

use crate::client::{Client, Events, Pushes};
use crate::error::ClientError;
use crate::types::{Event, PushEvent};
use serde_json::Value;

/// A record's value and version, as the server had it. A record that does not exist is
/// `value: null`, `version: 0`, `epoch: ""`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordState {
    pub id: String,
    pub value: Value,
    pub version: u64,
    /// Changes when the record is created again after a delete.
    pub epoch: String,
}

/// The version a write made (for a delete: the version the deletion took).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordVersion {
    pub version: u64,
    pub epoch: String,
}

/// How a watch receives changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordMode {
    /// The whole value at every version.
    #[default]
    Full,
    /// Patches from the previous version (the client applies them).
    Patch,
}

impl RecordMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordMode::Full => "full",
            RecordMode::Patch => "patch",
        }
    }
}

/// A `record` push: a change of a subscribed record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordChange {
    pub id: String,
    pub version: u64,
    pub epoch: String,
    pub value: Option<Value>,
    pub patch: Option<Value>,
    pub deleted: bool,
}

impl RecordChange {
    pub(crate) fn from_wire(p: plexus_protocol::server::RecordPush) -> RecordChange {
        RecordChange {
            id: p.record,
            version: p.version,
            epoch: p.epoch,
            value: p.value,
            patch: p.patch,
            deleted: p.deleted,
        }
    }
}

/// What applying a change did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// The state moved on.
    Yes,
    /// Old news (a version already held): ignored.
    Stale,
    /// It does not follow the version held: read the record again.
    Gap,
}

impl RecordState {
    /// Applies a change by the client rule of `docs/protocol.md` §6.15.
    fn apply(&mut self, change: &RecordChange) -> Applied {
        let same_epoch = change.epoch == self.epoch;
        if same_epoch && change.version <= self.version {
            return Applied::Stale;
        }
        if change.deleted {
            self.value = Value::Null;
        } else if let Some(value) = &change.value {
            self.value = value.clone();
        } else if let Some(ops) = &change.patch {
            if !same_epoch || change.version != self.version + 1 {
                return Applied::Gap;
            }
            let Ok(patch) = serde_json::from_value::<json_patch::Patch>(ops.clone()) else {
                return Applied::Gap;
            };
            let mut value = self.value.clone();
            if json_patch::patch(&mut value, &patch).is_err() {
                return Applied::Gap;
            }
            self.value = value;
        } else {
            return Applied::Gap;
        }
        self.version = change.version;
        self.epoch = change.epoch.clone();
        Applied::Yes
    }
}

/// A watched record: its current value, and a stream of its states.
///
/// Made by [`Client::watch_record`]. Read it with [`RecordWatch::next`]; each call returns the
/// state after the next change (or after a resync). Dropping it ends the subscription.
pub struct RecordWatch {
    client: Client,
    mode: RecordMode,
    state: RecordState,
    pushes: Pushes,
    events: Events,
    resyncs: u64,
    released: bool,
}

impl RecordWatch {
    pub(crate) async fn start(
        client: &Client,
        id: String,
        mode: RecordMode,
    ) -> Result<RecordWatch, ClientError> {
        // The streams exist before the subscribe, so no change after it is missed.
        let pushes = client.pushes();
        let events = client.events();
        let state = client.subscribe_record(&id, mode).await?;
        Ok(RecordWatch {
            client: client.clone(),
            mode,
            state,
            pushes,
            events,
            resyncs: 0,
            released: false,
        })
    }

    /// The record as last known.
    pub fn current(&self) -> &RecordState {
        &self.state
    }

    /// How many times the watch had to read the record again (a missed change, a reconnect).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The state after the next change; `None` once the client stopped. An error is a failed
    /// resync (the watch keeps going: call `next` again).
    pub async fn next(&mut self) -> Option<Result<RecordState, ClientError>> {
        loop {
            tokio::select! {
                push = self.pushes.next() => match push? {
                    PushEvent::Record(change) if change.id == self.state.id => {
                        match self.state.apply(&change) {
                            Applied::Yes => return Some(Ok(self.state.clone())),
                            Applied::Stale => {}
                            Applied::Gap => return Some(self.resync(false).await),
                        }
                    }
                    PushEvent::Lagged { .. } => return Some(self.resync(false).await),
                    _ => {}
                },
                event = self.events.next() => match event? {
                    // A new connection has no subscription yet: subscribe again, read again.
                    Event::Connected { reconnected: true, .. } => {
                        return Some(self.resync(true).await);
                    }
                    Event::Disconnected { will_reconnect: false, .. } | Event::GaveUp { .. } => {
                        return None;
                    }
                    Event::Lagged { .. } => return Some(self.resync(true).await),
                    _ => {}
                },
            }
        }
    }

    async fn resync(&mut self, subscribe: bool) -> Result<RecordState, ClientError> {
        self.resyncs += 1;
        let id = self.state.id.clone();
        let fresh = if subscribe {
            match self.client.subscribe_record(&id, self.mode).await {
                Err(e) if e.code() == Some(plexus_protocol::ErrorCode::ALREADY_SUBSCRIBED) => {
                    self.client.record(&id).await
                }
                other => other,
            }
        } else {
            self.client.record(&id).await
        }?;
        // A read may be older than changes already applied (they raced): keep the newest.
        if fresh.epoch != self.state.epoch || fresh.version >= self.state.version {
            self.state = fresh;
        }
        Ok(self.state.clone())
    }

    /// Ends the subscription and waits for the server's answer.
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.released = true;
        self.client.unsubscribe_record(&self.state.id).await
    }
}

impl Drop for RecordWatch {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, id) = (self.client.clone(), self.state.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.unsubscribe_record(&id).await;
            });
        }
    }
}

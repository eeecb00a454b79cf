//! Presence: who is in a channel, join/leave pushes, ephemeral per-connection state, and when a
//! user was last seen (built on [`crate::engine::PresenceStore`]).

use crate::channels::JoinLeave;
use crate::connection::Connection;
use crate::engine::{Control, PresenceEntry, PresenceEvent, PresenceStats};
use crate::error::Error;
use crate::ids::ConnId;
use crate::node::{Node, engine_error};
use plexus_protocol::{ErrorCode, Payload};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Node {
    fn presence_namespace(&self, channel: &str) -> Option<JoinLeave> {
        if crate::records::record_id(channel).is_some() {
            return None;
        }
        self.channels()
            .namespace(channel)
            .filter(|ns| ns.presence)
            .map(|ns| ns.join_leave)
    }

    /// Whether a join or leave in `channel` is told to its subscribers: a room tells them only
    /// when its user-list notifications are on (chat-service `enableUserlistUpdates`); a room
    /// gone meanwhile tells nobody.
    async fn tells_join_leave(&self, channel: &str) -> bool {
        if !self.channels().is_room(channel) {
            return true;
        }
        self.rooms()
            .view(channel, &[])
            .await
            .is_ok_and(|room| room.notify_userlist)
    }

    pub(crate) async fn join_presence(&self, conn: &Connection, channel: &Arc<str>) {
        if conn.is_observer() {
            return;
        }
        let Some(join_leave) = self.presence_namespace(channel) else {
            return;
        };
        let identity = conn.identity();
        let entry = PresenceEntry {
            conn: conn.id,
            user: identity.map(|i| i.user.clone()),
            info: identity.and_then(|i| i.info.clone()),
            state: None,
        };
        let (user, info) = (entry.user.clone(), entry.info.clone());
        let first = match self.engine().presence.add(channel, entry).await {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "presence add failed");
                return;
            }
        };
        if (join_leave == JoinLeave::Connections || (join_leave == JoinLeave::Users && first))
            && self.tells_join_leave(channel).await
        {
            let event = PresenceEvent::Join { user, info };
            let _ = self
                .control(Control::Presence {
                    channel: channel.clone(),
                    conn: conn.id,
                    event,
                })
                .await;
        }
    }

    pub(crate) async fn leave_presence(&self, conn: &Connection, channel: &str) {
        if conn.is_observer() {
            return;
        }
        let Some(join_leave) = self.presence_namespace(channel) else {
            return;
        };
        self.set_state_generation(&Arc::from(channel), conn.id, false);
        let last = match self.engine().presence.remove(channel, conn.id).await {
            Ok(last) => last,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "presence remove failed");
                return;
            }
        };
        if (join_leave == JoinLeave::Connections || (join_leave == JoinLeave::Users && last))
            && self.tells_join_leave(channel).await
        {
            let event = PresenceEvent::Leave {
                user: conn.identity().map(|i| i.user.clone()),
            };
            let _ = self
                .control(Control::Presence {
                    channel: Arc::from(channel),
                    conn: conn.id,
                    event,
                })
                .await;
        }
    }

    /// Sends the `leave` pushes of members that left the channels this node has subscribers in
    /// without being removed (their node died and their entries expired), as their own node
    /// would have: per connection, or for a user's last one, as each namespace says.
    pub(crate) async fn tell_departures(&self) {
        for channel in self.hub().channels() {
            let Some(join_leave) = self.presence_namespace(&channel) else {
                continue;
            };
            if join_leave == JoinLeave::Off {
                continue;
            }
            let departed = match self.engine().presence.departed(&channel).await {
                Ok(departed) => departed,
                Err(e) => {
                    tracing::debug!(%channel, error = %e, "reading departures failed");
                    continue;
                }
            };
            let told: Vec<_> = departed
                .into_iter()
                .filter(|d| join_leave == JoinLeave::Connections || d.last)
                .collect();
            if told.is_empty() || !self.tells_join_leave(&channel).await {
                continue;
            }
            for departure in told {
                let _ = self
                    .control(Control::Presence {
                        channel: channel.clone(),
                        conn: departure.conn,
                        event: PresenceEvent::Leave {
                            user: departure.user,
                        },
                    })
                    .await;
            }
        }
    }

    fn require_presence(&self, channel: &str) -> Result<(), Error> {
        match self.presence_namespace(channel) {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorCode::NOT_AVAILABLE,
                format!("presence is not enabled for `{channel}`"),
            )),
        }
    }

    /// Everyone in a channel, on every node (connection, user, info, state).
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, Error> {
        self.require_presence(channel)?;
        self.engine()
            .presence
            .get(channel)
            .await
            .map_err(engine_error)
    }

    /// Connections and unique users in a channel; cheap on big channels.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, Error> {
        self.require_presence(channel)?;
        self.engine()
            .presence
            .stats(channel)
            .await
            .map_err(engine_error)
    }

    /// Sets (or with `None` clears) a connection's ephemeral presence state in a channel, and
    /// tells the channel. With `expire_after`, the state is cleared (and the channel told) then,
    /// unless it was replaced meanwhile. Fails when the connection is not in the channel's
    /// presence.
    pub async fn set_presence_state(
        &self,
        conn: ConnId,
        channel: &str,
        state: Option<Payload>,
        expire_after: Option<Duration>,
    ) -> Result<(), Error> {
        self.require_presence(channel)?;
        if let Some(s) = &state
            && s.len() > self.limits().max_metadata_bytes
        {
            return Err(Error::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "state larger than {} bytes",
                    self.limits().max_metadata_bytes
                ),
            ));
        }
        let found = self
            .engine()
            .presence
            .set_state(channel, conn, state.clone())
            .await
            .map_err(engine_error)?;
        if !found {
            return Err(Error::new(
                ErrorCode::NOT_SUBSCRIBED,
                format!("not present in `{channel}`"),
            ));
        }
        let user = self
            .engine()
            .presence
            .get(channel)
            .await
            .ok()
            .and_then(|m| m.into_iter().find(|e| e.conn == conn))
            .and_then(|e| e.user);
        let channel: Arc<str> = Arc::from(channel);
        let generation =
            self.set_state_generation(&channel, conn, expire_after.is_some() && state.is_some());
        let event = PresenceEvent::State {
            user: user.clone(),
            state: state.clone(),
        };
        self.control(Control::Presence {
            channel: channel.clone(),
            conn,
            event,
        })
        .await?;
        if let (Some(after), Some(_)) = (expire_after, state) {
            // A timer per state that asked for expiry, not per connection.
            let node = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if node.take_state_generation(&channel, conn, generation)
                    && node
                        .engine()
                        .presence
                        .set_state(&channel, conn, None)
                        .await
                        .unwrap_or(false)
                {
                    let event = PresenceEvent::State { user, state: None };
                    let _ = node
                        .control(Control::Presence {
                            channel,
                            conn,
                            event,
                        })
                        .await;
                }
            });
        }
        Ok(())
    }

    /// Whether `user` is in `channel` now, and when it was last there (chat-service
    /// `roomUserSeen`).
    pub async fn last_seen(
        &self,
        channel: &str,
        user: &str,
    ) -> Result<(bool, Option<SystemTime>), Error> {
        self.require_presence(channel)?;
        let members = self
            .engine()
            .presence
            .get(channel)
            .await
            .map_err(engine_error)?;
        if members.iter().any(|m| m.user.as_deref() == Some(user)) {
            return Ok((true, Some(SystemTime::now())));
        }
        let seen = self
            .engine()
            .presence
            .last_seen(channel, user)
            .await
            .map_err(engine_error)?;
        Ok((false, seen))
    }
}

//! Metadata: JSON objects on connections, users and channels, readable from any node through
//! the engine's key/value store (Mesh connection and room metadata, kept apart from routing).

use crate::error::Error;
use crate::ids::ConnId;
use crate::node::{Node, engine_error};
use bytes::Bytes;
use plexus_protocol::ErrorCode;
use serde_json::{Map, Value};

/// A metadata object.
pub type Metadata = Map<String, Value>;

/// Channels listed at most by [`Node::channels_with_metadata`].
const LIST_MAX: usize = 10_000;

fn conn_key(conn: ConnId) -> String {
    format!("meta:conn:{conn}")
}

fn user_key(user: &str) -> String {
    format!("meta:user:{user}")
}

const CHANNEL_PREFIX: &str = "meta:channel:";

fn channel_key(channel: &str) -> String {
    format!("{CHANNEL_PREFIX}{channel}")
}

fn decode(bytes: &[u8]) -> Option<Metadata> {
    serde_json::from_slice(bytes).ok()
}

impl Node {
    fn encode_metadata(&self, value: &Metadata) -> Result<Bytes, Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::bad_request(e.to_string()))?;
        if bytes.len() > self.limits().max_metadata_bytes {
            return Err(Error::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "metadata larger than {} bytes",
                    self.limits().max_metadata_bytes
                ),
            ));
        }
        Ok(Bytes::from(bytes))
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Metadata>, Error> {
        Ok(self
            .engine()
            .kv
            .get(key)
            .await
            .map_err(engine_error)?
            .and_then(|b| decode(&b)))
    }

    /// Replaces, or with `merge` shallow-merges, a stored object.
    async fn kv_update(&self, key: &str, value: Metadata, merge: bool) -> Result<Metadata, Error> {
        let value = if merge {
            let mut current = self.kv_get(key).await?.unwrap_or_default();
            current.extend(value);
            current
        } else {
            value
        };
        let bytes = self.encode_metadata(&value)?;
        self.engine()
            .kv
            .set(key, bytes, None)
            .await
            .map_err(engine_error)?;
        Ok(value)
    }

    /// Sets a connection's metadata (any node's connection). Fails for an unknown connection.
    pub async fn set_connection_metadata(
        &self,
        conn: ConnId,
        value: Metadata,
        merge: bool,
    ) -> Result<(), Error> {
        if conn.node == self.id() {
            let Some(c) = self.connection(conn) else {
                return Err(Error::new(
                    ErrorCode::BAD_REQUEST,
                    format!("no connection {conn}"),
                ));
            };
            let mut next = if merge { c.metadata() } else { Metadata::new() };
            next.extend(value);
            let bytes = self.encode_metadata(&next)?;
            self.engine()
                .kv
                .set(&conn_key(conn), bytes, None)
                .await
                .map_err(engine_error)?;
            c.set_metadata(next, false);
            return Ok(());
        }
        if !self
            .engine()
            .broker
            .remote_connection_exists(conn)
            .await
            .map_err(engine_error)?
        {
            return Err(Error::new(
                ErrorCode::BAD_REQUEST,
                format!("no connection {conn}"),
            ));
        }
        self.kv_update(&conn_key(conn), value, merge)
            .await
            .map(|_| ())
    }

    /// A connection's metadata, from any node; `None` for an unknown connection.
    pub async fn connection_metadata(&self, conn: ConnId) -> Result<Option<Metadata>, Error> {
        if conn.node == self.id() {
            return Ok(self.connection(conn).map(|c| c.metadata()));
        }
        self.kv_get(&conn_key(conn)).await
    }

    pub(crate) async fn forget_connection_metadata(&self, conn: ConnId) {
        let _ = self.engine().kv.delete(&conn_key(conn)).await;
    }

    pub async fn set_user_metadata(
        &self,
        user: &str,
        value: Metadata,
        merge: bool,
    ) -> Result<(), Error> {
        self.kv_update(&user_key(user), value, merge)
            .await
            .map(|_| ())
    }

    pub async fn user_metadata(&self, user: &str) -> Result<Option<Metadata>, Error> {
        self.kv_get(&user_key(user)).await
    }

    /// Sets a channel's metadata; it is removed when the channel's last subscriber leaves, or
    /// with [`Node::clear_channel`].
    pub async fn set_channel_metadata(
        &self,
        channel: &str,
        value: Metadata,
        merge: bool,
    ) -> Result<(), Error> {
        crate::channels::validate_channel(channel, self.limits().max_channel_bytes)?;
        self.kv_update(&channel_key(channel), value, merge)
            .await
            .map(|_| ())
    }

    pub async fn channel_metadata(&self, channel: &str) -> Result<Option<Metadata>, Error> {
        self.kv_get(&channel_key(channel)).await
    }

    pub async fn remove_channel_metadata(&self, channel: &str) -> Result<(), Error> {
        self.engine()
            .kv
            .delete(&channel_key(channel))
            .await
            .map(|_| ())
            .map_err(engine_error)
    }

    /// Every channel with metadata, and its metadata (at most 10 000).
    pub async fn channels_with_metadata(&self) -> Result<Vec<(String, Metadata)>, Error> {
        let found = self
            .engine()
            .kv
            .scan_prefix(CHANNEL_PREFIX, LIST_MAX)
            .await
            .map_err(engine_error)?;
        Ok(found
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(CHANNEL_PREFIX)?.to_owned(), decode(&v)?)))
            .collect())
    }

    /// The local subscribers of a channel with their metadata (Mesh `getAllMetadataForRoom`).
    pub fn channel_connections_metadata(&self, channel: &str) -> Vec<(ConnId, Metadata)> {
        self.hub()
            .subscribers(channel)
            .iter()
            .map(|c| (c.id, c.metadata()))
            .collect()
    }
}

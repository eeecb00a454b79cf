//! Channels another system publishes on, outside Plexus's prefix: Mesa's `Dispatcher` publishes
//! on `ws[_namespace]` (`docs/mesa.md`). One pub/sub connection per subscription, reconnecting
//! with a capped backoff; messages sent while it is reconnecting are lost, as with Mesa's own
//! servers (Redis pub/sub keeps nothing).

use futures_util::StreamExt;
use std::time::Duration;

/// A subscription to an external channel; dropping it unsubscribes.
pub struct ExternalSubscription {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ExternalSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to `channel` (its exact name, no prefix) on the Redis at `url`, calling
/// `on_message` with each payload, in order, on one task. Returns once subscribed (or fails
/// within `timeout`).
pub async fn subscribe_external(
    url: &str,
    channel: &str,
    timeout: Duration,
    on_message: impl Fn(&[u8]) + Send + 'static,
) -> Result<ExternalSubscription, String> {
    subscribe_external_many(
        url,
        &[channel.to_owned()],
        &[],
        timeout,
        move |_, payload| on_message(payload),
    )
    .await
}

/// Subscribes to `channels` (exact names) and `patterns` (Redis glob patterns, `PSUBSCRIBE`) on
/// one connection to the Redis at `url`, calling `on_message(channel, payload)` for each message,
/// in order, on one task. Returns once subscribed (or fails within `timeout`).
pub async fn subscribe_external_many(
    url: &str,
    channels: &[String],
    patterns: &[String],
    timeout: Duration,
    on_message: impl Fn(&str, &[u8]) + Send + 'static,
) -> Result<ExternalSubscription, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let first = connect(&client, channels, patterns, timeout).await?;
    let channels = channels.to_vec();
    let patterns = patterns.to_vec();
    let task = tokio::spawn(async move {
        let mut pubsub = Some(first);
        let mut delay = Duration::from_millis(50);
        loop {
            if let Some(p) = pubsub.take() {
                let mut stream = p.into_on_message();
                while let Some(message) = stream.next().await {
                    on_message(message.get_channel_name(), message.get_payload_bytes());
                }
                tracing::warn!(
                    ?channels,
                    ?patterns,
                    "external pub/sub connection lost; reconnecting"
                );
                delay = Duration::from_millis(50);
            }
            tokio::time::sleep(delay).await;
            match connect(&client, &channels, &patterns, timeout).await {
                Ok(p) => pubsub = Some(p),
                Err(e) => {
                    tracing::debug!(?channels, error = %e, "external pub/sub reconnect failed");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    Ok(ExternalSubscription { task })
}

async fn connect(
    client: &redis::Client,
    channels: &[String],
    patterns: &[String],
    timeout: Duration,
) -> Result<redis::aio::PubSub, String> {
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    for channel in channels {
        tokio::time::timeout(timeout, pubsub.subscribe(channel))
            .await
            .map_err(|_| "subscribe timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    for pattern in patterns {
        tokio::time::timeout(timeout, pubsub.psubscribe(pattern))
            .await
            .map_err(|_| "psubscribe timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    Ok(pubsub)
}

/// Publishes `payload` on `channel` (its exact name) at the Redis at `url`, as another system
/// would; returns how many subscribers received it.
pub async fn publish_external(
    url: &str,
    channel: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let publish = async {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<u64>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, publish)
        .await
        .map_err(|_| "publish timed out".to_owned())?
}

/// Publishes on external channels from one connection, fire and forget: [`Publisher::publish`]
/// queues (at most `capacity` payloads; beyond, it refuses) and one task writes them in order.
/// Lossy by design (Mesa's Portal channel is pub/sub: nothing is kept).
pub struct Publisher {
    tx: tokio::sync::mpsc::Sender<(String, bytes::Bytes)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    pub async fn connect(
        url: &str,
        capacity: usize,
        timeout: Duration,
    ) -> Result<Publisher, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, bytes::Bytes)>(capacity.max(1));
        let task = tokio::spawn(async move {
            while let Some((channel, payload)) = rx.recv().await {
                let sent = tokio::time::timeout(
                    timeout,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(payload.as_ref())
                        .query_async::<u64>(&mut conn),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::debug!(%channel, "an external publish failed");
                }
            }
        });
        Ok(Publisher { tx, task })
    }

    /// Queues `payload` for `channel`; false when the queue is full (the payload is dropped).
    pub fn publish(&self, channel: &str, payload: bytes::Bytes) -> bool {
        self.tx.try_send((channel.to_owned(), payload)).is_ok()
    }
}

/// The members of the set `key` (its exact name), at most `max`.
pub async fn members(
    url: &str,
    key: &str,
    max: usize,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let read = async {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("SMEMBERS")
            .arg(key)
            .query_async::<Vec<String>>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let mut members = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "SMEMBERS timed out".to_owned())??;
    members.truncate(max);
    Ok(members)
}

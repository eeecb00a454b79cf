//! A Redis found through Sentinel (`redis+sentinel://host:port[,host:port…]/service[/db]`).
//!
//! The command connection is a reconnecting connection to the master Sentinel names. When a
//! command fails as it does when the master is gone or was demoted (connection lost, timeout,
//! `READONLY`), the master is asked of the sentinels again and, when it moved, the connection is
//! replaced and the command sent once more, to the new master (while Sentinel has not promoted
//! a replica yet, the caller gets the error, as during any outage). The pub/sub connection asks the sentinels for the master at
//! every (re)connect, then repairs from the streams as on a single Redis.

use crate::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use std::sync::RwLock;
use std::time::Duration;

/// `redis+sentinel://h1:p1,h2:p2/service[/db]` → (sentinel URLs, service, db).
pub(crate) fn parse(url: &str) -> Result<(Vec<String>, String, i64), String> {
    let rest = url
        .strip_prefix("redis+sentinel://")
        .ok_or("expected redis+sentinel://")?;
    let (hosts, path) = rest.split_once('/').ok_or("no service name")?;
    let mut path = path.split('/').filter(|s| !s.is_empty());
    let service = path.next().ok_or("no service name")?.to_owned();
    let db = match path.next() {
        Some(db) => db
            .parse()
            .map_err(|_| format!("`{db}`: not a database number"))?,
        None => 0,
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err("no sentinel address".into());
    }
    Ok((sentinels, service, db))
}

pub(crate) struct SentinelConn {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    db: i64,
    /// The master's address and a reconnecting connection to it.
    current: RwLock<(String, ConnectionManager)>,
    /// Held while asking the sentinels.
    following: tokio::sync::Mutex<()>,
    timeout: Duration,
}

impl SentinelConn {
    pub(crate) async fn connect(config: &RedisConfig) -> Result<SentinelConn, String> {
        let (sentinels, service, db) = parse(&config.url)?;
        let client = SentinelClient::build(
            sentinels,
            service,
            Some(SentinelNodeConnectionInfo::default()),
            SentinelServerType::Master,
        )
        .map_err(|e| e.to_string())?;
        let sentinel = tokio::sync::Mutex::new(client);
        let timeout = config.command_timeout;
        let current = open(&sentinel, db, timeout).await?;
        Ok(SentinelConn {
            sentinel,
            db,
            current: RwLock::new(current),
            following: tokio::sync::Mutex::new(()),
            timeout,
        })
    }

    /// The master's client, asked of the sentinels now.
    pub(crate) async fn master(&self) -> Result<redis::Client, String> {
        master(&self.sentinel, self.db).await
    }

    pub(crate) fn current(&self) -> ConnectionManager {
        self.current.read().unwrap().1.clone()
    }

    /// Whether a command failed as it does when the master is gone or was demoted.
    pub(crate) fn lost<T>(result: &redis::RedisResult<T>) -> bool {
        result.as_ref().is_err_and(|e| {
            e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.to_string().contains("READONLY")
        })
    }

    /// Asks the sentinels for the master (one caller at a time; bounded by the command
    /// timeout) and switches to it. Returns the new connection when the master moved since
    /// `seen` (the address the failed command used), else `None`.
    pub(crate) async fn follow(&self, seen: &str) -> Option<ConnectionManager> {
        let _one = self.following.lock().await;
        {
            let current = self.current.read().unwrap();
            if current.0 != seen {
                return Some(current.1.clone()); // Another caller switched already.
            }
        }
        let opening = open(&self.sentinel, self.db, self.timeout);
        match tokio::time::timeout(self.timeout, opening).await {
            Ok(Ok((addr, manager))) if addr != seen => {
                tracing::warn!(master = %addr, "redis: Sentinel names a new master");
                *self.current.write().unwrap() = (addr, manager.clone());
                Some(manager)
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis: no master from Sentinel");
                None
            }
            Err(_) => {
                tracing::warn!("redis: Sentinel did not answer in time");
                None
            }
        }
    }

    pub(crate) fn address(&self) -> String {
        self.current.read().unwrap().0.clone()
    }
}

/// The master's client, asked of the sentinels now.
async fn master(
    sentinel: &tokio::sync::Mutex<SentinelClient>,
    db: i64,
) -> Result<redis::Client, String> {
    let client = sentinel
        .lock()
        .await
        .async_get_client()
        .await
        .map_err(|e| e.to_string())?;
    if db == 0 {
        return Ok(client);
    }
    let info = client.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_db(db);
    redis::Client::open(info.set_redis_settings(settings)).map_err(|e| e.to_string())
}

/// A reconnecting connection to the master, and its address.
async fn open(
    sentinel: &tokio::sync::Mutex<SentinelClient>,
    db: i64,
    timeout: Duration,
) -> Result<(String, ConnectionManager), String> {
    let client = master(sentinel, db).await?;
    let addr = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let manager = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok((addr, manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_and_the_database() {
        assert_eq!(
            parse("redis+sentinel://127.0.0.1:26379,10.0.0.2:26380/mymaster/2").unwrap(),
            (
                vec![
                    "redis://127.0.0.1:26379".to_owned(),
                    "redis://10.0.0.2:26380".to_owned()
                ],
                "mymaster".to_owned(),
                2
            )
        );
        assert_eq!(parse("redis+sentinel://h:1/m").unwrap().2, 0);
        assert!(parse("redis+sentinel://h:1").is_err());
        assert!(parse("redis+sentinel:///m").is_err());
        assert!(parse("redis+sentinel://h:1/m/x").is_err());
    }
}

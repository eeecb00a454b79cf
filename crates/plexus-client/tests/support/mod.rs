//! Helpers shared by the tests that run the client against the real server.

#![allow(dead_code)] // each test file uses its own part

use plexus_client::{
    Backoff, Client, ClientConfig, Encoding, Event, Events, Jitter, Payload, Publication,
    Subscribed, Subscription, SubscriptionEvent,
};
use plexus_core::ConnId;
use plexus_server::{RunningServer, Server, ServerBuilder};
use std::net::SocketAddr;
use std::time::Duration;

/// Upper bound for anything the tests wait for; never a pass condition.
pub const LIMIT: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A development server (every channel: history 100 for 1 h, recovery, presence by user).
pub fn dev(addr: SocketAddr) -> ServerBuilder {
    Server::builder().listen(addr).dev_mode()
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub async fn start(builder: ServerBuilder) -> RunningServer {
    builder.build().start().await.expect("the server starts")
}

pub fn config(url: impl Into<String>, encoding: Encoding) -> ClientConfig {
    ClientConfig::new(url)
        .encoding(encoding)
        .backoff(Backoff {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            jitter: Jitter::Decorrelated,
            max_attempts: None,
        })
        .rng_seed(9)
}

pub fn json_payload(v: serde_json::Value) -> Payload {
    Payload::json(&v).unwrap()
}

pub fn value(p: &Payload) -> serde_json::Value {
    p.to_value().unwrap()
}

pub fn conn_id(client: &Client) -> ConnId {
    client.connection().unwrap().conn.parse().unwrap()
}

pub fn both() -> [Encoding; 2] {
    [Encoding::Json, Encoding::Msgpack]
}

pub async fn wait_event<T>(events: &mut Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(LIMIT, async {
        while let Some(e) = events.next().await {
            if let Some(t) = f(&e) {
                return Some(t);
            }
            seen.push(e);
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        other => panic!(
            "event not seen ({}); saw {seen:#?}",
            if other.is_err() {
                "timeout"
            } else {
                "stream ended"
            }
        ),
    }
}

/// The next event of a subscription, within the limit.
pub async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    within("a subscription event", sub.next())
        .await
        .expect("the subscription ended")
}

pub async fn next_publication(sub: &mut Subscription) -> Publication {
    match next_event(sub).await {
        SubscriptionEvent::Publication(p) => p,
        other => panic!("expected a publication, got {other:?}"),
    }
}

/// What a subscription stream showed, in order: publication offsets and restores.
#[derive(Debug, Default)]
pub struct Transcript {
    pub offsets: Vec<u64>,
    /// Each restore, with how many publications had been read before it.
    pub restores: Vec<(usize, Subscribed)>,
}

/// Reads a subscription until it delivered the publication with offset `last`; anything but
/// publications and restores fails the test.
pub async fn read_until(sub: &mut Subscription, last: u64) -> Transcript {
    let mut t = Transcript::default();
    while t.offsets.last().is_none_or(|&o| o < last) {
        let event = match tokio::time::timeout(LIMIT, sub.next()).await {
            Ok(Some(event)) => event,
            other => panic!("no publication {last} ({other:?}); read so far: {t:?}"),
        };
        match event {
            SubscriptionEvent::Publication(p) => t.offsets.push(p.offset),
            SubscriptionEvent::Subscribed(s) => t.restores.push((t.offsets.len(), s)),
            other => panic!("unexpected {other:?} after offsets {:?}", t.offsets),
        }
    }
    t
}

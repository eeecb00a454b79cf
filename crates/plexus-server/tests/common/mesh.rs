//! A Mesh client for the tests, written from the wire format of `seeds-protocols.md` §3.1 (not
//! from the server's code): `{id, command, payload}` requests with ids from 0, replies matched by
//! id, pushes kept in order, `ping` answered with `pong`, and the record callback rule of
//! Mesh's client (in patch mode a version that is not the last plus one resubscribes).

use super::{WAIT, Ws, connect_raw};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use tokio_tungstenite::tungstenite::Message;

pub struct MeshClient {
    ws: Ws,
    next_id: u64,
    pushes: VecDeque<Value>,
    replies: VecDeque<Value>,
    /// The id `mesh/assign-id` gave this connection.
    pub id: String,
    /// Answer `ping` with `pong` (Mesh's client does); pings are then not kept as pushes.
    pub auto_pong: bool,
    pub pings: u64,
}

impl MeshClient {
    /// Connects to `<server>/mesh` and reads the `mesh/assign-id` push.
    pub async fn connect(base: &str) -> MeshClient {
        let url = base.replace("/ws", "/mesh");
        let ws = connect_raw(&url, &[]).await;
        let mut client = MeshClient {
            ws,
            next_id: 0,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
            id: String::new(),
            auto_pong: true,
            pings: 0,
        };
        let assigned = client.push("mesh/assign-id").await;
        client.id = assigned["payload"].as_str().expect("an id").to_owned();
        client
    }

    async fn read(&mut self) {
        let message = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        let text = match message {
            Message::Text(t) => t.to_string(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => return,
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame.get("id").is_some() {
            self.replies.push_back(frame);
        } else if frame["command"] == "ping" && self.auto_pong {
            self.pings += 1;
            let id = self.next_id;
            self.next_id += 1;
            let pong = json!({"id": id, "command": "pong", "payload": {}});
            self.ws.send(Message::text(pong.to_string())).await.unwrap();
        } else {
            self.pushes.push_back(frame);
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// Sends a command and returns the reply's payload.
    pub async fn command(&mut self, command: &str, payload: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.command_with_id(id, command, payload).await
    }

    pub async fn command_with_id(&mut self, id: u64, command: &str, payload: Value) -> Value {
        let frame = json!({"id": id, "command": command, "payload": payload});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reply to `{command}` in time"
            );
            if let Some(i) = self.replies.iter().position(|r| r["id"] == id) {
                let reply = self.replies.remove(i).unwrap();
                assert_eq!(reply["command"], command, "{reply}");
                return reply["payload"].clone();
            }
            self.read().await;
        }
    }

    /// The next push named `command` (earlier pushes of other commands stay queued).
    pub async fn push(&mut self, command: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{command}` push in time"
            );
            if let Some(i) = self.pushes.iter().position(|p| p["command"] == command) {
                return self.pushes.remove(i).unwrap();
            }
            self.read().await;
        }
    }

    /// The next push of any command.
    pub async fn any_push(&mut self) -> Value {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return p;
            }
            self.read().await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

//! One load-generator connection in one dialect.
//!
//! [`Client`] opens a WebSocket, completes the dialect's hello, and then offers the few
//! operations the scenarios need: subscribe, publish, call `echo`, and read what the server
//! sends as [`Event`]s. Heartbeats are answered on the way (Plexus `ping` → `pong`, Engine.IO
//! `2` → `3`; WebSocket pings are answered by the framing layer).
//!
//! Native frames are written with `plexus-protocol`'s encoder and read with its frame splitter
//! and decoder. Incoming frames are decoded into a small borrowed view ([`NativeFrame`]) rather
//! than the full `Push`, so that reading costs the load generator much less than writing costs
//! the server.

use crate::conn::{Connector, Ws};
use crate::socketio::{self, Packet};
use crate::stamp::{MaybeStamp, Stamp};
use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use plexus_protocol::client::{CallParams, Op, PublishParams, Request, SubscribeParams};
use plexus_protocol::server::{AuthState, Push, ServerFrame};
use plexus_protocol::{Encoding, Payload};
use serde::Deserialize;
use std::borrow::Cow;
use std::time::Duration;
use tokio_websockets::{CloseCode, Message};

/// How a connection talks to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    /// Plexus native protocol v1, JSON text frames (`plexus.v1.json` at `/ws`).
    NativeJson,
    /// Plexus native protocol v1, MessagePack binary frames (`plexus.v1.msgpack` at `/ws`).
    NativeMsgpack,
    /// Socket.IO v4 over WebSocket (`/socket.io/?EIO=4&transport=websocket`): `join`, `pub`,
    /// `echo` events with acks; deliveries arrive as `pub` events.
    Socketio,
    /// Socket.IO v4 over WebSocket against Plexus's Socket.IO dialect: the built-in events
    /// `subscribe` and `publish` (`{channel, event: "pub"}`, so that deliveries arrive as `pub`
    /// events), the `echo` command; acks are `[null, result]` (`docs/socketio.md`).
    SocketioPlexus,
    /// Plain WebSocket text messages: `/broadcast` (receivers), `/broadcast?pub=1` (what a
    /// publisher sends goes to every receiver), `/echo`.
    Ws,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::NativeJson => "native-json",
            Dialect::NativeMsgpack => "native-msgpack",
            Dialect::Socketio => "socketio",
            Dialect::SocketioPlexus => "socketio-plexus",
            Dialect::Ws => "ws",
        }
    }

    /// The native encoding, for the Plexus dialects.
    pub fn encoding(self) -> Option<Encoding> {
        match self {
            Dialect::NativeJson => Some(Encoding::Json),
            Dialect::NativeMsgpack => Some(Encoding::Msgpack),
            Dialect::Socketio | Dialect::SocketioPlexus | Dialect::Ws => None,
        }
    }

    /// Whether the dialect has named channels (rooms). Plain WebSocket has one broadcast
    /// group.
    pub fn has_channels(self) -> bool {
        !matches!(self, Dialect::Ws)
    }
}

/// What a connection is for. The plain-WebSocket dialect maps it to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Subscriber,
    Publisher,
    Caller,
    Idle,
}

/// Something the server sent that a scenario counts.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A publication delivered to this connection.
    Delivery(Stamp),
    /// The answer to request `id` (`None`: a plain-WebSocket echo, which has no ids), with the
    /// stamp it carried back, if any.
    Reply {
        id: Option<u64>,
        result: Result<Option<Stamp>, String>,
    },
}

/// What a native server frame is made of, as far as the load generator cares.
#[derive(Deserialize)]
struct NativeFrame<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    push: Option<Cow<'a, str>>,
    /// A `pub` push's payload.
    #[serde(default)]
    data: MaybeStamp,
    #[serde(default)]
    result: Option<NativeResult>,
    #[serde(default)]
    error: Option<NativeError>,
    #[serde(default)]
    code: Option<u64>,
}

#[derive(Deserialize)]
struct NativeResult {
    #[serde(default)]
    data: MaybeStamp,
}

#[derive(Deserialize)]
struct NativeError {
    code: u64,
    #[serde(default)]
    message: String,
}

/// One open connection.
pub struct Client {
    ws: Ws,
    dialect: Dialect,
    role: Role,
    next_id: u64,
    pong_due: bool,
    /// The per-connection request rate the server announced (Plexus `hello.limits`).
    requests_per_second: Option<u32>,
}

/// How long opening a connection (TCP, WebSocket handshake, the dialect's hello) may take. A
/// server out of file descriptors accepts TCP connections it never answers.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request made during setup (subscribe) may wait for its answer.
const SETUP_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// Opens a connection and completes the dialect's hello: Plexus's `hello` push; Engine.IO
    /// open then Socket.IO connect; nothing more for plain WebSocket.
    pub async fn open(connector: &Connector, dialect: Dialect, role: Role) -> Result<Client> {
        tokio::time::timeout(
            OPEN_TIMEOUT,
            Client::open_unbounded(connector, dialect, role),
        )
        .await
        .map_err(|_| anyhow!("no handshake and hello within {OPEN_TIMEOUT:?}"))?
    }

    async fn open_unbounded(connector: &Connector, dialect: Dialect, role: Role) -> Result<Client> {
        let (path, subprotocol) = match dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                ("/ws", dialect.encoding().map(Encoding::subprotocol))
            }
            Dialect::Socketio | Dialect::SocketioPlexus => (socketio::PATH, None),
            Dialect::Ws => match role {
                Role::Subscriber => ("/broadcast", None),
                Role::Publisher => ("/broadcast?pub=1", None),
                Role::Caller | Role::Idle => ("/echo", None),
            },
        };
        let (ws, chosen) = connector.websocket(path, subprotocol).await?;
        if let (Some(offered), Some(chosen)) = (subprotocol, chosen.as_deref())
            && offered != chosen
        {
            bail!("the server chose subprotocol {chosen}, not {offered}");
        }
        if let (Some(offered), None) = (subprotocol, &chosen)
            && offered != Encoding::Json.subprotocol()
        {
            bail!("the server did not accept subprotocol {offered}");
        }
        let mut client = Client {
            ws,
            dialect,
            role,
            next_id: 1,
            pong_due: false,
            requests_per_second: None,
        };
        client.hello().await?;
        if dialect == Dialect::SocketioPlexus && matches!(role, Role::Publisher | Role::Caller) {
            // Socket.IO connections have the native ones' per-connection limits, but no hello
            // to announce them: read them from a native hello, so that a sender is paced the
            // same way.
            let native = Box::pin(Client::open_unbounded(
                connector,
                Dialect::NativeJson,
                Role::Idle,
            ))
            .await
            .context("reading the server's limits from a native hello")?;
            client.requests_per_second = native.requests_per_second;
            native.close().await;
        }
        Ok(client)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The per-connection request rate the server announced, if it announced one.
    pub fn requests_per_second(&self) -> Option<u32> {
        self.requests_per_second
    }

    async fn next_message(&mut self) -> Result<Message> {
        loop {
            match self.ws.next().await {
                Some(Ok(m)) if m.is_text() || m.is_binary() => return Ok(m),
                Some(Ok(m)) if m.is_close() => {
                    let (code, reason) =
                        m.as_close().unwrap_or((CloseCode::NO_STATUS_RECEIVED, ""));
                    bail!("closed by the server: {} {reason}", u16::from(code));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection closed"),
            }
        }
    }

    async fn hello(&mut self) -> Result<()> {
        match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                let encoding = self.dialect.encoding().expect("native");
                let message = self.next_message().await.context("waiting for hello")?;
                let frames = plexus_protocol::split_frames(encoding, message.as_payload())?;
                let frame = plexus_protocol::server::decode_server_frame(encoding, frames[0])?;
                let ServerFrame::Push(Push::Hello(hello)) = frame else {
                    bail!("the first frame is not a hello: {frame:?}");
                };
                if hello.auth == AuthState::Required {
                    bail!("the server requires authentication; run it in development mode");
                }
                self.requests_per_second = Some(hello.limits.requests_per_second);
            }
            Dialect::Socketio | Dialect::SocketioPlexus => {
                let message = self.next_message().await.context("waiting for open")?;
                let text = message.as_text().context("a binary Engine.IO message")?;
                let Packet::Open(open) = socketio::parse(text)? else {
                    bail!("expected an Engine.IO open packet, got {text:.80}");
                };
                let _: socketio::Open = serde_json::from_str(open).context("Engine.IO open")?;
                self.send_text(socketio::CONNECT.to_owned()).await?;
                loop {
                    let message = self.next_message().await.context("waiting for connect")?;
                    let text = message.as_text().context("a binary Engine.IO message")?;
                    match socketio::parse(text)? {
                        Packet::Connected => break,
                        Packet::Ping => self.send_text(socketio::PONG.to_owned()).await?,
                        Packet::Refused(why) => bail!("Socket.IO connect refused: {why}"),
                        _ => {}
                    }
                }
            }
            Dialect::Ws => {}
        }
        Ok(())
    }

    async fn send_text(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    async fn send_native(&mut self, request: &Request) -> Result<()> {
        let encoding = self.dialect.encoding().expect("native");
        let bytes = plexus_protocol::client::encode_request(encoding, request);
        let message = match encoding {
            Encoding::Json => Message::text(bytes),
            Encoding::Msgpack => Message::binary(bytes),
        };
        self.ws.send(message).await?;
        Ok(())
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Joins a channel (room) and waits for the server's answer. Plain WebSocket has no
    /// channels: its receivers are subscribed by their path.
    pub async fn subscribe(&mut self, channel: &str) -> Result<()> {
        let id = match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                let id = self.take_id();
                let request = Request {
                    id: Some(id),
                    op: Op::Subscribe(SubscribeParams::new(channel)),
                };
                self.send_native(&request).await?;
                id
            }
            Dialect::Socketio => {
                let id = self.take_id();
                let room = serde_json::to_string(channel)?;
                self.send_text(socketio::event(Some(id), "join", &[&room]))
                    .await?;
                id
            }
            Dialect::SocketioPlexus => {
                let id = self.take_id();
                let room = serde_json::to_string(channel)?;
                self.send_text(socketio::event(Some(id), "subscribe", &[&room]))
                    .await?;
                id
            }
            Dialect::Ws => return Ok(()),
        };
        self.wait_reply(id, SETUP_REPLY_TIMEOUT)
            .await
            .with_context(|| format!("subscribing to {channel}"))
    }

    async fn wait_reply(&mut self, id: u64, timeout: Duration) -> Result<()> {
        let mut events = Vec::new();
        tokio::time::timeout(timeout, async {
            loop {
                if !self.recv(&mut events).await? {
                    bail!("connection closed");
                }
                self.flush_control().await?;
                for event in events.drain(..) {
                    if let Event::Reply {
                        id: Some(got),
                        result,
                    } = event
                        && got == id
                    {
                        return result.map(|_| ()).map_err(|e| anyhow!(e));
                    }
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no answer within {timeout:?}"))?
    }

    /// Sends a publication of `data` (JSON text) to `channel`; returns the request id the
    /// answer will carry (`None` for plain WebSocket, which answers nothing).
    pub async fn publish(&mut self, channel: &str, data: &str) -> Result<Option<u64>> {
        match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                let id = self.take_id();
                let payload = Payload::from_json_str(data)?;
                let request = Request {
                    id: Some(id),
                    op: Op::Publish(PublishParams::new(channel, &payload)),
                };
                self.send_native(&request).await?;
                Ok(Some(id))
            }
            Dialect::Socketio => {
                let id = self.take_id();
                let room = serde_json::to_string(channel)?;
                self.send_text(socketio::event(Some(id), "pub", &[&room, data]))
                    .await?;
                Ok(Some(id))
            }
            Dialect::SocketioPlexus => {
                let id = self.take_id();
                let target = serde_json::to_string(&serde_json::json!({
                    "channel": channel,
                    "event": "pub",
                }))?;
                self.send_text(socketio::event(Some(id), "publish", &[&target, data]))
                    .await?;
                Ok(Some(id))
            }
            Dialect::Ws => {
                self.send_text(data.to_owned()).await?;
                Ok(None)
            }
        }
    }

    /// Calls the server's `echo` with `data` (JSON text); returns the request id, as
    /// [`Client::publish`].
    pub async fn call_echo(&mut self, data: &str) -> Result<Option<u64>> {
        match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                let id = self.take_id();
                let payload = Payload::from_json_str(data)?;
                let request = Request {
                    id: Some(id),
                    op: Op::Call(CallParams::new("echo", &payload)),
                };
                self.send_native(&request).await?;
                Ok(Some(id))
            }
            Dialect::Socketio | Dialect::SocketioPlexus => {
                let id = self.take_id();
                self.send_text(socketio::event(Some(id), "echo", &[data]))
                    .await?;
                Ok(Some(id))
            }
            Dialect::Ws => {
                self.send_text(data.to_owned()).await?;
                Ok(None)
            }
        }
    }

    /// Reads one message and appends what it holds to `events`. Returns false when the
    /// connection has ended. Cancel-safe: the only await is the read itself; a heartbeat that
    /// needs an answer is remembered for [`Client::flush_control`].
    pub async fn recv(&mut self, events: &mut Vec<Event>) -> Result<bool> {
        let message = match self.ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(false),
        };
        if message.is_close() {
            return Ok(false);
        }
        if !(message.is_text() || message.is_binary()) {
            return Ok(true);
        }
        match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                self.read_native(message.as_payload(), events)?
            }
            Dialect::Socketio | Dialect::SocketioPlexus => {
                let text = message.as_text().context("a binary Engine.IO message")?;
                self.read_socketio(text, events)?
            }
            Dialect::Ws => {
                let text = message.as_text().context("a binary message")?;
                let stamp = serde_json::from_str::<MaybeStamp>(text)
                    .unwrap_or_default()
                    .0;
                match (self.role, stamp) {
                    (Role::Subscriber, Some(stamp)) => events.push(Event::Delivery(stamp)),
                    (Role::Caller | Role::Idle, stamp) => events.push(Event::Reply {
                        id: None,
                        result: Ok(stamp),
                    }),
                    _ => {}
                }
            }
        }
        Ok(true)
    }

    fn read_native(&mut self, message: &[u8], events: &mut Vec<Event>) -> Result<()> {
        let encoding = self.dialect.encoding().expect("native");
        for frame in plexus_protocol::split_frames(encoding, message)? {
            let f: NativeFrame<'_> = plexus_protocol::decode(encoding, frame)
                .with_context(|| format!("an unexpected server frame ({} bytes)", frame.len()))?;
            if let Some(id) = f.id {
                let result = match (f.error, f.result) {
                    (Some(e), _) => Err(format!("error {}: {}", e.code, e.message)),
                    (None, Some(r)) => Ok(r.data.0),
                    (None, None) => Err("a reply with neither result nor error".into()),
                };
                events.push(Event::Reply {
                    id: Some(id),
                    result,
                });
                continue;
            }
            match f.push.as_deref() {
                Some("pub") => {
                    if let Some(stamp) = f.data.0 {
                        events.push(Event::Delivery(stamp));
                    }
                }
                Some("ping") => self.pong_due = true,
                Some("error") => events.push(Event::Reply {
                    id: None,
                    result: Err(format!("error push {}", f.code.unwrap_or(0))),
                }),
                _ => {}
            }
        }
        Ok(())
    }

    fn read_socketio(&mut self, text: &str, events: &mut Vec<Event>) -> Result<()> {
        match socketio::parse(text)? {
            Packet::Ping => self.pong_due = true,
            Packet::Event { args, .. } => {
                if let Some(MaybeStamp(Some(stamp))) = socketio::event_arg(args, "pub") {
                    events.push(Event::Delivery(stamp));
                }
            }
            Packet::Ack { id, args } => {
                let result = if self.dialect == Dialect::SocketioPlexus {
                    socketio::plexus_ack(args).map(|s| s.and_then(|s| s.0))
                } else {
                    Ok(socketio::ack_arg(args).and_then(|s| s.0))
                };
                events.push(Event::Reply {
                    id: Some(id),
                    result,
                })
            }
            Packet::Refused(why) => bail!("disconnected by the server: {why}"),
            Packet::Close => bail!("Engine.IO close"),
            Packet::Open(_) | Packet::Pong | Packet::Noop | Packet::Connected => {}
        }
        Ok(())
    }

    /// Sends what heartbeats asked for since the last call (a Plexus `pong`, an Engine.IO `3`).
    pub async fn flush_control(&mut self) -> Result<()> {
        if !self.pong_due {
            return Ok(());
        }
        self.pong_due = false;
        match self.dialect {
            Dialect::NativeJson | Dialect::NativeMsgpack => {
                self.send_native(&Request {
                    id: None,
                    op: Op::Pong,
                })
                .await
            }
            Dialect::Socketio | Dialect::SocketioPlexus => {
                self.send_text(socketio::PONG.to_owned()).await
            }
            Dialect::Ws => Ok(()),
        }
    }

    /// Sends a normal close and waits briefly for the server's.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            self.ws
                .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
                .await?;
            while let Some(Ok(_)) = self.ws.next().await {}
            Ok::<(), tokio_websockets::Error>(())
        })
        .await;
    }
}

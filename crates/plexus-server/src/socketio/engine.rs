//! The Engine.IO transport (revisions 3 and 4) under the shared connection loop: one session per
//! `sid`, over HTTP long-polling, WebSocket, or polling upgraded to WebSocket. It runs the
//! Engine.IO heartbeat itself (revision 4: the server pings; revision 3: the client pings and
//! the server answers) and hands the loop only `message` packets, as WebSocket-like messages.
//!
//! A polling session is a virtual connection: the task that runs the connection loop owns an
//! [`EngineTransport`]; the HTTP handlers of its `sid` reach it through [`PollShared`]: POST
//! bodies go through a bounded channel, GET requests take the packets queued in a bounded
//! buffer, at most one GET at a time.
//!
//! How a polling session ends decides what its requests get, as in engine.io (`socket.ts`,
//! `transports/polling.ts`): the server closes it → the pending (or next) GET gets what is
//! still queued and `close`; the client breaks it (a second GET, a cancelled GET, a body that
//! does not decode) or goes silent → what is queued is dropped and a pending GET gets `close`;
//! the client sends `close` → a pending GET gets `noop`. Every request after that is refused
//! ("Session ID unknown"), decided by the HTTP handler at once so that the client's next
//! request never races the session's task.

use super::SocketIoConfig;
use crate::conn::{Close, Read, Transport, lost};
use crate::ws::WsStream;
use futures_util::{SinkExt, StreamExt};
use plexus_core::CloseCode;
use plexus_protocol::engineio::{
    Data, Handshake, Packet, Version, WsFrame, decode_ws_binary, decode_ws_text, encode_ws_frame,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tokio_websockets::Message;

/// What the HTTP handlers hand to a session.
pub(crate) enum Inbound {
    /// The packets of a polling POST.
    Packets(Vec<Packet>),
    /// A WebSocket for this `sid`: the upgrade starts.
    Upgrade(Box<WsStream>),
}

/// The polling side of a session, shared with its HTTP handlers.
pub(crate) struct PollShared {
    pub(crate) version: Version,
    pub(crate) supports_binary: bool,
    out: Mutex<PollOut>,
    out_ready: Notify,
    /// Woken when an HTTP handler ends the session ([`PollShared::abort`]).
    aborted: Notify,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    max_buffered: usize,
}

#[derive(Default)]
struct PollOut {
    packets: VecDeque<Packet>,
    /// A GET is waiting (at most one).
    polling: bool,
    /// The session ended: a GET takes what is left in `packets` (ending with `close` or `noop`),
    /// later requests are refused.
    closed: bool,
    /// The session moved to WebSocket: polling requests are refused, the session goes on.
    upgraded: bool,
    /// Why an HTTP handler ended the session ([`PollShared::abort`]).
    aborted: Option<Close>,
}

/// Why a polling request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PollError {
    /// The session ended (engine.io: "Session ID unknown").
    Gone,
    /// The session is on WebSocket now (engine.io: "Bad request"; the session goes on).
    Upgraded,
    /// A GET while another is pending: the session is closed (engine.io does the same).
    Overlap,
}

impl PollShared {
    pub(crate) fn new(
        version: Version,
        supports_binary: bool,
        config: &SocketIoConfig,
    ) -> (Arc<PollShared>, mpsc::Receiver<Inbound>) {
        let (inbound, rx) = mpsc::channel(config.max_buffered_packets.max(1));
        let shared = Arc::new(PollShared {
            version,
            supports_binary,
            out: Mutex::new(PollOut::default()),
            out_ready: Notify::new(),
            aborted: Notify::new(),
            inbound,
            max_buffered: config.max_buffered_packets,
        });
        (shared, rx)
    }

    /// Queues a packet for the next GET. False when the session ended, or when the buffer is
    /// full (the client does not poll: the session is closed rather than grown).
    fn push(&self, packet: Packet) -> bool {
        let mut out = self.out.lock().unwrap();
        if out.closed || out.packets.len() >= self.max_buffered {
            return false;
        }
        out.packets.push_back(packet);
        drop(out);
        self.out_ready.notify_one();
        true
    }

    /// The server ends the session: the pending or next GET gets what is queued, then
    /// `close`.
    fn close(&self) {
        let mut out = self.out.lock().unwrap();
        if out.closed {
            return;
        }
        out.closed = true;
        out.packets.push_back(Packet::Close);
        drop(out);
        self.out_ready.notify_one();
    }

    /// The client broke or left the session: what is queued is dropped, a pending GET ends with
    /// `last` (`close`; `noop` when the client sent `close`), the session's task is told `why`.
    pub(crate) fn abort(&self, last: Packet, why: Close) {
        let mut out = self.out.lock().unwrap();
        if out.closed {
            return;
        }
        out.closed = true;
        out.aborted = Some(why);
        out.packets.clear();
        if out.polling {
            out.packets.push_back(last);
        }
        drop(out);
        self.out_ready.notify_one();
        self.aborted.notify_one();
    }

    /// Whether the session takes a POST, or a WebSocket upgrade.
    pub(crate) fn check(&self) -> Result<(), PollError> {
        let out = self.out.lock().unwrap();
        if out.upgraded {
            Err(PollError::Upgraded)
        } else if out.closed {
            Err(PollError::Gone)
        } else {
            Ok(())
        }
    }

    /// Serves one GET: waits (at most `wait`) for packets, then takes them all. A GET whose
    /// client goes away while it waits (the future is dropped) ends the session, as in
    /// engine.io ("poll connection closed prematurely").
    pub(crate) async fn poll(&self, wait: std::time::Duration) -> Result<Vec<Packet>, PollError> {
        {
            let mut out = self.out.lock().unwrap();
            if out.upgraded {
                return Err(PollError::Upgraded);
            }
            if out.closed && out.packets.is_empty() {
                return Err(PollError::Gone);
            }
            if out.polling {
                drop(out);
                let why = (
                    CloseCode::BAD_FRAME,
                    "a polling request while another one waits".into(),
                );
                self.abort(Packet::Close, why);
                return Err(PollError::Overlap);
            }
            out.polling = true;
        }
        let mut pending = PendingPoll(Some(self));
        let deadline = tokio::time::Instant::now() + wait;
        let mut timed_out = false;
        loop {
            let notified = self.out_ready.notified();
            {
                let mut out = self.out.lock().unwrap();
                if !out.packets.is_empty() || timed_out {
                    out.polling = false;
                    pending.0 = None;
                    return Ok(if out.packets.is_empty() {
                        vec![Packet::Noop]
                    } else {
                        out.packets.drain(..).collect()
                    });
                }
            }
            timed_out = tokio::time::timeout_at(deadline, notified).await.is_err();
        }
    }
}

/// A GET in [`PollShared::poll`]; dropped before it is answered, it ends the session.
struct PendingPoll<'a>(Option<&'a PollShared>);

impl Drop for PendingPoll<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.out.lock().unwrap().polling = false;
            let why = (
                CloseCode::CONNECTION_LOST,
                "poll connection closed prematurely".into(),
            );
            shared.abort(Packet::Close, why);
        }
    }
}

/// The transport half a session's task owns.
pub(crate) struct EngineTransport {
    version: Version,
    supports_binary: bool,
    poll: Option<Arc<PollShared>>,
    inbound: Option<mpsc::Receiver<Inbound>>,
    ws: Option<WsStream>,
    /// A WebSocket that is being probed (polling → WebSocket upgrade).
    probing: Option<WsStream>,
    probe_deadline: Option<tokio::time::Instant>,
    /// Messages decoded but not yet read by the loop (a POST carries several packets).
    decoded: VecDeque<Message>,
    /// Engine.IO packets of our own (pings, pongs) waiting to be sent.
    control: VecDeque<Packet>,
    ping_interval: std::time::Duration,
    ping_timeout: std::time::Duration,
    /// Revision 4: when the next ping goes out; revision 3: unused.
    next_ping: tokio::time::Instant,
    /// When the peer must have shown life by (a pong in revision 4, a ping in revision 3).
    alive_until: tokio::time::Instant,
    awaiting_pong: bool,
    upgrade_timeout: std::time::Duration,
    registry: Option<(Arc<super::Registry>, String)>,
}

impl EngineTransport {
    pub(crate) fn new(
        version: Version,
        supports_binary: bool,
        config: &SocketIoConfig,
    ) -> EngineTransport {
        let now = tokio::time::Instant::now();
        EngineTransport {
            version,
            supports_binary,
            poll: None,
            inbound: None,
            ws: None,
            probing: None,
            probe_deadline: None,
            decoded: VecDeque::new(),
            control: VecDeque::new(),
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            next_ping: now + config.ping_interval,
            alive_until: now + config.ping_interval + config.ping_timeout,
            awaiting_pong: false,
            upgrade_timeout: config.upgrade_timeout,
            registry: None,
        }
    }

    /// A session that starts on polling.
    pub(crate) fn polling(
        mut self,
        shared: Arc<PollShared>,
        inbound: mpsc::Receiver<Inbound>,
        registry: Arc<super::Registry>,
        sid: String,
    ) -> EngineTransport {
        self.poll = Some(shared);
        self.inbound = Some(inbound);
        self.registry = Some((registry, sid));
        self
    }

    /// A session that starts on WebSocket (no upgrade).
    pub(crate) fn websocket(mut self, ws: WsStream) -> EngineTransport {
        self.ws = Some(ws);
        self
    }

    /// Queues the `open` packet (the first thing a client reads).
    pub(crate) fn open(&mut self, handshake: Handshake) {
        self.control.push_back(Packet::Open(handshake));
    }

    fn alive(&mut self) {
        let now = tokio::time::Instant::now();
        self.awaiting_pong = false;
        match self.version {
            Version::V4 => self.next_ping = now + self.ping_interval,
            Version::V3 => self.alive_until = now + self.ping_interval + self.ping_timeout,
        }
    }

    /// Takes in one Engine.IO packet from the client; the close it asks for, if any.
    fn take(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Message(Data::Text(text)) => self.decoded.push_back(Message::text(text)),
            Packet::Message(Data::Binary(bytes)) => self.decoded.push_back(Message::binary(bytes)),
            // Revision 3: the client's heartbeat, answered with the same data (v3 §Encoding >
            // ping: "a pong packet containing the same data"; engine.io answers a bare pong,
            // which is the same for the bare ping real clients send).
            Packet::Ping(data) => {
                self.alive();
                self.control.push_back(Packet::Pong(data));
            }
            Packet::Pong(_) => self.alive(),
            // The client closes (a polling client's session was ended by its POST's handler).
            Packet::Close => return Err((CloseCode::NORMAL, "the client closed".into())),
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
        Ok(())
    }

    fn heartbeat_deadline(&self) -> tokio::time::Instant {
        match self.version {
            Version::V4 if self.awaiting_pong => self.alive_until,
            Version::V4 => self.next_ping,
            Version::V3 => self.alive_until,
        }
    }

    /// Sends one packet on the current transport.
    async fn send(&mut self, packet: Packet) -> Result<(), Close> {
        if let Some(ws) = &mut self.ws {
            let frame = match encode_ws_frame(self.version, &packet, self.supports_binary) {
                WsFrame::Text(text) => Message::text(text),
                WsFrame::Binary(bytes) => Message::binary(bytes),
            };
            return SinkExt::feed(ws, frame).await.map_err(|_| lost());
        }
        match &self.poll {
            Some(poll) if poll.push(packet) => Ok(()),
            Some(_) => Err((
                CloseCode::SLOW_CONSUMER,
                "too many packets buffered for a client that does not poll".into(),
            )),
            None => Err(lost()),
        }
    }

    async fn finish_upgrade(&mut self) {
        let Some(ws) = self.probing.take() else {
            return;
        };
        self.probe_deadline = None;
        if let Some(poll) = &self.poll {
            // What the GETs did not take yet goes over the WebSocket, in order (not the noop
            // queued at the probe for a poll that did not come); a pending GET ends with a noop
            // so the client can switch (v4 §Upgrade); later polling requests are refused.
            let mut out = poll.out.lock().unwrap();
            let pending: Vec<Packet> = out
                .packets
                .drain(..)
                .filter(|p| *p != Packet::Noop)
                .collect();
            out.upgraded = true;
            if out.polling {
                out.packets.push_back(Packet::Noop);
            }
            drop(out);
            poll.out_ready.notify_one();
            self.control.extend(pending);
        }
        self.ws = Some(ws);
    }
}

fn ws_packet(version: Version, message: Message) -> Option<Result<Packet, ()>> {
    if message.is_text() {
        let text = message.as_text()?;
        Some(decode_ws_text(version, text).map_err(|_| ()))
    } else if message.is_binary() {
        let bytes = bytes::Bytes::copy_from_slice(message.as_payload());
        Some(decode_ws_binary(version, bytes).map_err(|_| ()))
    } else {
        None
    }
}

impl Transport for EngineTransport {
    async fn read(&mut self) -> Read {
        loop {
            if let Some(message) = self.decoded.pop_front() {
                return Read::Message(message);
            }
            if !self.control.is_empty() {
                return Read::Wake;
            }
            let heartbeat = self.heartbeat_deadline();
            let probe = self.probe_deadline;
            tokio::select! {
                inbound = async { self.inbound.as_mut().expect("guarded").recv().await }, if self.inbound.is_some() => {
                    match inbound {
                        Some(Inbound::Packets(packets)) => {
                            for packet in packets {
                                if let Err(close) = self.take(packet) {
                                    return Read::Close(close);
                                }
                            }
                        }
                        Some(Inbound::Upgrade(ws)) => {
                            if self.ws.is_some() || self.probing.is_some() {
                                continue;
                            }
                            self.probing = Some(*ws);
                            self.probe_deadline = Some(tokio::time::Instant::now() + self.upgrade_timeout);
                        }
                        None => return Read::Closed(lost()),
                    }
                }
                // An HTTP handler ended the session (the client broke or left it).
                _ = async { self.poll.as_ref().expect("guarded").aborted.notified().await }, if self.poll.is_some() && self.ws.is_none() => {
                    let why = self.poll.as_ref().and_then(|p| p.out.lock().unwrap().aborted.clone());
                    return Read::Closed(why.unwrap_or_else(lost));
                }
                message = async { self.ws.as_mut().expect("guarded").next().await }, if self.ws.is_some() => {
                    match message {
                        Some(Ok(message)) if message.is_close() => {
                            let close = message.as_close().map_or_else(lost, |(code, reason)| {
                                (CloseCode(u16::from(code)), reason.to_owned())
                            });
                            if let Some(ws) = &mut self.ws {
                                let _ = tokio::time::timeout(crate::ws::CLOSE_LINGER, SinkExt::flush(ws)).await;
                            }
                            return Read::Closed(close);
                        }
                        Some(Ok(message)) => {
                            let taken = match ws_packet(self.version, message) {
                                Some(Ok(packet)) => self.take(packet),
                                Some(Err(())) => Err((CloseCode::BAD_FRAME, "invalid Engine.IO packet".into())),
                                None => Ok(()),
                            };
                            if let Err(close) = taken {
                                return Read::Close(close);
                            }
                        }
                        Some(Err(e)) => return Read::Closed(crate::ws::read_error_close(&e)),
                        None => return Read::Closed(lost()),
                    }
                }
                message = async { self.probing.as_mut().expect("guarded").next().await }, if self.probing.is_some() => {
                    let packet = match message {
                        Some(Ok(message)) => ws_packet(self.version, message),
                        _ => None,
                    };
                    match packet {
                        Some(Ok(Packet::Ping(Some(probe)))) if probe == "probe" => {
                            // The client pauses polling before it sends `upgrade`: the pending
                            // GET ends now with a noop (as engine.io does), or it would wait for
                            // data.
                            if let Some(poll) = &self.poll {
                                poll.push(Packet::Noop);
                            }
                            let ws = self.probing.as_mut().expect("guarded");
                            let pong = match encode_ws_frame(self.version, &Packet::Pong(Some("probe".into())), true) {
                                WsFrame::Text(text) => Message::text(text),
                                WsFrame::Binary(bytes) => Message::binary(bytes),
                            };
                            if ws.send(pong).await.is_err() {
                                self.probing = None;
                                self.probe_deadline = None;
                            }
                        }
                        Some(Ok(Packet::Upgrade)) => self.finish_upgrade().await,
                        // Anything else fails the upgrade; the session goes on polling.
                        _ => {
                            self.probing = None;
                            self.probe_deadline = None;
                        }
                    }
                }
                _ = tokio::time::sleep_until(probe.unwrap_or(heartbeat)), if probe.is_some() => {
                    self.probing = None;
                    self.probe_deadline = None;
                }
                _ = tokio::time::sleep_until(heartbeat) => {
                    match self.version {
                        Version::V4 if !self.awaiting_pong => {
                            self.awaiting_pong = true;
                            self.alive_until = tokio::time::Instant::now() + self.ping_timeout;
                            self.control.push_back(Packet::Ping(None));
                        }
                        // No pong (v4) or no ping (v3) in time: the client is gone, and what
                        // was queued for it with it.
                        _ => {
                            if let (Some(poll), None) = (&self.poll, &self.ws) {
                                poll.abort(Packet::Close, (CloseCode::HEARTBEAT_TIMEOUT, "ping timeout".into()));
                            }
                            return Read::Close((CloseCode::HEARTBEAT_TIMEOUT, "ping timeout".into()));
                        }
                    }
                }
            }
        }
    }

    async fn feed(&mut self, message: Message) -> Result<(), Close> {
        let data = match message.as_text() {
            Some(text) if message.is_text() => Data::Text(text.to_owned()),
            _ => Data::Binary(bytes::Bytes::copy_from_slice(message.as_payload())),
        };
        while let Some(packet) = self.control.pop_front() {
            self.send(packet).await?;
        }
        self.send(Packet::Message(data)).await
    }

    async fn flush(&mut self) -> Result<(), Close> {
        while let Some(packet) = self.control.pop_front() {
            self.send(packet).await?;
        }
        match &mut self.ws {
            Some(ws) => SinkExt::flush(ws).await.map_err(|_| lost()),
            None => Ok(()),
        }
    }

    fn wants_flush(&self) -> bool {
        !self.control.is_empty()
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = self.flush().await;
        if let Some(ws) = &mut self.ws {
            crate::ws::close(ws, code, reason).await;
        } else if let Some(poll) = &self.poll {
            // The next GET gets `close`.
            poll.close();
        }
    }
}

impl Drop for EngineTransport {
    fn drop(&mut self) {
        if let Some(poll) = &self.poll {
            poll.close();
        }
        if let Some((registry, sid)) = self.registry.take() {
            registry.remove(&sid);
        }
    }
}

/// The handshake a new session sends first.
pub(crate) fn handshake(sid: &str, polling: bool, config: &SocketIoConfig) -> Handshake {
    Handshake {
        sid: sid.to_owned(),
        upgrades: if polling {
            vec!["websocket".to_owned()]
        } else {
            Vec::new()
        },
        ping_interval_ms: config.ping_interval.as_millis() as u64,
        ping_timeout_ms: config.ping_timeout.as_millis() as u64,
        max_payload: config.max_payload_bytes as u64,
    }
}

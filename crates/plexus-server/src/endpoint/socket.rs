//! An endpoint connection on the shared loop: the upgrade (the endpoint's `pre_connect`, then
//! the node's upgrade hook), authentication from the `token` query parameter when the upgrade
//! gave no identity, the endpoint's channels, and its handlers in the order messages came.

use super::format::{frame_message, to_message};
use super::{
    ALL_ENDPOINTS_CHANNEL, Mode, Mounted, RawMessage, Socket, UnknownEvent, endpoint_channel,
};
use crate::ServerState;
use crate::conn::{Close, Dialect, Incoming, Replied, Step};
use crate::ws::{authorize, check_upgrade, refusal, spawn_session, switching, upgrade_request};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response};
use bytes::Bytes;
use plexus_core::session::ConnectRequest;
use plexus_core::{CloseCode, Error, Session};
use plexus_protocol::plezi::{self, Dispatch};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_websockets::Message;

/// `GET <endpoint path>`: upgrades to the endpoint.
pub(crate) async fn upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(mounted) = super::mounted(&state, &path) else {
        return refusal(404, "no such endpoint".into());
    };
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let upgrade = Arc::new(upgrade_request(&req, peer, "endpoint", "websocket"));
    if let Some(check) = &mounted.endpoint.pre_connect
        && let Err((status, reason)) = check(upgrade.clone()).await
    {
        return refusal(status, reason);
    }
    let node = state.node.clone();
    let identity = match authorize(&node, &upgrade).await {
        Ok(identity) => identity,
        Err(refused) => return *refused,
    };
    let token = upgrade.query_param("token").map(str::to_owned);
    if identity.is_none() && token.is_none() && !node.auth().anonymous {
        return refusal(401, "authentication required: a token (`?token=`)".into());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limits = mounted.endpoint.limits.clone();
    let max_message_bytes = limits
        .max_message_bytes
        .unwrap_or(node.limits().max_message_bytes);
    spawn_session(&state, on_upgrade, max_message_bytes, move || {
        let format = mounted.format.clone();
        let session = Session::open_with(&node, format, upgrade, identity, &limits.conn_limits())?;
        let dialect = EndpointSocket {
            mounted,
            socket: None,
            token,
        };
        Ok((session, dialect))
    });
    switching(key).body(Body::empty()).expect("valid response")
}

/// A message for the endpoint's handler.
pub(crate) enum Inbound {
    Raw(RawMessage),
    Event(Dispatch),
}

pub(crate) struct EndpointSocket {
    mounted: Arc<Mounted>,
    socket: Option<Socket>,
    /// The `token` query parameter, when the upgrade gave no identity.
    token: Option<String>,
}

impl EndpointSocket {
    fn socket(&self, session: &Session) -> Socket {
        self.socket.clone().unwrap_or_else(|| Socket {
            conn: session.connection().clone(),
            node: session.node().clone(),
            endpoint: Arc::from(self.mounted.endpoint.name.as_str()),
        })
    }

    /// Joins the endpoint's channels, registers the socket and runs `on_open`; a failure is the
    /// close to end with.
    async fn start(&mut self, session: &mut Session) -> Result<(), Close> {
        if let Some(token) = self.token.take() {
            let request = ConnectRequest {
                token: Some(token),
                ..ConnectRequest::default()
            };
            if let Err(e) = session.connect(request).await {
                return Err((e.close.unwrap_or(CloseCode::AUTH_FAILED), e.message));
            }
        }
        session.finish_auth().await;
        let socket = self.socket(session);
        let node = session.node();
        for channel in [
            endpoint_channel(&self.mounted.endpoint.name),
            ALL_ENDPOINTS_CHANNEL.to_owned(),
        ] {
            if let Err(e) = node.subscribe_connection(socket.id(), &channel).await {
                return Err((CloseCode::DISCONNECTED, format!("joining {channel}: {e}")));
            }
        }
        self.mounted
            .sockets
            .lock()
            .unwrap()
            .insert(socket.id(), socket.clone());
        self.socket = Some(socket.clone());
        if let Some(on_open) = &self.mounted.endpoint.on_open {
            on_open(socket).await;
        }
        Ok(())
    }
}

impl Dialect for EndpointSocket {
    type Request = Inbound;

    async fn open(&mut self, session: &mut Session) {
        if let Err((code, reason)) = self.start(session).await {
            session.connection().close(code, reason);
        }
    }

    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Inbound>>) {
        match &self.mounted.endpoint.mode {
            Mode::Raw(_) => {
                let raw = match message.as_text() {
                    Some(text) => RawMessage::Text(text.to_owned()),
                    None => RawMessage::Binary(Bytes::copy_from_slice(message.as_payload())),
                };
                out.push(Incoming::Request(Inbound::Raw(raw)));
            }
            Mode::Dispatch { .. } => {
                let decoded = match message.as_text() {
                    Some(text) => plezi::decode(text),
                    None => Err(plezi::DispatchError::Binary),
                };
                match decoded {
                    Ok(dispatch) => {
                        // The acknowledgement as soon as the message is read, ahead of the
                        // answers to earlier messages still running (PleziClient 0.16 waits
                        // 10 ms for it).
                        if let (Some(eid), Some(socket)) = (&dispatch.eid, &self.socket) {
                            socket.send_text(plezi::ack(eid));
                        }
                        out.push(Incoming::Request(Inbound::Event(dispatch)))
                    }
                    Err(e) => out.push(Incoming::Broken((CloseCode::BAD_FRAME, e.to_string()))),
                }
            }
        }
    }

    fn is_concurrent(&self, _session: &Session, _request: &Inbound) -> bool {
        false
    }

    fn refusal(&self, _request: &Inbound, _error: &Error) -> Option<Bytes> {
        None
    }

    /// Handlers run as the connection's ordered call: the loop goes on reading and writing
    /// meanwhile (the `_EID_` acknowledgements of later messages go out at once), and the next
    /// message waits for the handler.
    async fn execute(&mut self, session: &mut Session, request: Inbound) -> Step {
        let socket = self.socket(session);
        match (&self.mounted.endpoint.mode, request) {
            (Mode::Raw(handler), Inbound::Raw(message)) => match handler.clone() {
                Some(handler) => Step::Running(Box::pin(async move {
                    handler(socket, message).await;
                    Replied {
                        frame: None,
                        close: None,
                    }
                })),
                None => Step::Done(None),
            },
            (
                Mode::Dispatch {
                    events,
                    fallback,
                    unknown,
                },
                Inbound::Event(dispatch),
            ) => {
                let handler = dispatch
                    .event
                    .as_deref()
                    .and_then(|e| events.get(e))
                    .or(fallback.as_ref())
                    .cloned();
                match handler {
                    Some(handler) => Step::Running(Box::pin(async move {
                        let reply = handler(socket, dispatch.message).await;
                        Replied {
                            frame: reply
                                .map(|r| frame_message(&RawMessage::Text(plezi::reply_text(&r)))),
                            close: None,
                        }
                    })),
                    None if *unknown == UnknownEvent::Close => Step::Done(Some((
                        CloseCode::BAD_FRAME,
                        format!(
                            "unknown event {}",
                            dispatch.event.as_deref().unwrap_or("(none)")
                        ),
                    ))),
                    None => {
                        socket.send_text(plezi::not_found(&dispatch.message));
                        Step::Done(None)
                    }
                }
            }
            _ => Step::Done(None),
        }
    }

    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>) {
        if let Some(message) = to_message(frame) {
            out.push(message);
        }
    }

    fn flush(&mut self, _out: &mut Vec<Message>) {}

    async fn closed(&mut self, _session: &mut Session) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        self.mounted.sockets.lock().unwrap().remove(&socket.id());
        if let Some(on_close) = &self.mounted.endpoint.on_close {
            on_close(socket).await;
        }
    }
}

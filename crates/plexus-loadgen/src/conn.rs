//! Opening WebSocket connections on loopback, spread over several source addresses.
//!
//! One source address can hold about 28 000 connections to one server (the kernel's default
//! ephemeral port range is 32768–60999), so past [`CONNECTIONS_PER_SOURCE`] the connector binds
//! new sockets to 127.0.0.2, 127.0.0.3… (all of 127.0.0.0/8 is loopback on Linux).

use anyhow::{Context, Result, bail};
use http::HeaderValue;
use http::header::SEC_WEBSOCKET_PROTOCOL;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Config, Limits, WebSocketStream};

/// The client side of a WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Connections one source address is given before the next one is used, with headroom below
/// the ~28 000 ephemeral ports of the default range.
pub const CONNECTIONS_PER_SOURCE: usize = 25_000;

/// The largest message the load generator accepts (a batch of Plexus pushes is at most 64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Outgoing messages are split into frames of at most this size.
const FRAME_BYTES: usize = 64 * 1024;
/// Queued outgoing bytes after which a send flushes to the socket.
const FLUSH_THRESHOLD_BYTES: usize = 8 * 1024;

/// Opens connections to one server.
#[derive(Debug)]
pub struct Connector {
    server: SocketAddr,
    sources: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Connector {
    /// A connector using `source_ips` source addresses (127.0.0.1, 127.0.0.2, …). Refuses any
    /// server that is not on loopback: the load generator never loads a remote machine.
    pub fn new(server: SocketAddr, source_ips: usize) -> Result<Connector> {
        if !server.ip().is_loopback() {
            bail!("the load generator only targets loopback addresses, not {server}");
        }
        let sources = match server.ip() {
            IpAddr::V4(_) => (1..=source_ips.clamp(1, 254))
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
                .collect(),
            IpAddr::V6(_) => vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        };
        Ok(Connector {
            server,
            sources,
            next: AtomicUsize::new(0),
        })
    }

    /// A connector with enough source addresses for `connections` at once.
    pub fn for_connections(server: SocketAddr, connections: usize) -> Result<Connector> {
        Connector::new(server, connections.div_ceil(CONNECTIONS_PER_SOURCE))
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// A TCP connection from the next source address, with Nagle off.
    pub async fn tcp(&self) -> Result<TcpStream> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
        let socket = match self.server {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if self.sources.len() > 1 {
            // Choose the port at connect time, per (source, server) pair, as an unbound
            // socket would: otherwise bind reserves a port for every destination and counts
            // the thousands of TIME_WAIT sockets a previous run left.
            bind_address_no_port(&socket);
            socket
                .bind(SocketAddr::new(self.sources[i], 0))
                .with_context(|| format!("binding a socket to {}", self.sources[i]))?;
        }
        let stream = socket
            .connect(self.server)
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens a WebSocket at `path` (with its query), offering `subprotocol`. Returns the stream
    /// and the subprotocol the server chose.
    pub async fn websocket(
        &self,
        path: &str,
        subprotocol: Option<&str>,
    ) -> Result<(Ws, Option<String>)> {
        let tcp = self.tcp().await?;
        let mut builder = ClientBuilder::new()
            .uri(&format!("ws://{}{}", self.server, path))?
            .config(
                Config::default()
                    .frame_size(FRAME_BYTES)
                    .flush_threshold(FLUSH_THRESHOLD_BYTES),
            )
            .limits(Limits::default().max_payload_len(Some(MAX_MESSAGE_BYTES)));
        if let Some(token) = subprotocol {
            builder = builder.add_header(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(token)?)?;
        }
        let (ws, response) = builder
            .connect_on(tcp)
            .await
            .with_context(|| format!("WebSocket handshake with ws://{}{}", self.server, path))?;
        let chosen = response
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((ws, chosen))
    }
}

#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to an int of the size given. A failure
    // (an old kernel) only means ports are reserved at bind time.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &TcpSocket) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(Connector::new("10.0.0.1:80".parse().unwrap(), 1).is_err());
        assert!(Connector::new("[::1]:80".parse().unwrap(), 3).is_ok());
        let c = Connector::for_connections("127.0.0.1:80".parse().unwrap(), 60_000).unwrap();
        assert_eq!(c.source_count(), 3);
        assert_eq!(
            Connector::for_connections("127.0.0.1:80".parse().unwrap(), 10)
                .unwrap()
                .source_count(),
            1
        );
    }
}

//! Sockety's numbers (`docs/benchmarks.md`, "Sockety"): request/response calls per server CPU
//! second over Sockety TCP against HTTP/2 request/response served by `hyper` with the same
//! payload, and stream throughput against a raw TCP copy on loopback. The peers' servers are
//! here too (`h2-echo`, `tcp-echo`), so both sides of each comparison run the same way.

use crate::sys::CpuMeter;
use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use plexus_sockety::{Config, Draft, Reply};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a request/response run goes.
#[derive(clap::Args, Clone, Debug)]
pub struct CallsArgs {
    /// The server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The server's process id (its CPU time is what the figure divides by).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (multiplexed: channels or HTTP/2 streams).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Request data bytes (the response carries them back).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// The label in results.
    #[arg(long)]
    pub name: Option<String>,
    /// The action (Sockety) or path (HTTP/2).
    #[arg(long, default_value = "echo")]
    pub action: String,
}

/// How a stream run goes.
#[derive(clap::Args, Clone, Debug)]
pub struct StreamArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    /// Bytes sent (and echoed back).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub bytes: u64,
    /// Bytes per write.
    #[arg(long, default_value_t = 64 * 1024)]
    pub chunk_bytes: usize,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Clone, Copy)]
enum Proto {
    Sockety,
    H2,
}

/// Request/response over Sockety TCP.
pub async fn sockety_calls(args: &CallsArgs) -> Result<serde_json::Value> {
    calls(args, Proto::Sockety).await
}

/// Request/response over HTTP/2 (h2c, prior knowledge).
pub async fn h2_calls(args: &CallsArgs) -> Result<serde_json::Value> {
    calls(args, Proto::H2).await
}

async fn calls(args: &CallsArgs, proto: Proto) -> Result<serde_json::Value> {
    let payload = Bytes::from(vec![b'x'; args.payload_bytes]);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let tcp = TcpStream::connect(args.addr)
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        tcp.set_nodelay(true)?;
        let caller = match proto {
            Proto::Sockety => {
                let (read, write) = tcp.into_split();
                let (peer, _incoming) = plexus_sockety::start(read, write, Config::default());
                Caller::Sockety(peer)
            }
            Proto::H2 => {
                let (send, conn) =
                    hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await?;
                tokio::spawn(conn);
                Caller::H2(send, format!("http://{}/{}", args.addr, args.action))
            }
        };
        for _ in 0..args.in_flight {
            let caller = caller.clone();
            let (counting, stop, done) = (counting.clone(), stop.clone(), done.clone());
            let payload = payload.clone();
            let action = args.action.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    caller.call(&action, payload.clone()).await?;
                    if counting.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                        let _ = hist.record(start.elapsed().as_micros() as u64);
                    }
                }
                anyhow::Ok(hist)
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup_s)).await;
    let meter = args.server_pid.and_then(CpuMeter::start);
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration_s)).await;
    counting.store(false, Ordering::Relaxed);
    let wall = started.elapsed().as_secs_f64();
    let cpu = meter.as_ref().and_then(CpuMeter::read).map(|(cpu, _)| cpu);
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        hist.add(task.await??)?;
    }
    let calls = done.load(Ordering::Relaxed);
    let name = args.name.clone().unwrap_or_else(|| {
        match proto {
            Proto::Sockety => "plexus-sockety",
            Proto::H2 => "hyper-h2",
        }
        .into()
    });
    Ok(json!({
        "scenario": "sockety-calls",
        "name": name,
        "connections": args.connections,
        "in_flight": args.in_flight,
        "payload_bytes": args.payload_bytes,
        "calls": calls,
        "calls_per_s": calls as f64 / wall,
        "server_cpu_s": cpu,
        "calls_per_server_cpu_s": cpu.map(|c| calls as f64 / c.max(1e-9)),
        "p50_ms": hist.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": hist.value_at_quantile(0.99) as f64 / 1000.0,
    }))
}

#[derive(Clone)]
enum Caller {
    Sockety(plexus_sockety::Peer),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>, String),
}

impl Caller {
    async fn call(&self, action: &str, payload: Bytes) -> Result<()> {
        match self {
            Caller::Sockety(peer) => match peer.request(Draft::new(action).data(payload)).await? {
                Reply::Response(_) => Ok(()),
                Reply::Fast(code) => anyhow::bail!("fast reply {code}"),
            },
            Caller::H2(send, url) => {
                let mut send = send.clone();
                let request = http::Request::post(url.as_str()).body(Full::new(payload))?;
                let response = send.send_request(request).await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await?;
                Ok(())
            }
        }
    }
}

/// A stream echoed by a Sockety server's `echo` action: bytes per second both ways.
pub async fn sockety_stream(args: &StreamArgs) -> Result<serde_json::Value> {
    let tcp = TcpStream::connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    let (read, write) = tcp.into_split();
    let (peer, _incoming) = plexus_sockety::start(read, write, Config::default());
    let (writer, reader) = plexus_sockety::stream(1024 * 1024);
    let started = Instant::now();
    let reply = peer.request(Draft::new("echo").stream(reader)).await?;
    let Reply::Response(mut response) = reply else {
        anyhow::bail!("a fast reply to the stream")
    };
    let mut echoed = response.stream.take().context("no stream back")?;
    let chunk = Bytes::from(vec![7u8; args.chunk_bytes]);
    let total = args.bytes;
    let feeder = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            writer.send(chunk.slice(..n)).await.ok()?;
            sent += n as u64;
        }
        Some(())
    });
    let mut got = 0u64;
    while let Some(bytes) = echoed.next().await {
        got += bytes.len() as u64;
    }
    feeder.await?.context("the stream's reader went away")?;
    anyhow::ensure!(got == total, "echoed {got} of {total} bytes");
    Ok(stream_result(args, "plexus-sockety-stream", got, started))
}

/// The same bytes through a plain TCP echo: bytes per second both ways.
pub async fn tcp_stream(args: &StreamArgs) -> Result<serde_json::Value> {
    let tcp = TcpStream::connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    let (mut read, mut write) = tcp.into_split();
    let started = Instant::now();
    let chunk = vec![7u8; args.chunk_bytes];
    let total = args.bytes;
    let feeder = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            write.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        write.shutdown().await
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < total {
        let n = read.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the echo ended early");
        got += n as u64;
    }
    feeder.await??;
    Ok(stream_result(args, "tcp-copy", got, started))
}

fn stream_result(
    args: &StreamArgs,
    default: &str,
    bytes: u64,
    started: Instant,
) -> serde_json::Value {
    let wall = started.elapsed().as_secs_f64();
    json!({
        "scenario": "sockety-stream",
        "name": args.name.clone().unwrap_or_else(|| default.into()),
        "bytes": bytes,
        "seconds": wall,
        "mib_per_s": bytes as f64 / wall / (1024.0 * 1024.0),
    })
}

/// An HTTP/2 (h2c) server answering every POST with its body: the peer of `sockety-calls`.
pub async fn h2_echo(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("h2-echo listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    anyhow::Ok(hyper::Response::new(Full::new(body)))
                },
            );
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// A TCP server that writes back what it reads: the peer of `sockety-stream`.
pub async fn tcp_echo(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("tcp-echo listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let (mut read, mut write) = tcp.into_split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
    }
}

//! `plexus-loadgen`: run one scenario against one server on loopback, or compare results.
//!
//! Each run prints one JSON line (stdout) and a small table (stderr); `compare` turns JSON lines
//! from several servers into side-by-side tables with ratios. See `docs/benchmarks.md`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plexus_loadgen::scenario::channels::ChannelsArgs;
use plexus_loadgen::scenario::connect::ConnectArgs;
use plexus_loadgen::scenario::fanout::FanoutArgs;
use plexus_loadgen::scenario::idle::IdleArgs;
use plexus_loadgen::scenario::rpc::RpcArgs;
use plexus_loadgen::scenario::{self, Target};
use plexus_loadgen::{Connector, Dialect, Outcome, compare, sys};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "plexus-loadgen",
    version,
    about = "Load generator for Plexus and its peers (Socket.IO v4, plain WebSocket), loopback only"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// S subscribers on one channel, P publishers: deliveries/s and publish-to-receive latency.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
    },
    /// N connections, each on its own channel plus a shared one.
    Channels {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ChannelsArgs,
    },
    /// C clients calling `echo`: calls/s and round-trip latency.
    Rpc {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: RpcArgs,
    },
    /// New connections (handshake and hello) per second.
    Connect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ConnectArgs,
    },
    /// N idle connections: the server's resident memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: IdleArgs,
    },
    /// Sockety request/response over TCP: calls per server CPU second (`docs/benchmarks.md`).
    SocketyCalls(plexus_loadgen::sockety_bench::CallsArgs),
    /// HTTP/2 request/response (h2c) against `h2-echo`: the peer of `sockety-calls`.
    H2Calls(plexus_loadgen::sockety_bench::CallsArgs),
    /// A stream echoed by a Sockety server's `echo` action: throughput.
    SocketyStream(plexus_loadgen::sockety_bench::StreamArgs),
    /// The same bytes through `tcp-echo`: the peer of `sockety-stream`.
    TcpStream(plexus_loadgen::sockety_bench::StreamArgs),
    /// Serve HTTP/2 (h2c) answering each POST with its body, until killed.
    H2Echo {
        #[arg(long, default_value = "127.0.0.1:8010")]
        listen: SocketAddr,
    },
    /// Serve TCP echoing every byte, until killed.
    TcpEcho {
        #[arg(long, default_value = "127.0.0.1:8011")]
        listen: SocketAddr,
    },
    /// Side-by-side Markdown tables of results (JSON lines), with ratios baseline ÷ peer.
    Compare {
        /// Files of JSON lines (`-` or nothing: standard input).
        files: Vec<PathBuf>,
        /// The target the ratios are computed for.
        #[arg(long, default_value = "plexus-json")]
        baseline: String,
        /// Show every figure, not only the headline ones.
        #[arg(long)]
        all_figures: bool,
    },
}

#[derive(clap::Args)]
struct Common {
    /// The server, HOST:PORT on loopback.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// How to talk to it.
    #[arg(long, value_enum, default_value = "native-json")]
    dialect: Dialect,
    /// The server's label in results (default: plexus-json, plexus-msgpack, socketio or ws).
    #[arg(long)]
    name: Option<String>,
    /// The server's process id, to read its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses 127.0.0.1…127.0.0.N (default: one per 25 000 connections).
    #[arg(long)]
    source_ips: Option<usize>,
    /// Connections opened at once while a scenario sets up.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Hard bound on the whole run, in seconds (default: the scenario's length plus a margin).
    #[arg(long)]
    timeout_s: Option<f64>,
    /// Also append the JSON line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Common {
    fn target(&self, connections: usize) -> Result<Target> {
        // Many connections need many descriptors; as root the hard limit is raised too.
        let want = connections as u64 + 256;
        let limit = sys::raise_nofile_limit(want.max(1 << 16));
        if limit < want {
            anyhow::bail!(
                "{connections} connections need about {want} open files, but this process may only have {limit} (the hard limit: raise it with `ulimit -Hn` where permitted, or use fewer connections)"
            );
        }
        let connector = match self.source_ips {
            Some(n) => Connector::new(self.addr, n)?,
            None => Connector::for_connections(self.addr, connections)?,
        };
        let name = self.name.clone().unwrap_or_else(|| {
            match self.dialect {
                Dialect::NativeJson => "plexus-json",
                Dialect::NativeMsgpack => "plexus-msgpack",
                Dialect::Socketio => "socketio",
                Dialect::SocketioPlexus => "plexus-socketio",
                Dialect::Ws => "ws",
            }
            .to_owned()
        });
        Ok(Target::new(name, self.dialect, connector)
            .with_server_pid(self.server_pid)
            .with_connect_concurrency(self.connect_concurrency))
    }
}

impl Common {
    /// The hard bound of a run: `--timeout-s`, or the scenario's natural length.
    fn bound(&self, natural_s: f64) -> Duration {
        Duration::from_secs_f64(self.timeout_s.unwrap_or(natural_s).max(1.0))
    }
}

/// Seconds a setup of `connections` may take, generously.
fn setup_s(connections: usize) -> f64 {
    30.0 + connections as f64 / 200.0
}

async fn run(command: Command) -> Result<i32> {
    use plexus_loadgen::sockety_bench as sb;
    let line = match &command {
        Command::SocketyCalls(args) => Some(sb::sockety_calls(args).await?),
        Command::H2Calls(args) => Some(sb::h2_calls(args).await?),
        Command::SocketyStream(args) => Some(sb::sockety_stream(args).await?),
        Command::TcpStream(args) => Some(sb::tcp_stream(args).await?),
        Command::H2Echo { listen } => {
            sb::h2_echo(*listen).await?;
            return Ok(0);
        }
        Command::TcpEcho { listen } => {
            sb::tcp_echo(*listen).await?;
            return Ok(0);
        }
        _ => None,
    };
    if let Some(line) = line {
        println!("{line}");
        return Ok(0);
    }
    let (common, outcome) = match command {
        Command::Compare {
            files,
            baseline,
            all_figures,
        } => {
            let mut text = String::new();
            if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
                std::io::stdin().read_to_string_lossy(&mut text)?;
            }
            for f in files.iter().filter(|f| f.as_os_str() != "-") {
                text.push_str(
                    &std::fs::read_to_string(f).with_context(|| format!("reading {f:?}"))?,
                );
                text.push('\n');
            }
            let outcomes = compare::parse_lines(&text);
            print!("{}", compare::table(&outcomes, &baseline, all_figures));
            return Ok(0);
        }
        Command::Fanout { common, args } => {
            let n = args.subscribers + args.publishers;
            let natural = setup_s(n) + args.warmup_s + args.duration_s + args.drain_s + 10.0;
            let target = common.target(n)?;
            let outcome = bounded(scenario::fanout::run(&target, &args), common.bound(natural));
            (common, outcome.await)
        }
        Command::Channels { common, args } => {
            let n = args.connections + args.publishers;
            let natural = setup_s(n) + args.warmup_s + args.duration_s + args.drain_s + 10.0;
            let target = common.target(n)?;
            let outcome = bounded(
                scenario::channels::run(&target, &args),
                common.bound(natural),
            );
            (common, outcome.await)
        }
        Command::Rpc { common, args } => {
            let natural = setup_s(args.clients) + args.warmup_s + args.duration_s + 20.0;
            let target = common.target(args.clients)?;
            let outcome = bounded(scenario::rpc::run(&target, &args), common.bound(natural));
            (common, outcome.await)
        }
        Command::Connect { common, args } => {
            let natural = setup_s(args.connections) * 2.0;
            let target = common.target(args.connections)?;
            let outcome = bounded(
                scenario::connect::run(&target, &args),
                common.bound(natural),
            );
            (common, outcome.await)
        }
        Command::SocketyCalls(_)
        | Command::H2Calls(_)
        | Command::SocketyStream(_)
        | Command::TcpStream(_)
        | Command::H2Echo { .. }
        | Command::TcpEcho { .. } => unreachable!("answered above"),
        Command::Idle { common, args } => {
            let natural = setup_s(args.connections) * 2.0 + args.settle_s;
            let target = common.target(args.connections)?;
            let outcome = bounded(scenario::idle::run(&target, &args), common.bound(natural));
            (common, outcome.await)
        }
    };
    let outcome = outcome?;
    let line = outcome.to_json_line();
    println!("{line}");
    eprint!("{}", outcome.to_table());
    if let Some(path) = &common.out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {path:?}"))?;
        writeln!(file, "{line}")?;
    }
    Ok(0)
}

/// Runs a scenario within its bound: a run that does not end by itself is stopped.
async fn bounded(fut: impl Future<Output = Result<Outcome>>, bound: Duration) -> Result<Outcome> {
    tokio::time::timeout(bound, fut)
        .await
        .map_err(|_| anyhow::anyhow!("the run did not finish within its bound of {bound:?}"))?
}

trait ReadLossy {
    fn read_to_string_lossy(&mut self, into: &mut String) -> std::io::Result<()>;
}

impl<R: std::io::Read> ReadLossy for R {
    fn read_to_string_lossy(&mut self, into: &mut String) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        self.read_to_end(&mut bytes)?;
        into.push_str(&String::from_utf8_lossy(&bytes));
        Ok(())
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

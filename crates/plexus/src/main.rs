//! `plexus`: the server and its command-line tools.

mod cli_client;
mod cli_record;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use plexus_server::config::{self, ConfigFile, Flag, Sources};
use plexus_server::jwt::{self, SigningKey};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "Plexus real-time messaging server and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without a configuration file it runs in development mode: anonymous
    /// connections, every channel open, the HTTP API without a key.
    Serve(ServeArgs),
    /// Write an example configuration, or check one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make a connection or subscription token (JWT) for testing.
    Token(TokenArgs),
    /// Subscribe to a channel and print one JSON line per publication.
    Sub(cli_client::SubArgs),
    /// Publish to a channel over a client connection.
    Pub(cli_client::PubArgs),
    /// Call a command (RPC) and print its result.
    Call(cli_client::CallArgs),
    /// Read, write and watch records (JSON documents with versions).
    #[command(subcommand)]
    Record(cli_record::RecordCommand),
    /// Talk Sockety (`docs/sockety.md`): send a request with data and files.
    #[command(subcommand)]
    Sockety(cli_client::SocketyCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// The configuration file (TOML). With one, the defaults are closed: nothing is allowed
    /// that the file does not allow.
    #[arg(long, short = 'c', env = "PLEXUS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (`server.listen`).
    #[arg(long)]
    listen: Option<String>,
    /// `memory` or `redis` (`engine`).
    #[arg(long)]
    engine: Option<String>,
    /// The Redis server of the `redis` engine (`redis.url`).
    #[arg(long)]
    redis_url: Option<String>,
    /// The HTTP API key (`api.key`).
    #[arg(long)]
    api_key: Option<String>,
    /// The secret of HS256/384/512 tokens (`jwt.hmac_secret`).
    #[arg(long)]
    jwt_hmac_secret: Option<String>,
    /// Time given to clients at shutdown (`server.shutdown_timeout_ms`).
    #[arg(long)]
    shutdown_timeout_ms: Option<u64>,
    /// Sockety's TCP listener (`sockety.listen`; development mode: 127.0.0.1:8001).
    #[arg(long)]
    sockety_listen: Option<String>,
    /// Development mode even with a configuration file (`server.dev_mode = true`).
    #[arg(long)]
    dev: bool,
    /// Any setting, by its path: `--set client.max_subscriptions=512`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration with fresh random secrets:
    /// `plexus config init > plexus.toml`.
    Init,
    /// Check a configuration file; print every problem with its location.
    Check {
        file: PathBuf,
        /// Also apply the `PLEXUS_…` environment variables, as `serve` would.
        #[arg(long)]
        env: bool,
    },
    /// Print one setting as `serve` would use it (the file, then the `PLEXUS_…` environment):
    /// `plexus config get api.key --config plexus.toml`. Strings are printed as they are,
    /// anything else as JSON.
    Get {
        /// The setting's path, such as `api.key`, `server.listen` or `namespaces`.
        key: String,
        /// The configuration file; without one, the development defaults.
        #[arg(long, short = 'c', env = "PLEXUS_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The HMAC secret to sign with.
    #[arg(long, conflicts_with_all = ["config", "private_key"])]
    secret: Option<String>,
    /// Sign with the `jwt.hmac_secret` of this configuration file (environment applied).
    #[arg(long, short = 'c', conflicts_with = "private_key")]
    config: Option<PathBuf>,
    /// Sign with this PEM private key (RSA or EC; pick the algorithm with --alg).
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384.
    #[arg(long, default_value = "HS256")]
    alg: String,
    /// The user id (`sub`). A subscription token for an anonymous connection has none.
    #[arg(long)]
    user: Option<String>,
    /// Lifetime, such as 30s, 15m, 1h or 7d; `never` for a token without `exp`.
    #[arg(long, default_value = "24h")]
    expires_in: String,
    /// The user's info (`info`), as JSON.
    #[arg(long)]
    info: Option<String>,
    /// A channel the connection is subscribed to at connect (`channels`). Repeatable.
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Make a subscription token for this channel instead of a connection token.
    #[arg(long)]
    subscription: Option<String>,
    /// `aud` and `iss` claims, when the server checks them.
    #[arg(long)]
    audience: Option<String>,
    #[arg(long)]
    issuer: Option<String>,
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PLEXUS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("PLEXUS_"))
        .collect()
}

/// Loads a configuration, or prints every problem and fails.
fn load(sources: &Sources) -> anyhow::Result<config::Loaded> {
    config::load(sources).map_err(|e| {
        let count = e.problems.len();
        anyhow::anyhow!(
            "{e}\n{count} configuration problem{}",
            if count == 1 { "" } else { "s" }
        )
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let mut flags = Vec::new();
    let mut flag = |name: &str, key: &str, value: Option<String>| {
        if let Some(value) = value {
            flags.push(Flag::new(name, key, value));
        }
    };
    flag("--listen", "server.listen", args.listen);
    flag("--engine", "engine", args.engine);
    flag("--redis-url", "redis.url", args.redis_url);
    flag("--api-key", "api.key", args.api_key);
    flag("--jwt-hmac-secret", "jwt.hmac_secret", args.jwt_hmac_secret);
    flag(
        "--shutdown-timeout-ms",
        "server.shutdown_timeout_ms",
        args.shutdown_timeout_ms.map(|v| v.to_string()),
    );
    flag("--sockety-listen", "sockety.listen", args.sockety_listen);
    flag("--dev", "server.dev_mode", args.dev.then(|| "true".into()));
    for set in args.set {
        let Some((key, value)) = set.split_once('=') else {
            bail!("--set {set}: expected KEY=VALUE");
        };
        flags.push(Flag::new(format!("--set {key}"), key, value));
    }
    let file = args.config.map(ConfigFile::read).transpose()?;
    let mut loaded = load(&Sources {
        file,
        env: environment(),
        flags,
    })?;
    // Bound before anything is printed or connected: a busy port is the first thing reported.
    let listener = tokio::net::TcpListener::bind(loaded.listen)
        .await
        .map_err(|e| cannot_listen(loaded.listen, e))?;
    loaded.listen = listener.local_addr()?;
    for line in loaded.summary() {
        tracing::info!("{line}");
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut builder = loaded.server_builder();
    if loaded.config.engine == "redis" {
        let r = &loaded.config.redis;
        let mut redis = plexus_redis::RedisConfig::new(&r.url).prefix(&r.prefix);
        redis.cluster = r.cluster.clone();
        redis.presence_ttl = Duration::from_millis(r.presence_ttl_ms);
        redis.node_ttl = Duration::from_millis(r.node_ttl_ms);
        let at = if r.cluster.is_empty() {
            r.url.clone()
        } else {
            format!("the cluster of {}", r.cluster.join(", "))
        };
        let engine = plexus_redis::redis_engine(redis)
            .await
            .with_context(|| format!("cannot use Redis at {at}"))?;
        tracing::info!(redis = %at, prefix = %r.prefix, "engine: redis");
        builder = builder.engine(engine);
    }
    if loaded.dev_mode {
        builder = builder.command("echo", |ctx: plexus_core::CommandContext| async move {
            Ok(ctx.payload)
        });
    }
    let server = builder.build();
    // Mesa's own Dispatcher (another process) publishes on `ws[_namespace]`: every node
    // delivers to its own connections, as Mesa's servers do (docs/mesa.md).
    // On a Redis Cluster there is no such Redis (`redis.url` is not used).
    let single_redis = loaded.config.engine == "redis" && loaded.config.redis.cluster.is_empty();
    let _mesa_dispatcher = match (server.mesa(), single_redis) {
        (Some(mesa), true) => {
            let channel = mesa.ws_channel();
            let url = loaded.config.redis.url.clone();
            let sub = plexus_redis::external::subscribe_external(
                &url,
                &channel,
                Duration::from_secs(5),
                move |payload| {
                    if let Err(e) = mesa.deliver_internal(payload) {
                        tracing::debug!(error = %e, "undeliverable Mesa dispatcher message");
                    }
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to Mesa's {channel} at {url}: {e}"))?;
            tracing::info!(%channel, "Mesa: delivering its Dispatcher's messages");
            Some(sub)
        }
        _ => None,
    };
    // Mesa's Portal format: events to one of the portals of `available_portals_pool[_ns]`,
    // which Mesa's `Portal` class adds itself to (a set) and announces (a channel).
    let _mesa_portals = match server.mesa() {
        Some(mesa) if mesa.config().portals == plexus_server::mesa::PortalMode::Mesa => {
            let url = loaded.config.redis.url.clone();
            let timeout = Duration::from_secs(5);
            let pool = mesa.config().portal_pool();
            let channel = mesa.config().portal_channel();
            let publisher = plexus_redis::external::Publisher::connect(&url, 10_000, timeout)
                .await
                .map_err(|e| anyhow::anyhow!("cannot publish Mesa portal events at {url}: {e}"))?;
            mesa.set_portal_publisher(Box::new(move |payload| {
                publisher.publish(&channel, payload)
            }));
            let announcements = mesa.clone();
            let sub = plexus_redis::external::subscribe_external(&url, &pool, timeout, move |p| {
                if let Err(e) = announcements.portal_announcement(p) {
                    tracing::debug!(error = %e, "unreadable Mesa portal announcement");
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to Mesa's {pool} at {url}: {e}"))?;
            let known = plexus_redis::external::members(&url, &pool, 1024, timeout)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read Mesa's {pool} at {url}: {e}"))?;
            tracing::info!(%pool, portals = known.len(), "Mesa: portal events in Mesa's format");
            mesa.set_portals(known);
            Some(sub)
        }
        _ => None,
    };
    // Plezi's Redis formats: every node reads the bus and delivers to its own connections
    // (docs/endpoints.md).
    let _plezi_bus = match loaded.plezi_bus() {
        Some(bus) => {
            let url = loaded.config.redis.url.clone();
            let delivery =
                plexus_server::endpoint::bus::PleziBus::new(server.node(), &bus.global_channel);
            let channels: Vec<String> = Some(bus.global_channel.clone())
                .filter(|c| !c.is_empty())
                .into_iter()
                .collect();
            let sub = plexus_redis::external::subscribe_external_many(
                &url,
                &channels,
                &bus.raw_channels,
                Duration::from_secs(5),
                move |channel, payload| {
                    if let Err(e) = delivery.deliver(channel, payload) {
                        tracing::debug!(%channel, error = %e, "unreadable Plezi bus message");
                    }
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot read Plezi's bus at {url}: {e}"))?;
            tracing::info!(global = %bus.global_channel, raw = ?bus.raw_channels, "Plezi bus: delivering its messages");
            Some(sub)
        }
        None => None,
    };
    let running = server.start_on(listener).await?;
    running.wait_for_signal().await;
    Ok(0)
}

fn cannot_listen(addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process uses this port (another `plexus serve`?): stop it, or choose \
             another address with --listen ADDR"
        }
        _ => "",
    };
    anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
}

fn config_command(command: ConfigCommand) -> anyhow::Result<i32> {
    match command {
        ConfigCommand::Init => {
            print!("{}", config::init_template());
            Ok(0)
        }
        ConfigCommand::Check { file, env } => {
            let name = file.display().to_string();
            let sources = Sources {
                file: Some(ConfigFile::read(file)?),
                env: if env { environment() } else { Vec::new() },
                flags: Vec::new(),
            };
            match config::load(&sources) {
                Ok(loaded) => {
                    println!("{name}: ok");
                    for line in loaded.summary() {
                        println!("  {line}");
                    }
                    for warning in &loaded.warnings {
                        println!("warning: {warning}");
                    }
                    Ok(0)
                }
                Err(e) => {
                    for problem in &e.problems {
                        eprintln!("{problem}");
                    }
                    let count = e.problems.len();
                    eprintln!(
                        "{name}: {count} problem{}",
                        if count == 1 { "" } else { "s" }
                    );
                    Ok(1)
                }
            }
        }
        ConfigCommand::Get { key, config } => {
            let loaded = load(&Sources {
                file: config.map(ConfigFile::read).transpose()?,
                env: environment(),
                flags: Vec::new(),
            })?;
            let all = serde_json::to_value(&loaded.config)?;
            let value = key
                .split('.')
                .try_fold(&all, |value, part| value.get(part))
                .with_context(|| format!("`{key}` is not a setting"))?;
            match value {
                Value::String(text) => println!("{text}"),
                other => println!("{other}"),
            }
            Ok(0)
        }
    }
}

/// `30s`, `15m`, `1h`, `7d`, a plain number of seconds, or `never`.
fn parse_lifetime(text: &str) -> anyhow::Result<Option<Duration>> {
    if text == "never" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("--expires-in {text}: expected 30s, 15m, 1h, 7d or never"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--expires-in {text}: the unit must be s, m, h or d"),
    };
    Ok(Some(Duration::from_secs(seconds)))
}

fn token(args: TokenArgs) -> anyhow::Result<i32> {
    let alg: jwt::Algorithm = args
        .alg
        .parse()
        .map_err(|_| anyhow::anyhow!("--alg {}: not a JWT algorithm", args.alg))?;
    let key = if let Some(path) = &args.private_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::Pem(pem, alg)
    } else if let Some(secret) = args.secret {
        SigningKey::Hmac(secret.into_bytes())
    } else if let Some(path) = args.config {
        let loaded = load(&Sources {
            file: Some(ConfigFile::read(path)?),
            env: environment(),
            flags: Vec::new(),
        })?;
        let secret = &loaded.config.jwt.hmac_secret;
        if secret.is_empty() {
            bail!("the configuration has no jwt.hmac_secret to sign with");
        }
        SigningKey::Hmac(secret.clone().into_bytes())
    } else {
        bail!("give --secret, --config or --private-key");
    };
    let mut claims = serde_json::Map::new();
    match (&args.subscription, &args.user) {
        (Some(channel), user) => {
            claims.insert("sub".into(), json!(user.clone().unwrap_or_default()));
            claims.insert("channel".into(), json!(channel));
        }
        (None, Some(user)) if !user.is_empty() => {
            claims.insert("sub".into(), json!(user));
        }
        (None, _) => bail!("--user is required for a connection token"),
    }
    if let Some(lifetime) = parse_lifetime(&args.expires_in)? {
        claims.insert("exp".into(), json!(jwt::now_seconds() + lifetime.as_secs()));
    }
    if let Some(info) = &args.info {
        let info: Value = serde_json::from_str(info).context("--info must be JSON")?;
        claims.insert("info".into(), info);
    }
    if !args.channels.is_empty() {
        if args.subscription.is_some() {
            bail!("--channel is for connection tokens; a subscription token names one channel");
        }
        claims.insert("channels".into(), json!(args.channels));
    }
    if let Some(aud) = args.audience {
        claims.insert("aud".into(), json!(aud));
    }
    if let Some(iss) = args.issuer {
        claims.insert("iss".into(), json!(iss));
    }
    let token = jwt::sign(&Value::Object(claims), &key, alg).map_err(anyhow::Error::msg)?;
    println!("{token}");
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config(command) => config_command(command),
        Command::Token(args) => token(args),
        Command::Sub(args) => cli_client::sub(args).await,
        Command::Pub(args) => cli_client::publish(args).await,
        Command::Call(args) => cli_client::call(args).await,
        Command::Record(command) => cli_record::record(command).await,
        Command::Sockety(command) => cli_client::sockety(command).await,
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

//! The chaos run: three `plexus serve` nodes on Redis (standalone with an append-only file, or
//! a 3+3 Redis Cluster without persistence), recovering subscribers (native JSON and
//! MessagePack, each on a node picked at random), publishers and durable mail; for a set time it
//! kills nodes with SIGKILL and restarts them, kills Redis (standalone: SIGKILL and restart from
//! its file; cluster: SIGKILL a master, its replica is promoted, the old master restarts empty
//! and rejoins as a replica), and drops client connections (the client reconnects to another
//! node and recovers from its last position). Then it audits:
//!
//! - every recovering subscriber received every offset of its channel exactly once, in order,
//!   except across a point where the server told it it could not recover;
//! - every durable message the server accepted was received by its user;
//! - once every client left, no presence member remains after the bound
//!   (`presence_ttl_ms` + `node_ttl_ms`), and the time a killed node took to disappear from the
//!   registry;
//! - the nodes' resident memory stayed under a bound.
//!
//! Every loop is bounded in count and time; everything listens on loopback; everything started
//! is stopped. Usage:
//!
//! ```text
//! plexus-chaos --plexus target/debug/plexus --redis standalone|cluster --secs 60 [--seed N]
//! ```
//!
//! Exit code 0 when the audit passes; the figures are printed as one JSON line (`figures`).

use anyhow::{Context, Result, bail};
use plexus_client::{
    Client, ClientConfig, Encoding, MailAck, Position, SubscribeOptions, SubscriptionEvent,
};
use plexus_redis::testing::{RedisCluster, RedisServer, sigkill};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODES: usize = 3;
const CHANNELS: usize = 4;
const SUBSCRIBERS: usize = 12;
const PRESENCE_TTL_MS: u64 = 3_000;
const NODE_TTL_MS: u64 = 3_000;
/// Resident memory a node may reach during the run.
const MEMORY_BOUND_BYTES: u64 = 1 << 30;
const SECRET: &str = "chaos-run-secret-at-least-32-bytes-long!";
const API_KEY: &str = "chaos-run-api-key";

struct Args {
    plexus: PathBuf,
    cluster: bool,
    secs: u64,
    seed: u64,
}

fn args() -> Result<Args> {
    let mut args = Args {
        plexus: PathBuf::from("target/debug/plexus"),
        cluster: false,
        secs: 60,
        seed: fastrand::u64(..),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--plexus" => args.plexus = PathBuf::from(value),
            "--redis" => {
                args.cluster = match value.as_str() {
                    "standalone" => false,
                    "cluster" => true,
                    other => bail!("--redis {other}: expected standalone or cluster"),
                }
            }
            "--secs" => args.secs = value.parse()?,
            "--seed" => args.seed = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.secs == 0 || args.secs > 24 * 3600 {
        bail!("--secs must be between 1 and 86400");
    }
    Ok(args)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// --- Redis ------------------------------------------------------------------------------------

enum Redis {
    Standalone {
        server: Option<RedisServer>,
        port: u16,
        dir: PathBuf,
    },
    Cluster(RedisCluster),
}

impl Redis {
    fn start(cluster: bool, dir: &Path) -> Result<Redis> {
        if cluster {
            return Ok(Redis::Cluster(RedisCluster::start(3, 1)?));
        }
        let port = free_port()?;
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let server = RedisServer::start_persistent(port, &dir)?;
        Ok(Redis::Standalone {
            server: Some(server),
            port,
            dir,
        })
    }

    fn toml(&self) -> String {
        match self {
            Redis::Standalone { port, .. } => format!("url = \"redis://127.0.0.1:{port}/\""),
            Redis::Cluster(c) => format!(
                "cluster = [{}]",
                c.urls()
                    .iter()
                    .map(|u| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// One Redis fault: SIGKILL, then back (blocking; bounded by the harness's waits).
    fn fault(&mut self) -> Result<String> {
        match self {
            Redis::Standalone { server, port, dir } => {
                sigkill(*port);
                drop(server.take());
                std::thread::sleep(Duration::from_millis(300));
                *server = Some(RedisServer::start_persistent(*port, dir)?);
                Ok("redis SIGKILL + restart from its append-only file".into())
            }
            Redis::Cluster(cluster) => {
                let slot = fastrand::u16(0..16384);
                let master = cluster
                    .master_of_slot(slot)
                    .context("no master for a slot")?;
                cluster.kill(master);
                cluster.wait_ok(Duration::from_secs(60))?;
                cluster.restart(master)?;
                cluster.wait_ok(Duration::from_secs(60))?;
                Ok(format!(
                    "cluster master {master} SIGKILL (replica promoted) + restart as a replica"
                ))
            }
        }
    }
}

// --- Plexus nodes -----------------------------------------------------------------------------

struct Node {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    id: String,
}

impl Node {
    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    async fn start(&mut self, plexus: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = tokio::process::Command::new(plexus)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("PLEXUS_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", plexus.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(self.port, "GET", "/health", None).await {
                break;
            }
            if Instant::now() > deadline {
                bail!("node on port {} did not become healthy", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its id, as a client sees it.
        let probe = Client::connect(ClientConfig::new(self.url()).token(token("probe"))).await?;
        self.id = probe.connection().map(|c| c.node).unwrap_or_default();
        probe.disconnect().await;
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

fn node_config(port: u16, redis: &str, prefix: &str) -> String {
    format!(
        r#"engine = "redis"

[server]
listen = "127.0.0.1:{port}"
shutdown_timeout_ms = 1000

[client]
anonymous = false
# Recovery covers a client's whole outage (a killed node is back within seconds).
recovery_max_publications = 100000

[jwt]
hmac_secret = "{SECRET}"

[api]
key = "{API_KEY}"

[redis]
{redis}
prefix = "{prefix}"
presence_ttl_ms = {PRESENCE_TTL_MS}
node_ttl_ms = {NODE_TTL_MS}

[[namespaces]]
name = "chaos"
channels = "chaos:*"
subscribe = "authenticated"
publish = "authenticated"
history_size = 100000
history_ttl_ms = 3600000
recovery = true
presence = true
"#
    )
}

/// A connection token for `user` (HS256, no expiry), made here so the run needs no tool.
fn token(user: &str) -> String {
    TOKENS
        .lock()
        .unwrap()
        .get(user)
        .cloned()
        .unwrap_or_default()
}

static TOKENS: std::sync::LazyLock<Mutex<HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

fn make_tokens(plexus: &Path, users: &[String]) -> Result<()> {
    for user in users {
        let out = std::process::Command::new(plexus)
            .args([
                "token",
                "--secret",
                SECRET,
                "--expires-in",
                "never",
                "--user",
            ])
            .arg(user)
            .output()?;
        if !out.status.success() {
            bail!("plexus token: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        TOKENS.lock().unwrap().insert(user.clone(), token);
    }
    Ok(())
}

/// One HTTP/1.1 request on loopback; (status, body). Bounded by a 5 s timeout.
async fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .context("http timed out")?
}

async fn api(port: u16, method: &str, body: serde_json::Value) -> Result<serde_json::Value> {
    let (status, text) = http(
        port,
        "POST",
        &format!("/api/{method}"),
        Some(&body.to_string()),
    )
    .await?;
    if status != 200 {
        bail!("{method}: {status} {text}");
    }
    let value: serde_json::Value = serde_json::from_str(&text)?;
    Ok(value["result"].clone())
}

// --- subscribers ------------------------------------------------------------------------------

/// What one subscriber (one user, one channel) saw, across its connections.
#[derive(Default)]
struct Seen {
    /// Offsets received in the current epoch segment (a segment ends where the server said the
    /// subscriber could not recover).
    segments: Vec<Vec<u64>>,
    last: Option<Position>,
    told_unrecoverable: u64,
    mail: Vec<u64>,
    /// Subscribed at least once.
    ready: bool,
}

struct Subscriber {
    user: String,
    channel: String,
    encoding: Encoding,
    seen: Arc<Mutex<Seen>>,
}

/// Runs one connection of a subscriber until `stop` (or until dropped): subscribes from the last
/// position seen, records publications and mail.
async fn run_subscriber(sub: Arc<Subscriber>, url: String, stop: Arc<AtomicBool>) {
    let config = ClientConfig::new(url)
        .encoding(sub.encoding)
        .token(token(&sub.user))
        .mail_ack(MailAck::OnDrop);
    let client = Client::start(config);
    let since = sub.seen.lock().unwrap().last.clone();
    let mut options = SubscribeOptions::default().timeout(Duration::from_secs(30));
    options.recover = true;
    options.since = since;
    let mut subscription = loop {
        if stop.load(Ordering::Relaxed) {
            client.disconnect().await;
            return;
        }
        match client.subscribe(sub.channel.clone(), options.clone()).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    {
        let first = subscription.subscribed().clone();
        let mut seen = sub.seen.lock().unwrap();
        note_subscribed(&mut seen, &first);
        seen.ready = true;
    }
    let mut mailbox = client.mail();
    loop {
        tokio::select! {
            event = subscription.next() => match event {
                Some(SubscriptionEvent::Publication(p)) => {
                    let mut seen = sub.seen.lock().unwrap();
                    if seen.segments.is_empty() {
                        seen.segments.push(Vec::new());
                    }
                    seen.last = Some(p.position());
                    seen.segments.last_mut().unwrap().push(p.offset);
                }
                Some(SubscriptionEvent::Subscribed(s)) => {
                    note_subscribed(&mut sub.seen.lock().unwrap(), &s);
                }
                Some(SubscriptionEvent::Unsubscribed(_)) | None => break,
                Some(_) => {}
            },
            mail = async {
                match mailbox.as_mut() {
                    Some(m) => m.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(mail) = mail {
                    sub.seen.lock().unwrap().mail.push(mail.seq);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    client.disconnect().await;
}

fn note_subscribed(seen: &mut Seen, s: &plexus_client::Subscribed) {
    if seen.last.is_none() {
        // Nothing received yet: the next connection recovers from where this one started.
        seen.last = Some(s.position.clone());
    }
    if s.recovered == Some(false) {
        // Told it could not recover: what follows starts a new segment.
        eprintln!(
            "chaos: {} could not recover: {}",
            s.channel,
            s.reason.as_deref().unwrap_or("?")
        );
        seen.told_unrecoverable += 1;
        seen.segments.push(Vec::new());
        seen.last = Some(s.position.clone());
    }
}

// --- the run ----------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    fastrand::seed(args.seed);
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("plexus-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&args, &dir).await;
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Err(_) => eprintln!("chaos: node logs kept in {}", dir.display()),
    }
    eprintln!(
        "chaos: {} s in all (seed {})",
        started.elapsed().as_secs(),
        args.seed
    );
    result
}

async fn run(args: &Args, dir: &Path) -> Result<()> {
    let mode = if args.cluster {
        "cluster"
    } else {
        "standalone"
    };
    let redis = tokio::task::block_in_place(|| Redis::start(args.cluster, dir))?;
    let redis_toml = redis.toml();
    let redis = Arc::new(Mutex::new(redis));
    let users: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("u{i}")).collect();
    let mut all_users = users.clone();
    all_users.extend(["probe".to_owned(), "publisher".to_owned()]);
    make_tokens(&args.plexus, &all_users)?;
    let prefix = format!("chaos{}", std::process::id());
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let port = free_port()?;
        let config = dir.join(format!("node{i}.toml"));
        std::fs::write(&config, node_config(port, &redis_toml, &prefix))?;
        let mut node = Node {
            port,
            config,
            log: dir.join(format!("node{i}.log")),
            child: None,
            id: String::new(),
        };
        node.start(&args.plexus).await?;
        nodes.push(node);
    }
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("chaos:c{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));

    // Subscribers: one user each, on a channel, JSON or MessagePack, on a random node.
    let subscribers: Vec<Arc<Subscriber>> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            Arc::new(Subscriber {
                user: user.clone(),
                channel: channels[i % CHANNELS].clone(),
                encoding: if i % 2 == 0 {
                    Encoding::Json
                } else {
                    Encoding::Msgpack
                },
                seen: Arc::default(),
            })
        })
        .collect();
    let mut connections: Vec<tokio::task::JoinHandle<()>> = subscribers
        .iter()
        .map(|s| {
            let url = urls[fastrand::usize(..NODES)].clone();
            tokio::spawn(run_subscriber(s.clone(), url, stop.clone()))
        })
        .collect();
    // Every subscriber has subscribed before publishing starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscribers.iter().any(|s| !s.seen.lock().unwrap().ready) {
        if Instant::now() > deadline {
            bail!("the subscribers did not subscribe within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Publishers: one per channel, over the HTTP API of a random node, retried until accepted.
    let publishing = Arc::new(AtomicBool::new(true));
    let published = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for channel in &channels {
        let (channel, ports, publishing, published) = (
            channel.clone(),
            ports.clone(),
            publishing.clone(),
            published.clone(),
        );
        publishers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while publishing.load(Ordering::Relaxed) {
                let port = ports[fastrand::usize(..ports.len())];
                let body = serde_json::json!({"channel": channel, "data": {"i": i}});
                if api(port, "publish", body).await.is_ok() {
                    i += 1;
                    published.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Durable mail to every subscriber's user, through a random node; what was accepted.
    let mail_sent: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let mailer = {
        let (users, ports, publishing, mail_sent) = (
            users.clone(),
            ports.clone(),
            publishing.clone(),
            mail_sent.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while publishing.load(Ordering::Relaxed) {
                let user = &users[fastrand::usize(..users.len())];
                let port = ports[fastrand::usize(..ports.len())];
                let body = serde_json::json!({"user": user, "data": {"m": i}});
                if let Ok(result) = api(port, "send_durable", body).await
                    && result["registered"] == true
                    && let Some(seq) = result["seq"].as_u64()
                {
                    mail_sent
                        .lock()
                        .unwrap()
                        .entry(user.clone())
                        .or_default()
                        .push(seq);
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Faults, for the set time.
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut clean_ms: Vec<u64> = Vec::new();
    let mut max_rss: u64 = 0;
    let run_until = Instant::now() + Duration::from_secs(args.secs);
    let mut round = 0u64;
    while Instant::now() < run_until && round < 100_000 {
        round += 1;
        for node in &nodes {
            max_rss = max_rss.max(node.rss_bytes().unwrap_or(0));
        }
        match fastrand::u8(0..3) {
            0 => {
                // SIGKILL a node; measure how long until the others stop listing it; restart.
                let victim = fastrand::usize(..NODES);
                let dead = nodes[victim].id.clone();
                nodes[victim].kill().await;
                let killed_at = Instant::now();
                let witness = nodes[(victim + 1) % NODES].port;
                let bound = Instant::now() + Duration::from_secs(60);
                while Instant::now() < bound {
                    if let Ok(r) = api(witness, "nodes", serde_json::json!({})).await
                        && !r.to_string().contains(&format!("\"{dead}\""))
                    {
                        clean_ms.push(killed_at.elapsed().as_millis() as u64);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                nodes[victim].start(&args.plexus).await?;
                *faults.entry("node SIGKILL + restart").or_default() += 1;
            }
            1 => {
                let redis = redis.clone();
                let what =
                    tokio::task::spawn_blocking(move || redis.lock().unwrap().fault()).await??;
                eprintln!("chaos: {what}");
                *faults.entry("redis").or_default() += 1;
            }
            _ => {
                // Drop some clients' connections: each reconnects to a random node and
                // recovers from its last position.
                for _ in 0..3 {
                    let k = fastrand::usize(..SUBSCRIBERS);
                    connections[k].abort();
                    let url = urls[fastrand::usize(..NODES)].clone();
                    connections[k] =
                        tokio::spawn(run_subscriber(subscribers[k].clone(), url, stop.clone()));
                    *faults.entry("client connection dropped").or_default() += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1_000..3_000))).await;
    }

    eprintln!("chaos: faults done; draining");
    // Quiet: stop publishing, let every subscriber reach the top of its channel.
    publishing.store(false, Ordering::Relaxed);
    for p in publishers {
        let _ = p.await;
    }
    let _ = mailer.await;
    let mut tops = HashMap::new();
    for channel in &channels {
        let r = api(
            ports[0],
            "history",
            serde_json::json!({"channel": channel, "limit": 0}),
        )
        .await?;
        tops.insert(channel.clone(), r["offset"].as_u64().unwrap_or(0));
    }
    let drain = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain {
        let behind = subscribers.iter().any(|s| {
            let seen = s.seen.lock().unwrap();
            let top = tops[&s.channel];
            seen.last.as_ref().map_or(top > 0, |p| p.offset < top)
        });
        let mail_behind = {
            let sent = mail_sent.lock().unwrap();
            subscribers.iter().any(|s| {
                let got = &s.seen.lock().unwrap().mail;
                sent.get(&s.user)
                    .is_some_and(|seqs| seqs.iter().any(|q| !got.contains(q)))
            })
        };
        if !behind && !mail_behind {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in &nodes {
        max_rss = max_rss.max(node.rss_bytes().unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for c in connections {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }

    eprintln!("chaos: drained; auditing");
    // Audit.
    let mut problems = Vec::new();
    let (mut lost, mut duplicated, mut delivered) = (0u64, 0u64, 0u64);
    let mut told_unrecoverable = 0;
    for s in &subscribers {
        let seen = s.seen.lock().unwrap();
        told_unrecoverable += seen.told_unrecoverable;
        let top = tops[&s.channel];
        let segments: Vec<&Vec<u64>> = seen.segments.iter().filter(|g| !g.is_empty()).collect();
        for (k, segment) in segments.iter().enumerate() {
            delivered += segment.len() as u64;
            let mut sorted = (*segment).clone();
            sorted.sort_unstable();
            sorted.dedup();
            duplicated += (segment.len() - sorted.len()) as u64;
            for pair in segment.windows(2) {
                if pair[1] < pair[0] {
                    problems.push(format!(
                        "{}: out of order {} then {}",
                        s.user, pair[0], pair[1]
                    ));
                } else if pair[1] > pair[0] + 1 {
                    lost += pair[1] - pair[0] - 1;
                    problems.push(format!("{}: gap {}..{}", s.user, pair[0], pair[1]));
                }
            }
            // The first segment starts at offset 1; the last one ends at the top.
            if k == 0 && seen.told_unrecoverable == 0 && segment.first() != Some(&1) {
                lost += segment.first().map_or(0, |f| f - 1);
                problems.push(format!("{}: started at {:?}", s.user, segment.first()));
            }
            if k + 1 == segments.len()
                && segment.last() != Some(&top)
                && seen.told_unrecoverable == 0
            {
                lost += top.saturating_sub(*segment.last().unwrap_or(&0));
                problems.push(format!(
                    "{}: ended at {:?}, top {top}",
                    s.user,
                    segment.last()
                ));
            }
        }
    }
    let (mut mail_accepted, mut mail_lost, mut mail_redelivered) = (0u64, 0u64, 0u64);
    {
        let sent = mail_sent.lock().unwrap();
        for s in &subscribers {
            let got = s.seen.lock().unwrap().mail.clone();
            let seqs = sent.get(&s.user).cloned().unwrap_or_default();
            mail_accepted += seqs.len() as u64;
            for q in &seqs {
                if !got.contains(q) {
                    mail_lost += 1;
                    problems.push(format!("{}: mail {q} never received", s.user));
                }
            }
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            mail_redelivered += (got.len() - unique.len()) as u64;
        }
    }
    // Presence: every client left; after the bound no member remains.
    tokio::time::sleep(Duration::from_millis(PRESENCE_TTL_MS + NODE_TTL_MS + 1_000)).await;
    let mut ghosts = 0u64;
    for channel in &channels {
        let r = api(
            ports[0],
            "presence",
            serde_json::json!({"channel": channel}),
        )
        .await?;
        let members = r["members"].as_array().map_or(0, Vec::len) as u64;
        if members > 0 {
            problems.push(format!(
                "{channel}: {members} ghost presence member(s) after the bound"
            ));
        }
        ghosts += members;
    }
    if max_rss > MEMORY_BOUND_BYTES {
        problems.push(format!("a node reached {max_rss} bytes of resident memory"));
    }
    let faults_total: u64 = faults.values().sum();
    let figures = serde_json::json!({
        "redis": mode,
        "seconds": args.secs,
        "seed": args.seed,
        "faults": faults_total,
        "faults_by_kind": faults,
        "publications": published.load(Ordering::Relaxed),
        "deliveries_audited": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "told_unrecoverable": told_unrecoverable,
        "mail_accepted": mail_accepted,
        "mail_lost": mail_lost,
        "mail_redelivered_before_ack": mail_redelivered,
        "ghost_presence_after_bound": ghosts,
        "dead_node_cleaned_ms_max": clean_ms.iter().max(),
        "dead_node_cleaned_ms_median": median(&mut clean_ms),
        "max_node_rss_mb": max_rss / (1024 * 1024),
    });
    println!("figures {figures}");
    for mut node in nodes {
        node.kill().await;
    }
    drop(redis);
    if !problems.is_empty() {
        for p in problems.iter().take(50) {
            eprintln!("chaos: {p}");
        }
        bail!("the audit failed: {} problem(s)", problems.len());
    }
    Ok(())
}

fn median(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

//! A real `redis-server` for tests: started on a free loopback port, stopped when dropped, and
//! stopped by a watchdog when the test process exits without dropping it (statics are never
//! dropped). Needs `redis-server` on `PATH` (`scripts/test.sh` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server without persistence on a free port and waits until it answers.
    pub fn start() -> std::io::Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        RedisServer::start_on(port)
    }

    /// Starts a server on `port` (to restart one on the same port).
    pub fn start_on(port: u16) -> std::io::Result<RedisServer> {
        RedisServer::spawn(port, "--save '' --appendonly no")
    }

    /// Starts a server that writes every command to an append-only file in `dir` (fsync
    /// always), so a restart on the same port and directory loses nothing.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> std::io::Result<RedisServer> {
        RedisServer::spawn(
            port,
            &format!(
                "--save '' --appendonly yes --appendfsync always --dir '{}'",
                dir.display()
            ),
        )
    }

    fn spawn(port: u16, options: &str) -> std::io::Result<RedisServer> {
        let child = watched_redis(port, options)?;
        Ok(RedisServer { child, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now (the watchdog kills redis, then exits).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `redis-server --port {port} {options}` under a watchdog shell that kills it when the
/// test process is gone, and waits until it accepts connections.
fn watched_redis(port: u16, options: &str) -> std::io::Result<Child> {
    watched(
        port,
        &format!("redis-server --port {port} --bind 127.0.0.1 {options} --protected-mode no"),
    )
}

/// Runs `command` (a redis-server listening on `port`) under the watchdog shell.
fn watched(port: u16, command: &str) -> std::io::Result<Child> {
    let test_pid = std::process::id();
    let script = format!(
        "{command} & \
         pid=$!; trap 'kill $pid 2>/dev/null; exit 0' TERM INT; \
         while kill -0 {test_pid} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.2; done; kill $pid 2>/dev/null"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(
                "redis-server did not start (is it installed?)",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// `redis-cli -p {port} {args}`'s output (empty when the node does not answer).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A free loopback port whose cluster bus port (+10000) is free too (below the usual ephemeral
/// range, where outgoing connections take ports).
fn free_cluster_port(taken: &[u16]) -> std::io::Result<u16> {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..22_700);
        if taken.contains(&port) {
            continue;
        }
        let a = TcpListener::bind(("127.0.0.1", port));
        let b = TcpListener::bind(("127.0.0.1", port + 10_000));
        if a.is_ok() && b.is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port pair for a cluster node",
    ))
}

/// A real Redis Cluster on loopback: `masters` masters with `replicas` replicas each
/// (`--cluster-enabled yes`, `redis-cli --cluster create`), a node timeout of one second (a
/// killed master's replica is promoted within a few seconds). Stopped when dropped; every node
/// is watched like [`RedisServer`].
pub struct RedisCluster {
    nodes: Vec<(u16, Option<Child>)>,
    dir: std::path::PathBuf,
    persistent: bool,
}

impl RedisCluster {
    /// Starts the nodes without persistence, creates the cluster, waits until every slot is
    /// served.
    pub fn start(masters: usize, replicas: usize) -> std::io::Result<RedisCluster> {
        RedisCluster::start_with(masters, replicas, false)
    }

    /// With `persistent`, every node writes an append-only file (fsync every second), so a
    /// node restarted with [`RedisCluster::restart`] comes back with its data.
    pub fn start_with(
        masters: usize,
        replicas: usize,
        persistent: bool,
    ) -> std::io::Result<RedisCluster> {
        let dir = std::env::temp_dir().join(format!(
            "plexus-cluster-{}-{}",
            std::process::id(),
            unique_prefix()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
            persistent,
        };
        let mut ports = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_cluster_port(&ports)?;
            ports.push(port);
            let child = watched_redis(port, &cluster.options(port))?;
            cluster.nodes.push((port, Some(child)));
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn options(&self, port: u16) -> String {
        let persistence = if self.persistent {
            "--appendonly yes --appendfsync everysec"
        } else {
            "--appendonly no"
        };
        format!(
            "--cluster-enabled yes --cluster-config-file nodes-{port}.conf \
             --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
             --save '' {persistence} --appendfilename appendonly-{port}.aof \
             --appenddirname appendonly-{port} --dir '{}'",
            self.dir.display()
        )
    }

    /// `redis://127.0.0.1:{port}` of every node (the seed list of a client).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(port, _)| *port).collect()
    }

    fn live_port(&self) -> Option<u16> {
        self.nodes
            .iter()
            .find(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
    }

    /// The port of the master serving `slot`, as the cluster sees it now.
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        let port = self.live_port()?;
        for line in redis_cli(port, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.split('-');
                let low = ends.next().and_then(|s| s.parse::<u16>().ok());
                let high = ends.next().and_then(|s| s.parse::<u16>().ok()).or(low);
                matches!((low, high), (Some(l), Some(h)) if l <= slot && slot <= h)
            });
            if serves {
                return fields[1].split(['@', ':']).nth(1)?.parse().ok();
            }
        }
        None
    }

    /// The slot of a key, asked of the cluster (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> Option<u16> {
        redis_cli(self.live_port()?, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .ok()
    }

    /// Kills a node with SIGKILL (a crash: nothing is flushed).
    pub fn kill(&mut self, port: u16) {
        let Some(entry) = self.nodes.iter_mut().find(|(p, _)| *p == port) else {
            return;
        };
        sigkill(port);
        if let Some(mut child) = entry.1.take() {
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on its port and configuration: it rejoins the cluster (a
    /// replica of the master promoted meanwhile).
    pub fn restart(&mut self, port: u16) -> std::io::Result<()> {
        let options = self.options(port);
        let Some(entry) = self.nodes.iter_mut().find(|(p, _)| *p == port) else {
            return Err(std::io::Error::other("not a node of this cluster"));
        };
        if entry.1.is_none() {
            entry.1 = Some(watched_redis(port, &options)?);
        }
        Ok(())
    }

    /// Waits until every live node reports `cluster_state:ok` and all 16384 slots served, and
    /// every live replica is in sync with its master.
    pub fn wait_ok(&self, within: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|(_, child)| child.is_some())
                .all(|(port, _)| {
                    let info = redis_cli(*port, &["cluster", "info"]);
                    let replication = redis_cli(*port, &["info", "replication"]);
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        // A replica has its master's data (else a failover loses it all).
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up")
                                && replication.contains("master_sync_in_progress:0"))
                });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the cluster did not become ok"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops a watched server (the watchdog kills redis, then exits).
fn stop_watched(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            stop_watched(child.take());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILLs the redis-server listening on `port` (a crash: nothing is flushed).
pub fn sigkill(port: u16) {
    let info = redis_cli(port, &["info", "server"]);
    if let Some(pid) = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .map(str::trim)
    {
        let _ = Command::new("kill").arg("-KILL").arg(pid).status();
    }
}

/// A master, its replica and one Sentinel monitoring them as `mymaster` (quorum 1, a master is
/// down after one second), on loopback. Stopped when dropped.
pub struct RedisSentinel {
    master: (u16, Option<Child>),
    replica: (u16, Option<Child>),
    sentinel: (u16, Option<Child>),
    dir: std::path::PathBuf,
}

impl RedisSentinel {
    pub const SERVICE: &'static str = "mymaster";

    pub fn start() -> std::io::Result<RedisSentinel> {
        let dir = std::env::temp_dir().join(format!("plexus-sentinel-{}", unique_prefix()));
        std::fs::create_dir_all(&dir)?;
        let port = || -> std::io::Result<u16> {
            Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let (m, r, s) = (port()?, port()?, port()?);
        let plain = "--save '' --appendonly no";
        let master = watched_redis(m, plain)?;
        let replica = watched_redis(r, &format!("{plain} --replicaof 127.0.0.1 {m}"))?;
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {s}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {} 127.0.0.1 {m} 1\n\
                 sentinel down-after-milliseconds {} 1000\n\
                 sentinel failover-timeout {} 3000\n",
                dir.display(),
                Self::SERVICE,
                Self::SERVICE,
                Self::SERVICE
            ),
        )?;
        let sentinel = watched(s, &format!("redis-server '{}' --sentinel", conf.display()))?;
        let this = RedisSentinel {
            master: (m, Some(master)),
            replica: (r, Some(replica)),
            sentinel: (s, Some(sentinel)),
            dir,
        };
        // The replica is in sync and the sentinel knows the master.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(redis_cli(r, &["info", "replication"]).contains("master_link_status:up")
            && this.master_port() == Some(m))
        {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "the sentinel set-up did not become ready",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(this)
    }

    /// `redis+sentinel://127.0.0.1:{sentinel}/mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel.0,
            Self::SERVICE
        )
    }

    /// The master's port, as the sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        let out = redis_cli(
            self.sentinel.0,
            &["sentinel", "get-master-addr-by-name", Self::SERVICE],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }

    pub fn ports(&self) -> (u16, u16) {
        (self.master.0, self.replica.0)
    }

    /// SIGKILLs the original master.
    pub fn kill_master(&mut self) {
        sigkill(self.master.0);
        if let Some(mut child) = self.master.1.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for (_, child) in [&mut self.sentinel, &mut self.replica, &mut self.master] {
            stop_watched(child.take());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A key prefix no other engine in this process uses.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

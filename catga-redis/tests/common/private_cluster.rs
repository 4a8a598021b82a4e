//! A Redis Cluster of the test's own: `redis-server --cluster-enabled yes` nodes on free
//! loopback ports (each a `catga_core::testkit::ServerProcess`), joined by
//! `redis-cli --cluster create`, ready once every node says `cluster_state:ok` and knows every
//! other. Stopped by PID: when dropped, and, for the cluster a test binary shares
//! ([`PrivateCluster::shared`], never dropped), by a watchdog shell that kills the nodes once
//! the test process is gone.
//!
//! Everything here blocks (std processes, the synchronous client), so the shared cluster can
//! be started from whichever test's runtime comes first.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use catga_core::testkit::{ServerProcess, services};

/// How long a node waits for another before it counts it as failing (the default is 15 s):
/// short, so the cluster forms and fails over quickly.
const NODE_TIMEOUT_MS: &str = "2000";

/// Whether `redis-server` and `redis-cli` are installed; if not, the test returns (having
/// said why), or fails under `CATGA_REQUIRE_SERVICES=1`.
pub fn available(test: &str) -> bool {
    let server = ServerProcess::program("REDIS_SERVER_BIN", "redis-server");
    let cli = ServerProcess::program("REDIS_CLI_BIN", "redis-cli");
    if server.is_some() && cli.is_some() {
        return true;
    }
    services::unavailable(
        test,
        "redis-server or redis-cli is not installed",
        "install redis-server (it brings redis-cli) or set REDIS_SERVER_BIN and REDIS_CLI_BIN",
    );
    false
}

/// One node.
pub struct Node {
    process: ServerProcess,
    pub port: u16,
}

pub struct PrivateCluster {
    pub nodes: Vec<Node>,
    /// The default user's password on every node (`--requirepass`), if any.
    password: Option<String>,
    /// The CA of a cluster that speaks only TLS (`start_tls`), clients and bus alike.
    tls_ca: Option<std::path::PathBuf>,
}

impl PrivateCluster {
    /// The cluster every test of this binary shares: three primaries without replicas,
    /// started by the first test that asks; `None` (the test returns, having said why) when
    /// the binaries are not installed.
    pub fn shared(test: &str) -> Option<&'static PrivateCluster> {
        static SHARED: OnceLock<PrivateCluster> = OnceLock::new();
        if !available(test) {
            return None;
        }
        Some(SHARED.get_or_init(|| PrivateCluster::start(3, 0)))
    }

    /// Starts `primaries` primaries with `replicas` replicas each and waits until the cluster
    /// is formed (and every replica has synchronised). Blocks.
    pub fn start(primaries: usize, replicas: usize) -> PrivateCluster {
        PrivateCluster::start_with_password(primaries, replicas, None)
    }

    /// [`start`](Self::start), every node asking for `password` (`--requirepass`, and
    /// `--masterauth` for its replicas).
    pub fn start_with_password(
        primaries: usize,
        replicas: usize,
        password: Option<&str>,
    ) -> PrivateCluster {
        let started = Instant::now();
        let nodes: Vec<Node> = (0..primaries * (1 + replicas))
            .map(|_| Node::start(password))
            .collect();
        let cluster = PrivateCluster {
            nodes,
            password: password.map(str::to_string),
            tls_ca: None,
        };
        cluster.create(replicas);
        cluster.wait_formed(replicas > 0);
        eprintln!(
            "private cluster of {} nodes on ports {:?} ready in {:?}",
            cluster.nodes.len(),
            cluster.ports(),
            started.elapsed()
        );
        cluster
    }

    /// `primaries` primaries that speak only TLS, to clients and to each other
    /// (`--tls-cluster yes`), presenting `cert` (with `key`) and trusting `ca`; clients need
    /// no certificate. Blocks.
    pub fn start_tls(primaries: usize, cert: &Path, key: &Path, ca: &Path) -> PrivateCluster {
        let started = Instant::now();
        let nodes: Vec<Node> = (0..primaries)
            .map(|_| Node::start_tls(cert, key, ca))
            .collect();
        let cluster = PrivateCluster {
            nodes,
            password: None,
            tls_ca: Some(ca.to_path_buf()),
        };
        cluster.create(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let expected = format!("cluster_known_nodes:{}\r", cluster.nodes.len());
        while !cluster.nodes.iter().all(|node| {
            let info = cluster.cli(node.port, &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains(&expected)
        }) {
            assert!(
                Instant::now() < deadline,
                "the private TLS cluster did not form within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "private TLS cluster of {} nodes on ports {:?} ready in {:?}",
            cluster.nodes.len(),
            cluster.ports(),
            started.elapsed()
        );
        cluster
    }

    /// `redis-cli` with this cluster's password or TLS settings.
    fn cli_command(&self) -> Command {
        let cli = ServerProcess::program("REDIS_CLI_BIN", "redis-cli")
            .expect("redis-cli is installed (checked by `available`)");
        let mut command = Command::new(cli);
        if let Some(password) = &self.password {
            command.arg("-a").arg(password).arg("--no-auth-warning");
        }
        if let Some(ca) = &self.tls_ca {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        command.stdin(Stdio::null());
        command
    }

    /// What `redis-cli -p port args…` prints.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = self
            .cli_command()
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Joins the nodes into a cluster, `replicas` replicas per primary (`redis-cli` waits for
    /// the nodes to meet, for ever if they cannot: it is given 30 s).
    fn create(&self, replicas: usize) {
        self.watch();
        let mut child = self
            .cli_command()
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("redis-cli runs") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-cli --cluster create did not finish within 30 s (the nodes never met)"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "redis-cli --cluster create failed: {status}"
        );
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every node's URL: what `connect_cluster` takes.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| match self.tls_ca {
                Some(_) => format!("rediss://127.0.0.1:{port}"),
                None => format!("redis://127.0.0.1:{port}"),
            })
            .collect()
    }

    /// A connection to the node on `port`.
    pub fn node(&self, port: u16) -> redis::Connection {
        connect(port, self.password.as_deref()).expect("the node answers")
    }

    /// The port of the primary that owns `key`'s slot (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
    pub fn owner_of(&self, key: &str) -> u16 {
        let mut conn = self.node(self.nodes[0].port);
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        slots(&mut conn)
            .into_iter()
            .find(|(start, end, _, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, primary, _)| primary)
            .expect("every slot is served")
    }

    /// The port of a replica of the primary on `primary` (waiting up to 10 s for one to be
    /// listed).
    pub fn replica_of(&self, primary: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = slots(&mut self.node(primary))
                .into_iter()
                .find(|(_, _, owner, replicas)| *owner == primary && !replicas.is_empty())
                .and_then(|(_, _, _, replicas)| replicas.first().copied());
            if let Some(replica) = listed {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "no replica of {primary} is listed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Promotes `replica` (a replica of `primary`) by `CLUSTER FAILOVER`, and returns once
    /// every node routes `key` to it.
    ///
    /// A manual failover is a handshake that Redis aborts after 5 s (its fixed manual-failover
    /// timeout) when the replica has not caught up with the primary's offset, which a busy
    /// 2-core machine can arrange: this waits for the replica to be in sync first, retries an
    /// aborted failover, and forces the last attempt (`FORCE`, no handshake, still elected by
    /// the primaries' votes).
    pub fn fail_over(&self, key: &str, primary: u16, replica: u16) {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            self.wait_in_sync(primary, replica);
            let mut failover = redis::cmd("CLUSTER");
            failover.arg("FAILOVER");
            if attempt == ATTEMPTS {
                failover.arg("FORCE");
            }
            let asked: redis::RedisResult<()> = failover.query(&mut self.node(replica));
            if let Err(error) = asked {
                eprintln!("CLUSTER FAILOVER attempt {attempt} refused: {error}");
            }
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                if role(&mut self.node(replica)).as_deref() == Some("master") {
                    return self.wait_routed(key, replica);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("CLUSTER FAILOVER attempt {attempt} did not promote {replica}; again");
        }
        panic!("{replica} was not promoted after {ATTEMPTS} CLUSTER FAILOVER attempts");
    }

    /// Waits (up to 20 s) until `replica`'s link to `primary` is up and it has replayed the
    /// primary's whole replication stream.
    fn wait_in_sync(&self, primary: u16, replica: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let primary_offset = info_field(&mut self.node(primary), "master_repl_offset");
            let mut replica_conn = self.node(replica);
            let link_up =
                info_field(&mut replica_conn, "master_link_status").as_deref() == Some("up");
            let replica_offset = info_field(&mut replica_conn, "slave_repl_offset");
            if link_up && primary_offset.is_some() && primary_offset == replica_offset {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {replica} never caught up with {primary}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 20 s) until every node's `CLUSTER SLOTS` routes `key` to `owner`.
    fn wait_routed(&self, key: &str, owner: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = self.node(owner);
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        loop {
            let agreed = self.nodes.iter().all(|node| {
                slots(&mut self.node(node.port))
                    .into_iter()
                    .any(|(start, end, primary, _)| {
                        (start..=end).contains(&slot) && primary == owner
                    })
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not every node routes {key} to {owner}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills every node by PID once this process is gone, and removes their directories:
    /// the shared cluster is a static, never dropped.
    fn watch(&self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.process.pid())
            .map(|pid| pid.to_string())
            .collect();
        let dirs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("'{}'", n.process.dir().display()))
            .collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null; rm -rf {}",
            std::process::id(),
            pids.join(" "),
            dirs.join(" ")
        );
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("no watchdog for the private cluster ({e}): its nodes outlive the test");
        }
    }

    /// Waits until every node says `cluster_state:ok`, knows every node and agrees on who
    /// serves every slot (and, with replicas, every replica has synchronised).
    fn wait_formed(&self, with_replicas: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let expected = self.nodes.len().to_string();
        loop {
            let formed = self.nodes.iter().all(|node| {
                let Some(mut conn) = connect(node.port, self.password.as_deref()) else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                let ok = info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{expected}\r"))
                    && slots(&mut conn)
                        .iter()
                        .map(|(s, e, _, _)| e - s + 1)
                        .sum::<i64>()
                        == 16384;
                if !ok || !with_replicas {
                    return ok;
                }
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut conn)
                    .unwrap_or_default();
                replication.contains("role:master") || replication.contains("master_link_status:up")
            });
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private cluster did not form within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Node {
    /// A cluster-enabled node on a free port (whose bus port, 10000 above, is free too),
    /// once it answers.
    fn start(password: Option<&str>) -> Node {
        let program = ServerProcess::program("REDIS_SERVER_BIN", "redis-server")
            .expect("redis-server is installed (checked by `available`)");
        let mut process = ServerProcess::new(program, "catga-redis-cluster-");
        for _ in 0..10 {
            let port = process.port();
            let bus_free = port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
            if !bus_free {
                process.change_port();
                continue;
            }
            let dir = process.dir().display().to_string();
            let mut auth = Vec::new();
            if let Some(password) = password {
                auth = vec!["--requirepass", password, "--masterauth", password];
            }
            process.start(auth.into_iter().chain([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("{dir}/nodes.conf"),
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // A replica synchronises at once (the default waits 5 s for others).
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &dir,
            ]));
            let pid = process.pid();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if process.exited() {
                    break;
                }
                if connect(port, password).and_then(|mut c| process_id(&mut c)) == pid {
                    return Node { process, port };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Its port was taken by another process: try another.
            process.change_port();
        }
        panic!("could not start a cluster node on a free port");
    }
}

impl Node {
    /// A cluster node that speaks only TLS, on a free port (bus port free too), once its log
    /// says it is ready.
    fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Node {
        let program = ServerProcess::program("REDIS_SERVER_BIN", "redis-server")
            .expect("redis-server is installed (checked by `available`)");
        let mut process = ServerProcess::new(program, "catga-redis-cluster-tls-");
        let log = process.dir().join("redis.log");
        for _ in 0..10 {
            let port = process.port();
            if port >= 55_000 || TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                process.change_port();
                continue;
            }
            let dir = process.dir().display().to_string();
            let _ = std::fs::remove_file(&log);
            process.start([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("{dir}/nodes.conf"),
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cluster",
                "yes",
                "--tls-cert-file",
                &cert.display().to_string(),
                "--tls-key-file",
                &key.display().to_string(),
                "--tls-ca-cert-file",
                &ca.display().to_string(),
                "--tls-auth-clients",
                "no",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
                "--logfile",
                &log.display().to_string(),
            ]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !process.exited() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Ready to accept connections") {
                    return Node { process, port };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            process.change_port();
        }
        panic!(
            "could not start a TLS cluster node:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

fn connect(port: u16, password: Option<&str>) -> Option<redis::Connection> {
    let url = match password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    let client = redis::Client::open(url).ok()?;
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()
}

fn process_id(conn: &mut redis::Connection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// One `field:value` line of `INFO replication`.
fn info_field(conn: &mut redis::Connection, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("replication").query(conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
}

/// The first element of `ROLE`: `master` or `slave`.
fn role(conn: &mut redis::Connection) -> Option<String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(conn).ok()?;
    match reply.first()? {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// `CLUSTER SLOTS` as (first slot, last slot, primary's port, replicas' ports).
fn slots(conn: &mut redis::Connection) -> Vec<(i64, i64, u16, Vec<u16>)> {
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(conn)
        .unwrap_or_default();
    ranges
        .into_iter()
        .filter_map(|range| {
            let redis::Value::Array(parts) = range else {
                return None;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => Some(*i),
                _ => None,
            };
            let port = |v: &redis::Value| match v {
                redis::Value::Array(node) => node.get(1).and_then(int).map(|p| p as u16),
                _ => None,
            };
            let start = int(parts.first()?)?;
            let end = int(parts.get(1)?)?;
            let primary = port(parts.get(2)?)?;
            let replicas = parts.iter().skip(3).filter_map(port).collect();
            Some((start, end, primary, replicas))
        })
        .collect()
}

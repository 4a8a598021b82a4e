//! A `redis-server` of the test's own on a free loopback port, for tests that kill, restart
//! or cut off the server: `catga_core::testkit::ServerProcess` with Redis's command line,
//! stopped by its PID when dropped (also when the test panics), its directory removed.

use std::time::Duration;

use catga_core::testkit::{ServerProcess, services};

/// Whether the server binary is installed (`$REDIS_SERVER_BIN`, else `/usr/sbin`,
/// `/usr/bin`, …); if not, the test returns (having said why), or fails under
/// `CATGA_REQUIRE_SERVICES=1`.
pub fn available(test: &str) -> bool {
    if ServerProcess::program("REDIS_SERVER_BIN", "redis-server").is_some() {
        return true;
    }
    services::unavailable(
        test,
        "redis-server is not installed",
        "install redis-server or set REDIS_SERVER_BIN",
    );
    false
}

/// How the server keeps its data across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// The append-only file: a restart keeps what was acknowledged.
    AppendOnly,
    /// Nothing: a restart comes back empty (no streams, no groups).
    None,
}

pub struct PrivateRedis {
    process: ServerProcess,
    pub port: u16,
    persistence: Persistence,
    /// The default user's password (`--requirepass`), in [`url`](Self::url) too.
    password: Option<String>,
    /// The port of the primary this server replicates (`--replicaof`), if it is a replica.
    replica_of: Option<u16>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start(persistence: Persistence) -> PrivateRedis {
        PrivateRedis::start_with_password(persistence, None).await
    }

    /// [`start`](Self::start), the default user needing `password` when one is given.
    pub async fn start_with_password(
        persistence: Persistence,
        password: Option<&str>,
    ) -> PrivateRedis {
        let program = ServerProcess::program("REDIS_SERVER_BIN", "redis-server")
            .expect("redis-server is installed (checked by `available`)");
        let process = ServerProcess::new(program, "catga-redis-");
        let mut server = PrivateRedis {
            port: process.port(),
            process,
            persistence,
            password: password.map(str::to_string),
            replica_of: None,
        };
        // A port the OS just handed out is free again once the listener is dropped, but
        // another process (other tests on this machine) may take it first: then this server
        // exits, and another port is tried.
        for _ in 0..5 {
            if server.spawn_and_wait().await {
                return server;
            }
            server.process.change_port();
            server.port = server.process.port();
        }
        panic!("could not start a private redis-server on a free port");
    }

    /// A replica of `primary` (`--replicaof`), on a free port, once it has synchronised.
    pub async fn start_replica_of(primary: &PrivateRedis) -> PrivateRedis {
        let mut server = PrivateRedis::unstarted_replica_of(primary);
        let mut started = false;
        for _ in 0..5 {
            if server.spawn_and_wait().await {
                started = true;
                break;
            }
            server.process.change_port();
            server.port = server.process.port();
        }
        assert!(started, "could not start a private replica on a free port");
        server.wait_synchronised(primary).await;
        server
    }

    /// A replica of `primary` on a free port, not started: its [`url`](Self::url) can be
    /// given to a client before anything listens there. Start it with
    /// [`start_replica`](Self::start_replica).
    pub fn unstarted_replica_of(primary: &PrivateRedis) -> PrivateRedis {
        let program = ServerProcess::program("REDIS_SERVER_BIN", "redis-server")
            .expect("redis-server is installed (checked by `available`)");
        let process = ServerProcess::new(program, "catga-redis-replica-");
        PrivateRedis {
            port: process.port(),
            process,
            persistence: Persistence::None,
            password: None,
            replica_of: Some(primary.port),
        }
    }

    /// Starts this replica (from [`unstarted_replica_of`](Self::unstarted_replica_of)) on
    /// its port, and waits until it has synchronised with `primary`. Its port was free when
    /// it was picked: if another process took it since, this panics (its URL is already out).
    pub async fn start_replica(&mut self, primary: &PrivateRedis) {
        assert!(
            self.spawn_and_wait().await,
            "the private replica could not start on port {}: taken by another process",
            self.port
        );
        self.wait_synchronised(primary).await;
    }

    /// Waits until this replica's link to `primary` is up and `primary` lists it as online
    /// (what `ROLE` discovery reads).
    async fn wait_synchronised(&self, primary: &PrivateRedis) {
        let mut raw = self.raw().await;
        let synced = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut raw)
                    .await
                    .unwrap_or_default();
                if info.contains("master_link_status:up") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            synced.is_ok(),
            "the replica did not synchronise within 20 s"
        );
        let mut primary_raw = primary.raw().await;
        let listed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut primary_raw)
                    .await
                    .unwrap_or_default();
                if info.contains(&format!("port={},state=online", self.port)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            listed.is_ok(),
            "the primary did not list the replica as online within 20 s"
        );
    }

    /// Starts the (stopped) server again on the same port, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(
            self.spawn_and_wait().await,
            "the private redis-server could not start again on port {}: taken by another process",
            self.port
        );
    }

    /// Starts the server and waits until it answers; false if it exited instead (its port
    /// was taken). The server that answers must be this one (its `process_id`), never a
    /// server another test started on the same port.
    async fn spawn_and_wait(&mut self) -> bool {
        // `always`: a write is on disk before the server answers it. With `everysec` (the
        // default once the append-only file is on) the server may answer writes it has not
        // yet written while a slow fsync runs, and a SIGKILL then loses them (Redis's
        // `flushAppendOnlyFile` postpones the write for up to 2 s).
        let (appendonly, fsync) = match self.persistence {
            Persistence::AppendOnly => ("yes", "always"),
            Persistence::None => ("no", "everysec"),
        };
        let mut args = vec![
            "--port".to_string(),
            self.port.to_string(),
            "--bind".to_string(),
            "127.0.0.1".to_string(),
            "--save".to_string(),
            String::new(),
            "--appendonly".to_string(),
            appendonly.to_string(),
            "--appendfsync".to_string(),
            fsync.to_string(),
            // Stopping must not wait for replicas to catch up (Redis 7 waits up to 10 s).
            "--shutdown-timeout".to_string(),
            "0".to_string(),
        ];
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_string(), password.clone()]);
        }
        if let Some(primary) = self.replica_of {
            args.extend([
                "--replicaof".to_string(),
                "127.0.0.1".to_string(),
                primary.to_string(),
            ]);
        }
        args.extend([
            "--dir".to_string(),
            self.process.dir().display().to_string(),
        ]);
        self.process.start(&args);
        let pid = self.process.pid();
        let url = self.url();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if self.process.exited() {
                    return false;
                }
                if server_pid(&url).await == pid {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match ready {
            Ok(ready) => ready,
            Err(_) => panic!(
                "the private redis-server on port {} did not come up",
                self.port
            ),
        }
    }

    /// The server's URL, with its password if it has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// How many times this server ran `command` (lower case, e.g. `xrange`), from `INFO
    /// commandstats`: which node served a read.
    pub async fn calls(&self, command: &str) -> u64 {
        let mut raw = self.raw().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut raw)
            .await
            .expect("INFO commandstats");
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// A raw connection.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url().as_str())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("the private server answers")
    }

    /// `SCRIPT FLUSH`: the server forgets every script loaded so far.
    pub async fn script_flush(&self) {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut self.raw().await)
            .await
            .expect("SCRIPT FLUSH");
    }
}

/// The process id of the server answering at `url`, if one does.
async fn server_pid(url: &str) -> Option<u32> {
    let info = async {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    let info = tokio::time::timeout(Duration::from_secs(2), info)
        .await
        .ok()
        .flatten()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// Whether a TLS server asks clients for a certificate (`--tls-auth-clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertificates {
    /// Checked if one is presented; a client without one is served.
    Optional,
    /// A client without a certificate signed by the server's CA is refused.
    Required,
}

/// A `redis-server` that speaks only TLS (`--port 0 --tls-port …`), on a free loopback port,
/// without persistence; stopped by its PID when dropped, its directory removed.
pub struct PrivateTlsRedis {
    process: ServerProcess,
    pub port: u16,
}

impl PrivateTlsRedis {
    /// Starts a server presenting `cert` with `key` and checking client certificates against
    /// `ca` (PEM files), and waits until it listens. Readiness is read from the server's own
    /// log, so the test needs no client certificate to know it is up, and a server another
    /// test started on the same port is never mistaken for this one.
    pub async fn start(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        clients: ClientCertificates,
    ) -> PrivateTlsRedis {
        let program = ServerProcess::program("REDIS_SERVER_BIN", "redis-server")
            .expect("redis-server is installed (checked by `available`)");
        let mut process = ServerProcess::new(program, "catga-redis-tls-");
        let auth_clients = match clients {
            ClientCertificates::Optional => "optional",
            ClientCertificates::Required => "yes",
        };
        let log = process.dir().join("redis.log");
        for _ in 0..5 {
            let args = [
                "--port".to_string(),
                "0".to_string(),
                "--tls-port".to_string(),
                process.port().to_string(),
                "--bind".to_string(),
                "127.0.0.1".to_string(),
                "--tls-cert-file".to_string(),
                cert.display().to_string(),
                "--tls-key-file".to_string(),
                key.display().to_string(),
                "--tls-ca-cert-file".to_string(),
                ca.display().to_string(),
                "--tls-auth-clients".to_string(),
                auth_clients.to_string(),
                "--save".to_string(),
                String::new(),
                "--appendonly".to_string(),
                "no".to_string(),
                "--dir".to_string(),
                process.dir().display().to_string(),
                "--logfile".to_string(),
                log.display().to_string(),
            ];
            let _ = std::fs::remove_file(&log);
            process.start(&args);
            let ready = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    if process.exited() {
                        return false;
                    }
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Ready to accept connections") {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            match ready {
                Ok(true) => {
                    return PrivateTlsRedis {
                        port: process.port(),
                        process,
                    };
                }
                // Its port was taken (or it refused its certificates: the log says which).
                Ok(false) => process.change_port(),
                Err(_) => panic!(
                    "the private TLS redis-server on port {} did not come up:\n{}",
                    process.port(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        panic!(
            "could not start a private TLS redis-server:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The server's URL (`rediss://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

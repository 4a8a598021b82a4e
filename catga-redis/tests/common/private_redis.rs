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
        ];
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_string(), password.clone()]);
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

    /// A raw connection.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url().as_str())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("the private server answers")
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

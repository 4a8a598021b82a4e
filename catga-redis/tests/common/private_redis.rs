//! A `redis-server` of the test's own on a free loopback port, for tests that kill, restart
//! or cut off the server. Stopped by its PID when dropped (also when the test panics), its
//! directory removed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SERVER: &str = "/usr/bin/redis-server";

/// Whether the server binary is installed; if not, the test returns (having said why), or
/// fails under `CATGA_REQUIRE_SERVICES=1`.
pub fn available(test: &str) -> bool {
    if std::path::Path::new(SERVER).exists() {
        return true;
    }
    assert!(
        !super::required(),
        "CATGA_REQUIRE_SERVICES=1 but {SERVER} is not installed"
    );
    eprintln!("skipping {test}: {SERVER} is not installed");
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
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
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
        let dir = std::env::temp_dir().join(format!("catga-redis-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let mut server = PrivateRedis {
            child: None,
            port: 0,
            dir,
            persistence,
            password: password.map(str::to_string),
        };
        // A port the OS just handed out is free again once the listener is dropped, but
        // another process (other tests on this machine) may take it first: then this server
        // exits, and another port is tried.
        for _ in 0..5 {
            server.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            if server.spawn_and_wait().await {
                return server;
            }
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
        let child = Command::new(SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", appendonly])
            .args(["--appendfsync", fsync])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass", p.as_str()]),
            )
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let pid = child.id();
        self.child = Some(child);
        let url = self.url();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(child) = self.child.as_mut()
                    && child.try_wait().ok().flatten().is_some()
                {
                    return false;
                }
                if server_pid(&url).await == Some(pid) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match ready {
            Ok(true) => true,
            Ok(false) => {
                self.child = None;
                false
            }
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
}

impl PrivateRedis {
    /// Starts a server and waits until it answers.
    pub async fn start(persistence: Persistence) -> PrivateRedis {
        // A port the OS just handed out, free again once the listener is dropped.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("catga-redis-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let mut server = PrivateRedis {
            child: None,
            port,
            dir,
            persistence,
        };
        server.restart().await;
        server
    }

    /// Starts the (stopped) server again on the same port, and waits until it answers.
    pub async fn restart(&mut self) {
        let appendonly = match self.persistence {
            Persistence::AppendOnly => "yes",
            Persistence::None => "no",
        };
        let child = Command::new(SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", appendonly])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        self.wait_ready().await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self) {
        let url = self.url();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while super::reachable(&url).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "the private redis-server on {url} did not come up"
        );
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

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A `nats-server` of a test's own, on a free loopback port, stopped by its PID when dropped
//! (even when the test panics), its store directory removed.

#![allow(dead_code)] // each test crate uses part of it

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `nats-server` binary, or `None` (the caller skips, or fails under
/// `CATGA_REQUIRE_SERVICES=1`).
pub fn nats_server_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("NATS_SERVER_BIN").map(PathBuf::from),
        Some(PathBuf::from("/usr/sbin/nats-server")),
        Some(PathBuf::from("/usr/bin/nats-server")),
    ];
    candidates.into_iter().flatten().find(|path| path.is_file())
}

/// The binary, or `None` after printing why the test is skipped; panics under
/// `CATGA_REQUIRE_SERVICES=1`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let binary = nats_server_binary();
    if binary.is_none() {
        let why = "no nats-server binary (looked at $NATS_SERVER_BIN, /usr/sbin, /usr/bin)";
        if std::env::var("CATGA_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("{test}: {why} (CATGA_REQUIRE_SERVICES=1)");
        }
        eprintln!("skipping {test}: {why}");
    }
    binary
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A private server (JetStream on, file store in `store`).
pub struct PrivateServer {
    binary: PathBuf,
    /// More command-line options (authentication, for one).
    args: Vec<String>,
    pub port: u16,
    pub store: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts a server on a free port with a fresh store directory, and waits until it
    /// listens.
    pub async fn start(binary: &Path, label: &str) -> PrivateServer {
        PrivateServer::start_with(binary, label, &[]).await
    }

    /// [`start`](Self::start), with more command-line options (`--user`, `--auth`, …).
    pub async fn start_with(binary: &Path, label: &str, args: &[&str]) -> PrivateServer {
        let store = std::env::temp_dir().join(super::unique(label));
        let mut server = PrivateServer {
            binary: binary.to_path_buf(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            port: free_port(),
            store,
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (same port, same store), and waits until it listens.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes the store: the server comes back without its streams and consumers.
    pub fn wipe(&self) {
        let _ = std::fs::remove_dir_all(&self.store);
    }

    async fn wait_ready(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while TcpStream::connect(&address).is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "the private nats-server did not listen on {address}"
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

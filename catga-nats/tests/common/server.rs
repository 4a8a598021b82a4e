//! A `nats-server` of a test's own (JetStream on, its store in the process's directory), on
//! a free loopback port, stopped by its PID when dropped (even when the test panics), its
//! store directory removed: `catga_core::testkit::ServerProcess` with NATS's command line.

#![allow(dead_code)] // each test crate uses part of it

use std::path::PathBuf;
use std::time::Duration;

use catga_core::testkit::{ServerProcess, services};

/// The `nats-server` binary (`$NATS_SERVER_BIN`, else `/usr/sbin`, `/usr/bin`, …), or
/// `None` after saying why the test is skipped; panics under `CATGA_REQUIRE_SERVICES=1`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let binary = ServerProcess::program("NATS_SERVER_BIN", "nats-server");
    if binary.is_none() {
        services::unavailable(
            test,
            "no nats-server binary (looked at $NATS_SERVER_BIN, /usr/sbin, /usr/bin, /usr/local/bin)",
            "install nats-server or set NATS_SERVER_BIN",
        );
    }
    binary
}

/// A private server.
pub struct PrivateServer {
    process: ServerProcess,
    /// More command-line options (authentication, for one).
    args: Vec<String>,
    pub port: u16,
}

impl PrivateServer {
    /// Starts a server on a free port with a fresh store directory, and waits until it
    /// listens.
    pub async fn start(binary: &std::path::Path, label: &str) -> PrivateServer {
        PrivateServer::start_with(binary, label, &[]).await
    }

    /// [`start`](Self::start), with more command-line options (`--user`, `--auth`, …).
    pub async fn start_with(binary: &std::path::Path, label: &str, args: &[&str]) -> PrivateServer {
        let process = ServerProcess::new(binary, label);
        let mut server = PrivateServer {
            port: process.port(),
            process,
            args: args.iter().map(|arg| arg.to_string()).collect(),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (same port, same store), and waits until it listens.
    pub async fn restart(&mut self) {
        let mut args = vec![
            "-js".to_string(),
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            self.port.to_string(),
            "-sd".to_string(),
            self.process.dir().display().to_string(),
        ];
        args.extend(self.args.iter().cloned());
        self.process.start(&args);
        assert!(
            self.process.wait_listening(Duration::from_secs(20)).await,
            "the private nats-server exited instead of listening on port {}",
            self.port
        );
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Removes the store: the server comes back without its streams and consumers.
    pub fn wipe(&self) {
        self.process.wipe();
    }
}

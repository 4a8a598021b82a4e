//! A `nats-server` of a test's own, for the tests that stop the broker.

use std::path::PathBuf;
use std::time::Duration;

use catga_core::testkit::{ServerProcess, services};

/// A `nats-server` of the test's own (JetStream, its store in the test's directory) on a free
/// loopback port; SIGKILLed by its PID when dropped, its directory removed.
pub struct PrivateNats {
    process: ServerProcess,
}

impl PrivateNats {
    /// The binary (`$NATS_SERVER_BIN`, else `/usr/sbin`, `/usr/bin`, …), or `None` after
    /// saying why the test is skipped (a failure under `CATGA_REQUIRE_SERVICES=1`).
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

    pub async fn start(binary: &std::path::Path) -> PrivateNats {
        let mut server = PrivateNats {
            process: ServerProcess::new(binary, "catga-pg-nats-"),
        };
        for _ in 0..5 {
            if server.spawn_and_wait().await {
                return server;
            }
            server.process.change_port();
        }
        panic!("could not start a private nats-server on a free port");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.process.port())
    }

    async fn spawn_and_wait(&mut self) -> bool {
        let args = [
            "-js".to_string(),
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            self.process.port().to_string(),
            "-sd".to_string(),
            self.process.dir().display().to_string(),
        ];
        self.process.start(args);
        self.process.wait_listening(Duration::from_secs(20)).await
    }

    /// Starts the killed server again, same port and store.
    pub async fn restart(&mut self) {
        assert!(
            self.spawn_and_wait().await,
            "the private nats-server could not start again on port {}",
            self.process.port()
        );
    }

    /// SIGKILL by PID.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

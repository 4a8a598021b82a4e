//! What every server-backed test needs: the server (or a reason to skip), names of its own, a
//! stream deleted at the end, and waiting with a clear failure.

#![allow(dead_code)] // each test crate uses part of it

use std::time::Duration;

use catga_nats::{Connect, NatsTransport};

/// The server the tests use.
pub fn nats_url() -> String {
    std::env::var("CATGA_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn services_required() -> bool {
    std::env::var("CATGA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A short random suffix, so tests running at once never share a stream or a service.
pub fn unique(label: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{label}{}", &id[id.len() - 10..])
}

/// One test's corner of the server: its own prefix and stream, deleted when dropped (even
/// when the test panics).
pub struct Corner {
    pub url: String,
    pub prefix: String,
    pub stream: String,
}

impl Corner {
    /// A corner on the test server, or `None` (with the reason printed) when the server is
    /// unreachable; with `CATGA_REQUIRE_SERVICES=1` an unreachable server fails the test.
    pub async fn new(test: &str) -> Option<Corner> {
        let url = nats_url();
        let probe = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url.as_str())
            .await;
        let client = match probe {
            Ok(client) => client,
            Err(e) => {
                let why = format!("NATS is unreachable at {url}: {e}");
                if services_required() {
                    panic!("{test}: {why} (CATGA_REQUIRE_SERVICES=1)");
                }
                eprintln!("skipping {test}: {why}; start `nats-server -js` or set CATGA_NATS_URL");
                return None;
            }
        };
        anchor(client).await;
        let prefix = unique("t");
        Some(Corner {
            url,
            stream: format!("{prefix}-events"),
            prefix,
        })
    }

    /// A transport for this corner, with delays short enough for tests.
    pub fn transport(&self) -> Connect {
        NatsTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .stream(self.stream.clone())
            .ack_wait(Duration::from_secs(5))
            .fetch_wait(Duration::from_secs(1))
            .backoff([Duration::from_millis(50), Duration::from_millis(100)])
    }

    /// A connected transport for this corner.
    pub async fn connect(&self) -> NatsTransport {
        self.transport().await.expect("connect to the test server")
    }
}

/// Keeps one file-backed stream on the server for good. nats-server (2.9) removes an
/// account's stream directory when its last file stream is deleted, and a stream created at
/// that moment fails with "could not create storage directory": with tests creating and
/// deleting streams at once, that happened about once a run.
async fn anchor(client: async_nats::Client) {
    let anchor = async_nats::jetstream::stream::Config {
        name: "catga-tests-anchor".to_string(),
        subjects: vec!["catga-tests-anchor".to_string()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    };
    async_nats::jetstream::new(client)
        .get_or_create_stream(anchor)
        .await
        .expect("create the tests' anchor stream");
}

impl Drop for Corner {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await, and may run inside the test's runtime: delete from a thread of
        // its own with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Waits until `done()` holds, failing the test with `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up after {limit:?} waiting for {what}");
}

/// The generous bound for things that normally take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

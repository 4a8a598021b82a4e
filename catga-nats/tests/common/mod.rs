//! What every server-backed test needs: the server (or a reason to skip), names of its own, a
//! stream deleted at the end, and waiting with a clear failure.

#![allow(dead_code)] // each test crate uses part of it

use std::time::Duration;

use catga_nats::{NatsConnect, NatsTransport};

pub mod server;

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
                // CATGA_NATS_URL may hold credentials: only its redacted form is printed.
                let shown = catga_core::secret::redact_url(&url);
                let why = format!("NATS is unreachable at {shown}: {e}");
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
    pub fn transport(&self) -> NatsConnect {
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

/// The state of the durable consumer of `service` for `event`: (not yet delivered, delivered
/// but not acknowledged), or `None` when the server does not have it.
pub async fn backlog(nats: &NatsTransport, service: &str, event: &str) -> Option<(u64, usize)> {
    let info = consumer_info(nats, service, event).await?;
    Some((info.num_pending, info.num_ack_pending))
}

/// The server's info on the durable consumer of `service` for `event`.
pub async fn consumer_info(
    nats: &NatsTransport,
    service: &str,
    event: &str,
) -> Option<async_nats::jetstream::consumer::Info> {
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let stream = jetstream.get_stream(nats.stream_name()).await.ok()?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(&nats.durable_name(service, event))
        .await
        .ok()?;
    consumer.info().await.ok().cloned()
}

/// Waits until the consumer holds nothing: every event delivered and settled (acknowledged
/// or terminated).
pub async fn settled(nats: &NatsTransport, service: &str, event: &str, what: &str) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while backlog(nats, service, event).await != Some((0, 0)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gave up after {PATIENCE:?} waiting for {what}: backlog {:?}",
        backlog(nats, service, event).await
    );
}

/// Waits until `store` holds at least `n` records, and returns them all.
pub async fn dead_letters(
    store: &catga_core::store::dead_letter::MemoryDeadLetterStore,
    n: usize,
    what: &str,
) -> Vec<catga_core::store::dead_letter::DeadLetterRecord> {
    use catga_core::store::dead_letter::DeadLetterStore;
    let mut kept = Vec::new();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            kept = store.list(10_000).await.expect("list dead letters");
            if kept.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gave up after {PATIENCE:?} waiting for {what}: {n} dead letters, have {kept:?}"
    );
    kept
}

/// Publishes bytes any NATS client could send (a header block the server does not check) on
/// `subject`, over a connection of its own, and waits for JetStream's acknowledgement when
/// the subject is a stream's (`stored`).
pub async fn raw_publish(url: &str, subject: &str, header_block: &[u8], body: &[u8], stored: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:4222")
        .to_string();
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect for a raw publish");
    let inbox = format!("_RAW.{}", uuid::Uuid::now_v7().simple());
    let mut frame = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n".to_vec();
    if stored {
        frame.extend_from_slice(format!("SUB {inbox} 1\r\n").as_bytes());
    }
    let reply = if stored {
        format!(" {inbox}")
    } else {
        String::new()
    };
    frame.extend_from_slice(
        format!(
            "HPUB {subject}{reply} {} {}\r\n",
            header_block.len(),
            header_block.len() + body.len()
        )
        .as_bytes(),
    );
    frame.extend_from_slice(header_block);
    frame.extend_from_slice(body);
    frame.extend_from_slice(b"\r\nPING\r\n");
    socket.write_all(&frame).await.expect("raw publish");
    let mut seen = Vec::new();
    let want: &[u8] = if stored { b"MSG " } else { b"PONG" };
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 4096];
        while !seen.windows(want.len()).any(|w| w == want) {
            let n = socket
                .read(&mut buffer)
                .await
                .expect("read from the server");
            assert!(n > 0, "the server closed a raw connection");
            seen.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer to a raw publish: {}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("\"error\""),
        "the stream refused a raw publish: {}",
        String::from_utf8_lossy(&seen)
    );
}

/// How many times the transport's client connected (1 until a reconnection).
pub fn connects(nats: &NatsTransport) -> u64 {
    nats.client()
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::SeqCst)
}

//! What the NATS tests share beyond `catga_core::testkit`: the server (or a reason to skip), a
//! corner of it per test (its own prefix and stream, deleted at the end), the transport in the
//! conformance suite, and a look at JetStream's side of things.

#![allow(dead_code)] // each test binary uses part of it

pub mod server;
pub mod transport;

use std::time::Duration;

use catga_core::testkit::{self, Capabilities, Settings, TransportUnderTest, services};
use catga_nats::NatsTransport;

pub use transport::Options;

/// The server the tests use: `CATGA_NATS_URL`, else the local one.
pub fn nats_url() -> String {
    services::url("CATGA_NATS_URL", "nats://127.0.0.1:4222")
}

/// The NATS transport in the conformance suite: each scenario gets a corner of the test
/// server.
pub struct Nats;

impl TransportUnderTest for Nats {
    type Corner = Corner;

    async fn open(&self, test: &str, settings: &Settings) -> Option<Corner> {
        let options = Options {
            max_deliveries: Some(settings.max_deliveries),
            backoff: Some(vec![settings.redelivery_delay]),
            ack_wait: settings.takeover.or(Some(Duration::from_secs(5))),
            ..Options::for_tests()
        };
        Corner::open(test, options).await
    }
}

/// One test's corner of the server: its own prefix and stream, deleted when dropped (even
/// when the test panics).
pub struct Corner {
    pub url: String,
    pub prefix: String,
    pub stream: String,
    options: Options,
    /// The connection that found the server, for what it says about itself.
    client: async_nats::Client,
    /// A transport of the corner's own, to look at the server's side; connected when first
    /// needed, since connecting creates the corner's stream (which some tests create first).
    probe: tokio::sync::OnceCell<NatsTransport>,
}

impl Corner {
    /// A corner with the tests' usual settings ([`Options::for_tests`]), or `None` (with the
    /// reason printed) when the server is unreachable; with `CATGA_REQUIRE_SERVICES=1` an
    /// unreachable server fails the test.
    pub async fn new(test: &str) -> Option<Corner> {
        Corner::open(test, Options::for_tests()).await
    }

    /// A corner whose transports have `options` (its prefix and stream are the corner's).
    pub async fn open(test: &str, options: Options) -> Option<Corner> {
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
                services::unavailable(
                    test,
                    &format!("NATS is unreachable at {shown}: {e}"),
                    "start `nats-server -js` or set CATGA_NATS_URL",
                );
                return None;
            }
        };
        anchor(client.clone()).await;
        let prefix = testkit::unique("t");
        let stream = format!("{prefix}-events");
        let options = Options {
            prefix: Some(prefix.clone()),
            stream: Some(stream.clone()),
            ..options
        };
        Some(Corner {
            url,
            prefix,
            stream,
            options,
            client,
            probe: tokio::sync::OnceCell::new(),
        })
    }

    /// This corner's options, to change some for [`connect_with`](Self::connect_with).
    pub fn options(&self) -> Options {
        self.options.clone()
    }

    /// A transport for this corner.
    pub async fn connect(&self) -> NatsTransport {
        self.connect_with(self.options()).await
    }

    /// A transport for this corner with other `options` (keep the corner's prefix and stream
    /// to reach its services: start from [`options`](Self::options)).
    pub async fn connect_with(&self, options: Options) -> NatsTransport {
        transport::connect(self.url.clone(), &options)
            .await
            .expect("connect to the test server")
    }

    /// The corner's own transport, to look at the server's side.
    pub async fn probe(&self) -> &NatsTransport {
        self.probe.get_or_init(|| self.connect()).await
    }
}

impl testkit::Corner for Corner {
    type Transport = NatsTransport;

    async fn connect(&self) -> NatsTransport {
        Corner::connect(self).await
    }

    fn capabilities(&self) -> Capabilities {
        let max_payload = self.client.server_info().max_payload;
        Capabilities {
            keeps_events_for_stopped_services: true,
            max_payload,
            every_instance_shares_a_burst: false,
            answers_expired_requests: true,
        }
    }

    async fn unsettled(&self, service: &str, event: &str) -> Option<u64> {
        let (pending, unacknowledged) = backlog(self.probe().await, service, event).await?;
        Some(pending + u64::try_from(unacknowledged).unwrap_or(u64::MAX))
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
    let read = tokio::time::timeout(testkit::PATIENCE, async {
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

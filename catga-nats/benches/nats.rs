//! catga over NATS against raw async-nats doing the same work, measured in one run; the
//! ratios are printed at the end.
//!
//! The baseline is the code a user would write without catga: async-nats plus serde_json for
//! the message, so both sides encode and decode the same JSON.
//!
//! * `nats_request_reply`: one round trip: a caller app's `send` to a handler served by
//!   another app (two connections), against a raw `Client::request` answered by a raw
//!   subscriber on its own connection (decode the request, encode the reply, publish it).
//! * `nats_jetstream_publish`: 100 events in flight, each `publish` awaiting JetStream's ack,
//!   against raw JetStream publishes (encode, `Nats-Msg-Id`, publish) awaiting the same acks.
//!   An event with nothing set on its context travels with the same single header.
//!
//! ```text
//! cargo bench -p catga-nats --bench nats
//! ```
//!
//! Needs a NATS server with JetStream at `CATGA_NATS_URL` (default nats://127.0.0.1:4222);
//! without one it says why and exits successfully. The ratio that matters is measured in
//! alternating blocks (raw, catga, raw, …), so a change in the machine's load during the run
//! affects both alike, and which side goes first alternates too (the second may pay for work the
//! server deferred from the first); criterion's own estimates are printed too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use catga_core::prelude::*;
use catga_nats::NatsTransport;
use criterion::{Criterion, Throughput};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::runtime::Runtime;

/// The size of the text each request and event carries.
const PAYLOAD: usize = 256;
/// Publishes in flight per iteration of the throughput bench.
const IN_FLIGHT: usize = 100;
/// Alternating blocks measured for the ratio.
const BLOCKS: usize = 31;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub text: String,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noted {
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

pub mod service {
    use super::*;

    #[handler]
    async fn echo(cmd: Echo) -> Result<u64, Never> {
        Ok(cmd.text.len() as u64)
    }
}

fn text() -> String {
    "x".repeat(PAYLOAD)
}

async fn transport(url: &str, prefix: &str) -> Result<NatsTransport, catga_nats::ConnectError> {
    NatsTransport::connect(url)
        .prefix(prefix)
        .stream(format!("{prefix}-events"))
        .await
}

/// One raw round trip: encode, request, decode the reply.
async fn raw_request(client: &async_nats::Client, subject: &str, request: &Echo) -> u64 {
    let body = serde_json::to_vec(request).expect("encode");
    let reply = client
        .request(subject.to_string(), body.into())
        .await
        .expect("raw request");
    serde_json::from_slice(&reply.payload).expect("decode the reply")
}

/// The raw responder: decode, handle, encode, reply; inline, on its own connection.
async fn raw_responder(url: &str, subject: String) -> tokio::task::JoinHandle<()> {
    let client = async_nats::connect(url).await.expect("connect");
    let mut requests = client.subscribe(subject).await.expect("subscribe");
    client.flush().await.expect("flush");
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Ok(echo) = serde_json::from_slice::<Echo>(&message.payload) else {
                continue;
            };
            let reply = serde_json::to_vec(&(echo.text.len() as u64)).unwrap_or_default();
            if let Some(to) = message.reply {
                let _ = client.publish(to, reply.into()).await;
            }
        }
    })
}

fn request_reply(c: &mut Criterion, rt: &Runtime, url: &str, prefix: &str) -> f64 {
    let (caller, serving, raw_client, responder) = rt.block_on(async {
        let served = Catga::builder()
            .transport(transport(url, prefix).await.expect("connect"))
            .service("bench")
            .handlers(|h| h.name.starts_with("nats::service::"))
            .build()
            .expect("build the served app");
        let serving = served.serve().await.expect("serve");
        let caller = Catga::builder()
            .transport(transport(url, prefix).await.expect("connect"))
            .handlers(|_| false)
            .build()
            .expect("build the caller");
        let responder = raw_responder(url, format!("{prefix}.raw.echo")).await;
        let raw_client = async_nats::connect(url).await.expect("connect");
        (caller, serving, raw_client, responder)
    });
    let raw_subject = format!("{prefix}.raw.echo");
    let request = Echo { text: text() };

    let mut group = c.benchmark_group("nats_request_reply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_async_nats", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(raw_request(&raw_client, &raw_subject, &request).await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("catga_send", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let len = caller.send(request.clone()).await.expect("catga send");
                    std::hint::black_box(len);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let ratio = interleaved_ratio(
        rt,
        || {
            let (client, subject, request) =
                (raw_client.clone(), raw_subject.clone(), request.clone());
            Box::pin(async move {
                raw_request(&client, &subject, &request).await;
            })
        },
        || {
            let (caller, request) = (caller.clone(), request.clone());
            Box::pin(async move {
                caller.send(request).await.expect("catga send");
            })
        },
        500,
    );
    rt.block_on(serving.shutdown());
    responder.abort();
    ratio
}

/// 100 raw JetStream publishes in flight (encode, message id, publish), all acks awaited.
async fn raw_publishes(raw: &jetstream::Context, subject: &str, event: &Noted) {
    let acks = (0..IN_FLIGHT).map(|_| async move {
        let body = serde_json::to_vec(event).expect("encode");
        let message = PublishMessage::build()
            .message_id(uuid::Uuid::now_v7().to_string())
            .payload(body.into());
        raw.send_publish(subject.to_string(), message)
            .await
            .expect("raw publish")
            .await
            .expect("raw ack")
    });
    std::hint::black_box(futures::future::join_all(acks).await);
}

/// 100 catga publishes in flight, all acks awaited.
async fn catga_publishes(app: &Catga, event: &Noted) {
    let acks = (0..IN_FLIGHT).map(|_| app.publish(event.clone()));
    for acked in futures::future::join_all(acks).await {
        acked.expect("catga publish");
    }
}

fn publish(c: &mut Criterion, rt: &Runtime, url: &str, prefix: &str) -> f64 {
    let (app, raw) = rt.block_on(async {
        let app = Catga::builder()
            .transport(transport(url, prefix).await.expect("connect"))
            .handlers(|_| false)
            .build()
            .expect("build the publisher");
        let raw = jetstream::new(async_nats::connect(url).await.expect("connect"));
        (app, raw)
    });
    let event = Noted { text: text() };
    // Into the same stream, so the server does the same work for both.
    let raw_subject = format!("{prefix}.events.raw");

    let mut group = c.benchmark_group("nats_jetstream_publish");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("raw_async_nats", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    raw_publishes(&raw, &raw_subject, &event).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("catga_publish", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    catga_publishes(&app, &event).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    interleaved_ratio(
        rt,
        || {
            let (raw, subject, event) = (raw.clone(), raw_subject.clone(), event.clone());
            Box::pin(async move { raw_publishes(&raw, &subject, &event).await })
        },
        || {
            let (app, event) = (app.clone(), event.clone());
            Box::pin(async move { catga_publishes(&app, &event).await })
        },
        50,
    )
}

/// The catga/raw time ratio with the two measured in alternating blocks of `block`
/// operations: the median of the blocks' ratios.
fn interleaved_ratio(
    rt: &Runtime,
    mut raw: impl FnMut() -> BoxFuture<'static, ()>,
    mut catga: impl FnMut() -> BoxFuture<'static, ()>,
    block: usize,
) -> f64 {
    let mut ratios: Vec<f64> = (0..BLOCKS)
        .map(|round| {
            rt.block_on(async {
                // Whichever side runs second may pay for work the server deferred from the
                // first (storing, flushing): alternate which goes first.
                let timed = async |side: &mut dyn FnMut() -> BoxFuture<'static, ()>| {
                    let start = Instant::now();
                    for _ in 0..block {
                        side().await;
                    }
                    start.elapsed().as_secs_f64()
                };
                if round % 2 == 0 {
                    let raw_time = timed(&mut raw).await;
                    timed(&mut catga).await / raw_time
                } else {
                    let catga_time = timed(&mut catga).await;
                    catga_time / timed(&mut raw).await
                }
            })
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Where criterion writes its estimates (set explicitly, so they can be read back).
fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

/// Criterion's estimate for one benchmark (the slope it prints, else the mean), in
/// nanoseconds per iteration.
fn estimate_ns(dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

/// One ratio to print: catga's benchmark against a baseline in the same group.
struct Row {
    group: &'static str,
    ours: &'static str,
    baseline: &'static str,
    per_iteration: usize,
    alternating: f64,
}

fn print_ratios(dir: &Path, rows: &[Row]) {
    println!("\nratios, catga / raw async-nats (same run):");
    for row in rows {
        println!(
            "  {}: {} vs {}: time ratio {:.3}, throughput ratio {:.3} (median of {BLOCKS} alternating blocks)",
            row.group,
            row.ours,
            row.baseline,
            row.alternating,
            1.0 / row.alternating
        );
        let (Some(ours_ns), Some(raw_ns)) = (
            estimate_ns(dir, row.group, row.ours),
            estimate_ns(dir, row.group, row.baseline),
        ) else {
            continue;
        };
        let per = row.per_iteration as f64;
        println!(
            "    criterion: catga {:.1} µs/op, baseline {:.1} µs/op, time ratio {:.3}",
            ours_ns / per / 1_000.0,
            raw_ns / per / 1_000.0,
            ours_ns / raw_ns,
        );
    }
}

async fn delete_stream(url: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let _ = jetstream::new(client).delete_stream(stream).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let url = std::env::var("CATGA_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let prefix = format!("bench{}", std::process::id());
    let probe = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), transport(&url, &prefix)).await
    });
    match probe {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                why = format!("{why}: {cause}");
                source = cause.source();
            }
            println!(
                "skipping the NATS benches: {why} (start `nats-server -js` or set CATGA_NATS_URL)"
            );
            return;
        }
        Err(_) => {
            let shown = catga_core::secret::redact_url(&url);
            println!("skipping the NATS benches: no answer from {shown} within 5 s");
            return;
        }
    }
    let dir = criterion_dir();
    let mut criterion = Criterion::default()
        .output_directory(&dir)
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let request = request_reply(&mut criterion, &rt, &url, &prefix);
    let publish_plain = publish(&mut criterion, &rt, &url, &prefix);
    rt.block_on(delete_stream(&url, &format!("{prefix}-events")));
    criterion.final_summary();
    let rows = [
        Row {
            group: "nats_request_reply",
            ours: "catga_send",
            baseline: "raw_async_nats",
            per_iteration: 1,
            alternating: request,
        },
        Row {
            group: "nats_jetstream_publish",
            ours: "catga_publish",
            baseline: "raw_async_nats",
            per_iteration: IN_FLIGHT,
            alternating: publish_plain,
        },
    ];
    print_ratios(&dir, &rows);
}

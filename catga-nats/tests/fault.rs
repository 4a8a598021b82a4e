//! The server dies mid-stream: a private `nats-server` is killed (SIGKILL) while 10,000 events
//! are being published and consumed, then restarted on the same port and store. Every event
//! whose publish was acknowledged must be handled at least once, and, with the `Idempotency`
//! behaviour, exactly once in effect.
//!
//! Two services consume the same events: `raw` without idempotency (it shows the
//! redeliveries at-least-once implies) and `exact` with it (its handler runs once per event).
//! Run with `--nocapture` to see the figures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use catga_core::behavior::Idempotency;
use catga_core::prelude::*;
use catga_core::{Behavior, Next, Payload};
use catga_nats::NatsTransport;
use common::Options;
use common::server::{PrivateServer, binary_or_skip};
use futures::StreamExt;
use uuid::Uuid;

const EVENTS: usize = 10_000;
/// Kill the server once the consumers handled this many events.
const KILL_AFTER: u64 = 3_000;
/// The bound on the whole scenario; it normally takes a few seconds.
const LIMIT: Duration = Duration::from_secs(90);

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("tick {0} is out of range")]
pub struct OutOfRange(usize);

/// How many times each tick's handler ran.
pub struct Effects {
    runs: Vec<AtomicU32>,
    total: AtomicU64,
    distinct: AtomicU64,
}

impl Effects {
    fn new() -> Self {
        Effects {
            runs: (0..EVENTS).map(|_| AtomicU32::new(0)).collect(),
            total: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
        }
    }

    fn record(&self, n: usize) -> Result<(), OutOfRange> {
        let runs = self.runs.get(n).ok_or(OutOfRange(n))?;
        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
            self.distinct.fetch_add(1, Ordering::SeqCst);
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::SeqCst)
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}

/// The `raw` service's effects (state is registered by type).
pub struct RawEffects(Effects);
/// The `exact` service's effects.
pub struct ExactEffects(Effects);

pub mod raw {
    use super::*;

    #[handler]
    async fn count(tick: &Tick, effects: &RawEffects) -> Result<(), OutOfRange> {
        effects.0.record(tick.n)
    }
}

pub mod exact {
    use super::*;

    #[handler]
    async fn apply(tick: &Tick, effects: &ExactEffects) -> Result<(), OutOfRange> {
        effects.0.record(tick.n)
    }
}

/// Counts the deliveries that reach the application, before idempotency filters them.
struct Deliveries(Arc<AtomicU64>);

impl Behavior for Deliveries {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, catga_core::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(msg).await
    }
}

async fn transport(url: &str) -> NatsTransport {
    let options = Options {
        prefix: Some("fault".to_string()),
        stream: Some("FAULT".to_string()),
        ack_wait: Some(Duration::from_secs(2)),
        fetch_wait: Some(Duration::from_secs(1)),
        response_timeout: Some(Duration::from_secs(2)),
        backoff: Some(vec![Duration::from_millis(50)]),
        ..Options::default()
    };
    common::transport::connect(url, &options)
        .await
        .expect("connect to the private server")
}

/// Publishes every tick, each retried with its own message id until the server acknowledged
/// it (a retry of a publish that was stored after all is dropped as a duplicate). Returns
/// the publishes that failed along the way.
async fn publish_all(app: Catga, ids: Arc<Vec<Uuid>>, acked: Arc<Vec<AtomicU32>>) -> u64 {
    let failures = Arc::new(AtomicU64::new(0));
    let publishes = futures::stream::iter(0..EVENTS).map(|n| {
        let (app, ids, acked, failures) = (&app, &ids, &acked, failures.clone());
        async move {
            loop {
                let ctx = Context::new().with_message_id(ids[n]);
                match app.publish_with(Tick { n }, ctx).await {
                    Ok(()) => {
                        acked[n].store(1, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    });
    publishes.buffer_unordered(64).collect::<Vec<()>>().await;
    failures.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_is_handled_through_a_server_restart() {
    let Some(binary) = binary_or_skip("the fault test") else {
        return;
    };
    let mut server = PrivateServer::start(&binary, "catga-nats-fault-").await;
    let url = server.url();

    let raw_effects = Arc::new(RawEffects(Effects::new()));
    let raw = Catga::builder()
        .state_arc(raw_effects.clone())
        .transport(transport(&url).await)
        .service("raw")
        .handlers(|h| h.name.starts_with("fault::raw::"))
        .build()
        .unwrap();
    let exact_effects = Arc::new(ExactEffects(Effects::new()));
    let exact_deliveries = Arc::new(AtomicU64::new(0));
    let exact = Catga::builder()
        .state_arc(exact_effects.clone())
        .transport(transport(&url).await)
        .service("exact")
        .handlers(|h| h.name.starts_with("fault::exact::"))
        .layer(Deliveries(exact_deliveries.clone()))
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let raw_serving = raw.serve().await.unwrap();
    let exact_serving = exact.serve().await.unwrap();

    let publisher = Catga::builder()
        .transport(transport(&url).await)
        .handlers(|_| false)
        .build()
        .unwrap();
    let ids: Arc<Vec<Uuid>> = Arc::new((0..EVENTS).map(|_| Uuid::now_v7()).collect());
    let acked: Arc<Vec<AtomicU32>> = Arc::new((0..EVENTS).map(|_| AtomicU32::new(0)).collect());
    let publishing = tokio::spawn(publish_all(publisher, ids, acked.clone()));

    let scenario = async {
        // Mid-stream: both services are consuming, the last events may still be publishing.
        while raw_effects.0.distinct().min(exact_effects.0.distinct()) < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let acked_before = acked
            .iter()
            .filter(|a| a.load(Ordering::SeqCst) == 1)
            .count();
        let handled_before = (raw_effects.0.distinct(), exact_effects.0.distinct());
        server.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.restart().await;
        let failures = publishing.await.expect("the publisher did not panic");
        while raw_effects.0.distinct() < EVENTS as u64 || exact_effects.0.distinct() < EVENTS as u64
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (acked_before, handled_before, failures)
    };
    let (acked_before, handled_before, publish_failures) =
        match tokio::time::timeout(LIMIT, scenario).await {
            Ok(figures) => figures,
            Err(_) => {
                let seen = Seen {
                    acked: &acked,
                    raw: &raw_effects.0,
                    exact: &exact_effects.0,
                    raw_app: &raw,
                    exact_app: &exact,
                };
                panic!("gave up after {LIMIT:?}:\n{}", seen.report(&url).await)
            }
        };
    raw_serving.shutdown().await;
    exact_serving.shutdown().await;

    let acked_total = acked
        .iter()
        .filter(|a| a.load(Ordering::SeqCst) == 1)
        .count();
    let unhandled: Vec<usize> = (0..EVENTS)
        .filter(|&n| acked[n].load(Ordering::SeqCst) == 1)
        .filter(|&n| raw_effects.0.runs[n].load(Ordering::SeqCst) == 0)
        .collect();
    println!(
        "fault test: killed the server with {acked_before} of {EVENTS} publishes acknowledged and \
         {handled_before:?} (raw, exact) handled; {publish_failures} publishes failed and were retried; \
         {acked_total} acknowledged in the end"
    );
    println!(
        "fault test: raw (no idempotency) ran its handler {} times for {} distinct events: {} duplicates",
        raw_effects.0.total(),
        raw_effects.0.distinct(),
        raw_effects.0.total() - raw_effects.0.distinct()
    );
    println!(
        "fault test: exact (Idempotency) received {} deliveries, ran its handler {} times for {} distinct events",
        exact_deliveries.load(Ordering::SeqCst),
        exact_effects.0.total(),
        exact_effects.0.distinct()
    );
    assert!(
        handled_before.0 < EVENTS as u64 && handled_before.1 < EVENTS as u64,
        "the server was killed mid-stream"
    );
    assert_eq!(
        acked_total, EVENTS,
        "every publish was eventually acknowledged"
    );
    assert!(
        unhandled.is_empty(),
        "acknowledged but never handled: {unhandled:?}"
    );
    assert_eq!(raw_effects.0.distinct(), EVENTS as u64, "at least once");
    assert_eq!(
        exact_effects.0.total(),
        EVENTS as u64,
        "with idempotency, each event's effect happened exactly once"
    );
    assert_eq!(exact_effects.0.distinct(), EVENTS as u64);
}

/// What the test saw, for a failure to say whether an event was lost or a consumer stalled.
struct Seen<'a, R, E> {
    acked: &'a [AtomicU32],
    raw: &'a Effects,
    exact: &'a Effects,
    raw_app: &'a Catga<R>,
    exact_app: &'a Catga<E>,
}

impl<R: catga_core::Layer, E: catga_core::Layer> Seen<'_, R, E> {
    /// What an application gave up on: its dead letters (count, and the first few).
    async fn given_up(name: &str, app: &Catga<impl catga_core::Layer>) -> String {
        match app.dead_letters().list_dyn(10_000).await {
            Ok(records) => {
                let first: Vec<String> = records
                    .iter()
                    .take(5)
                    .map(|r| {
                        format!(
                            "{} {} attempt {}: {}",
                            r.message_id, r.code, r.attempts, r.error
                        )
                    })
                    .collect();
                format!("{name}: {} dead letters, first {first:?}", records.len())
            }
            Err(e) => format!("{name}: dead letters unreadable: {e}"),
        }
    }

    async fn report(&self, url: &str) -> String {
        let mut lines = vec![format!(
            "raw handled {} distinct ({} runs), exact {} distinct ({} runs), of {EVENTS}; {} publishes acknowledged",
            self.raw.distinct(),
            self.raw.total(),
            self.exact.distinct(),
            self.exact.total(),
            self.acked
                .iter()
                .filter(|a| a.load(Ordering::SeqCst) == 1)
                .count()
        )];
        // Per event, those not done: acknowledged to its publisher? runs by each service.
        let missing: Vec<String> = (0..EVENTS)
            .filter(|&n| {
                self.acked[n].load(Ordering::SeqCst) == 0
                    || self.raw.runs[n].load(Ordering::SeqCst) == 0
                    || self.exact.runs[n].load(Ordering::SeqCst) == 0
            })
            .take(50)
            .map(|n| {
                format!(
                    "tick {n}: acked={} raw={} exact={}",
                    self.acked[n].load(Ordering::SeqCst),
                    self.raw.runs[n].load(Ordering::SeqCst),
                    self.exact.runs[n].load(Ordering::SeqCst)
                )
            })
            .collect();
        lines.push(format!("events not done (at most 50 shown): {missing:?}"));
        lines.push(Self::given_up("raw", self.raw_app).await);
        lines.push(Self::given_up("exact", self.exact_app).await);
        match async_nats::connect(url).await {
            Ok(client) => {
                let jetstream = async_nats::jetstream::new(client);
                match jetstream.get_stream("FAULT").await {
                    Ok(mut stream) => {
                        if let Ok(info) = stream.info().await {
                            lines.push(format!("stream: {:?}", info.state));
                        }
                        for durable in ["raw-Tick", "exact-Tick"] {
                            let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
                                stream.get_consumer(durable).await;
                            match consumer {
                                Ok(mut consumer) => match consumer.info().await {
                                    Ok(info) => lines.push(format!(
                                        "{durable}: pending {} ack_pending {} redelivered {} waiting {} ack_floor {:?} delivered {:?}",
                                        info.num_pending,
                                        info.num_ack_pending,
                                        info.num_redelivered,
                                        info.num_waiting,
                                        info.ack_floor,
                                        info.delivered
                                    )),
                                    Err(e) => lines.push(format!("{durable}: no info: {e}")),
                                },
                                Err(e) => lines.push(format!("{durable}: not found: {e}")),
                            }
                        }
                    }
                    Err(e) => lines.push(format!("stream FAULT not found: {e}")),
                }
            }
            Err(e) => lines.push(format!("could not connect to look: {e}")),
        }
        lines.join("\n")
    }
}

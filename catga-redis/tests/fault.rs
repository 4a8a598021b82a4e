//! The server dies mid-stream and comes back: nothing acknowledged to a publisher is lost,
//! everything is handled at least once, and with `Idempotency` exactly once in effect.
//!
//! A private `redis-server` (append-only file on, in a directory of its own) serves two
//! services consuming the same 10,000 events: `plain`, without idempotency, and `dedup`, with
//! it. A few handlers in each are held until the server has been killed (SIGKILL), so they
//! finish while it is down and their acknowledgements fail: those entries are delivered again
//! after the restart, as are any others whose acknowledgement was lost. The publisher retries
//! each event, with the same message id, until the server acknowledges it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::behavior::Idempotency;
use catga_core::prelude::*;
use catga_redis::{RedisTransport, StartFrom};
use common::Options;
use common::private_redis::{Persistence, PrivateRedis};
use tokio::sync::watch;

const EVENTS: u64 = 10_000;
/// These events' handlers wait until the server has been killed.
const HELD: std::ops::Range<u64> = 3_000..3_008;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

/// A request, to check the request path recovers from the restart too.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the test's bookkeeping is poisoned")]
pub struct Poisoned;

/// Holds the handlers of `HELD` events until released.
pub struct Gate {
    held: AtomicU32,
    finished: AtomicU32,
    open: watch::Receiver<bool>,
}

impl Gate {
    async fn pass(&self, n: u64) {
        if !HELD.contains(&n) {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// How often each event's handler body ran, per service.
pub struct Effects {
    gate: Arc<Gate>,
    runs: Mutex<HashMap<u64, u32>>,
}

impl Effects {
    fn snapshot(&self) -> HashMap<u64, u32> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The plain service's state (a distinct type: handlers find their state by type).
pub struct Plain(Effects);
/// The idempotent service's state.
pub struct Dedup(Effects);

async fn record(effects: &Effects, n: u64) -> Result<(), Poisoned> {
    *effects
        .runs
        .lock()
        .map_err(|_| Poisoned)?
        .entry(n)
        .or_default() += 1;
    effects.gate.pass(n).await;
    Ok(())
}

pub mod plain {
    use super::*;

    #[handler]
    impl Plain {
        async fn tick(&self, event: &Tick) -> Result<(), Poisoned> {
            record(&self.0, event.n).await
        }

        async fn ping(&self, cmd: Ping) -> Result<u64, Poisoned> {
            Ok(cmd.n + 1)
        }
    }
}

pub mod dedup {
    use super::*;

    #[handler]
    impl Dedup {
        async fn tick(&self, event: &Tick) -> Result<(), Poisoned> {
            record(&self.0, event.n).await
        }
    }
}

/// Counts every delivery that reaches the pipeline, before idempotency filters repeats.
#[derive(Clone, Default)]
pub struct CountDeliveries(Arc<AtomicU64>);

impl Behavior for CountDeliveries {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(msg).await
    }
}

async fn transport(url: &str) -> RedisTransport {
    let options = Options {
        prefix: Some("fault".to_string()),
        start_from: Some(StartFrom::Beginning),
        fetch_wait: Some(Duration::from_millis(500)),
        ack_wait: Some(Duration::from_secs(5)),
        ..Options::default()
    };
    common::transport::connect(url, &options)
        .await
        .expect("the private server is up")
}

/// How many entries of `stream` carry each of the events `ns` (read after a failure, to
/// tell an entry the server lost from one a consumer never handled).
async fn entries_of(url: &str, stream: &str, ns: &[u64]) -> Vec<(u64, usize)> {
    let Ok(client) = redis::Client::open(url) else {
        return Vec::new();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    // In pages: one reply of the whole stream outlasts the client's response timeout.
    let mut entries = Vec::new();
    let mut from = "-".to_string();
    loop {
        let page: redis::streams::StreamRangeReply = match redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                eprintln!("XRANGE {stream} from {from}: {e}");
                break;
            }
        };
        let Some(last) = page.ids.last() else {
            break;
        };
        from = format!("({}", last.id);
        entries.extend(page.ids);
    }
    ns.iter()
        .map(|n| {
            let body = format!("{{\"n\":{n}}}");
            let found = entries
                .iter()
                .filter(|entry| {
                    entry.map.values().any(|value| match value {
                        redis::Value::BulkString(bytes) => bytes == body.as_bytes(),
                        _ => false,
                    })
                })
                .count();
            (*n, found)
        })
        .collect()
}

/// Bounds a phase of the test, failing with what it was waiting for.
async fn within<T>(secs: u64, what: &str, phase: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), phase).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {secs} s waiting for: {what}"),
    }
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    until_or(what, secs, &mut done, String::new).await;
}

/// As [`until`], and on timeout says how far it got (`state`).
async fn until_or(
    what: &str,
    secs: u64,
    mut done: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let waited = tokio::time::timeout(Duration::from_secs(secs), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out after {secs} s waiting for: {what} {}",
        state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing_acknowledged() {
    if !common::private_redis::available("the fault test") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::AppendOnly).await;
    let url = server.url();

    let (open, gate_rx) = watch::channel(false);
    let gate = Arc::new(Gate {
        held: AtomicU32::new(0),
        finished: AtomicU32::new(0),
        open: gate_rx,
    });
    let effects = || Effects {
        gate: gate.clone(),
        runs: Mutex::new(HashMap::new()),
    };
    let plain_state = Arc::new(Plain(effects()));
    let dedup_state = Arc::new(Dedup(effects()));
    let deliveries = CountDeliveries::default();

    let plain = Catga::builder()
        .state_arc(plain_state.clone())
        .transport(transport(&url).await)
        .service("plain")
        .handlers(|h| h.name.starts_with("fault::plain::"))
        .build()
        .unwrap();
    let dedup = Catga::builder()
        .layer(deliveries.clone())
        .layer(Idempotency::default())
        .state_arc(dedup_state.clone())
        .transport(transport(&url).await)
        .service("dedup")
        .handlers(|h| h.name.starts_with("fault::dedup::"))
        .build()
        .unwrap();
    let publisher = Catga::builder()
        .transport(transport(&url).await)
        .service("publisher")
        .handlers(|_| false)
        .build()
        .unwrap();
    let serving = [plain.serve().await.unwrap(), dedup.serve().await.unwrap()];
    // A request before the restart leaves a pooled connection that the restart kills.
    assert_eq!(publisher.send(Ping { n: 1 }).await.unwrap(), 2);
    let publisher = Arc::new(publisher);

    let failed_publishes = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (failed, acked) = (failed_publishes.clone(), acked.clone());
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for n in 0..EVENTS {
                // The same message id on every attempt: a retry whose first attempt did reach
                // the server is a redelivery of the same message, which idempotency recognises.
                let id = uuid::Uuid::now_v7();
                loop {
                    let ctx = Context::new().with_message_id(id);
                    match publisher.publish_with(Tick { n }, ctx).await {
                        Ok(()) => break,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // Mid-stream: the held handlers of both services are waiting.
    let held_total = u32::try_from(2 * (HELD.end - HELD.start)).unwrap_or(u32::MAX);
    until("the held handlers to start", 60, || {
        gate.held.load(Ordering::SeqCst) == held_total
    })
    .await;
    let acked_at_kill = acked.load(Ordering::SeqCst);
    server.kill();
    // The held handlers finish while the server is down: their acknowledgements fail.
    let _ = open.send(true);
    until("the held handlers to finish", 30, || {
        gate.finished.load(Ordering::SeqCst) == held_total
    })
    .await;
    // Long enough for those acknowledgements to be attempted and fail (the client gives up on
    // a refused connection within about a second).
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().await;

    until_or(
        "every event to be published",
        120,
        || publishing.is_finished(),
        || format!("({} acknowledged)", acked.load(Ordering::SeqCst)),
    )
    .await;
    publishing.await.unwrap();
    let reply = within(
        60,
        "a request after the restart",
        publisher.send(Ping { n: 41 }),
    )
    .await;
    assert_eq!(reply.unwrap(), 42, "requests work again after the restart");
    let distinct = |runs: &HashMap<u64, u32>| (0..EVENTS).filter(|n| runs.contains_key(n)).count();
    let missing = |runs: &HashMap<u64, u32>| {
        (0..EVENTS)
            .filter(|n| !runs.contains_key(n))
            .take(10)
            .collect::<Vec<_>>()
    };
    let all_handled = tokio::time::timeout(Duration::from_secs(120), async {
        while distinct(&plain_state.0.snapshot()) < 10_000
            || distinct(&dedup_state.0.snapshot()) < 10_000
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if all_handled.is_err() {
        let plain_misses = missing(&plain_state.0.snapshot());
        let dedup_misses = missing(&dedup_state.0.snapshot());
        let mut wanted = plain_misses.clone();
        wanted.extend(&dedup_misses);
        let stored = entries_of(&url, "fault:events:Tick", &wanted).await;
        panic!(
            "timed out after 120 s waiting for both services to handle every event: plain \
             misses {plain_misses:?}…, dedup misses {dedup_misses:?}…; entries in the stream \
             for each (event, entries): {stored:?}"
        );
    }
    // And to acknowledge everything, so no redelivery can still change the counts.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = "fault:events:Tick";
    within(60, "every entry to be acknowledged", async {
        loop {
            let plain_pending = common::pending(&mut raw, stream, "plain").await;
            let dedup_pending = common::pending(&mut raw, stream, "dedup").await;
            if plain_pending == 0 && dedup_pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for s in serving {
        s.shutdown().await;
    }

    let plain_runs = plain_state.0.snapshot();
    let dedup_runs = dedup_state.0.snapshot();
    let plain_total: u64 = plain_runs.values().map(|&c| u64::from(c)).sum();
    let dedup_total: u64 = dedup_runs.values().map(|&c| u64::from(c)).sum();
    let stream_len: u64 = redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    let delivered = deliveries.0.load(Ordering::SeqCst);
    assert!(
        entries_of(&url, stream, &[EVENTS - 1])
            .await
            .first()
            .is_some_and(|(_, found)| *found >= 1),
        "the failure report finds entries by their event"
    );
    println!(
        "fault: published {EVENTS} ({} acknowledged, {acked_at_kill} before the kill, {} failed attempts retried), \
         {stream_len} entries in the stream; plain: {} distinct handled, {plain_total} handler runs \
         ({} duplicates); dedup: {delivered} deliveries, {} distinct effects, {dedup_total} handler runs \
         ({} duplicates)",
        acked.load(Ordering::SeqCst),
        failed_publishes.load(Ordering::SeqCst),
        distinct(&plain_runs),
        plain_total - EVENTS,
        distinct(&dedup_runs),
        dedup_total - EVENTS,
    );

    assert_eq!(acked.load(Ordering::SeqCst), EVENTS);
    assert_eq!(
        distinct(&plain_runs),
        10_000,
        "every acknowledged publish was handled at least once"
    );
    assert!(
        dedup_runs.values().all(|&runs| runs == 1) && dedup_total == EVENTS,
        "with idempotency, every event took effect exactly once"
    );
    assert!(
        delivered > EVENTS && plain_total > EVENTS,
        "the held events were delivered again after the restart (else this test proves nothing): \
         {delivered} deliveries, {plain_total} plain runs"
    );
}

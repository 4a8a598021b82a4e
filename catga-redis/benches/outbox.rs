//! The Redis outbox and inbox, batched against the same operations awaited one by one, and
//! the round trips of the consume path, measured in one run on the local Redis.
//!
//! ```text
//! cargo bench -p catga-redis --bench outbox
//! ```
//!
//! * **Relay throughput.** `EVENTS` committed events relayed to the Redis transport (one `XADD`
//!   each, awaited): the relay with its default batch of 256 (one claim script, the batch's
//!   publishes in flight at once, one finish script per batch), against the same relay with a
//!   batch of 1 (claim, publish, finish for each entry, awaited one by one). Rounds alternate;
//!   the ratio is the median of per-round ratios.
//! * **Commit throughput.** `COMMANDS` commands through `RedisOutbox` (two writes and one
//!   event each, one commit script): 64 in flight on the one multiplexed connection (their
//!   scripts pipelined), against one at a time.
//! * **Inbox throughput.** First deliveries of events whose handler writes (a `GET`, then a
//!   commit script with the writes and the record), and redeliveries (the `GET` alone): 64 in
//!   flight against one at a time.
//! * **Round trips per consumed command** (two writes, one event, a reply), counted at the
//!   wire by a proxy: each step its own call (idempotency claim, inbox look-up, each write,
//!   the event, the inbox record, the idempotency completion, the ack), against catga's
//!   `Idempotency` + `RedisInbox` + `RedisOutbox` and the ack, and against `RedisInbox` +
//!   `RedisOutbox` and the ack (the inbox record keeps the reply, which is what the
//!   idempotency layer kept).
//! * **Round trips per consumed event on the serving path.** `SERVED` events published (not
//!   counted) `PRODUCING` at a time to an app that `serve()`s them through the Redis
//!   transport, with `Idempotency` (the Redis store) + `RedisInbox` + `RedisOutbox` around a
//!   handler that writes two keys and publishes one event, its connections (the transport's
//!   and the stores') through the counting proxy. Counted from the first publish until every
//!   event is handled and acknowledged; the proxy's count over as long again with nothing to
//!   consume (idle polling) is subtracted. Events, not commands: an event's ack is queued to
//!   the acker, which sends one `XACK` per stream for all finished since its last round trip,
//!   while a request is answered and acknowledged by a transaction of its own. The handler's
//!   event goes out after the commit, one `XADD` (`RedisOutbox` keeps a command's events; an
//!   event handler's follow-up events are published as without an outbox). With the
//!   transport's read batch of 64 (the default) and of 1, one at a time, and 256 at a time;
//!   against the same steps each its own call on a stream of the same events (`XREADGROUP
//!   COUNT 1`, the steps above, the `XACK` of the entry read), and with the commit as one
//!   script (read, claim, inbox look-up, commit, completion, ack). Under concurrency the
//!   proxy's round trips are the bursts a client sends before the server answers: commands
//!   that left together count once.
//!
//! Needs Redis at `CATGA_REDIS_URL` (the local one by default); without it, it says why and
//! exits successfully.

#[path = "../tests/common/round_trips.rs"]
mod round_trips;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catga_core::behavior::Idempotency;
use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_redis::store::RedisStores;
use catga_redis::{RedisInbox, RedisOutbox, RedisTransport, RedisWrites};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use round_trips::RoundTrips;

#[path = "outbox/consume.rs"]
mod consume;
#[path = "outbox/serving.rs"]
mod serving;

const EVENTS: u64 = 5_000;
const COMMANDS: u64 = 2_000;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 3;
/// Events consumed per serving measurement.
const SERVED: u64 = 2_000;
/// Events the producer keeps in flight meanwhile.
const PRODUCING: usize = 256;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Place {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    pub n: u64,
}

/// An event whose handler writes (an inbox delivery).
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub n: u64,
}

pub mod bench {
    use super::*;

    /// Two writes and an event, through the unit of work.
    #[handler]
    async fn place(cmd: Place, ctx: &Context) -> Result<u64, BoxError> {
        let writes = RedisWrites::current()?;
        writes.hset(&writes.key(&format!("order:{}", cmd.n)), "n", cmd.n)?;
        writes.incr_by(&writes.key("orders"), 1)?;
        ctx.publish(Placed { n: cmd.n })?;
        Ok(cmd.n)
    }

    #[handler]
    async fn received(event: &Received) -> Result<(), BoxError> {
        let writes = RedisWrites::current()?;
        writes.incr_by(&writes.key("received"), 1)?;
        writes.sadd(&writes.key("received:set"), event.n)?;
        Ok(())
    }
}

/// An event served from the Redis transport; its handler does what `place` does.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ordered {
    pub n: u64,
}

/// Runs of `ordered` so far: a serving measurement waits for all of its events.
static ORDERED: AtomicU64 = AtomicU64::new(0);

pub mod served {
    use super::*;

    /// Two writes and an event, through the unit of work.
    #[handler]
    async fn ordered(event: &Ordered, ctx: &Context) -> Result<(), BoxError> {
        let writes = RedisWrites::current()?;
        writes.hset(&writes.key(&format!("order:{}", event.n)), "n", event.n)?;
        writes.incr_by(&writes.key("orders"), 1)?;
        ctx.publish(Placed { n: event.n })?;
        ORDERED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

async fn delete(conn: &mut MultiplexedConnection, pattern: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(conn).await;
    }
}

async fn stores(url: &str, prefix: &str) -> RedisStores {
    RedisStores::connect(url)
        .prefix(prefix)
        .await
        .expect("the stores connect")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Sends `n` commands from `from`, `in_flight` at a time; the time it took.
async fn send_all<L: Layer>(app: &Catga<L>, from: u64, n: u64, in_flight: usize) -> Duration {
    let started = Instant::now();
    futures::stream::iter(from..from + n)
        .map(|n| app.send(Place { n }))
        .buffer_unordered(in_flight)
        .for_each(|sent| async move {
            sent.expect("committed");
        })
        .await;
    started.elapsed()
}

/// Commits `EVENTS` commands from `from`, then relays them with `relay`: events per second.
async fn relay_rate<L: Layer>(
    app: &Catga<L>,
    relay: &catga_redis::RedisOutboxRelay,
    from: u64,
) -> f64 {
    send_all(app, from, EVENTS, IN_FLIGHT).await;
    let started = Instant::now();
    let relayed = relay.relay_backlog(app).await.expect("relayed");
    assert_eq!(relayed as u64, EVENTS, "every entry relayed once");
    EVENTS as f64 / started.elapsed().as_secs_f64()
}

async fn relay_throughput(url: &str, prefix: &str) {
    let stores = stores(url, prefix).await;
    let transport = RedisTransport::connect(url)
        .prefix(prefix)
        .await
        .expect("the transport connects");
    let outbox = RedisOutbox::new(&stores);
    let batched = outbox.relay();
    let one_by_one = outbox.relay().batch(1).expect("valid");
    let app = Catga::builder()
        .transport(transport)
        .handlers(|h| h.is_in("bench"))
        .layer(outbox)
        .build()
        .expect("builds");
    let mut ratios = Vec::new();
    let mut rates = (Vec::new(), Vec::new());
    let mut next = 0;
    for _ in 0..ROUNDS {
        let single = relay_rate(&app, &one_by_one, next).await;
        next += EVENTS;
        let batch = relay_rate(&app, &batched, next).await;
        next += EVENTS;
        ratios.push(batch / single);
        rates.0.push(batch);
        rates.1.push(single);
    }
    println!(
        "relay throughput, {EVENTS} events to the Redis transport, median of {ROUNDS} rounds: \
         batch 256 {:.0} events/s; batch 1 (claim, publish, finish per entry) {:.0} events/s; \
         ratio {:.1}x",
        median(rates.0),
        median(rates.1),
        median(ratios)
    );
}

async fn commit_throughput(url: &str, prefix: &str) {
    let stores = stores(url, prefix).await;
    let app = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(RedisOutbox::new(&stores))
        .build()
        .expect("builds");
    // Loads the script.
    send_all(&app, 0, 10, 1).await;
    let mut ratios = Vec::new();
    let mut rates = (Vec::new(), Vec::new());
    let mut next = 100;
    for _ in 0..ROUNDS {
        let single = send_all(&app, next, COMMANDS, 1).await;
        next += COMMANDS;
        let pipelined = send_all(&app, next, COMMANDS, IN_FLIGHT).await;
        next += COMMANDS;
        let (single, pipelined) = (
            COMMANDS as f64 / single.as_secs_f64(),
            COMMANDS as f64 / pipelined.as_secs_f64(),
        );
        ratios.push(pipelined / single);
        rates.0.push(pipelined);
        rates.1.push(single);
    }
    println!(
        "commit throughput, {COMMANDS} commands (2 writes + 1 event, one script each), median of {ROUNDS} rounds: \
         {IN_FLIGHT} in flight {:.0} commits/s; one at a time {:.0} commits/s; ratio {:.1}x",
        median(rates.0),
        median(rates.1),
        median(ratios)
    );
}

/// Dispatches `envelopes`, `in_flight` at a time; the time it took.
async fn deliver<L: Layer>(app: &Catga<L>, envelopes: &[Envelope], in_flight: usize) -> Duration {
    let started = Instant::now();
    futures::stream::iter(envelopes)
        .map(|envelope| app.dispatch_envelope(envelope))
        .buffer_unordered(in_flight)
        .for_each(|handled| async move {
            handled.expect("handled");
        })
        .await;
    started.elapsed()
}

async fn inbox_throughput(url: &str, prefix: &str) {
    let stores = stores(url, prefix).await;
    let app = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(RedisInbox::new(&stores))
        .build()
        .expect("builds");
    let envelopes = |from: u64| -> Vec<Envelope> {
        (from..from + COMMANDS)
            .map(|n| {
                Envelope::wrap(&Received { n }, &Context::new(), WireFormat::Json).expect("encodes")
            })
            .collect()
    };
    deliver(&app, &envelopes(0)[..10], 1).await;
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u64 {
        let single = envelopes((2 * round + 1) * COMMANDS);
        let many = envelopes((2 * round + 2) * COMMANDS);
        let t1 = deliver(&app, &single, 1).await;
        let tn = deliver(&app, &many, IN_FLIGHT).await;
        first.push((
            t1.as_secs_f64() / tn.as_secs_f64(),
            COMMANDS as f64 / tn.as_secs_f64(),
        ));
        let r1 = deliver(&app, &single, 1).await;
        let rn = deliver(&app, &many, IN_FLIGHT).await;
        again.push((
            r1.as_secs_f64() / rn.as_secs_f64(),
            COMMANDS as f64 / rn.as_secs_f64(),
        ));
    }
    let show = |what: &str, runs: Vec<(f64, f64)>| {
        let ratio = median(runs.iter().map(|r| r.0).collect());
        let rate = median(runs.iter().map(|r| r.1).collect());
        println!(
            "inbox, {what}, {COMMANDS} events, median of {ROUNDS} rounds: {IN_FLIGHT} in flight {rate:.0}/s, \
             {ratio:.1}x one at a time"
        );
    };
    show(
        "first deliveries (GET + commit script with 2 writes)",
        first,
    );
    show("redeliveries (one GET)", again);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let url = url();
    let reachable = rt.block_on(async {
        let ping = async {
            let mut conn = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        tokio::time::timeout(Duration::from_secs(3), ping).await
    });
    if !matches!(reachable, Ok(Ok(_))) {
        let shown = catga_core::secret::redact_url(&url);
        println!(
            "skipping the outbox bench: no redis server answers at {shown} (set CATGA_REDIS_URL)"
        );
        return;
    }
    let prefix = format!("catga-bench-outbox:{}", uuid::Uuid::now_v7().simple());
    rt.block_on(async {
        relay_throughput(&url, &prefix).await;
        commit_throughput(&url, &prefix).await;
        inbox_throughput(&url, &prefix).await;
        consume::consume_round_trips(&url, &prefix).await;
        serving::serving_round_trips(&url, &prefix).await;
        let mut conn = raw(&url).await;
        delete(&mut conn, &format!("{prefix}:*")).await;
        for family in ["outbox", "steps", "idempotency"] {
            delete(&mut conn, &format!("{{{prefix}:{family}}}*")).await;
        }
        // The serving measurements' stores, each under a prefix of its own.
        delete(&mut conn, &format!("{{{prefix}:served-*")).await;
    });
}

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

/// The writes, the event and the inbox record of [`handling_steps`] as one script: a commit.
const COMMIT_STEPS: &str = r"
redis.call('HSET', KEYS[1], 'n', ARGV[1])
redis.call('INCRBY', KEYS[2], 1)
redis.call('XADD', KEYS[3], '*', 'n', ARGV[1])
redis.call('SET', KEYS[4], ARGV[1], 'PX', 60000)
return 1
";

/// Handling one message, each step its own call, as written without a unit of work (the
/// ack apart): the idempotency claim, the inbox look-up, each write, the event, the inbox
/// record, the idempotency completion. With `commit` (the SHA of [`COMMIT_STEPS`], loaded),
/// the writes, the event and the record are one call.
fn handling_steps(prefix: &str, n: u64, commit: Option<&str>) -> Vec<redis::Cmd> {
    let tag = format!("{{{prefix}:steps}}");
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (order, orders, outbox, inbox) = (
        format!("{tag}:order:{n}"),
        format!("{tag}:orders"),
        format!("{tag}:outbox"),
        format!("{tag}:inbox:{id}"),
    );
    let mut calls = vec![
        redis::cmd("SET")
            .arg(format!("{tag}:idem:{id}"))
            .arg("claimed")
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .clone(),
        redis::cmd("GET").arg(&inbox).clone(),
    ];
    match commit {
        None => calls.extend([
            redis::cmd("HSET").arg(&order).arg("n").arg(n).clone(),
            redis::cmd("INCRBY").arg(&orders).arg(1).clone(),
            redis::cmd("XADD")
                .arg(&outbox)
                .arg("*")
                .arg("n")
                .arg(n)
                .clone(),
            redis::cmd("SET")
                .arg(&inbox)
                .arg(n)
                .arg("PX")
                .arg(60_000)
                .clone(),
        ]),
        Some(sha) => calls.push(
            redis::cmd("EVALSHA")
                .arg(sha)
                .arg(4)
                .arg(&order)
                .arg(&orders)
                .arg(&outbox)
                .arg(&inbox)
                .arg(n)
                .clone(),
        ),
    }
    calls.push(
        redis::cmd("SET")
            .arg(format!("{tag}:idem:{id}"))
            .arg(n)
            .arg("PX")
            .arg(60_000)
            .clone(),
    );
    calls
}

/// The consume path of one command, each step its own call, as written without a unit of
/// work: what the figure compares against.
async fn each_step_its_own_call(conn: &mut MultiplexedConnection, prefix: &str, n: u64) {
    let tag = format!("{{{prefix}:steps}}");
    let mut calls = handling_steps(prefix, n, None);
    calls.push(
        redis::cmd("XACK")
            .arg(format!("{tag}:requests"))
            .arg("group")
            .arg("0-1")
            .clone(),
    );
    for call in calls {
        let _: redis::Value = call.query_async(conn).await.expect("a step");
    }
}

async fn consume_round_trips(url: &str, prefix: &str) {
    const MESSAGES: u64 = 50;
    let proxy = RoundTrips::start(url).await;
    let mut counted_raw = raw(proxy.url()).await;
    let counted = stores(proxy.url(), prefix).await;
    let ack = |conn: MultiplexedConnection| async move {
        let mut conn = conn;
        let _: redis::Value = redis::cmd("XACK")
            .arg(format!("{prefix}:requests:Place"))
            .arg("group")
            .arg("0-1")
            .query_async(&mut conn)
            .await
            .expect("XACK");
    };
    let command =
        |n: u64| Envelope::wrap(&Place { n }, &Context::new(), WireFormat::Json).expect("encodes");
    let per_message = |proxy: &RoundTrips| {
        (
            proxy.commands() as f64 / MESSAGES as f64,
            proxy.round_trips() as f64 / MESSAGES as f64,
        )
    };

    each_step_its_own_call(&mut counted_raw, prefix, 0).await;
    proxy.reset();
    for n in 0..MESSAGES {
        each_step_its_own_call(&mut counted_raw, prefix, n).await;
    }
    let before = per_message(&proxy);

    let with_idempotency = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(Idempotency::new(counted.idempotency()))
        .layer(RedisInbox::new(&counted))
        .layer(RedisOutbox::new(&counted))
        .build()
        .expect("builds");
    with_idempotency
        .dispatch_envelope(&command(1_000_000))
        .await
        .expect("warm");
    proxy.reset();
    for n in 0..MESSAGES {
        with_idempotency
            .dispatch_envelope(&command(n))
            .await
            .expect("handled");
        ack(counted_raw.clone()).await;
    }
    let kept = per_message(&proxy);

    let inbox_only = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(RedisInbox::new(&counted))
        .layer(RedisOutbox::new(&counted))
        .build()
        .expect("builds");
    proxy.reset();
    for n in 0..MESSAGES {
        inbox_only
            .dispatch_envelope(&command(n))
            .await
            .expect("handled");
        ack(counted_raw.clone()).await;
    }
    let folded = per_message(&proxy);
    let names = proxy.names();
    println!(
        "consume path per command (2 writes, 1 event, a reply, the ack), counted at the wire over {MESSAGES} messages: \
         each step its own call {:.1} commands / {:.1} round trips; \
         Idempotency + RedisInbox + RedisOutbox {:.1} / {:.1} ({:+.0} %); \
         RedisInbox + RedisOutbox {:.1} / {:.1} ({:+.0} %; {})",
        before.0,
        before.1,
        kept.0,
        kept.1,
        (kept.1 / before.1 - 1.0) * 100.0,
        folded.0,
        folded.1,
        (folded.1 / before.1 - 1.0) * 100.0,
        names
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" + "),
    );
}

/// The serving path of `SERVED` events, each step its own call on a connection through a
/// proxy: read one entry (`XREADGROUP … COUNT 1`), handle it ([`handling_steps`], with the
/// commit as one script if `commit`), acknowledge it. Commands and round trips per event.
async fn one_by_one_served(url: &str, prefix: &str, commit: bool) -> (f64, f64) {
    let tag = format!("{{{prefix}:steps}}");
    let stream = format!("{tag}:served:{}", if commit { "script" } else { "steps" });
    let mut direct = raw(url).await;
    let sha = if commit {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(COMMIT_STEPS)
            .query_async(&mut direct)
            .await
            .expect("SCRIPT LOAD");
        Some(sha)
    } else {
        None
    };
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("served")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut direct)
        .await
        .expect("XGROUP CREATE");
    // One more than counted: the first warms the connection up.
    let mut ids: Vec<String> = Vec::new();
    let numbers: Vec<u64> = (0..=SERVED).collect();
    for chunk in numbers.chunks(500) {
        let mut pipe = redis::pipe();
        for n in chunk {
            pipe.cmd("XADD").arg(&stream).arg("*").arg("n").arg(*n);
        }
        let added: Vec<String> = pipe.query_async(&mut direct).await.expect("XADD");
        ids.extend(added);
    }
    let proxy = RoundTrips::start(url).await;
    let mut conn = raw(proxy.url()).await;
    for (n, id) in (0..).zip(&ids) {
        if n == 1 {
            proxy.reset();
        }
        let mut calls = vec![
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("served")
                .arg("one")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .clone(),
        ];
        calls.extend(handling_steps(prefix, n, sha.as_deref()));
        calls.push(
            redis::cmd("XACK")
                .arg(&stream)
                .arg("served")
                .arg(id)
                .clone(),
        );
        for call in calls {
            let _: redis::Value = call.query_async(&mut conn).await.expect("a step");
        }
    }
    (
        proxy.commands() as f64 / SERVED as f64,
        proxy.round_trips() as f64 / SERVED as f64,
    )
}

/// Publishes `Ordered` events `from..from + n`, `PRODUCING` at a time.
async fn publish_all<L: Layer>(app: &Catga<L>, from: u64, n: u64) {
    futures::stream::iter(from..from + n)
        .map(|n| app.publish(Ordered { n }))
        .buffer_unordered(PRODUCING)
        .for_each(|published| async move {
            published.expect("published");
        })
        .await;
}

/// Waits until `handled` runs of `ordered` are over and `stream` has nothing left
/// unacknowledged in group `served`, asking on `conn` (not through the proxy).
async fn drained(conn: &mut MultiplexedConnection, stream: &str, handled: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ORDERED.load(Ordering::SeqCst) < handled {
        assert!(
            Instant::now() < deadline,
            "the served events were not all handled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(stream)
            .arg("served")
            .query_async(conn)
            .await
            .expect("XPENDING");
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the served events were not all acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How `serve()` was set up for one measurement.
struct Serve {
    /// `Idempotency` around `RedisInbox` + `RedisOutbox`, else those two alone.
    idempotency: bool,
    /// The transport's read batch (`RedisConnect::batch`).
    batch: usize,
    /// The most events handled at once (`serve_max_in_flight`).
    in_flight: usize,
}

/// What the proxy counted while a serving app drained `SERVED` events.
struct Drained {
    /// Per event, what idle polling costs over as long subtracted.
    commands: f64,
    round_trips: f64,
    /// The proxy's count over as long with nothing to consume: commands, round trips.
    idle: (usize, usize),
    /// Commands per event by name (idle polling not subtracted).
    by_name: BTreeMap<String, f64>,
    took: Duration,
}

/// Serves `Ordered` as `how` says, the consumer's connections through a counting proxy, while
/// a producer publishes `SERVED` events; see the module docs.
async fn serve_counted(url: &str, prefix: &str, label: &str, how: &Serve) -> Drained {
    const WARM: u64 = 20;
    let prefix = format!("{prefix}:served-{label}");
    let proxy = RoundTrips::start(url).await;
    let transport = RedisTransport::connect(proxy.url())
        .prefix(prefix.as_str())
        .batch(how.batch)
        .await
        .expect("the transport connects");
    let stream = transport.event_stream(Ordered::NAME);
    let counted = stores(proxy.url(), &prefix).await;
    let consumer = Catga::builder()
        .transport(transport)
        .service("served")
        .serve_max_in_flight(how.in_flight)
        .handlers(|h| h.is_in("served"));
    let serving = if how.idempotency {
        let app = consumer
            .layer(Idempotency::new(counted.idempotency()))
            .layer(RedisInbox::new(&counted))
            .layer(RedisOutbox::new(&counted))
            .build()
            .expect("builds");
        app.serve().await
    } else {
        let app = consumer
            .layer(RedisInbox::new(&counted))
            .layer(RedisOutbox::new(&counted))
            .build()
            .expect("builds");
        app.serve().await
    }
    .expect("serves");
    let producer = Catga::builder()
        .transport(
            RedisTransport::connect(url)
                .prefix(prefix.as_str())
                .await
                .expect("the transport connects"),
        )
        .handlers(|_| false)
        .build()
        .expect("builds");
    let mut direct = raw(url).await;

    // Connections made and scripts loaded before counting.
    ORDERED.store(0, Ordering::SeqCst);
    publish_all(&producer, 0, WARM).await;
    drained(&mut direct, &stream, WARM).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    proxy.reset();
    let started = Instant::now();
    publish_all(&producer, WARM, SERVED).await;
    drained(&mut direct, &stream, WARM + SERVED).await;
    let took = started.elapsed();
    let (commands, round_trips, names) = (proxy.commands(), proxy.round_trips(), proxy.names());

    proxy.reset();
    tokio::time::sleep(took).await;
    let idle = (proxy.commands(), proxy.round_trips());
    serving.shutdown().await;

    let mut by_name = BTreeMap::new();
    for name in names {
        *by_name.entry(name).or_insert(0.0) += 1.0 / SERVED as f64;
    }
    let per_event =
        |counted: usize, idle: usize| counted.saturating_sub(idle) as f64 / SERVED as f64;
    Drained {
        commands: per_event(commands, idle.0),
        round_trips: per_event(round_trips, idle.1),
        idle,
        by_name,
        took,
    }
}

async fn serving_round_trips(url: &str, prefix: &str) {
    let steps = one_by_one_served(url, prefix, false).await;
    let script = one_by_one_served(url, prefix, true).await;
    println!(
        "serving path per event (2 writes, 1 event, the ack), {SERVED} events published {PRODUCING} in flight, \
         counted at the wire: each step its own call (XREADGROUP COUNT 1, claim, inbox GET, HSET, INCRBY, XADD, \
         inbox SET, completion, XACK) {:.2} commands / {:.2} round trips; the commit one script (XREADGROUP COUNT 1, \
         claim, inbox GET, commit, completion, XACK) {:.2} / {:.2}",
        steps.0, steps.1, script.0, script.1
    );
    let runs = [
        (
            "b64",
            "Idempotency + RedisInbox + RedisOutbox, batch 64, 64 in flight (the defaults)",
            Serve {
                idempotency: true,
                batch: 64,
                in_flight: 64,
            },
        ),
        (
            "b1",
            "Idempotency + RedisInbox + RedisOutbox, batch 1, 64 in flight",
            Serve {
                idempotency: true,
                batch: 1,
                in_flight: 64,
            },
        ),
        (
            "one",
            "Idempotency + RedisInbox + RedisOutbox, batch 1, 1 in flight",
            Serve {
                idempotency: true,
                batch: 1,
                in_flight: 1,
            },
        ),
        (
            "b256",
            "Idempotency + RedisInbox + RedisOutbox, batch 256, 256 in flight",
            Serve {
                idempotency: true,
                batch: 256,
                in_flight: 256,
            },
        ),
        (
            "inbox",
            "RedisInbox + RedisOutbox, batch 64, 64 in flight",
            Serve {
                idempotency: false,
                batch: 64,
                in_flight: 64,
            },
        ),
    ];
    for (label, what, how) in &runs {
        let d = serve_counted(url, prefix, label, how).await;
        let share = |name: &str| d.by_name.get(name).copied().unwrap_or(0.0);
        let shown: Vec<String> = d
            .by_name
            .iter()
            .map(|(name, per)| format!("{name} {per:.3}"))
            .collect();
        println!(
            "  serve(), {what}: {:.2} commands / {:.2} round trips per event ({:+.0} % / {:+.0} % against each step \
             its own call; {:+.0} % / {:+.0} % against the commit one script); {}; {:.1} entries per XREADGROUP, \
             {:.1} per XACK; drained in {} ms; idle over as long: {} commands / {} round trips",
            d.commands,
            d.round_trips,
            (d.commands / steps.0 - 1.0) * 100.0,
            (d.round_trips / steps.1 - 1.0) * 100.0,
            (d.commands / script.0 - 1.0) * 100.0,
            (d.round_trips / script.1 - 1.0) * 100.0,
            shown.join(" + "),
            1.0 / share("XREADGROUP"),
            1.0 / share("XACK"),
            d.took.as_millis(),
            d.idle.0,
            d.idle.1,
        );
    }
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
        consume_round_trips(&url, &prefix).await;
        serving_round_trips(&url, &prefix).await;
        let mut conn = raw(&url).await;
        delete(&mut conn, &format!("{prefix}:*")).await;
        for family in ["outbox", "steps", "idempotency"] {
            delete(&mut conn, &format!("{{{prefix}:{family}}}*")).await;
        }
        // The serving measurements' stores, each under a prefix of its own.
        delete(&mut conn, &format!("{{{prefix}:served-*")).await;
    });
}

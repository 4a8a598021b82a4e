//! The Redis outbox relay when things go wrong: entries that can never be published are
//! dead-lettered once and the relay goes on; a relay aborted or its process killed mid-batch
//! loses nothing (its duplicates are absorbed by the inbox: exactly one effect each); a broker
//! that is down lets commands commit, and everything flows once it is back; a Redis restarted
//! with its append-only file keeps the committed entries (handlers get typed store errors
//! while it is down); a `SCRIPT FLUSH` changes nothing.
//!
//! The process-kill test runs this binary again as a child (`RELAY_CHILD_PREFIX` set), which
//! makes [`relay_child_process`] relay until it is killed; in a normal run that test does
//! nothing.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::{BoxError, ErrorKind};
use catga_core::prelude::*;
use catga_core::testkit::{PATIENCE, eventually, within};
use catga_redis::store::RedisStores;
use catga_redis::{RedisInbox, RedisOutbox, RedisOutboxRelay, RedisWrites};
use common::private_redis::{Persistence, PrivateRedis};
use common::slice::Slice;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub parcel: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: i64,
}

#[derive(Default)]
pub struct Effects {
    /// Handler runs, duplicates included.
    runs: AtomicU32,
    /// How long each run takes, in milliseconds.
    slow_ms: AtomicU32,
}

pub mod shipping {
    use super::*;

    #[handler]
    pub async fn ship(cmd: Ship, ctx: &Context) -> Result<(), BoxError> {
        ctx.publish(Shipped { parcel: cmd.parcel })?;
        Ok(())
    }

    #[handler]
    impl Effects {
        /// One list element per effect, through the unit the inbox opened.
        async fn shipped(&self, event: &Shipped) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let slow = self.slow_ms.load(Ordering::SeqCst);
            if slow > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(slow))).await;
            }
            let writes = RedisWrites::current()?;
            writes.rpush(&writes.key("effects"), event.parcel)?;
            Ok(())
        }
    }
}

/// One ordering key for every event: a key's entries are published one after the other.
fn one_key(_: &Envelope) -> String {
    "parcels".to_string()
}

/// An application with the inbox and the outbox, no transport (the relay hands events to its
/// handlers here), and its relay: batch `batch`, a short lease and poll.
fn app(
    stores: &RedisStores,
    effects: &Arc<Effects>,
    batch: usize,
    ordered: bool,
) -> (Catga<impl Layer>, RedisOutboxRelay) {
    let mut outbox = RedisOutbox::new(stores);
    if ordered {
        outbox = outbox.ordering_key(one_key);
    }
    let relay = outbox
        .relay()
        .batch(batch)
        .and_then(|r| r.lease(Duration::from_millis(500)))
        .and_then(|r| r.poll_interval(Duration::from_millis(50)))
        .expect("valid options");
    let app = Catga::builder()
        .state_arc(Arc::clone(effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(RedisInbox::new(stores))
        .layer(outbox)
        .build()
        .expect("builds");
    (app, relay)
}

/// The outbox's keys on a slice.
impl Slice {
    fn key(&self, suffix: &str) -> String {
        RedisOutbox::new(&self.stores).key(suffix)
    }

    async fn entries(&self) -> u64 {
        let stream = RedisOutbox::new(&self.stores).stream_key().to_string();
        redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut self.raw().await)
            .await
            .unwrap_or(u64::MAX)
    }

    /// The parcels in the order their effects were applied.
    async fn effects(&self) -> Vec<i64> {
        redis::cmd("LRANGE")
            .arg(self.key("effects"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.raw().await)
            .await
            .unwrap_or_default()
    }
}

fn distinct(mut effects: Vec<i64>) -> usize {
    effects.sort_unstable();
    effects.dedup();
    effects.len()
}

/// Adds an entry to the outbox stream by hand, as a bug or another program might.
async fn inject(slice: &Slice, fields: &[(&str, &[u8])]) -> String {
    let stream = RedisOutbox::new(&slice.stores).stream_key().to_string();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(stream).arg("*");
    for (field, value) in fields {
        xadd.arg(*field).arg(*value);
    }
    xadd.query_async(&mut slice.raw().await)
        .await
        .expect("XADD")
}

/// An envelope's stream fields, as the outbox writes them, with `payload`.
fn fields_of(envelope: &Envelope, payload: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = envelope
        .to_headers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect();
    fields.push(("catga-payload".to_string(), payload.to_vec()));
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_can_never_be_published_are_dead_lettered_once_and_the_relay_goes_on() {
    let Some(slice) = Slice::open("outbox_malformed").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&slice.stores, &effects, 256, true);
    let good =
        Envelope::wrap(&Shipped { parcel: 1 }, &Context::new(), WireFormat::Json).expect("encodes");
    // Not an envelope at all.
    inject(&slice, &[("foo", b"bar")]).await;
    // An event nobody in this program knows.
    let mut unknown = good.clone();
    unknown.name = "NoSuchEvent".into();
    let unknown = fields_of(&unknown, b"{}");
    // A payload that does not decode, with an ordering key whose list does not hold it.
    let mut garbled = fields_of(&good, b"not json");
    garbled.push(("catga-outbox-key".to_string(), b"elsewhere".to_vec()));
    for fields in [unknown, garbled] {
        let borrowed: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        inject(&slice, &borrowed).await;
    }
    // A list id whose entry is gone, ahead of a good event of the same key: it must not hold
    // the key back for ever.
    let _: () = redis::cmd("RPUSH")
        .arg(slice.key("key:parcels"))
        .arg("1-1")
        .query_async(&mut slice.raw().await)
        .await
        .expect("RPUSH");
    app.send(Ship { parcel: 2 }).await.expect("committed");
    assert_eq!(slice.entries().await, 4);

    let claimed = relay.relay_once(&app).await.expect("a round");
    assert_eq!(claimed, 4, "every entry was claimed");
    assert_eq!(slice.entries().await, 0, "every entry was settled");
    assert_eq!(
        slice.effects().await,
        vec![2],
        "the good entry was published"
    );
    let letters = app.dead_letters().list_dyn(10).await.expect("dead letters");
    let mut names: Vec<&str> = letters.iter().map(|l| l.message.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["", "NoSuchEvent", "Shipped"]);
    assert!(letters.iter().all(|l| l.error.len() > 5), "each says why");
    assert!(
        letters
            .iter()
            .all(|l| l.source.as_deref().is_some_and(|s| s.contains(":stream "))),
        "each names its entry"
    );
    // Nothing left to publish twice; the relay goes on.
    assert_eq!(relay.relay_once(&app).await.expect("a round"), 0);
    let running = relay.start(app.clone()).await.expect("starts");
    app.send(Ship { parcel: 3 }).await.expect("committed");
    eventually("the next event", || async {
        slice.effects().await == vec![2, 3]
    })
    .await;
    assert_eq!(app.dead_letters().count_dyn().await.expect("count"), 3);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_aborted_mid_batch_loses_nothing_and_the_inbox_absorbs_its_duplicates() {
    let Some(slice) = Slice::open("outbox_aborted").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let batch = 25;
    let (app, relay) = app(&slice.stores, &effects, batch, false);
    for parcel in 0..60 {
        app.send(Ship { parcel }).await.expect("committed");
    }
    effects.slow_ms.store(10, Ordering::SeqCst);
    let first = relay.clone().start(app.clone()).await.expect("starts");
    eventually("the first relay is mid-batch", || async {
        effects.runs.load(Ordering::SeqCst) >= 3
    })
    .await;
    first.abort();
    let aborted_after = effects.runs.load(Ordering::SeqCst);
    effects.slow_ms.store(0, Ordering::SeqCst);
    let second = relay.start(app.clone()).await.expect("a new relay starts");
    eventually("every event had its effect", || async {
        distinct(slice.effects().await) == 60
    })
    .await;
    eventually("the outbox emptied", || async {
        slice.entries().await == 0
    })
    .await;
    assert_eq!(
        slice.effects().await.len(),
        60,
        "exactly one effect per event: the inbox absorbed the redelivered ones"
    );
    let runs = effects.runs.load(Ordering::SeqCst) as usize;
    assert!(
        runs <= 60 + batch,
        "at most one batch published twice: {runs} runs (aborted after {aborted_after})"
    );
    second.shutdown().await;
}

/// Set in the child's environment: the key prefix the parent prepared.
const CHILD_PREFIX: &str = "RELAY_CHILD_PREFIX";
const KILL_EVENTS: i64 = 200;
const KILL_BATCH: usize = 40;
const KILL_AT: usize = 50;

/// The child: relays the parent's outbox with a slow handler until it is killed. Does nothing
/// in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_child_process() {
    let Ok(prefix) = std::env::var(CHILD_PREFIX) else {
        return;
    };
    let slice = Slice::at(&common::url(), &prefix).await;
    let effects = Arc::new(Effects::default());
    effects.slow_ms.store(25, Ordering::SeqCst);
    let (app, relay) = app(&slice.stores, &effects, KILL_BATCH, true);
    let _running = relay.start(app).await.expect("the child's relay starts");
    eprintln!("relay child: relaying prefix {}", slice.prefix);
    std::mem::forget(slice); // the parent cleans up
    tokio::time::sleep(Duration::from_secs(300)).await;
    panic!("the relay child was not killed");
}

/// The child process; killed (SIGKILL) and reaped when dropped, also if the test panics.
struct ChildRelay(Child);

impl Drop for ChildRelay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_mid_batch_loses_nothing_and_effects_stay_exact_and_in_order() {
    let Some(slice) = Slice::open("outbox_process_kill").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&slice.stores, &effects, KILL_BATCH, true);
    // Committed with no relay running here: the entries wait for the child.
    for parcel in 0..KILL_EVENTS {
        app.send(Ship { parcel }).await.expect("committed");
    }
    let mut child = ChildRelay(
        Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "relay_child_process", "--nocapture"])
            .env(CHILD_PREFIX, &slice.prefix)
            .env("CATGA_REDIS_URL", &slice.url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run this test binary as the relay child"),
    );
    within(PATIENCE, "the child to be mid-batch", || async {
        slice.effects().await.len() >= KILL_AT
    })
    .await;
    let pid = child.0.id();
    let _ = child.0.kill();
    let _ = child.0.wait();
    let effects_at_kill = slice.effects().await.len();
    let entries_at_kill = slice.entries().await;
    let published_twice = effects_at_kill as i64 + entries_at_kill as i64 - KILL_EVENTS;

    let running = relay
        .start(app.clone())
        .await
        .expect("the parent's relay starts");
    within(
        PATIENCE,
        "every event's effect and an empty outbox",
        || async {
            slice.effects().await.len() >= KILL_EVENTS as usize && slice.entries().await == 0
        },
    )
    .await;
    running.shutdown().await;
    let all = slice.effects().await;
    println!(
        "SIGKILL to the relay child (pid {pid}) with {effects_at_kill} of {KILL_EVENTS} effects and \
         {entries_at_kill} entries left ({published_twice} already handled); the parent ran the handler {} times",
        effects.runs.load(Ordering::SeqCst)
    );
    assert!(
        effects_at_kill < KILL_EVENTS as usize,
        "killed before it finished"
    );
    assert!(
        (0..=KILL_BATCH as i64).contains(&published_twice),
        "at most one batch is delivered again: {published_twice}"
    );
    assert_eq!(
        i64::from(effects.runs.load(Ordering::SeqCst)),
        entries_at_kill as i64 - published_twice,
        "the parent ran the handler once per entry not handled yet; the inbox skipped the rest"
    );
    assert_eq!(
        all,
        (0..KILL_EVENTS).collect::<Vec<_>>(),
        "exactly one effect per event, in commit order across the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_commands_commit_entries_wait_and_everything_flows_when_it_returns() {
    if !common::private_redis::available("outbox broker down") {
        return;
    }
    let Some(slice) = Slice::open("outbox_broker_down").await else {
        return;
    };
    let mut broker = PrivateRedis::start(Persistence::None).await;
    let options = common::Options {
        prefix: Some(slice.prefix.clone()),
        start_from: Some(catga_redis::StartFrom::Beginning),
        ..common::Options::for_tests()
    };
    let transport = common::transport::connect(broker.url(), &options)
        .await
        .expect("the broker answers");
    let effects = Arc::new(Effects::default());
    let outbox = RedisOutbox::new(&slice.stores);
    let relay = outbox
        .relay()
        .poll_interval(Duration::from_millis(50))
        .expect("valid");
    let app = Catga::builder()
        .transport(transport)
        .service("shipping")
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(RedisInbox::new(&slice.stores))
        .layer(outbox)
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    let running = relay.start(app.clone()).await.expect("starts");
    broker.kill();
    for parcel in 0..30 {
        app.send(Ship { parcel })
            .await
            .expect("commits while the broker is down");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slice.entries().await, 30, "the entries wait in the outbox");
    assert_eq!(effects.runs.load(Ordering::SeqCst), 0);
    broker.restart().await;
    eventually("every event handled after the broker returned", || async {
        slice.effects().await.len() == 30
    })
    .await;
    eventually("the outbox emptied", || async {
        slice.entries().await == 0
    })
    .await;
    assert_eq!(distinct(slice.effects().await), 30);
    running.shutdown().await;
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_keeps_committed_entries_and_records_and_handlers_get_store_errors_while_down()
 {
    if !common::private_redis::available("outbox redis restart") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::AppendOnly).await;
    let slice = Slice::at(&server.url(), "restart").await;
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&slice.stores, &effects, 256, false);
    for parcel in 0..20 {
        app.send(Ship { parcel }).await.expect("committed");
    }
    // Handled once before the restart: its inbox record must survive it.
    let handled = Envelope::wrap(&Shipped { parcel: 100 }, &Context::new(), WireFormat::Json)
        .expect("encodes");
    app.dispatch_envelope(&handled).await.expect("handled");
    assert_eq!(slice.entries().await, 20);

    server.kill();
    let error = app
        .send(Ship { parcel: 99 })
        .await
        .expect_err("Redis is down");
    assert!(
        matches!(error.kind(), ErrorKind::Store { .. }),
        "a typed store error: {error:?}"
    );
    assert!(error.is_retryable(), "{error}");
    let error = app
        .dispatch_envelope(&handled)
        .await
        .expect_err("the inbox cannot look");
    let ErrorKind::Publish { failures, .. } = error.kind() else {
        panic!("an event's handlers failed: {error:?}");
    };
    assert!(
        matches!(failures[0].error.kind(), ErrorKind::Store { .. }),
        "the handler's failure is a typed store error: {error:?}"
    );
    assert!(error.is_retryable(), "{error}");

    server.restart().await;
    let running = relay.start(app.clone()).await.expect("starts");
    eventually("every committed event relayed", || async {
        slice.effects().await.len() == 21
    })
    .await;
    eventually("the outbox emptied", || async {
        slice.entries().await == 0
    })
    .await;
    let runs = effects.runs.load(Ordering::SeqCst);
    app.dispatch_envelope(&handled)
        .await
        .expect("a redelivery after the restart");
    assert_eq!(
        effects.runs.load(Ordering::SeqCst),
        runs,
        "skipped: its record survived"
    );
    assert_eq!(distinct(slice.effects().await), 21);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_flush_mid_run_stops_neither_commits_nor_the_relay() {
    if !common::private_redis::available("outbox script flush") {
        return;
    }
    // A server of its own: `SCRIPT FLUSH` would reach every other test's scripts.
    let server = PrivateRedis::start(Persistence::None).await;
    let slice = Slice::at(&server.url(), "flush").await;
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&slice.stores, &effects, 256, false);
    let running = relay.clone().start(app.clone()).await.expect("starts");
    for parcel in 0..20 {
        app.send(Ship { parcel }).await.expect("committed");
    }
    eventually("the first events", || async {
        slice.effects().await.len() == 20
    })
    .await;
    server.script_flush().await;
    for parcel in 20..40 {
        app.send(Ship { parcel })
            .await
            .expect("committed after the flush");
    }
    eventually("the events after the flush", || async {
        slice.effects().await.len() == 40
    })
    .await;
    // The claim round's script too.
    server.script_flush().await;
    let left = relay
        .relay_backlog(&app)
        .await
        .expect("a claim round after the flush");
    assert_eq!(left, 0);
    assert_eq!(distinct(slice.effects().await), 40);
    assert_eq!(slice.entries().await, 0);
    running.shutdown().await;
}

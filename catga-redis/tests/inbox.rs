//! The inbox on a real Redis: a message delivered again, to this instance or another, now or
//! after a restart, at the same time or later, has its effect once; a command's duplicate
//! gets the first reply; a failed first attempt leaves no record, so the retry runs; and a
//! redelivery costs one round trip.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_redis::store::RedisStores;
use catga_redis::{RedisInbox, RedisOutbox, RedisWrites};
use common::round_trips::RoundTrips;
use common::slice::Slice;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposited {
    pub account: i64,
    pub cents: i64,
}

/// An event whose handler writes nothing: its record is written alone.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noticed {
    pub account: i64,
}

#[command(output = i64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdraw {
    pub account: i64,
    pub cents: i64,
}

/// How often handlers ran, and whether the next run fails.
#[derive(Default)]
pub struct Runs {
    runs: AtomicU32,
    fail_next: AtomicU32,
}

#[derive(Debug, thiserror::Error)]
#[error("failed on purpose")]
pub struct Failed;

pub mod ledger {
    use super::*;

    #[handler]
    impl Runs {
        /// The effect: the account's balance and a ledger line, through the unit of work.
        async fn deposited(&self, event: &Deposited) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(
                &writes.key(&format!("balance:{}", event.account)),
                event.cents,
            )?;
            writes.rpush(&writes.key("ledger"), event.cents)?;
            // Long enough for a concurrent duplicate to pass the record check meanwhile.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.fail_next.swap(0, Ordering::SeqCst) == 1 {
                return Err(Failed.into());
            }
            Ok(())
        }

        async fn noticed(&self, _event: &Noticed) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        }

        async fn withdraw(&self, cmd: Withdraw) -> Result<i64, BoxError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(&writes.key(&format!("balance:{}", cmd.account)), -cmd.cents)?;
            writes.rpush(&writes.key("ledger"), -cmd.cents)?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // A reply that differs per run, so a duplicate shows which run it came from.
            Ok(1000 + i64::from(run))
        }
    }
}

/// An instance with the inbox alone.
fn instance(stores: &RedisStores, runs: &Arc<Runs>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(RedisInbox::new(stores))
        .build()
        .expect("builds")
}

/// An instance with the inbox outside the outbox: one unit of work for both.
fn with_outbox(stores: &RedisStores, runs: &Arc<Runs>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(RedisInbox::new(stores))
        .layer(RedisOutbox::new(stores))
        .build()
        .expect("builds")
}

/// An instance with the inbox inside the outbox.
fn outbox_outside(stores: &RedisStores, runs: &Arc<Runs>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(RedisOutbox::new(stores))
        .layer(RedisInbox::new(stores))
        .build()
        .expect("builds")
}

fn envelope<M: Message>(msg: &M) -> Envelope {
    Envelope::wrap(msg, &Context::new(), WireFormat::Json).expect("encodes")
}

async fn ledger_lines(slice: &Slice) -> usize {
    let key = RedisOutbox::new(&slice.stores).key("ledger");
    redis::cmd("LLEN")
        .arg(key)
        .query_async(&mut slice.raw().await)
        .await
        .expect("LLEN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_has_its_effect_once_on_any_instance_and_after_a_restart() {
    let Some(slice) = Slice::open("inbox_redelivered").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let event = envelope(&Deposited {
        account: 1,
        cents: 500,
    });
    let first = instance(&slice.stores, &runs);
    first.dispatch_envelope(&event).await.expect("handled");
    first
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged again");
    let other = with_outbox(&slice.stores, &runs);
    other
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged by another instance");
    drop(first);
    // A restarted process: new stores, a new connection.
    let restarted_stores = slice.connect().await;
    let restarted = outbox_outside(&restarted_stores, &runs);
    restarted
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged after a restart");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger_lines(&slice).await, 1);
}

/// Both copies pass the record check while the handler runs; the commit script of the second
/// finds the record the first wrote and applies nothing. With no writes, the second's
/// `SET NX` loses and it is reported as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_on_two_instances_have_one_effect() {
    let Some(slice) = Slice::open("inbox_concurrent").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let other_stores = slice.connect().await;
    let a = instance(&slice.stores, &runs);
    let b = with_outbox(&other_stores, &runs);
    for n in 0..10 {
        let event = envelope(&Deposited {
            account: n,
            cents: 1,
        });
        let (x, y) = tokio::join!(a.dispatch_envelope(&event), b.dispatch_envelope(&event));
        x.expect("first copy");
        y.expect("second copy");
        let noticed = envelope(&Noticed { account: n });
        let (x, y) = tokio::join!(a.dispatch_envelope(&noticed), b.dispatch_envelope(&noticed));
        x.expect("first copy");
        y.expect("second copy");
    }
    assert_eq!(ledger_lines(&slice).await, 10, "one effect per event");
    let mut raw = slice.raw().await;
    let outbox = RedisOutbox::new(&slice.stores);
    for n in 0..10 {
        let balance: i64 = redis::cmd("GET")
            .arg(outbox.key(&format!("balance:{n}")))
            .query_async(&mut raw)
            .await
            .expect("GET");
        assert_eq!(balance, 1, "account {n}: one deposit");
    }
    // A command's concurrent duplicate gets the first reply.
    let cmd = envelope(&Withdraw {
        account: 99,
        cents: 5,
    });
    let (x, y) = tokio::join!(a.dispatch_envelope(&cmd), b.dispatch_envelope(&cmd));
    let (x, y) = (x.expect("first copy"), y.expect("second copy"));
    assert_eq!(x, y, "both copies answer with the reply that was applied");
    let balance: i64 = redis::cmd("GET")
        .arg(outbox.key("balance:99"))
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(balance, -5, "one withdrawal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_attempt_leaves_no_record_so_the_redelivery_runs() {
    let Some(slice) = Slice::open("inbox_failed_first").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let app = instance(&slice.stores, &runs);
    let event = envelope(&Deposited {
        account: 3,
        cents: 7,
    });
    runs.fail_next.store(1, Ordering::SeqCst);
    app.dispatch_envelope(&event)
        .await
        .expect_err("the first attempt fails");
    assert_eq!(
        ledger_lines(&slice).await,
        0,
        "the failed attempt wrote nothing"
    );
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:outbox}}:inbox:*", slice.prefix))
        .query_async(&mut slice.raw().await)
        .await
        .expect("KEYS");
    assert!(records.is_empty(), "no record: {records:?}");
    app.dispatch_envelope(&event)
        .await
        .expect("the redelivery runs");
    app.dispatch_envelope(&event)
        .await
        .expect("and the next is skipped");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 2);
    assert_eq!(ledger_lines(&slice).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_command_gets_the_first_reply_without_running() {
    let Some(slice) = Slice::open("inbox_command").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let app = with_outbox(&slice.stores, &runs);
    let cmd = envelope(&Withdraw {
        account: 9,
        cents: 40,
    });
    let first = app.dispatch_envelope(&cmd).await.expect("handled");
    let again = instance(&slice.stores, &runs)
        .dispatch_envelope(&cmd)
        .await
        .expect("answered again");
    let inside = outbox_outside(&slice.stores, &runs)
        .dispatch_envelope(&cmd)
        .await
        .expect("answered again");
    assert_eq!(first, Some(b"1000".to_vec()));
    assert_eq!(again, first, "the duplicate gets the first reply");
    assert_eq!(inside, first);
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger_lines(&slice).await, 1);
    // The record expires after the inbox's TTL (7 days by default).
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:outbox}}:inbox:*", slice.prefix))
        .query_async(&mut slice.raw().await)
        .await
        .expect("KEYS");
    assert_eq!(records.len(), 1);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&records[0])
        .query_async(&mut slice.raw().await)
        .await
        .expect("PTTL");
    assert!(
        ttl > 6 * 24 * 3600 * 1000 && ttl <= 7 * 24 * 3600 * 1000,
        "{ttl}"
    );
}

/// Counted at the wire: a redelivery is one `GET`, on an instance with the inbox alone and
/// on one with the outbox; a first delivery with writes is the `GET` and one `EVALSHA`; one
/// without writes the `GET` and one `SET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_skipped_in_one_round_trip() {
    let Some(slice) = Slice::open("inbox_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let counted = slice.connect_at(proxy.url()).await;
    let runs = Arc::new(Runs::default());
    let alone = instance(&counted, &runs);
    let both = with_outbox(&counted, &runs);
    // Loads the commit script before counting.
    alone
        .dispatch_envelope(&envelope(&Deposited {
            account: 0,
            cents: 1,
        }))
        .await
        .expect("handled");

    let event = envelope(&Deposited {
        account: 3,
        cents: 70,
    });
    let cmd = envelope(&Withdraw {
        account: 3,
        cents: 20,
    });
    let quiet = envelope(&Noticed { account: 3 });
    proxy.reset();
    alone.dispatch_envelope(&event).await.expect("handled");
    assert_eq!(proxy.names(), vec!["GET", "EVALSHA"], "first delivery");
    assert_eq!(proxy.round_trips(), 2);
    proxy.reset();
    alone.dispatch_envelope(&quiet).await.expect("handled");
    assert_eq!(
        proxy.names(),
        vec!["GET", "SET"],
        "first delivery, no writes"
    );
    assert_eq!(proxy.round_trips(), 2);
    proxy.reset();
    let first = both.dispatch_envelope(&cmd).await.expect("handled");
    assert_eq!(
        proxy.names(),
        vec!["GET", "EVALSHA"],
        "a command and its unit"
    );
    assert_eq!(proxy.round_trips(), 2);

    for (app_name, redelivered) in [("alone", &event), ("alone", &quiet)] {
        proxy.reset();
        alone
            .dispatch_envelope(redelivered)
            .await
            .expect("acknowledged");
        assert_eq!(proxy.names(), vec!["GET"], "{app_name}: a redelivery");
        assert_eq!(proxy.round_trips(), 1);
    }
    proxy.reset();
    let again = both.dispatch_envelope(&cmd).await.expect("answered");
    assert_eq!(proxy.names(), vec!["GET"], "a redelivered command");
    assert_eq!(proxy.round_trips(), 1);
    assert_eq!(again, first, "with the first reply");
    proxy.reset();
    both.dispatch_envelope(&event).await.expect("acknowledged");
    assert_eq!(proxy.round_trips(), 1, "with the outbox too");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 4);
}

//! The inbox on a real Postgres: a message delivered again, to this instance or another, now
//! or after a restart, at the same time or later, has its effect once; a command's duplicate
//! gets the first reply; a failed first attempt leaves no record, so the retry runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_postgres::{Inbox, Outbox, Tx};
use common::Db;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposited {
    pub account: i64,
    pub cents: i64,
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
        /// The effect: one ledger row per run, written in the dispatch's transaction.
        async fn deposited(&self, event: &Deposited) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO ledger (account, cents) VALUES ($1, $2)")
                .bind(event.account)
                .bind(event.cents)
                .execute(&mut *conn)
                .await?;
            // Long enough for a concurrent duplicate to arrive while this one is open.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if self.fail_next.swap(0, Ordering::SeqCst) == 1 {
                return Err(Failed.into());
            }
            Ok(())
        }

        async fn withdraw(&self, cmd: Withdraw) -> Result<i64, BoxError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO ledger (account, cents) VALUES ($1, $2)")
                .bind(cmd.account)
                .bind(-cmd.cents)
                .execute(&mut *conn)
                .await?;
            // A reply that differs per run, so a duplicate shows which run it came from.
            Ok(1000 + i64::from(run))
        }
    }
}

async fn db(test: &str) -> Option<Db> {
    let db = Db::open(test).await?;
    db.execute("CREATE TABLE {schema}.ledger (account bigint, cents bigint)")
        .await;
    Some(db)
}

/// An instance: its own application on the shared schema, with the inbox alone.
fn instance(db: &Db, runs: &Arc<Runs>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("builds")
}

/// An instance with the inbox outside the outbox: both share one transaction.
fn with_outbox(db: &Db, runs: &Arc<Runs>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(Outbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("builds")
}

fn envelope<M: Message>(msg: &M) -> Envelope {
    Envelope::wrap(msg, &Context::new(), WireFormat::Json).expect("encodes")
}

async fn ledger_rows(db: &Db) -> i64 {
    db.count("SELECT count(*) FROM {schema}.ledger").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_has_its_effect_once_on_any_instance_and_after_a_restart() {
    let Some(db) = db("inbox_redelivered").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let event = envelope(&Deposited {
        account: 1,
        cents: 500,
    });
    let first = instance(&db, &runs);
    first.dispatch_envelope(&event).await.expect("handled");
    first
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged again");
    let other = with_outbox(&db, &runs);
    other
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged by another instance");
    drop(first);
    let restarted = instance(&db, &runs);
    restarted
        .dispatch_envelope(&event)
        .await
        .expect("acknowledged after a restart");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger_rows(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_on_two_instances_have_one_effect() {
    let Some(db) = db("inbox_concurrent").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let a = instance(&db, &runs);
    let b = with_outbox(&db, &runs);
    for n in 0..10 {
        let event = envelope(&Deposited {
            account: n,
            cents: 1,
        });
        let (x, y) = tokio::join!(a.dispatch_envelope(&event), b.dispatch_envelope(&event));
        x.expect("first copy");
        y.expect("second copy");
    }
    assert_eq!(runs.runs.load(Ordering::SeqCst), 10);
    assert_eq!(ledger_rows(&db).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_attempt_leaves_no_record_so_the_redelivery_runs() {
    let Some(db) = db("inbox_failed_first").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let app = instance(&db, &runs);
    let event = envelope(&Deposited {
        account: 3,
        cents: 7,
    });
    runs.fail_next.store(1, Ordering::SeqCst);
    app.dispatch_envelope(&event)
        .await
        .expect_err("the first attempt fails");
    assert_eq!(
        ledger_rows(&db).await,
        0,
        "the failed attempt's row rolled back"
    );
    assert_eq!(db.count("SELECT count(*) FROM {schema}.inbox").await, 0);
    app.dispatch_envelope(&event)
        .await
        .expect("the redelivery runs");
    app.dispatch_envelope(&event)
        .await
        .expect("and the next is skipped");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 2);
    assert_eq!(ledger_rows(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_command_gets_the_first_reply_without_running() {
    let Some(db) = db("inbox_command").await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let app = with_outbox(&db, &runs);
    let cmd = envelope(&Withdraw {
        account: 9,
        cents: 40,
    });
    let first = app.dispatch_envelope(&cmd).await.expect("handled");
    let again = instance(&db, &runs)
        .dispatch_envelope(&cmd)
        .await
        .expect("answered again");
    assert_eq!(first, Some(b"1000".to_vec()));
    assert_eq!(again, first, "the duplicate gets the first reply");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger_rows(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_skipped_in_one_round_trip() {
    let Some(db) = db("inbox_round_trips").await else {
        return;
    };
    // The instance talks to Postgres through a proxy that counts round trips, on one
    // connection, so the statements it prepared for the first delivery are reused.
    let proxy = common::round_trips::RoundTrips::start(&common::url()).await;
    let pool = common::with_search_path(
        sqlx::postgres::PgPoolOptions::new().max_connections(1),
        &db.schema,
    )
    .connect(proxy.url())
    .await
    .expect("connects through the proxy");
    let runs = Arc::new(Runs::default());
    let app = Catga::builder()
        .state_arc(Arc::clone(&runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(Inbox::new(pool.clone(), &db.schema))
        .build()
        .expect("builds");
    let event = envelope(&Deposited {
        account: 3,
        cents: 70,
    });
    let cmd = envelope(&Withdraw {
        account: 3,
        cents: 20,
    });
    app.dispatch_envelope(&event).await.expect("handled");
    let first = app.dispatch_envelope(&cmd).await.expect("handled");
    let handled = proxy.take();
    assert!(
        handled >= 3,
        "the first deliveries were seen by the proxy ({handled})"
    );

    app.dispatch_envelope(&event).await.expect("acknowledged");
    assert_eq!(proxy.take(), 1, "a redelivered event: one round trip");
    let again = app.dispatch_envelope(&cmd).await.expect("answered");
    assert_eq!(proxy.take(), 1, "a redelivered command: one round trip");
    assert_eq!(again, first, "with the first reply");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 2);
}

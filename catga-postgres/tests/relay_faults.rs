//! The relay when things go wrong: rows that can never be published are dead-lettered once and
//! the relay goes on; a relay killed mid-batch loses nothing (its duplicates are absorbed by
//! the inbox: exactly one effect each); a broker that is down lets commands commit at their
//! usual pace, and everything flows once it is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::{BrokerOutage, eventually};
use catga_postgres::{Inbox, Outbox, Tx};
use common::Db;

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
        /// One row per effect, in the transaction the inbox opened.
        async fn shipped(&self, event: &Shipped) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let slow = self.slow_ms.load(Ordering::SeqCst);
            if slow > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(slow))).await;
            }
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO effects (parcel) VALUES ($1)")
                .bind(event.parcel)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    }
}

async fn db(test: &str) -> Option<Db> {
    let db = Db::open(test).await?;
    db.execute("CREATE TABLE {schema}.effects (parcel bigint)")
        .await;
    Some(db)
}

fn app(db: &Db, effects: &Arc<Effects>) -> (Catga<impl Layer>, catga_postgres::OutboxRelay) {
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox.relay();
    let app = Catga::builder()
        .state_arc(Arc::clone(effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(outbox)
        .build()
        .expect("builds");
    (app, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_can_never_be_published_are_dead_lettered_once_and_the_relay_goes_on() {
    let Some(db) = db("relay_malformed").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&db, &effects);
    // Three bad rows and a good one, as another program (or a bug) might have written them.
    db.execute(
        "INSERT INTO {schema}.outbox (message_id, ordering_key, name, kind, correlation_id, timestamp_ms, format, payload, headers) VALUES \
         (gen_random_uuid(), 'a', 'NoSuchEvent', 'event', gen_random_uuid(), 0, 'application/json', '{}'::bytea, '[]'), \
         (gen_random_uuid(), 'b', 'Shipped', 'event', gen_random_uuid(), 0, 'application/json', 'not json'::bytea, '[]'), \
         (gen_random_uuid(), 'c', 'Shipped', 'event', gen_random_uuid(), 0, 'text/x-unknown', '{}'::bytea, '[]'), \
         (gen_random_uuid(), 'd', 'Shipped', 'event', gen_random_uuid(), 0, 'application/json', '{\"parcel\": 4}'::bytea, '[]')",
    )
    .await;
    let done = relay.relay_once(&app).await.expect("a round");
    assert_eq!(done, 4);
    assert_eq!(db.outbox_rows().await, 0, "every row was settled");
    assert_eq!(
        effects.runs.load(Ordering::SeqCst),
        1,
        "the good row was published"
    );
    let letters = app.dead_letters().list_dyn(10).await.expect("dead letters");
    let mut names: Vec<&str> = letters.iter().map(|l| l.message.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["NoSuchEvent", "Shipped", "Shipped"]);
    assert!(letters.iter().all(|l| l.error.len() > 5), "each says why");
    // Nothing left to publish twice.
    assert_eq!(relay.relay_once(&app).await.expect("a round"), 0);
    assert_eq!(app.dead_letters().count_dyn().await.expect("count"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_loses_nothing_and_the_inbox_absorbs_its_duplicates() {
    let Some(db) = db("relay_killed").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let (app, relay) = app(&db, &effects);
    for parcel in 0..60 {
        app.send(Ship { parcel }).await.expect("committed");
    }
    effects.slow_ms.store(10, Ordering::SeqCst);
    let batch = 25;
    let relay = relay.batch(batch).expect("valid");
    let first = relay.clone().start(app.clone()).await.expect("starts");
    eventually("the first relay is mid-batch", || async {
        effects.runs.load(Ordering::SeqCst) >= 3
    })
    .await;
    first.abort();
    let killed_after = effects.runs.load(Ordering::SeqCst);
    effects.slow_ms.store(0, Ordering::SeqCst);
    let second = relay.start(app.clone()).await.expect("a new relay starts");
    eventually("every event had its effect", || async {
        db.count("SELECT count(DISTINCT parcel) FROM {schema}.effects")
            .await
            == 60
    })
    .await;
    eventually("the outbox emptied", || async {
        db.outbox_rows().await == 0
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM {schema}.effects").await,
        60,
        "exactly one effect per event: the inbox absorbed the redelivered ones"
    );
    let runs = effects.runs.load(Ordering::SeqCst);
    assert!(
        runs as usize <= 60 + batch,
        "at most one batch published twice: {runs} runs (killed after {killed_after})"
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_commands_commit_rows_wait_and_everything_flows_when_it_returns() {
    let Some(db) = db("relay_broker_down").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let down = Arc::new(AtomicBool::new(true));
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox
        .relay()
        .poll_interval(Duration::from_millis(50))
        .expect("valid");
    let app = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .transport(BrokerOutage::new(Arc::clone(&down)))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(outbox)
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    let running = relay.start(app.clone()).await.expect("starts");
    for parcel in 0..30 {
        app.send(Ship { parcel })
            .await
            .expect("commits while the broker is down");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.outbox_rows().await, 30, "rows wait in the outbox");
    assert_eq!(effects.runs.load(Ordering::SeqCst), 0);
    assert!(
        db.count(
            "SELECT count(*) FROM {schema}.outbox WHERE attempts > 0 AND last_error IS NOT NULL"
        )
        .await
            >= 1,
        "the failure is noted on the row for an operator"
    );
    down.store(false, Ordering::SeqCst);
    eventually("every event handled after the broker returned", || async {
        db.count("SELECT count(*) FROM {schema}.effects").await == 30
    })
    .await;
    eventually("the outbox emptied", || async {
        db.outbox_rows().await == 0
    })
    .await;
    running.shutdown().await;
    serving.shutdown().await;
}

//! The transactional outbox on a real Postgres: a handler's rows and events commit together or
//! not at all, and the relay publishes every committed event, in order per conversation,
//! exactly once when nothing crashes, and keeps what can never be published.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_postgres::{Outbox, Tx};
use common::Db;

#[command(output = i64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub id: i64,
    /// Events to publish, numbered 0..events.
    pub events: u32,
    pub fail: bool,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order: i64,
    pub seq: u32,
}

/// What the event handler saw: per order, the sequence numbers in arrival order.
#[derive(Default)]
pub struct Seen {
    by_order: Mutex<HashMap<i64, Vec<u32>>>,
}

impl Seen {
    fn total(&self) -> usize {
        self.by_order
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the handler failed on purpose")]
pub struct Failed;

pub mod orders {
    use super::*;

    /// Writes the order row through the dispatch's transaction and publishes its events.
    #[handler]
    pub async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<i64, BoxError> {
        let tx = Tx::current()?;
        {
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                .bind(cmd.id)
                .execute(&mut *conn)
                .await?;
        }
        for seq in 0..cmd.events {
            ctx.publish(OrderEvent { order: cmd.id, seq })?;
        }
        if cmd.fail {
            return Err(Failed.into());
        }
        Ok(cmd.id)
    }

    #[handler]
    impl Seen {
        async fn on_event(&self, event: &OrderEvent) -> Result<(), Failed> {
            if let Ok(mut seen) = self.by_order.lock() {
                seen.entry(event.order).or_default().push(event.seq);
            }
            Ok(())
        }
    }
}

/// A database with the test's business table, beside the outbox, on the search path of
/// every connection, as an application's own tables are.
async fn db(test: &str) -> Option<Db> {
    let db = Db::open(test).await?;
    db.execute("CREATE TABLE {schema}.orders (id bigint PRIMARY KEY)")
        .await;
    Some(db)
}

fn app(db: &Db, seen: &Arc<Seen>) -> (Catga<impl Layer>, catga_postgres::OutboxRelay) {
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox.relay();
    let app = Catga::builder()
        .state_arc(Arc::clone(seen))
        .handlers(|h| h.is_in("orders"))
        .layer(outbox)
        .build()
        .expect("the application builds");
    (app, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_leaves_no_row_and_no_event() {
    let Some(db) = db("outbox_failing").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, _relay) = app(&db, &seen);
    let error = app
        .send(PlaceOrder {
            id: 1,
            events: 3,
            fail: true,
        })
        .await
        .expect_err("the handler fails");
    assert!(error.to_string().contains("failed on purpose"), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM {schema}.orders").await, 0);
    assert_eq!(db.outbox_rows().await, 0);
    assert_eq!(seen.total(), 0, "no event of a failed command is published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_command_stores_its_row_and_its_events_together() {
    let Some(db) = db("outbox_commit").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, _relay) = app(&db, &seen);
    let id = app
        .send(PlaceOrder {
            id: 7,
            events: 2,
            fail: false,
        })
        .await
        .expect("the command succeeds");
    assert_eq!(id, 7);
    assert_eq!(db.count("SELECT count(*) FROM {schema}.orders").await, 1);
    // No relay runs: the events wait in the outbox, and were not published by the app.
    assert_eq!(db.outbox_rows().await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM {schema}.outbox WHERE name = 'OrderEvent' AND kind = 'event' AND format = 'application/json'").await,
        2
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(seen.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_every_event_once_in_order_and_empties_the_outbox() {
    let Some(db) = db("outbox_relay").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, relay) = app(&db, &seen);
    let running = relay.start(app.clone()).await.expect("the relay starts");
    for id in 0..20 {
        app.send(PlaceOrder {
            id,
            events: 5,
            fail: false,
        })
        .await
        .expect("the command succeeds");
    }
    eventually("100 events handled", || async { seen.total() == 100 }).await;
    eventually("the outbox emptied", || async {
        db.outbox_rows().await == 0
    })
    .await;
    let by_order = seen.by_order.lock().expect("lock").clone();
    for (order, seqs) in by_order {
        assert_eq!(
            seqs,
            vec![0, 1, 2, 3, 4],
            "order {order}: published in commit order, once"
        );
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_the_rows_without_publishing_one_twice() {
    let Some(db) = db("outbox_two_relays").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, relay) = app(&db, &seen);
    // Commit everything first, then let both relays race over the backlog.
    for id in 0..100 {
        app.send(PlaceOrder {
            id,
            events: 4,
            fail: false,
        })
        .await
        .expect("the command succeeds");
    }
    assert_eq!(db.outbox_rows().await, 400);
    let small = relay.clone().batch(7).expect("a valid batch");
    let first = small
        .clone()
        .start(app.clone())
        .await
        .expect("relay 1 starts");
    let second = small.start(app.clone()).await.expect("relay 2 starts");
    eventually("400 events handled", || async { seen.total() >= 400 }).await;
    eventually("the outbox emptied", || async {
        db.outbox_rows().await == 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(seen.total(), 400, "no row published twice");
    for (order, seqs) in seen.by_order.lock().expect("lock").iter() {
        assert_eq!(
            seqs,
            &vec![0, 1, 2, 3],
            "order {order}: in order across two relays"
        );
    }
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrating_is_idempotent_and_concurrent_migrations_do_not_fail() {
    let Some(db) = db("outbox_migrate").await else {
        return;
    };
    let fresh = catga_postgres::Schema::new(format!("{}_m", db.schema)).expect("valid");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = db.pool.clone();
            let schema = fresh.clone();
            tokio::spawn(async move { catga_postgres::migrate(&pool, &schema).await })
        })
        .collect();
    for run in runs {
        run.await
            .expect("joined")
            .expect("a concurrent migration succeeds");
    }
    catga_postgres::migrate(&db.pool, &fresh)
        .await
        .expect("migrating again does nothing");
    let tables = db
        .count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{fresh}' AND table_name IN ('outbox', 'inbox', '_sqlx_migrations')"
        ))
        .await;
    assert_eq!(tables, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '_sqlx_migrations'").await,
        0,
        "nothing is written outside the schema"
    );
    db.execute(&format!("DROP SCHEMA {fresh} CASCADE")).await;
}

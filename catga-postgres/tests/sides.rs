//! `Idempotency` (on the Postgres store), `Inbox` and `Outbox` layered into both a calling
//! and a serving application, one database for both, a real transport (Redis Streams)
//! between them: the caller passes the command it sends through all three, so the serving
//! side's inbox claim is not left waiting on a row the caller locked until its reply came.
//! The command is answered at once, takes effect once, and a repeat with its message id is
//! answered from the serving side's record.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_postgres::{Inbox, Outbox, PostgresIdempotencyStore, Tx};
use common::Db;
use common::redis_corner::RedisCorner;
use uuid::Uuid;

#[command(output = i64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub cents: i64,
}

/// How often the handler ran.
#[derive(Default)]
pub struct Runs(AtomicU32);

pub mod ledger {
    use super::*;

    #[handler]
    impl Runs {
        /// The effect: one row, in the transaction the inbox opened.
        async fn deposit(&self, cmd: Deposit) -> Result<i64, BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO deposits (cents) VALUES ($1)")
                .bind(cmd.cents)
                .execute(&mut *conn)
                .await?;
            Ok(cmd.cents)
        }
    }
}

/// Far shorter than a caller's default wait: a caller left waiting fails with a timeout.
const DEADLINE: Duration = Duration::from_secs(5);

fn app(db: &Db, transport: catga_redis::RedisTransport, serves: bool) -> Catga<impl Layer> {
    let runs = Arc::new(Runs::default());
    Catga::builder()
        .state_arc(runs)
        .transport(transport)
        .service(if serves { "ledger" } else { "front" })
        .handlers(move |h| serves && h.is_in("ledger"))
        .layer(Idempotency::new(PostgresIdempotencyStore::new(
            db.pool.clone(),
            &db.schema,
        )))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(Outbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_layers_on_both_sides_answer_at_once_and_take_effect_once() {
    const TEST: &str = "sides";
    let Some(corner) = RedisCorner::open(TEST).await else {
        return;
    };
    let Some(db) = Db::open(TEST).await else {
        return;
    };
    db.execute("CREATE TABLE {schema}.deposits (id bigserial PRIMARY KEY, cents bigint NOT NULL)")
        .await;
    let server = app(&db, corner.transport().await, true);
    let serving = server.serve().await.expect("serves");
    let front = app(&db, corner.transport().await, false);

    let id = Uuid::now_v7();
    let send = || {
        let ctx = Context::new().with_message_id(id).with_timeout(DEADLINE);
        front.send_with(Deposit { cents: 25 }, ctx)
    };
    assert_eq!(send().await.expect("answered, not left waiting"), 25);
    assert_eq!(send().await.expect("the repeat is answered"), 25);
    let rows = db.count("SELECT count(*) FROM {schema}.deposits").await;
    assert_eq!(rows, 1, "one effect for two sends of one message");
    serving.shutdown().await;
}

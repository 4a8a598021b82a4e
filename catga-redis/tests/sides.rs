//! `Idempotency` (on the Redis store), `RedisInbox` and `RedisOutbox` layered into both a
//! calling and a serving application on one Redis: the caller passes the command it sends
//! through all three, so the serving side's idempotency claim is not left waiting for the
//! caller's claim of the same key (which waited for the reply). The command is answered at
//! once, its writes are applied once, and a repeat with its message id is answered from the
//! serving side's record.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_redis::store::RedisStores;
use catga_redis::{RedisInbox, RedisOutbox, RedisTransport, RedisWrites};
use common::Options;
use common::slice::Slice;
use uuid::Uuid;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub cents: u64,
}

/// How often the handler ran.
#[derive(Default)]
pub struct Runs(AtomicU32);

pub mod ledger {
    use super::*;

    #[handler]
    impl Runs {
        /// The effect: a counter, applied with the unit of work.
        async fn deposit(&self, cmd: Deposit) -> Result<u64, BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(&writes.key("balance"), i64::try_from(cmd.cents)?)?;
            Ok(cmd.cents)
        }
    }
}

/// Far shorter than a caller's default wait: a caller left waiting fails with a timeout.
const DEADLINE: Duration = Duration::from_secs(5);

fn app(transport: RedisTransport, runs: &Arc<Runs>, serves: bool) -> Catga<impl Layer> {
    let stores = RedisStores::sharing(&transport);
    Catga::builder()
        .state_arc(Arc::clone(runs))
        .transport(transport)
        .service(if serves { "ledger" } else { "front" })
        .handlers(move |h| serves && h.is_in("ledger"))
        .layer(Idempotency::new(stores.idempotency()))
        .layer(RedisInbox::new(&stores))
        .layer(RedisOutbox::new(&stores))
        .build()
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_layers_on_both_sides_answer_at_once_and_apply_once() {
    let Some(slice) = Slice::open("sides").await else {
        return;
    };
    let options = Options {
        prefix: Some(slice.prefix.clone()),
        ..Options::for_tests()
    };
    let connect = || async {
        common::transport::connect(slice.url.clone(), &options)
            .await
            .expect("connects")
    };
    let runs = Arc::new(Runs::default());
    let server = app(connect().await, &runs, true);
    let serving = server.serve().await.expect("serves");
    let front = app(connect().await, &runs, false);

    let id = Uuid::now_v7();
    let send = || {
        let ctx = Context::new().with_message_id(id).with_timeout(DEADLINE);
        front.send_with(Deposit { cents: 25 }, ctx)
    };
    assert_eq!(send().await.expect("answered, not left waiting"), 25);
    assert_eq!(send().await.expect("the repeat is answered"), 25);
    assert_eq!(runs.0.load(Ordering::SeqCst), 1, "handled once");
    let mut raw = slice.raw().await;
    let balance: Option<i64> = redis::cmd("GET")
        .arg(format!("{{{}:outbox}}:balance", slice.prefix))
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(balance, Some(25), "applied once");
    serving.shutdown().await;
}

//! The store behind the `Idempotency` behaviour: two applications on one prefix, and one
//! whose server restarts with and without its data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::Idempotency;
use catga_core::prelude::*;
use catga_redis::store::RedisIdempotencyStore;
use uuid::Uuid;

use super::common::private_redis::{self, Persistence, PrivateRedis};
use super::{RESPONSE_TIMEOUT, Slice};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

/// How often `charge` ran.
#[derive(Default)]
pub struct Runs(AtomicU32);

#[handler]
impl Runs {
    async fn charge(&self, cmd: Charge) -> Result<u64, std::convert::Infallible> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(cmd.cents + 1000)
    }
}

fn app(store: RedisIdempotencyStore, runs: &Arc<Runs>) -> Catga<impl catga_core::pipeline::Layer> {
    Catga::builder()
        .state_arc(runs.clone())
        .layer(Idempotency::new(store).lease(Duration::from_secs(30)))
        .build()
        .expect("the app builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_on_one_prefix_run_a_command_once() {
    let Some(slice) = Slice::open_within("idem_two_apps", RESPONSE_TIMEOUT).await else {
        return;
    };
    let runs = Arc::new(Runs::default());
    let first = app(slice.idempotency().await, &runs);
    let second = app(slice.idempotency().await, &runs);
    let id = Uuid::now_v7();
    let ctx = || Context::new().with_message_id(id);
    let (a, b) = tokio::join!(
        first.send_with(Charge { cents: 7 }, ctx()),
        second.send_with(Charge { cents: 7 }, ctx())
    );
    assert_eq!((a.expect("first"), b.expect("second")), (1007, 1007));
    assert_eq!(
        runs.0.load(Ordering::SeqCst),
        1,
        "the duplicate waited for the reply"
    );
    let again = second.send_with(Charge { cents: 7 }, ctx()).await;
    assert_eq!(again.expect("a redelivery"), 1007);
    assert_eq!(runs.0.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_forgets_replies_so_a_redelivery_runs_again() {
    if !private_redis::available("idem_restart_without_data") {
        return;
    }
    for persistence in [Persistence::None, Persistence::AppendOnly] {
        let mut server = PrivateRedis::start(persistence).await;
        let slice = Slice::at_within(&server.url(), "idem_restart", RESPONSE_TIMEOUT).await;
        let runs = Arc::new(Runs::default());
        let app = app(slice.idempotency().await, &runs);
        let id = Uuid::now_v7();
        let send = || app.send_with(Charge { cents: 7 }, Context::new().with_message_id(id));
        assert_eq!(send().await.expect("first delivery"), 1007);
        assert_eq!(send().await.expect("a redelivery"), 1007);
        assert_eq!(runs.0.load(Ordering::SeqCst), 1);

        server.kill();
        server.restart().await;
        let redelivered = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match send().await {
                    Ok(reply) => return reply,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("the application works again after the restart");
        assert_eq!(redelivered, 1007);
        let expected = match persistence {
            // Nothing was kept: the record is gone, the handler runs again.
            Persistence::None => 2,
            // The append-only file (fsync always) kept the reply.
            Persistence::AppendOnly => 1,
        };
        assert_eq!(runs.0.load(Ordering::SeqCst), expected, "{persistence:?}");
    }
}

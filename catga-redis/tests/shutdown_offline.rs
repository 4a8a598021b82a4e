//! A shutdown while the server is gone: `Serving::shutdown()` stops taking messages, lets the
//! handlers in flight finish and returns, without waiting for the server to come back (what
//! it could not acknowledge stays pending and is claimed after `ack_wait`). A private
//! `redis-server` is killed under a serving instance with a handler in flight; the shutdown
//! must return. The 60 s guard only tells a hang from a slow return.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_redis::StartFrom;
use common::Options;
use common::private_redis::{Persistence, PrivateRedis};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow;

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Double {
    pub n: u32,
}

/// Handlers of `Slow` that started.
static STARTED: AtomicU32 = AtomicU32::new(0);

pub mod slow {
    use super::*;

    #[handler]
    async fn on_slow(_event: &Slow) -> Result<(), Infallible> {
        STARTED.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    #[handler]
    async fn double(cmd: Double) -> Result<u32, Infallible> {
        Ok(cmd.n * 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_server_is_gone_returns_with_a_handler_in_flight() {
    if !common::private_redis::available("the offline shutdown test") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::None).await;
    let options = Options {
        prefix: Some("offline".to_string()),
        start_from: Some(StartFrom::Beginning),
        fetch_wait: Some(Duration::from_millis(200)),
        response_timeout: Some(Duration::from_secs(1)),
        ..Options::default()
    };
    let transport = common::transport::connect(&server.url(), &options)
        .await
        .expect("the private server is up");
    let app = Catga::builder()
        .transport(transport)
        .service("slow")
        .handlers(|h| h.is_in("slow"))
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    assert_eq!(app.send(Double { n: 21 }).await.expect("answered"), 42);
    app.publish(Slow).await.expect("published");
    catga_core::testkit::eventually("the slow handler started", || async {
        STARTED.load(Ordering::SeqCst) == 1
    })
    .await;

    // Gone while the handler runs: its acknowledgement cannot be sent.
    server.kill();
    tokio::time::timeout(Duration::from_secs(60), serving.shutdown())
        .await
        .expect("the shutdown returned without the server");
}

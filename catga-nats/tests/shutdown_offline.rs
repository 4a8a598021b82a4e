//! A shutdown while the server is gone: `Serving::shutdown()` stops taking messages, lets the
//! handlers in flight finish and returns, without waiting for the server to come back (what it
//! could not acknowledge is redelivered by the server, after `ack_wait`). A private
//! `nats-server` is killed under a serving instance; the shutdown must return. The 60 s guard
//! only tells a hang from a slow return; the bound itself is the transport's
//! `response_timeout` per step.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use catga_core::prelude::*;
use common::Options;
use common::server::{PrivateServer, binary_or_skip};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick;

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Double {
    pub n: u32,
}

pub mod ticks {
    use super::*;

    #[handler]
    async fn on_tick(_event: &Tick) -> Result<(), Infallible> {
        Ok(())
    }

    #[handler]
    async fn double(cmd: Double) -> Result<u32, Infallible> {
        Ok(cmd.n * 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_server_is_gone_returns() {
    let Some(binary) = binary_or_skip("shutdown_offline") else {
        return;
    };
    let mut server = PrivateServer::start(&binary, "catga-nats-shutdown-offline-").await;
    let options = Options {
        response_timeout: Some(Duration::from_secs(2)),
        ..Options::for_tests()
    };
    let transport = common::transport::connect(server.url(), &options)
        .await
        .expect("the private server is up");
    let app = Catga::builder()
        .transport(transport)
        .service("ticks")
        .serve_max_in_flight(8)
        .handlers(|h| h.is_in("ticks"))
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    app.publish(Tick).await.expect("published");
    assert_eq!(app.send(Double { n: 21 }).await.expect("answered"), 42);

    server.kill();
    // The client notices the connection is gone before the shutdown starts.
    catga_core::testkit::eventually("the transport reports the server gone", || async {
        !app.health().ready
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), serving.shutdown())
        .await
        .expect("the shutdown returned without the server");
}

//! Readiness on NATS: `Catga::health()` reports the client's connection state (kept by the
//! client, no I/O) and the consumers `serve()` started. A private `nats-server` is killed and
//! started again: the report turns down while it is gone and up once the client reconnected,
//! and answering it never waits on the dead server.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use common::Options;
use common::server::{PrivateServer, binary_or_skip};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pinged;

pub mod pings {
    use super::*;

    #[handler]
    async fn on_ping(_event: &Pinged) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Waits (the testkit's patience) until `app.health().ready` is `want`; the report then.
async fn until_ready(app: &Catga, want: bool) -> catga_core::health::HealthReport {
    let what = if want { "ready" } else { "not ready" };
    catga_core::testkit::eventually(what, || async { app.health().ready == want }).await;
    app.health()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_follows_the_server_down_and_back_without_waiting_on_it() {
    let Some(binary) = binary_or_skip("health") else {
        return;
    };
    let mut server = PrivateServer::start(&binary, "catga-nats-health-").await;
    let transport = common::transport::connect(server.url(), &Options::for_tests())
        .await
        .expect("the private server is up");
    let app = Catga::builder()
        .transport(transport)
        .service("pings")
        .handlers(|h| h.is_in("pings"))
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    let report = until_ready(&app, true).await;
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(names, ["transport", "consumers"]);

    server.kill();
    let report = until_ready(&app, false).await;
    let failing: Vec<_> = report.failing().map(|c| c.name.as_ref()).collect();
    assert_eq!(failing, ["transport"], "{report}");
    // Answered from memory while the server is gone: a thousand reports, no I/O.
    for _ in 0..1000 {
        assert!(!app.health().ready);
    }

    server.restart().await;
    until_ready(&app, true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = app.publish(Pinged).await {
        assert!(error.is_retryable(), "{error}");
        assert!(Instant::now() < deadline, "{error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving.shutdown().await;
    let report = app.health();
    assert_eq!(
        report
            .failing()
            .map(|c| c.name.as_ref())
            .collect::<Vec<_>>(),
        ["consumers"]
    );
}

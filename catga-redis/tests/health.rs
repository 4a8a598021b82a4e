//! Readiness on Redis: `Catga::health()` reports the transport's connection from what its
//! reads and publishes last saw, and the consumers `serve()` started. A private
//! `redis-server` is killed and started again: the report turns down while it is gone and up
//! once it is back, and answering it never waits on the dead server.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use catga_redis::StartFrom;
use common::Options;
use common::private_redis::{Persistence, PrivateRedis};

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
    if !common::private_redis::available("the health test") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::AppendOnly).await;
    let options = Options {
        prefix: Some("health".to_string()),
        start_from: Some(StartFrom::Beginning),
        fetch_wait: Some(Duration::from_millis(200)),
        response_timeout: Some(Duration::from_millis(500)),
        ..Options::default()
    };
    let transport = common::transport::connect(&server.url(), &options)
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
    assert!(
        report.to_string().contains("no connection to Redis"),
        "{report}"
    );
    // Answered from memory while the server is gone: a thousand reports, no I/O.
    for _ in 0..1000 {
        assert!(!app.health().ready);
    }

    server.restart().await;
    until_ready(&app, true).await;
    // The publishing connection finds out it was cut at its first command (a retryable
    // error), and reconnects.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = app.publish(Pinged).await {
        assert!(error.is_retryable(), "{error}");
        assert!(Instant::now() < deadline, "{error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.health().ready, "{}", app.health());
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

//! `Catga::health`: liveness always, readiness from named checks read from memory: added
//! checks, the consumers `serve()` started (down once shut down), a leader election, and the
//! transport's own report; the report says which checks fail and why.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use catga_core::cluster::Leadership;
use catga_core::health::{CheckStatus, Flag};
use catga_core::prelude::*;
use catga_core::store::lease::LeaseStore;
use catga_core::store::memory_lease::MemoryLeaseStore;
use catga_core::transport::MemoryTransport;

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

#[tokio::test]
async fn an_application_without_checks_is_live_and_ready() {
    let app = Catga::builder().build().unwrap();
    let report = app.health();
    assert!(report.live && report.ready);
    assert!(report.checks.is_empty());
    assert_eq!(report.to_string(), "ready");
}

#[tokio::test]
async fn a_failing_check_makes_it_not_ready_and_says_why() {
    let app = Catga::builder().build().unwrap();
    let cache = Flag::new("cache warming");
    app.add_health_check("cache", cache.clone());
    app.add_health_check("db", || CheckStatus::down("pool exhausted"));
    let report = app.health();
    assert!(report.live, "liveness does not depend on checks");
    assert!(!report.ready);
    assert_eq!(
        report.to_string(),
        "not ready: cache (cache warming), db (pool exhausted)"
    );
    cache.set_up();
    app.add_health_check("db", || CheckStatus::Up);
    let report = app.health();
    assert!(report.ready, "{report}");
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(
        names,
        ["cache", "db"],
        "replaced in place, in the order added"
    );
}

#[tokio::test]
async fn consumers_are_up_while_served_and_down_once_shut_down() {
    let app = Catga::builder()
        .transport(MemoryTransport::new())
        .service("pings")
        .handlers(|h| h.is_in("pings"))
        .build()
        .unwrap();
    assert!(app.health().ready, "nothing to report before serving");
    let serving = app.serve().await.unwrap();
    let report = app.health();
    assert!(report.ready, "{report}");
    assert_eq!(report.checks[0].name, "consumers");
    serving.shutdown().await;
    let report = app.health();
    assert!(!report.ready);
    assert!(
        report
            .to_string()
            .starts_with("not ready: consumers (not serving")
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_election_is_ready_while_a_leader_is_known() {
    let app = Catga::builder().build().unwrap();
    let leases = Arc::new(MemoryLeaseStore::new());
    // Another instance leads.
    let other = leases
        .acquire("scheduler", "other", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("vacant");
    let election = Leadership::sharing(Arc::clone(&leases), "scheduler").start();
    app.add_health_check("leader:scheduler", election.health_check());
    assert!(!app.health().ready, "no attempt yet: no leader known");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        app.health().ready,
        "another instance leads: {}",
        app.health()
    );
    assert!(leases.release(&other).await.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(election.leader().is_some(), "this one leads now");
    assert!(app.health().ready);
    election.stop().await;
    assert_eq!(
        app.health().to_string(),
        "not ready: leader:scheduler (the election stopped)"
    );
}

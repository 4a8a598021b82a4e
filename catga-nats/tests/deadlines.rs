//! An event is a fact, not a request: a publisher's deadline bounds the publisher, not the
//! subscribers (rel_r4 on NATS, the scenario every keeping transport runs:
//! catga-core's `tests/remote_scenarios`).

mod common;
#[path = "../../catga-core/tests/remote_scenarios/mod.rs"]
mod remote_scenarios;

use common::Corner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outlive_their_publishers_deadline() {
    let Some(corner) = Corner::new("events_outlive_their_publishers_deadline").await else {
        return;
    };
    remote_scenarios::events_outlive_their_publishers_deadline(|| corner.connect()).await;
}

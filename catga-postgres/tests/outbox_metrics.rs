//! The outbox's backlog gauges: a relay that cannot publish (the broker is down) reports
//! every committed row and an oldest age above zero; once the broker is back and the relay
//! drained the outbox, it reports 0 and 0.
//!
//! One test per binary: the recorder is installed globally, and a snapshot resets what it read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::{BrokerOutage, eventually, fresh_gauges, install_gauge_recorder};
use catga_postgres::outbox::{OUTBOX_OLDEST_AGE, OUTBOX_PENDING};
use catga_postgres::{Inbox, Outbox};
use common::Db;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub parcel: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: i64,
}

#[derive(Default)]
pub struct Effects {
    runs: AtomicU32,
}

pub mod shipping {
    use super::*;

    #[handler]
    pub async fn ship(cmd: Ship, ctx: &Context) -> Result<(), BoxError> {
        ctx.publish(Shipped { parcel: cmd.parcel })?;
        Ok(())
    }

    #[handler]
    impl Effects {
        async fn shipped(&self, _event: &Shipped) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// The backlog gauges of `outbox` (pending, oldest age), if the relay set both since the
/// last call (see `fresh_gauges`).
fn sampled(outbox: &str) -> Option<(f64, f64)> {
    fresh_gauges([OUTBOX_PENDING, OUTBOX_OLDEST_AGE], &[("outbox", outbox)])
        .map(|[pending, age]| (pending, age))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_relay_reports_the_backlog_and_a_drained_one_reports_zero() {
    install_gauge_recorder();
    let Some(db) = Db::open("outbox_metrics").await else {
        return;
    };
    let outbox_label = db.schema.as_str().to_string();
    let effects = Arc::new(Effects::default());
    let down = Arc::new(AtomicBool::new(true));
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox
        .relay()
        .poll_interval(Duration::from_millis(50))
        .expect("valid");
    let app = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .transport(BrokerOutage::new(Arc::clone(&down)))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(outbox)
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    let running = relay.start(app.clone()).await.expect("starts");
    const N: i64 = 12;
    for parcel in 0..N {
        app.send(Ship { parcel })
            .await
            .expect("commits while the broker is down");
    }

    eventually("the relay reports every committed row, the oldest waiting", || async {
        matches!(sampled(&outbox_label), Some((pending, age)) if pending == N as f64 && age > 0.0)
    })
    .await;
    assert_eq!(db.outbox_rows().await, N, "nothing was published meanwhile");
    assert_eq!(effects.runs.load(Ordering::SeqCst), 0);

    down.store(false, Ordering::SeqCst);
    eventually("the outbox drained", || async {
        db.outbox_rows().await == 0
    })
    .await;
    eventually("the relay reports an empty outbox", || async {
        sampled(&outbox_label) == Some((0.0, 0.0))
    })
    .await;
    eventually("every event handled", || async {
        effects.runs.load(Ordering::SeqCst) >= N as u32
    })
    .await;
    running.shutdown().await;
    serving.shutdown().await;
}

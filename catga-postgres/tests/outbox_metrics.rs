//! The outbox's backlog gauges: a relay that cannot publish (the broker is down) reports
//! every committed row and an oldest age above zero; once the broker is back and the relay
//! drained the outbox, it reports 0 and 0.
//!
//! One test per binary: the recorder is installed globally, and a snapshot resets what it read.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_core::transport::{
    Inbound, MemoryTransport, Reply, ServePlan, Serving, Transport, TransportError,
};
use catga_postgres::outbox::{OUTBOX_OLDEST_AGE, OUTBOX_PENDING};
use catga_postgres::{Inbox, Outbox};
use common::Db;
use futures::future::BoxFuture;
use metrics::{Level, Metadata};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

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

/// A transport that refuses every publish while `down` is set, else delivers in memory.
struct Flaky {
    down: Arc<AtomicBool>,
    inner: MemoryTransport,
}

impl Transport for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(TransportError::Unreachable("the broker is down".into()))
            });
        }
        self.inner.publish(envelope)
    }
    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        self.inner.request(envelope, timeout)
    }
    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        self.inner.serve(plan, inbound)
    }
}

/// The recorder of this test binary, installed once.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        snapshotter
    })
}

/// Not a value a relay sets: marks a gauge as read.
const READ: f64 = -1.0;

/// The backlog gauges of `outbox` (pending, oldest age), both from one snapshot, if the relay
/// set both since the last call; `None` until it did. A snapshot resets what it read to 0,
/// which would pass for an empty outbox, so each call marks the gauges it read instead.
fn sampled(outbox: &str) -> Option<(f64, f64)> {
    static MARK: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);
    let mut gauges = HashMap::new();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let ours = key
            .labels()
            .any(|l| l.key() == "outbox" && l.value() == outbox);
        if let (true, DebugValue::Gauge(value)) = (ours, value) {
            gauges.insert(key.name().to_string(), value.into_inner());
            metrics::with_recorder(|r| r.register_gauge(key, &MARK).set(READ));
        }
    }
    let pending = *gauges.get(OUTBOX_PENDING)?;
    let age = *gauges.get(OUTBOX_OLDEST_AGE)?;
    (pending != READ && age != READ).then_some((pending, age))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_relay_reports_the_backlog_and_a_drained_one_reports_zero() {
    snapshotter();
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
        .transport(Flaky {
            down: Arc::clone(&down),
            inner: MemoryTransport::new(),
        })
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

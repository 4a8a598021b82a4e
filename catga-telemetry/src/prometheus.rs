//! The Prometheus recorder: catga's duration buckets, its metrics described, and a thread
//! that keeps histogram samples drained between scrapes.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use catga_core::telemetry::metric::DURATION_BUCKETS;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::error::Error;

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A recorder whose every `*_seconds` histogram has the buckets
/// [`DURATION_BUCKETS`] (100 µs to 10 s), so a sub-millisecond dispatch and a broker round
/// trip land in different buckets. Other histograms are summaries.
///
/// # Errors
/// [`Error::Buckets`] if the exporter refuses the buckets (it refuses none but an empty list).
pub(crate) fn recorder() -> Result<PrometheusRecorder, Error> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), DURATION_BUCKETS)
        .map_err(Error::Buckets)?
        .build_recorder())
}

/// Runs the recorder's upkeep every few seconds on a thread of its own, until dropped:
/// histogram samples are kept one by one until a render or an upkeep folds them into their
/// buckets, so a process nobody scrapes would grow.
#[derive(Debug)]
pub(crate) struct Upkeep {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upkeep {
    /// Starts the thread.
    ///
    /// # Errors
    /// [`Error::UpkeepThread`] when the thread cannot be spawned.
    pub(crate) fn start(handle: PrometheusHandle) -> Result<Upkeep, Error> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("catga-metrics-upkeep".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(UPKEEP_EVERY)
                {
                    handle.run_upkeep();
                }
            })
            .map_err(Error::UpkeepThread)?;
        Ok(Upkeep {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

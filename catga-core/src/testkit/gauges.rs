//! Reading the gauges a component sets, from a test: a recorder for the whole test binary,
//! and reads that tell a gauge set since the last read from one merely left over.
//!
//! `metrics_util`'s debugging snapshot resets what it read to 0, which would pass for an
//! empty backlog or a consumer that caught up. [`fresh_gauges`] therefore marks every gauge
//! it read with a value no component sets, and answers only once each was set again.

use std::sync::OnceLock;

use metrics::{Level, Metadata};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Not a value a component sets: marks a gauge as read.
const READ: f64 = -1.0;

/// Installs a debugging recorder as the process's global recorder, once; a test binary that
/// reads gauges with [`fresh_gauges`] calls it before the component under test starts.
///
/// # Panics
/// If another global recorder was installed first (a test binary has one).
pub fn install_gauge_recorder() {
    snapshotter();
}

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        if metrics::set_global_recorder(recorder).is_err() {
            panic!("another global metrics recorder was installed before install_gauge_recorder");
        }
        snapshotter
    })
}

/// The gauges `names` whose labels include every pair of `labels`, all from one snapshot,
/// if each was set since the previous call; `None` until then.
pub fn fresh_gauges<const N: usize>(names: [&str; N], labels: &[(&str, &str)]) -> Option<[f64; N]> {
    static MARK: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);
    let mut found = [None; N];
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let ours = labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
        let Some(at) = names.iter().position(|n| *n == key.name()) else {
            continue;
        };
        if let (true, DebugValue::Gauge(value)) = (ours, value) {
            found[at] = Some(value.into_inner());
            metrics::with_recorder(|r| r.register_gauge(key, &MARK).set(READ));
        }
    }
    let mut values = [0.0; N];
    for (slot, value) in values.iter_mut().zip(found) {
        *slot = value.filter(|v| *v != READ)?;
    }
    Some(values)
}

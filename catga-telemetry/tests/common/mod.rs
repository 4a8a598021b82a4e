//! What the telemetry tests share: the process's telemetry pointed at an in-process OTLP
//! receiver, waiting for a trace to arrive, and the servers (or a reason to skip).

#![allow(dead_code)] // each test binary uses part of it

pub mod exposition;
pub mod servers;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use catga_telemetry::TelemetryGuard;
use catga_telemetry::testkit::{OtlpReceiver, ReceivedSpan, SpanKind};

/// The process's telemetry, installed globally once (transports run their consumers on
/// runtime workers, where only a global subscriber is seen), exporting to `receiver`.
pub struct Installed {
    pub receiver: OtlpReceiver,
    pub guard: TelemetryGuard,
}

/// Installs the telemetry the first time, for every test of the binary.
pub fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let receiver = OtlpReceiver::start().expect("a loopback port for the OTLP receiver");
        let guard = catga_telemetry::builder()
            .service_name("catga-telemetry-tests")
            .otlp_endpoint(receiver.endpoint())
            .log_filter("info")
            .log_writer(std::io::sink)
            .init()
            .expect("telemetry installs in a fresh test process");
        Installed { receiver, guard }
    })
}

/// How long a trace may take to be complete.
const PATIENCE: Duration = Duration::from_secs(15);

/// The trace whose root span is named `root`, once `complete` says it is, flushing the
/// exporter between looks (a consumer span ends after its reply is sent, so it may still be
/// open when the caller has its answer).
pub async fn trace(installed: &Installed, root: &str, complete: impl Fn(&Trace) -> bool) -> Trace {
    let started = Instant::now();
    loop {
        installed
            .guard
            .flush()
            .expect("the receiver accepts every export");
        let spans = installed.receiver.spans();
        let trace = spans.iter().find(|s| s.name == root).map(|r| Trace {
            spans: spans
                .iter()
                .filter(|s| s.trace_id == r.trace_id)
                .cloned()
                .collect(),
        });
        if let Some(trace) = trace
            && complete(&trace)
        {
            return trace;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the trace of `{root}` is not complete after {PATIENCE:?}; received:\n{}",
            spans
                .iter()
                .map(|s| format!(
                    "  {} {:?} {} parent={:?}",
                    s.name, s.kind, s.trace_id, s.parent_span_id
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The spans of one trace.
#[derive(Debug)]
pub struct Trace {
    pub spans: Vec<ReceivedSpan>,
}

impl Trace {
    /// The spans named `name` of kind `kind`.
    pub fn all(&self, name: &str, kind: SpanKind) -> Vec<&ReceivedSpan> {
        self.spans
            .iter()
            .filter(|s| s.name == name && s.kind == kind)
            .collect()
    }

    /// The one span named `name` of kind `kind` for which `also` holds.
    pub fn one(
        &self,
        name: &str,
        kind: SpanKind,
        also: impl Fn(&ReceivedSpan) -> bool,
    ) -> &ReceivedSpan {
        let found: Vec<_> = self
            .all(name, kind)
            .into_iter()
            .filter(|s| also(s))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one `{name}` {kind:?} span, found {}: {:#?}",
            found.len(),
            self.spans
        );
        found[0]
    }

    /// Whether a span named `name` of kind `kind` for which `also` holds is there.
    pub fn has(&self, name: &str, kind: SpanKind, also: impl Fn(&ReceivedSpan) -> bool) -> bool {
        self.all(name, kind).into_iter().any(also)
    }

    /// The span with id `id`.
    pub fn by_id(&self, id: &str) -> Option<&ReceivedSpan> {
        self.spans.iter().find(|s| s.span_id == id)
    }
}

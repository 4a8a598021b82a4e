//! Capturing every log line of a test binary, to check that no credential reaches one.
//!
//! The adapters' credential tests install one global subscriber (their clients log from
//! tasks on any thread), run their steps, and check the whole buffer, together with every way
//! an error can be shown ([`everything_about`]), against their list of secrets
//! ([`assert_hidden`]).

use std::error::Error;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The log output of this test binary.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Captures every event and span (with its fields) at TRACE, from every crate, from the first
/// call on; later calls return the same capture. Panics if another subscriber was installed
/// first.
pub fn capture() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(logs.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
}

/// The error, its sources (`Display`) and its `Debug`: every way it can be shown.
pub fn everything_about(error: &(dyn Error + 'static)) -> String {
    let mut shown = format!("{error:?}\n{error}");
    let mut source = error.source();
    while let Some(cause) = source {
        shown.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    shown
}

/// Fails if any of `secrets` appears in `shown` (what `what` showed).
pub fn assert_hidden(secrets: &[&str], what: &str, shown: &str) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{what} shows `{secret}`:\n{shown}");
    }
}

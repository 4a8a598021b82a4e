//! Test support (feature `testkit`): an in-process OTLP/HTTP receiver that records the spans
//! it is sent, so a test can check what a service exports without a collector.
//!
//! ```rust
//! use catga_telemetry::testkit::OtlpReceiver;
//!
//! let receiver = OtlpReceiver::start()?;
//! let parts = catga_telemetry::builder()
//!     .otlp_endpoint(receiver.endpoint())
//!     .log_writer(std::io::sink)
//!     .build()?;
//! tracing::dispatcher::with_default(&parts.dispatch, || {
//!     tracing::info_span!("checked").in_scope(|| {});
//! });
//! parts.guard.flush()?;
//! assert_eq!(receiver.spans()[0].name, "checked");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This module is test support: it is not meant for production, and it keeps every span it
//! receives in memory.

mod receiver;
mod span;

pub use receiver::OtlpReceiver;
pub use span::{Link, ReceivedSpan, SpanKind, Status};

//! The events stream: created, or brought to the transport's configuration, on connect and
//! whenever a consumer finds it gone.
//!
//! One JetStream stream captures `{prefix}.events.>`, stored on disk with limits retention:
//! every event is kept for its retention period (`max_age`), consumed or not, so consumers
//! re-created after a server lost its state still find every event published since.

use async_nats::jetstream;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};

use super::Shared;
use crate::error::NatsError;

/// JetStream's error code for "stream configuration update can not change retention policy".
const RETENTION_FIXED: u64 = 10052;

impl Shared {
    /// The events stream's configuration, with `retention`.
    fn stream_config(&self, retention: RetentionPolicy) -> StreamConfig {
        StreamConfig {
            name: self.stream.clone(),
            subjects: vec![self.subjects.all_events()],
            retention,
            storage: StorageType::File,
            duplicate_window: self.config.duplicate_window,
            max_age: self.config.max_age,
            ..StreamConfig::default()
        }
    }

    /// Creates the events stream, or brings an existing one to this configuration, and says
    /// when the stream was created (a stream created again after a server lost its state has
    /// a new creation time: its sequences start again).
    ///
    /// Limits retention: every event is stored for `max_age`, whether or not a consumer exists
    /// yet. With interest retention the server stores an event only for the consumers that
    /// exist when it is published, so after a server lost its state, every event published
    /// before each service re-created its durable consumer would be acknowledged to its
    /// publisher and never delivered.
    pub(crate) async fn ensure_stream(&self) -> Result<StreamCreated, NatsError> {
        let failed = |source| NatsError::Stream {
            stream: self.stream.clone(),
            subjects: self.subjects.all_events(),
            source: Box::new(source),
        };
        let config = self.stream_config(RetentionPolicy::Limits);
        let info = match self.jetstream.create_or_update_stream(config).await {
            Ok(info) => info,
            Err(error) if is_jetstream_code(&error, RETENTION_FIXED) => {
                let current = self
                    .current_retention()
                    .await
                    .unwrap_or(RetentionPolicy::Interest);
                tracing::warn!(target: "catga::nats", stream = %self.stream, retention = ?current,
                    "the events stream exists with another retention than limits, which nats-server cannot change; it is kept. \
                     After a server loses its state, events published before each service re-created its consumer are not stored \
                     (see docs/nats.md to move the events to a stream with limits retention)");
                self.jetstream
                    .create_or_update_stream(self.stream_config(current))
                    .await
                    .map_err(failed)?
            }
            Err(error) => return Err(failed(error)),
        };
        Ok(StreamCreated(info.created.unix_timestamp_nanos()))
    }

    /// The retention of the existing events stream.
    async fn current_retention(&self) -> Option<RetentionPolicy> {
        let mut stream = self.jetstream.get_stream(&self.stream).await.ok()?;
        Some(stream.info().await.ok()?.config.retention)
    }
}

/// When a stream was created (nanoseconds since the epoch): a stream lost and created again
/// has another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamCreated(pub i128);

/// Whether `error` is the JetStream API error `code`.
fn is_jetstream_code(error: &jetstream::context::CreateStreamError, code: u64) -> bool {
    use jetstream::context::CreateStreamErrorKind as Kind;
    matches!(error.kind(), Kind::JetStream(e) if e.error_code().0 == code)
}

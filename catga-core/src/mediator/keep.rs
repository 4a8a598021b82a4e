//! Keeping what failed in the application's dead-letter store, each failure once.
//!
//! Used by the serving side (a delivery given up on), by the publisher of follow-up events
//! (a handler of one failed) and by replay (a replay that failed again). A `DeadLetter` layer
//! may have kept some of the failures already (it records that in the dispatch's
//! `FailureNote`); the rest are kept here.

use std::time::SystemTime;

use uuid::Uuid;

use super::Catga;
use crate::error::{Error, ErrorKind};
use crate::pipeline::Layer;
use crate::store::dead_letter::{DeadLetterRecord, FailureStage};
use crate::transport::Disposition;

/// Longest foreign name echoed into a record or an error.
const MAX_ECHOED: usize = 256;

/// `text`, cut to at most [`MAX_ECHOED`] bytes on a character boundary.
pub(super) fn echo(text: &str) -> String {
    let mut end = text.len().min(MAX_ECHOED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What a record says about the message itself, whatever failed.
#[derive(Clone, Debug)]
pub(super) struct Letter {
    pub(super) message: String,
    pub(super) message_id: Uuid,
    pub(super) correlation_id: Uuid,
    pub(super) causation_id: Option<Uuid>,
    pub(super) headers: Vec<(String, String)>,
    /// As JSON where it could be converted (replay reads JSON), else as received.
    pub(super) payload: Vec<u8>,
    /// The delivery (or attempt) number the failure happened on.
    pub(super) attempts: u32,
}

impl Letter {
    /// The record of this message's failure.
    pub(super) fn record(
        &self,
        stage: FailureStage,
        handler: Option<&str>,
        code: &str,
        error: String,
    ) -> DeadLetterRecord {
        DeadLetterRecord {
            id: Uuid::now_v7(),
            message: echo(&self.message),
            handler: handler.map(str::to_string),
            payload: Some(self.payload.clone()),
            code: code.to_string(),
            error,
            attempts: self.attempts,
            message_id: self.message_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            headers: self.headers.clone(),
            failed_at: SystemTime::now(),
            stage,
            source: None,
            raw_headers: None,
        }
    }
}

/// A dispatch's failures, one per handler (`None`: a request's, or a failure of the whole).
pub(super) fn failures(error: Error) -> Vec<(Option<&'static str>, Error)> {
    match error.into_kind() {
        ErrorKind::Publish { failures, .. } => failures
            .into_iter()
            .map(|f| (Some(f.handler), f.error))
            .collect(),
        other => vec![(None, other.into())],
    }
}

impl<L: Layer> Catga<L> {
    /// Keeps `record` in the application's dead-letter store: [`Disposition::Terminate`] once
    /// kept, [`Disposition::Retry`] (it must not be acknowledged) if the store failed.
    pub(super) async fn keep(&self, record: DeadLetterRecord) -> Disposition {
        let (id, message, code) = (record.id, record.message.clone(), record.code.clone());
        let (stage, handler, error) = (record.stage, record.handler.clone(), record.error.clone());
        match self.inner.settings.dead_letters.put_dyn(record).await {
            Ok(()) => {
                metrics::counter!("catga_dead_letters_total", "message" => message.clone(),
                    "stage" => format!("{stage:?}").to_lowercase())
                .increment(1);
                // The one line a failure given up on gets: what failed, why, and where it is.
                tracing::warn!(target: "catga", message = %message, handler = handler.as_deref(),
                    dead_letter = %id, code = %code, error = %error, ?stage,
                    "a message was given up on and kept in the dead-letter store");
                Disposition::Terminate
            }
            Err(error) => {
                tracing::error!(target: "catga", message = %message, code = %code, error = %error,
                    "could not keep a failed message in the dead-letter store");
                Disposition::Retry
            }
        }
    }

    /// Keeps each of `failures` that no `DeadLetter` layer kept (`kept_by_layer`), as a
    /// handler failure of `letter`'s message. [`Disposition::Retry`] if any could not be kept.
    pub(super) async fn keep_failures(
        &self,
        letter: &Letter,
        failures: Vec<(Option<&'static str>, Error)>,
        kept_by_layer: impl Fn(Option<&str>) -> bool,
    ) -> Disposition {
        let mut outcome = Disposition::Terminate;
        for (handler, error) in failures {
            if kept_by_layer(handler) {
                continue;
            }
            let record = letter.record(
                FailureStage::Handler,
                handler,
                error.code(),
                error.to_string(),
            );
            if self.keep(record).await == Disposition::Retry {
                outcome = Disposition::Retry;
            }
        }
        outcome
    }
}

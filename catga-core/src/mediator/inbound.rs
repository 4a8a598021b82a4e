//! The application as a transport's consumer: the delivery rules, once for every transport.
//!
//! * A message is acknowledged only after it was handled or kept in the dead-letter store;
//!   when the store fails, the transport is told to deliver it again.
//! * An event's retryable failure before its last delivery is redelivered; a final failure
//!   is kept once (by the `DeadLetter` layer, or here for what the layer did not keep) and
//!   terminated.
//! * A panic fails its one message ([`ErrorKind::Panicked`]) and the consumer keeps serving.
//! * Where a message arrived decides what it is: an envelope naming another message or kind
//!   than its subject or stream carries is kept aside, never dispatched.
//! * A message delivered more often than allowed without settling (it kept crashing or
//!   stalling its consumer) is kept aside without running again.
//! * A redelivered command whose first delivery may have run is run again only if it is
//!   declared `idempotent`.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::Catga;
use super::panic::contained;
use crate::codec::WireFormat;
use crate::context::DeliveryNote;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::pipeline::Layer;
use crate::store::dead_letter::{DeadLetterRecord, FailureStage};
use crate::transport::{Delivery, Disposition, Inbound, Rejected, RemoteFailure, Reply};

/// Longest foreign name echoed into a record or an error.
const MAX_ECHOED: usize = 256;

/// The application, as its transport's [`Inbound`].
pub(super) struct AppInbound<L> {
    app: Catga<L>,
}

impl<L> AppInbound<L> {
    pub(super) fn new(app: Catga<L>) -> Self {
        AppInbound { app }
    }
}

fn echo(text: &str) -> String {
    let mut end = text.len().min(MAX_ECHOED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Why an envelope that arrived where `route` travels is not what it should be, if it is not.
fn misrouted(route: &str, envelope: &Envelope, event: bool) -> Option<String> {
    let (expected, ok_kind) = if event {
        ("event", envelope.kind == MessageKind::Event)
    } else {
        ("request", envelope.kind.is_request())
    };
    if envelope.name != route {
        return Some(format!(
            "the envelope names `{}` but arrived where the {expected} `{}` travels",
            echo(&envelope.name),
            echo(route)
        ));
    }
    (!ok_kind).then(|| {
        format!(
            "the envelope says it is a {} but arrived where the {expected} `{}` travels",
            envelope.kind,
            echo(route)
        )
    })
}

/// Bytes that will never be readable here: kept aside, not redelivered.
fn unreadable(error: &Error) -> bool {
    matches!(error.code(), "codec" | "unknown_message")
}

/// A record of a delivery that is given up on.
fn record(
    envelope: &Envelope,
    payload: Vec<u8>,
    stage: FailureStage,
    handler: Option<&str>,
    code: &str,
    error: String,
    attempts: u32,
) -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: echo(&envelope.name),
        handler: handler.map(str::to_string),
        payload: Some(payload),
        code: code.to_string(),
        error,
        attempts,
        message_id: envelope.id,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id,
        headers: envelope.headers.clone(),
        failed_at: SystemTime::now(),
        stage,
        source: None,
        raw_headers: None,
    }
}

impl<L: Layer> Catga<L> {
    /// Keeps `record` in the application's dead-letter store: [`Disposition::Terminate`] once
    /// kept, [`Disposition::Retry`] (not acknowledged) if the store failed.
    async fn keep(&self, record: DeadLetterRecord) -> Disposition {
        let (id, message, code) = (record.id, record.message.clone(), record.code.clone());
        let stage = record.stage;
        match self.inner.settings.dead_letters.put_dyn(record).await {
            Ok(()) => {
                metrics::counter!("catga_dead_letters_total", "message" => message.clone(),
                    "stage" => format!("{stage:?}").to_lowercase())
                .increment(1);
                tracing::warn!(target: "catga", message = %message, dead_letter = %id, code = %code,
                    ?stage, "a delivery was given up on and kept in the dead-letter store");
                Disposition::Terminate
            }
            Err(error) => {
                tracing::error!(target: "catga", message = %message, code = %code, error = %error,
                    "could not keep a failed delivery in the dead-letter store; it stays with the transport, to be delivered again");
                Disposition::Retry
            }
        }
    }

    /// The payload as JSON, as dead letters keep it (replay reads JSON); the bytes as
    /// received when they cannot be converted.
    fn json_payload(&self, envelope: &Envelope) -> Vec<u8> {
        if envelope.format == WireFormat::Json {
            return envelope.payload.clone();
        }
        self.inner
            .table
            .by_name(&envelope.name)
            .and_then(|info| info.decode(envelope.format, &envelope.payload).ok())
            .and_then(|message| message.encode_json().ok())
            .unwrap_or_else(|| envelope.payload.clone())
    }

    /// Keeps what an event's final delivery left failed, skipping what a `DeadLetter` layer
    /// kept already, so each failure is kept once.
    async fn keep_failed(
        &self,
        envelope: &Envelope,
        delivery: Delivery,
        note: Option<Arc<DeliveryNote>>,
        error: Error,
    ) -> Disposition {
        let kept_by_layer =
            |handler: Option<&str>| note.as_ref().is_some_and(|n| n.was_kept(handler));
        let failures: Vec<(Option<&'static str>, Error)> = match error.into_kind() {
            ErrorKind::Publish { failures, .. } => failures
                .into_iter()
                .map(|f| (Some(f.handler), f.error))
                .collect(),
            other => vec![(None, other.into())],
        };
        let mut outcome = Disposition::Terminate;
        for (handler, error) in failures {
            if kept_by_layer(handler) {
                continue;
            }
            let letter = record(
                envelope,
                self.json_payload(envelope),
                FailureStage::Handler,
                handler,
                error.code(),
                error.to_string(),
                delivery.attempt,
            );
            if self.keep(letter).await == Disposition::Retry {
                outcome = Disposition::Retry;
            }
        }
        outcome
    }

    /// Handles one delivery of an event; see the module docs.
    async fn consume_event(
        &self,
        problem: Option<String>,
        envelope: Envelope,
        delivery: Delivery,
    ) -> Disposition {
        let aside = |code: &str, why: String| {
            record(
                &envelope,
                envelope.payload.clone(),
                FailureStage::Delivery,
                None,
                code,
                why,
                delivery.attempt,
            )
        };
        if let Some(why) = problem {
            tracing::warn!(target: "catga", message = %echo(&envelope.name), id = %envelope.id, why = %why,
                "a misrouted envelope was set aside, not dispatched");
            return self.keep(aside("envelope", why)).await;
        }
        if delivery.is_exhausted() {
            let why = exhausted(delivery);
            return self.keep(aside("exhausted", why)).await;
        }
        let ctx = envelope.context().with_delivery(delivery);
        let note = ctx.delivery_note();
        let name = envelope.name.clone();
        match contained(&name, self.dispatch_envelope_with(&envelope, ctx)).await {
            Ok(_) => Disposition::Ack,
            Err(error) if unreadable(&error) => {
                let letter = aside(error.code(), error.to_string());
                self.keep(letter).await
            }
            Err(error) if error.is_retryable() && !delivery.is_last() => {
                tracing::debug!(target: "catga", message = %name, id = %envelope.id,
                    attempt = delivery.attempt, max = delivery.max_attempts, error = %error,
                    "event failed; it will be delivered again");
                Disposition::Retry
            }
            Err(error) => {
                tracing::warn!(target: "catga", message = %name, id = %envelope.id,
                    attempt = delivery.attempt, error = %error,
                    "event failed for good; it is kept in the dead-letter store");
                self.keep_failed(&envelope, delivery, note, error).await
            }
        }
    }

    /// Handles one delivery of a request and returns its reply; see the module docs.
    async fn answer(
        &self,
        problem: Option<String>,
        mut envelope: Envelope,
        delivery: Delivery,
    ) -> Reply {
        let refuse = |code: &str, message: String| {
            Reply::Err(RemoteFailure {
                code: code.to_string(),
                message,
                retryable: false,
            })
        };
        let aside = |envelope: &Envelope, code: &str, why: String| {
            record(
                envelope,
                envelope.payload.clone(),
                FailureStage::Delivery,
                None,
                code,
                why,
                delivery.attempt,
            )
        };
        if let Some(why) = problem {
            let _ = self.keep(aside(&envelope, "envelope", why.clone())).await;
            return refuse("envelope", why);
        }
        // A request's kind is this registry's to say: a transport may not carry it (NATS
        // requests travel as `command`, their subject naming the message).
        let info = self.inner.table.by_name(&envelope.name);
        if let Some(info) = info {
            envelope.kind = info.kind();
        }
        if delivery.attempt > 1
            && let Some(info) = info
            && info.kind() == MessageKind::Command
            && !info.policy().idempotent
        {
            let error = Error::from(ErrorKind::InDoubt {
                message: info.name().to_string(),
            });
            let _ = self
                .keep(aside(&envelope, error.code(), error.to_string()))
                .await;
            return Reply::Err(RemoteFailure::of(&error));
        }
        if delivery.is_exhausted() {
            let why = exhausted(delivery);
            let _ = self.keep(aside(&envelope, "exhausted", why.clone())).await;
            return refuse("exhausted", why);
        }
        let ctx = envelope.context().with_delivery(delivery);
        let name = envelope.name.clone();
        match contained(&name, self.dispatch_envelope_with(&envelope, ctx)).await {
            Ok(output) => Reply::Ok(output.unwrap_or_default()),
            Err(error) => {
                if unreadable(&error) {
                    let _ = self
                        .keep(aside(&envelope, error.code(), error.to_string()))
                        .await;
                }
                Reply::Err(RemoteFailure::of(&error))
            }
        }
    }
}

fn exhausted(delivery: Delivery) -> String {
    format!(
        "delivered {} times (at most {}) without being settled (its handling crashed or stalled the consumer, or its failure could not be kept): set aside without running again",
        delivery.attempt, delivery.max_attempts
    )
}

impl<L: Layer> Inbound for AppInbound<L> {
    fn event(
        &self,
        route: &str,
        envelope: Envelope,
        delivery: Delivery,
    ) -> BoxFuture<'static, Disposition> {
        let problem = misrouted(route, &envelope, true);
        let app = self.app.clone();
        Box::pin(async move { app.consume_event(problem, envelope, delivery).await })
    }

    fn request(
        &self,
        route: &str,
        envelope: Envelope,
        delivery: Delivery,
    ) -> BoxFuture<'static, Reply> {
        let problem = misrouted(route, &envelope, false);
        let app = self.app.clone();
        Box::pin(async move { app.answer(problem, envelope, delivery).await })
    }

    fn reject(&self, rejected: Rejected) -> BoxFuture<'static, Disposition> {
        let app = self.app.clone();
        Box::pin(async move {
            tracing::warn!(target: "catga", source = %rejected.source, reason = %rejected.reason,
                "a message that is not a readable envelope was set aside");
            let record = DeadLetterRecord {
                id: Uuid::now_v7(),
                message: rejected
                    .name
                    .as_deref()
                    .map_or_else(|| "(unreadable)".to_string(), echo),
                handler: None,
                payload: Some(rejected.payload),
                code: "envelope".to_string(),
                error: rejected.reason,
                attempts: 1,
                message_id: Uuid::nil(),
                correlation_id: Uuid::nil(),
                causation_id: None,
                headers: Vec::new(),
                failed_at: SystemTime::now(),
                stage: FailureStage::Delivery,
                source: Some(rejected.source),
                raw_headers: rejected.raw_headers,
            };
            app.keep(record).await
        })
    }

    fn observe(&self, name: &str) {
        self.app.inner.layers.observe_remote(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;

    fn envelope(name: &'static str, kind: MessageKind) -> Envelope {
        Envelope::with_payload(
            name,
            kind,
            &Context::new(),
            WireFormat::Json,
            b"{}".to_vec(),
        )
    }

    #[test]
    fn the_route_decides_what_a_message_is() {
        let event = envelope("placed", MessageKind::Event);
        assert_eq!(misrouted("placed", &event, true), None);
        assert!(misrouted("refund", &event, true).is_some(), "another name");
        let command = envelope("refund", MessageKind::Command);
        assert!(
            misrouted("refund", &command, true).is_some(),
            "a command on an event route"
        );
        assert_eq!(misrouted("refund", &command, false), None);
        assert!(
            misrouted("placed", &event, false).is_some(),
            "an event on a request route"
        );
    }
}

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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::BoxFuture;
use tracing::Instrument;
use uuid::Uuid;

use super::Catga;
use super::keep::{Letter, echo, failures};
use crate::codec::WireFormat;
use crate::dispatch::panic::contained;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::pipeline::Layer;
use crate::store::dead_letter::{DeadLetterRecord, FailureStage};
use crate::telemetry::span::Consumed;
use crate::transport::{Delivery, Disposition, Inbound, Rejected, RemoteFailure, Reply};

/// How many failures whose keeping failed an instance remembers (see [`Unkept`]).
const UNKEPT_REMEMBERED: usize = 1024;

/// The application, as its transport's [`Inbound`].
pub(super) struct AppInbound<L> {
    app: Catga<L>,
    unkept: Arc<Unkept>,
}

impl<L> AppInbound<L> {
    pub(super) fn new(app: Catga<L>) -> Self {
        AppInbound {
            app,
            unkept: Arc::default(),
        }
    }

    /// The consumer span and clock for a delivery of `envelope`.
    fn consumed(&self, envelope: &Envelope) -> Consumed {
        let settings = &self.app.inner.settings;
        let transport = settings.transport.as_deref().map_or("memory", |t| t.name());
        Consumed::start(transport, settings.service.as_str(), envelope)
    }
}

/// Final failures this instance could not keep (the dead-letter store failed), by message
/// id: when the message comes back past its last delivery and is set aside unrun, its record
/// still says what failed, not only that it was delivered too often. Bounded; the oldest
/// go first.
#[derive(Default)]
struct Unkept(Mutex<VecDeque<(Uuid, Vec<Failed>)>>);

/// A failure as remembered: the handler (`None`: the whole message), its code and text.
type Failed = (Option<&'static str>, String, String);

impl Unkept {
    fn remember(&self, id: Uuid, failures: Vec<Failed>) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|(known, _)| *known != id);
        if list.len() >= UNKEPT_REMEMBERED {
            list.pop_front();
        }
        list.push_back((id, failures));
    }

    fn take(&self, id: Uuid) -> Option<Vec<Failed>> {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = list.iter().position(|(known, _)| *known == id)?;
        list.remove(at).map(|(_, failures)| failures)
    }
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
            "the envelope says its kind is `{}` but it arrived where the {expected} `{}` travels",
            envelope.kind,
            echo(route)
        )
    })
}

/// Bytes that will never be readable here: kept aside, not redelivered.
fn unreadable(error: &Error) -> bool {
    // By kind: a request this message's handler sent elsewhere may have failed there with
    // the same code, and that says nothing about these bytes.
    matches!(
        error.kind(),
        ErrorKind::Codec { .. } | ErrorKind::UnknownMessage { .. }
    )
}

/// What a record of `envelope` says, with its payload as `payload`.
fn letter(envelope: &Envelope, payload: Vec<u8>, delivery: Delivery) -> Letter {
    Letter {
        message: envelope.name.to_string(),
        message_id: envelope.id,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id,
        headers: envelope.headers.clone(),
        payload,
        attempts: delivery.attempt,
    }
}

impl<L: Layer> Catga<L> {
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

    /// Handles one delivery of an event; see the module docs.
    async fn consume_event(
        &self,
        unkept: &Unkept,
        problem: Option<String>,
        envelope: Envelope,
        delivery: Delivery,
        failed: &mut Option<String>,
    ) -> Disposition {
        let aside = |code: &str, why: String| {
            letter(&envelope, envelope.payload.clone(), delivery).record(
                FailureStage::Delivery,
                None,
                code,
                why,
            )
        };
        if let Some(why) = problem {
            tracing::warn!(target: "catga", message = %echo(&envelope.name), id = %envelope.id, why = %why,
                "a misrouted envelope was set aside, not dispatched");
            *failed = Some("envelope".to_string());
            return self.keep(aside("envelope", why)).await;
        }
        if delivery.is_exhausted() {
            *failed = Some("exhausted".to_string());
            return self.set_aside_exhausted(unkept, &envelope, delivery).await;
        }
        let ctx = envelope.context().with_delivery(delivery);
        let note = ctx.failure_note();
        let name = envelope.name.clone();
        let dispatched = contained(&name, self.dispatch_envelope_with(&envelope, ctx)).await;
        if let Err(error) = &dispatched {
            *failed = Some(error.code().to_string());
        }
        match dispatched {
            Ok(_) => Disposition::Ack,
            Err(error) if unreadable(&error) => {
                self.keep(aside(error.code(), error.to_string())).await
            }
            Err(error) if error.is_retryable() && !delivery.is_last() => {
                tracing::debug!(target: "catga", message = %name, id = %envelope.id,
                    attempt = delivery.attempt, max = delivery.max_attempts, error = %error,
                    "event failed; it will be delivered again");
                Disposition::Retry
            }
            Err(error) => {
                // Each record kept below is logged at `warn` by `keep` (or by the `DeadLetter`
                // layer that kept it): one line per failure, not two.
                tracing::debug!(target: "catga", message = %name, id = %envelope.id,
                    attempt = delivery.attempt, error = %error,
                    "event failed for good; it is kept in the dead-letter store");
                let kept_by_layer =
                    |handler: Option<&str>| note.as_ref().is_some_and(|n| n.was_kept(handler));
                let failures: Vec<_> = failures(error)
                    .into_iter()
                    .filter(|(handler, _)| !kept_by_layer(*handler))
                    .collect();
                let remembered: Vec<_> = failures
                    .iter()
                    .map(|(handler, e)| (*handler, e.code().to_string(), e.to_string()))
                    .collect();
                let letter = letter(&envelope, self.json_payload(&envelope), delivery);
                let outcome = self.keep_failures(&letter, failures, |_| false).await;
                if outcome == Disposition::Retry {
                    unkept.remember(envelope.id, remembered);
                }
                outcome
            }
        }
    }

    /// An event delivered more often than allowed: set aside without running again, with
    /// the failure that could not be kept on an earlier delivery if this instance saw it.
    async fn set_aside_exhausted(
        &self,
        unkept: &Unkept,
        envelope: &Envelope,
        delivery: Delivery,
    ) -> Disposition {
        let why = exhausted(delivery);
        let Some(failed) = unkept.take(envelope.id) else {
            let record = letter(envelope, envelope.payload.clone(), delivery).record(
                FailureStage::Delivery,
                None,
                "exhausted",
                why,
            );
            return self.keep(record).await;
        };
        let letter = letter(envelope, self.json_payload(envelope), delivery);
        let mut outcome = Disposition::Terminate;
        for (handler, code, error) in &failed {
            let text = format!("{error} (the dead-letter store failed then; {why})");
            let record = letter.record(FailureStage::Handler, *handler, code, text);
            if self.keep(record).await == Disposition::Retry {
                outcome = Disposition::Retry;
            }
        }
        if outcome == Disposition::Retry {
            unkept.remember(envelope.id, failed);
        }
        outcome
    }

    /// Handles one delivery of a request and returns its reply; see the module docs.
    async fn answer(
        &self,
        problem: Option<String>,
        mut envelope: Envelope,
        delivery: Delivery,
    ) -> Reply {
        let service = self.inner.settings.service.as_str();
        let fail = |failure: RemoteFailure| Reply::Err(failure.with_service(service));
        let aside = |envelope: &Envelope, code: &str, why: String| {
            letter(envelope, envelope.payload.clone(), delivery).record(
                FailureStage::Delivery,
                None,
                code,
                why,
            )
        };
        if let Some(why) = problem {
            let _ = self.keep(aside(&envelope, "envelope", why.clone())).await;
            return fail(RemoteFailure::new("envelope", why));
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
            return fail(RemoteFailure::of(&error));
        }
        if delivery.is_exhausted() {
            let why = exhausted(delivery);
            let _ = self.keep(aside(&envelope, "exhausted", why.clone())).await;
            // Its earlier deliveries never settled: they may have run.
            return fail(RemoteFailure::new("exhausted", why).with_in_doubt(true));
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
                } else if matches!(error.kind(), ErrorKind::Timeout { .. }) {
                    tracing::info!(target: "catga", message = %name, id = %envelope.id,
                        "the caller's deadline passed while the request was handled; it was stopped and answered `timeout`");
                }
                fail(RemoteFailure::of(&error))
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
        let (app, unkept) = (self.app.clone(), self.unkept.clone());
        let consumed = self.consumed(&envelope);
        Box::pin(async move {
            let mut failed = None;
            let disposition = app
                .consume_event(&unkept, problem, envelope, delivery, &mut failed)
                .instrument(consumed.span.clone())
                .await;
            consumed.finish(failed.as_deref());
            disposition
        })
    }

    fn request(
        &self,
        route: &str,
        envelope: Envelope,
        delivery: Delivery,
    ) -> BoxFuture<'static, Reply> {
        let problem = misrouted(route, &envelope, false);
        let app = self.app.clone();
        let consumed = self.consumed(&envelope);
        Box::pin(async move {
            let reply = app
                .answer(problem, envelope, delivery)
                .instrument(consumed.span.clone())
                .await;
            let failed = match &reply {
                Reply::Err(failure) => Some(failure.code.as_str()),
                Reply::Ok(_) => None,
            };
            consumed.finish(failed);
            reply
        })
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

//! Serving: consuming what this application handles from its transport.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::Catga;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::pipeline::Layer;
use crate::store::dead_letter::DeadLetterRecord;
use crate::transport::{Inbound, ServePlan, Serving, TransportError};

impl<L: Layer> Catga<L> {
    /// Starts consuming, from the transport, every event and request this application has
    /// handlers for, as the service named with [`service`](crate::CatgaBuilder::service).
    /// Returns the running consumer; [`Serving::shutdown`] stops it after draining.
    ///
    /// # Errors
    /// [`TransportError::NotConfigured`] without a transport, and whatever the transport
    /// reports when it subscribes.
    pub async fn serve(&self) -> Result<Serving, TransportError> {
        let settings = &self.inner.settings;
        let Some(transport) = settings.transport.as_deref() else {
            return Err(TransportError::NotConfigured);
        };
        let (events, requests) = self.inner.table.served();
        let plan = ServePlan {
            service: settings.service.clone(),
            events,
            requests,
            max_in_flight: settings.serve_max_in_flight,
        };
        tracing::info!(target: "catga", service = %plan.service, transport = transport.name(),
            events = plan.events.len(), requests = plan.requests.len(), "serving");
        transport
            .serve(plan, Arc::new(AppInbound { app: self.clone() }))
            .await
    }

    /// Dispatches an envelope that arrived from a transport: through the same pipeline as a
    /// local message, with the context the envelope carries (ids, remaining deadline, headers,
    /// trace context). A request whose sender already gave up is not handled.
    ///
    /// # Errors
    /// As [`dispatch_bytes`](Catga::dispatch_bytes), and [`ErrorKind::Timeout`] for an expired
    /// request.
    pub async fn dispatch_envelope(&self, envelope: &Envelope) -> Result<Option<Vec<u8>>, Error> {
        if envelope.kind.is_request() && envelope.expired() {
            let message = self
                .inner
                .table
                .by_name(&envelope.name)
                .map_or("(unknown)", |info| info.name());
            return Err(ErrorKind::Timeout {
                message,
                after: None,
            }
            .into());
        }
        self.dispatch_wire(
            envelope.format,
            &envelope.name,
            &envelope.payload,
            envelope.context(),
        )
        .await
    }

    fn keep_rejected(&self, record: DeadLetterRecord) -> BoxFuture<'static, ()> {
        match &self.inner.settings.rejects {
            Some(sink) => sink(record),
            None => {
                tracing::error!(target: "catga", message = %record.message, error = %record.error,
                    "a message from the transport could not be read, and there is no reject store (`reject_into`)");
                Box::pin(async {})
            }
        }
    }
}

/// The application as the transport's consumer.
struct AppInbound<L> {
    app: Catga<L>,
}

fn rejected(
    message: &str,
    payload: Vec<u8>,
    code: &str,
    error: String,
    envelope: Option<&Envelope>,
) -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: message.to_string(),
        handler: None,
        payload: Some(payload),
        code: code.to_string(),
        error,
        attempts: 1,
        message_id: envelope.map_or_else(Uuid::nil, |e| e.id),
        correlation_id: envelope.map_or_else(Uuid::nil, |e| e.correlation_id),
        causation_id: envelope.and_then(|e| e.causation_id),
        headers: envelope.map(|e| e.headers.clone()).unwrap_or_default(),
        failed_at: SystemTime::now(),
    }
}

impl<L: Layer> Inbound for AppInbound<L> {
    fn dispatch(
        &self,
        mut envelope: Envelope,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, Error>> {
        // A request's kind is this registry's to say: a transport may not carry it (NATS
        // requests travel as `command`, their subject naming the message).
        if envelope.kind.is_request()
            && let Some(info) = self.app.inner.table.by_name(&envelope.name)
        {
            envelope.kind = info.kind();
        }
        let app = self.app.clone();
        Box::pin(async move {
            let result = app.dispatch_envelope(&envelope).await;
            match result {
                // Bytes that cannot be read will never be: keep them and move on (a request's
                // sender still gets the error).
                Err(error) if matches!(error.code(), "codec" | "unknown_message") => {
                    let record = rejected(
                        &envelope.name,
                        envelope.payload.clone(),
                        error.code(),
                        error.to_string(),
                        Some(&envelope),
                    );
                    app.keep_rejected(record).await;
                    match envelope.kind {
                        MessageKind::Event => Ok(None),
                        _ => Err(error),
                    }
                }
                other => other,
            }
        })
    }

    fn reject(&self, subject: String, payload: Vec<u8>, why: String) -> BoxFuture<'static, ()> {
        self.app
            .keep_rejected(rejected(&subject, payload, "envelope", why, None))
    }
}

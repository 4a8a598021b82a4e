//! Serving: consuming what this application handles from its transport.

use std::sync::Arc;

use super::Catga;
use super::inbound::AppInbound;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::health::Flag;
use crate::pipeline::Layer;
use crate::store::dead_letter::DynDeadLetterStore;
use crate::transport::{ServePlan, Serving, TransportError};

impl<L: Layer> Catga<L> {
    /// Starts consuming, from the transport, every event and request this application has
    /// handlers for, as the service named with [`service`](crate::CatgaBuilder::service).
    /// Returns the running consumer; [`Serving::shutdown`] stops it after draining.
    ///
    /// Each event is acknowledged only once it was handled, or once it was kept in the
    /// dead-letter store ([`dead_letters`](crate::CatgaBuilder::dead_letters)); see
    /// [`transport`](crate::transport) for the rules every transport follows.
    ///
    /// # Errors
    /// [`TransportError::NotConfigured`] without a transport,
    /// [`TransportError::NothingToServe`] when the application selected no handler and no
    /// behaviour observes events, and whatever the transport reports when it subscribes.
    pub async fn serve(&self) -> Result<Serving, TransportError> {
        let settings = &self.inner.settings;
        let Some(transport) = settings.transport.as_deref() else {
            return Err(TransportError::NotConfigured);
        };
        let (events, requests) = self.inner.table.served();
        let mut observe = Vec::new();
        self.inner.layers.observed_events(&mut observe);
        observe.sort_unstable();
        observe.dedup();
        if events.is_empty() && requests.is_empty() && observe.is_empty() {
            return Err(TransportError::NothingToServe {
                service: settings.service.clone(),
            });
        }
        let plan = ServePlan {
            service: settings.service.clone(),
            events,
            requests,
            max_in_flight: settings.serve_max_in_flight,
            observe: observe.into_iter().map(str::to_string).collect(),
        };
        tracing::info!(target: "catga", service = %plan.service, transport = transport.name(),
            events = plan.events.len(), requests = plan.requests.len(), observed = plan.observe.len(),
            "serving");
        if !settings.dead_letters_configured && !plan.events.is_empty() {
            tracing::info!(target: "catga", service = %plan.service,
                "messages given up on are kept in memory (`Catga::dead_letters`) and lost with the process; give the application a durable store with `dead_letters(…)`");
        }
        let serving = transport
            .serve(plan, Arc::new(AppInbound::new(self.clone())))
            .await?;
        // Readiness: consumers run from here until this `Serving` is shut down or dropped.
        let consumers =
            Flag::new("not serving: `serve()` was not called, or its `Serving` was shut down");
        consumers.set_up();
        self.add_health_check("consumers", consumers.clone());
        Ok(Serving::new(move || {
            consumers.set_down();
            Box::pin(serving.shutdown())
        }))
    }

    /// The application's dead-letter store (see
    /// [`CatgaBuilder::dead_letters`](crate::CatgaBuilder::dead_letters)): list its records,
    /// take them out, or replay them with [`Catga::replay_dead_letter`].
    pub fn dead_letters(&self) -> &Arc<dyn DynDeadLetterStore> {
        &self.inner.settings.dead_letters
    }

    /// Dispatches an envelope that arrived from a transport: through the same pipeline as a
    /// local message, with the context the envelope carries (ids, a request's remaining
    /// deadline, headers, trace context). A request whose sender already gave up is not
    /// handled.
    ///
    /// This is the bare dispatch: a transport hands arriving messages to the application
    /// through [`Inbound`](crate::transport::Inbound), which adds the delivery rules
    /// (panics contained, failures kept, routes checked).
    ///
    /// # Errors
    /// As [`dispatch_bytes`](Catga::dispatch_bytes), and [`ErrorKind::Timeout`] for an expired
    /// request.
    pub async fn dispatch_envelope(&self, envelope: &Envelope) -> Result<Option<Vec<u8>>, Error> {
        self.dispatch_envelope_with(envelope, envelope.context())
            .await
    }

    /// [`dispatch_envelope`](Self::dispatch_envelope) with the receiving context prepared.
    pub(super) async fn dispatch_envelope_with(
        &self,
        envelope: &Envelope,
        ctx: crate::context::Context,
    ) -> Result<Option<Vec<u8>>, Error> {
        if envelope.expired() {
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
        self.dispatch_wire(envelope.format, &envelope.name, &envelope.payload, ctx)
            .await
    }
}

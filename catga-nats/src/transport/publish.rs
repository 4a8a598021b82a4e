//! Publishing an event: a JetStream message, stored before `publish` returns.
//!
//! The publish is a hand-written future ([`EventPublish`]) rather than an `async fn`: the
//! transport boxes it once per event, so its size is paid per publish (copied into the box,
//! and above about 1 KB the allocator's slower path; docs/performance.md). An `async fn`
//! keeps its arguments for its whole life next to the client's own 840-byte publish future;
//! this one keeps the client's future and only what a second attempt needs.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use catga_core::envelope::Envelope;
use catga_core::transport::TransportError;
use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use uuid::Uuid;

use super::Shared;
use crate::error::{NatsError, PublishStage};
use crate::headers::{self, Implied};

impl Shared {
    /// Refuses what the server would refuse: a message larger than its `max_payload`, headers
    /// included.
    pub(crate) fn check_size(
        &self,
        headers: &HeaderMap,
        payload: usize,
    ) -> Result<(), TransportError> {
        let size = headers::wire_size(headers, payload);
        let limit = self.client.max_payload();
        if size > limit {
            return Err(TransportError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Publishes `envelope` on its event subject with `Nats-Msg-Id` = its message id, and
    /// waits for the stream's acknowledgement. A copy republished within the duplicate window
    /// is acknowledged by the server without being stored again. If the stream is gone (a
    /// server restarted without its store), it is created again and the event published once
    /// more.
    pub(crate) fn publish(
        &self,
        mut envelope: Envelope,
    ) -> EventPublish<'_, impl Future<Output = Result<PublishAckFuture, PublishError>> + Send + '_>
    {
        let name = std::mem::take(&mut envelope.name);
        let start = self
            .connected(&name)
            .and_then(|()| event_headers(&envelope, &name))
            .and_then(|map| {
                self.check_size(&map, envelope.payload.len())?;
                // Kept (a cheap, shared handle) in case the message has to be sent again.
                let payload = Bytes::from(std::mem::take(&mut envelope.payload));
                // With nothing set on the context the only header is the message id, and a second
                // attempt needs only that; otherwise it needs the envelope's headers again.
                let resend = if headers::is_single(&map) {
                    Resend::Id(envelope.id)
                } else {
                    Resend::Envelope(Box::new(envelope))
                };
                let subject = self.subjects.event_subject(&name);
                let message = PublishMessage::build()
                    .headers(map)
                    .payload(payload.clone());
                Ok((
                    self.jetstream.send_publish(subject, message),
                    resend,
                    payload,
                ))
            });
        let (step, resend) = match start {
            Ok((sent, resend, payload)) => (Step::Sending { sent }, Some((resend, payload))),
            Err(error) => (Step::Failed { error: Some(error) }, None),
        };
        EventPublish {
            shared: self,
            name,
            resend,
            step,
        }
    }

    /// Creates the events stream again (a server restarted without its store) and publishes
    /// once more.
    async fn recreate_and_store(
        &self,
        name: Cow<'static, str>,
        resend: Resend,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        tracing::warn!(target: "catga::nats", stream = %self.stream,
            "the events stream is gone; creating it again");
        self.ensure_stream().await?;
        let map = match &resend {
            Resend::Id(id) => headers::event_id_only(*id),
            Resend::Envelope(envelope) => event_headers(envelope, &name)?,
        };
        let subject = self.subjects.event_subject(&name);
        let message = PublishMessage::build().headers(map).payload(payload);
        let stored = match self.jetstream.send_publish(subject, message).await {
            Ok(ack) => ack.await.map_err(|e| (e, PublishStage::Acking)),
            Err(e) => Err((e, PublishStage::Sending)),
        };
        self.settle(&name, resend.id(), stored)
    }

    /// Nothing is sent while the client is not connected: the client would queue the message
    /// and send it after reconnecting, and a caller that gave up meanwhile could not tell
    /// whether it was stored. [`TransportError::Unreachable`] says it was not.
    pub(crate) fn connected(&self, name: &str) -> Result<(), TransportError> {
        if self.client.connection_state() == State::Connected {
            Ok(())
        } else {
            Err(NatsError::not_connected(name))
        }
    }

    /// The outcome of a store, as the transport reports it.
    fn settle(
        &self,
        name: &str,
        id: Uuid,
        stored: Result<PublishAck, (PublishError, PublishStage)>,
    ) -> Result<(), TransportError> {
        let ack = stored.map_err(|(e, stage)| {
            let subject = self.subjects.event_subject(name);
            NatsError::publish(name, &subject, e, self.config.response_timeout, stage)
        })?;
        if ack.duplicate {
            tracing::debug!(target: "catga::nats", message = %name, %id, sequence = ack.sequence,
                "republished event dropped by the server as a duplicate");
        }
        Ok(())
    }
}

/// An event's headers; `name` is the envelope's (taken out of it to be kept).
fn event_headers(envelope: &Envelope, name: &str) -> Result<HeaderMap, TransportError> {
    headers::from_envelope(envelope, Implied::Event(name)).map_err(|e| NatsError::header(name, e))
}

/// What a second attempt needs to build the same headers again.
enum Resend {
    /// The message id, the only header.
    Id(Uuid),
    /// The envelope, payload taken out (boxed: most events are [`Resend::Id`]).
    Envelope(Box<Envelope>),
}

impl Resend {
    fn id(&self) -> Uuid {
        match self {
            Resend::Id(id) => *id,
            Resend::Envelope(envelope) => envelope.id,
        }
    }
}

type AckFuture = <PublishAckFuture as IntoFuture>::IntoFuture;

pin_project! {
    #[project = StepProj]
    enum Step<'a, S> {
        /// Handing the message to the client.
        Sending { #[pin] sent: S },
        /// Waiting for the stream's acknowledgement.
        Acking { ack: AckFuture },
        /// The stream was gone: creating it and publishing again.
        Recovering { again: BoxFuture<'a, Result<(), TransportError>> },
        /// Refused before sending (headers, size); the error is handed out once.
        Failed { error: Option<TransportError> },
    }
}

pin_project! {
    /// One event's publish (see the module docs).
    pub(crate) struct EventPublish<'a, S> {
        shared: &'a Shared,
        name: Cow<'static, str>,
        resend: Option<(Resend, Bytes)>,
        #[pin]
        step: Step<'a, S>,
    }
}

impl<'a, S> Future for EventPublish<'a, S>
where
    S: Future<Output = Result<PublishAckFuture, PublishError>>,
{
    type Output = Result<(), TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let stored = match this.step.as_mut().project() {
                StepProj::Sending { sent } => match ready!(sent.poll(cx)) {
                    Ok(ack) => {
                        this.step.set(Step::Acking {
                            ack: ack.into_future(),
                        });
                        continue;
                    }
                    Err(e) => Err((e, PublishStage::Sending)),
                },
                StepProj::Acking { ack } => {
                    ready!(ack.as_mut().poll(cx)).map_err(|e| (e, PublishStage::Acking))
                }
                StepProj::Recovering { again } => {
                    let done = ready!(again.as_mut().poll(cx));
                    this.step.set(Step::Failed { error: None });
                    return Poll::Ready(done);
                }
                StepProj::Failed { error } => {
                    // Polled again after the error was handed out: a contract violation by the
                    // caller; stay pending rather than panic.
                    return error.take().map_or(Poll::Pending, |e| Poll::Ready(Err(e)));
                }
            };
            let shared: &'a Shared = this.shared;
            if let Err((e, _)) = &stored
                && e.kind() == PublishErrorKind::StreamNotFound
                && let Some((resend, payload)) = this.resend.take()
            {
                // Boxed: the rare recovery's futures (creating a stream) would otherwise make
                // every publish's future several KB.
                let name = std::mem::take(this.name);
                let again = Box::pin(shared.recreate_and_store(name, resend, payload));
                this.step.set(Step::Recovering { again });
                continue;
            }
            this.step.set(Step::Failed { error: None });
            let id = this.resend.as_ref().map_or(Uuid::nil(), |(r, _)| r.id());
            return Poll::Ready(shared.settle(this.name, id, stored));
        }
    }
}

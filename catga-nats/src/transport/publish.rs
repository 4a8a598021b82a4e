//! Publishing an event: a JetStream message, stored before `publish` returns.

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use catga_core::envelope::Envelope;
use catga_core::transport::TransportError;

use super::Shared;
use crate::error::NatsError;
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
    pub(crate) async fn publish(&self, mut envelope: Envelope) -> Result<(), TransportError> {
        // A `Subject` shares its bytes: a retry or an error message costs no copy.
        let subject = self.subjects.event_subject(&envelope.name);
        let headers = |envelope: &Envelope| {
            headers::from_envelope(envelope, Implied::Event(&envelope.name))
                .map_err(|e| NatsError::header(&envelope.name, e))
        };
        let map = headers(&envelope)?;
        self.check_size(&map, envelope.payload.len())?;
        // Kept (a cheap, shared handle) in case the message has to be sent again.
        let payload = bytes::Bytes::from(std::mem::take(&mut envelope.payload));
        let timeout = self.settings.publish_timeout;
        let failed = |e| NatsError::publish(&envelope.name, &subject, e, timeout);
        let ack = match self.store(subject.clone(), map, payload.clone()).await {
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                // Boxed: the rare recovery's futures (creating a stream) would otherwise make
                // every publish's future, which the transport boxes and copies, several KB.
                let map = headers(&envelope)?;
                Box::pin(self.recreate_and_store(subject.clone(), map, payload))
                    .await?
                    .map_err(failed)?
            }
            other => other.map_err(failed)?,
        };
        if ack.duplicate {
            tracing::debug!(target: "catga::nats", message = %envelope.name, id = %envelope.id,
                sequence = ack.sequence, "republished event dropped by the server as a duplicate");
        }
        Ok(())
    }

    /// Creates the events stream again (a server restarted without its store) and publishes
    /// once more.
    async fn recreate_and_store(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<Result<PublishAck, PublishError>, NatsError> {
        tracing::warn!(target: "catga::nats", stream = %self.stream,
            "the events stream is gone; creating it again");
        self.ensure_stream().await?;
        Ok(self.store(subject, headers, payload).await)
    }

    /// Publishes to JetStream and waits for the stream's acknowledgement.
    async fn store(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<PublishAck, PublishError> {
        let message = PublishMessage::build().headers(headers).payload(payload);
        self.jetstream.send_publish(subject, message).await?.await
    }
}

//! Sending a request: a core NATS request to the service's queue group, waiting for one reply.

use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::transport::{Reply, TransportError};

use super::Shared;
use crate::error::NatsError;
use crate::headers::{self, Implied};

impl Shared {
    /// Sends `envelope` to one instance of a service that handles it and waits up to
    /// `timeout` (the caller's remaining deadline) for the reply. A handler's error comes back
    /// as [`Reply::Err`]; nobody subscribed is [`TransportError::NoResponders`] at once. Not
    /// connected, nothing is sent ([`TransportError::Unreachable`]); once handed to the client,
    /// a failure is in doubt (see [`NatsError::request`]).
    pub(crate) async fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        if timeout.is_zero() {
            return Err(TransportError::Timeout(timeout));
        }
        self.connected(&envelope.name)?;
        let subject = self.subjects.request_subject(&envelope.name);
        let map = headers::from_envelope(&envelope, Implied::Request(&envelope.name))
            .map_err(|e| NatsError::header(&envelope.name, e))?;
        self.check_size(&map, envelope.payload.len())?;
        let request = async_nats::Request::new()
            .headers(map)
            .payload(envelope.payload.into())
            .timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => headers::to_reply(reply.headers.as_ref(), Vec::from(reply.payload))
                .map_err(TransportError::UnreadableReply),
            Err(e) => Err(NatsError::request(&envelope.name, &subject, e, timeout)),
        }
    }
}

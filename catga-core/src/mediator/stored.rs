//! Publishing an event that was encoded and stored before, with the ids it was given then:
//! what an outbox relay does once the transaction that wrote the event committed.

use crate::codec::CodecError;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::pipeline::Layer;

use super::Catga;
use super::remote::codec_error;

impl<L: Layer> Catga<L> {
    /// Publishes `envelope`, an event encoded and stored earlier (by
    /// [`Context::take_published`](crate::Context::take_published) and an outbox), keeping its
    /// message id, correlation and causation ids, headers and trace context, so a consumer's
    /// inbox recognises a second publication of it.
    ///
    /// With a transport, the envelope goes to the transport as it is, and this resolves once
    /// the transport accepted it (a durable broker: stored); the caller may then forget it.
    /// Without one, the event's handlers in this process run, and a handler that fails is
    /// kept as a failed follow-up event is (the `DeadLetter` layer, else the application's
    /// dead-letter store): that is handled, so this returns `Ok`.
    ///
    /// The payload is decoded before anything is published, so bytes no consumer could read
    /// never reach the broker.
    ///
    /// # Errors
    /// Permanent, publishing again cannot help (keep the envelope where a person can find
    /// it): [`ErrorKind::UnknownMessage`] for a name no event type linked into this program
    /// has, [`ErrorKind::WrongKind`] for a command or query, [`ErrorKind::Codec`] for a payload
    /// over the size limit or one that does not decode.
    ///
    /// Transient, publish again later: [`ErrorKind::Transport`] when the transport refused it
    /// or could not be reached ([`Error::is_retryable`] tells).
    pub async fn publish_envelope(&self, envelope: Envelope) -> Result<(), Error> {
        let limit = self.inner.settings.max_payload_bytes;
        if envelope.payload.len() > limit {
            return Err(codec_error(
                &envelope.name,
                CodecError::TooLarge {
                    size: envelope.payload.len(),
                    limit,
                },
            ));
        }
        let Some(info) = self.inner.table.by_name(&envelope.name) else {
            return Err(ErrorKind::UnknownMessage {
                name: envelope.name.chars().take(256).collect(),
            }
            .into());
        };
        if info.kind().is_request() {
            return Err(ErrorKind::WrongKind {
                message: info.name(),
                expected: "event",
                actual: info.kind().as_str(),
            }
            .into());
        }
        let event = info
            .decode(envelope.format, &envelope.payload)
            .map_err(|source| codec_error(info.name(), source))?;
        let ctx = envelope.context();
        if self.inner.settings.transport.is_some() {
            self.inner.layers.observe_publish(&*event, &ctx);
            self.send_envelope(info.name(), envelope).await
        } else {
            let caused = envelope.context();
            // Boxed: the in-process path's future is kilobytes, and would otherwise size every
            // publish to a transport too (a relay keeps hundreds in flight).
            Box::pin(self.publish_follow_up(&*event, ctx, &caused)).await;
            Ok(())
        }
    }
}

//! Firing a scheduled message: the application's side of
//! [`cluster::Scheduler`](crate::cluster::Scheduler).

use crate::codec::WireFormat;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::pipeline::Layer;
use crate::store::dead_letter::FailureStage;

use super::Catga;
use super::remote::codec_error;

impl<L: Layer> Catga<L> {
    /// The format this application encodes messages in.
    pub(crate) fn format(&self) -> WireFormat {
        self.inner.settings.wire_format
    }

    /// Sends or publishes `envelope`, a message scheduled earlier, with the ids it was given:
    /// a command or query where [`send`](Catga::send) would send it (its handler here, else
    /// through the transport; the reply is dropped), an event as
    /// [`publish_envelope`](Catga::publish_envelope) publishes it.
    ///
    /// # Errors
    /// Permanent ([`Error::is_retryable`] is `false`: firing again cannot help): an unknown
    /// name, an undecodable payload, a handler that refused it. Transient: the transport, a
    /// retryable handler failure.
    pub(crate) async fn fire_scheduled(&self, envelope: &Envelope) -> Result<(), Error> {
        let Some(info) = self.inner.table.by_name(&envelope.name) else {
            return Err(ErrorKind::UnknownMessage {
                name: envelope.name.chars().take(256).collect(),
            }
            .into());
        };
        if !info.kind().is_request() {
            return self.publish_envelope(envelope.clone()).await;
        }
        let msg = info
            .decode(envelope.format, &envelope.payload)
            .map_err(|source| codec_error(info.name(), source))?;
        self.send_dyn(msg, envelope.context()).await.map(|_| ())
    }

    /// Keeps a scheduled message that could not be fired, for good, in the application's
    /// dead-letter store (replayable when its payload is JSON); logs when even that fails.
    pub(crate) async fn keep_unfired(&self, envelope: &Envelope, error: &Error) {
        let payload = (envelope.format == WireFormat::Json).then(|| envelope.payload.to_vec());
        let ctx = envelope.context();
        let mut record =
            crate::behavior::dead_letter_record(&envelope.name, None, payload, error, &ctx);
        record.stage = FailureStage::Delivery;
        record.source = Some("scheduler".to_string());
        if let Err(e) = self.inner.settings.dead_letters.put_dyn(record).await {
            tracing::error!(target: "catga", message = %envelope.name, message_id = %envelope.id,
                error = %e, fired_error = %error,
                "a scheduled message could not be fired and could not be kept in the dead-letter store: this log is its only record");
        }
    }
}

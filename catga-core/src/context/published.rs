//! The events a handler queued, handed over as envelopes to whoever stores them with the
//! handler's own writes (a transactional outbox).

use crate::codec::WireFormat;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};

use super::Context;

impl Context {
    /// Takes the events the handler queued with [`publish`](Self::publish) that travel between
    /// processes, encoded in `format`, as the envelopes the application would have published:
    /// each with its own message id (a UUID v7), this conversation's correlation id, this
    /// message as its cause, and this context's headers. The application then publishes none
    /// of them itself: the caller owns them, typically to write them into an outbox table in
    /// the transaction of the handler's own writes and have a relay publish them after commit
    /// (see `catga-postgres`).
    ///
    /// `local` events stay queued and are published in this process when the dispatch
    /// succeeds, as usual: they have no wire form to store. Call it after the handler
    /// succeeded; a failed handler's events are already discarded.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] if an event cannot be encoded in `format`; every event taken is
    /// then dropped, so the caller fails the dispatch (and rolls its transaction back) rather
    /// than commit writes whose events were lost.
    pub fn take_published(&self, format: WireFormat) -> Result<Vec<Envelope>, Error> {
        let Some(pending) = self.pending() else {
            return Ok(Vec::new());
        };
        let taken = pending.take_matching(|p| p.event.info().is_wire());
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let caused = self.caused();
        let mut envelopes = Vec::with_capacity(taken.len());
        for queued in taken {
            let info = queued.event.info();
            let payload = queued
                .event
                .encode(format)
                .map_err(|source| ErrorKind::Codec {
                    message: info.name().to_string(),
                    source,
                })?;
            let ctx = caused.sibling();
            envelopes.push(Envelope::with_payload(
                info.name(),
                info.kind(),
                &ctx,
                format,
                payload,
            ));
        }
        Ok(envelopes)
    }
}

//! The bytes path: a wire name plus an encoded payload, dispatched through the same table.
//!
//! This is what transports call when a message arrives. The name selects the message type,
//! the payload is decoded (never trusting its size or shape), the message runs through the same
//! behaviours and handler as a local one, and a request's reply is encoded back.

use crate::codec::{CodecError, WireFormat};
use crate::context::Context;
use crate::error::Error;
use crate::pipeline::Layer;
use crate::registry::Entry;

use super::Catga;

/// Longest wire name echoed back in [`ErrorKind::UnknownMessage`](crate::ErrorKind::UnknownMessage), so hostile input cannot make
/// errors (and the logs they end up in) arbitrarily large.
const MAX_ECHOED_NAME: usize = 256;

impl<L: Layer> Catga<L> {
    /// Dispatches a JSON-encoded message by wire name.
    ///
    /// Returns `Some(reply)` (the JSON-encoded output) for a command or query, `None` for an
    /// event once all its handlers ran.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownMessage`](crate::ErrorKind::UnknownMessage) for a name no message type has; [`ErrorKind::Codec`](crate::ErrorKind::Codec) for a payload
    /// over the size limit (checked before decoding) or one that does not decode;
    /// [`ErrorKind::NoHandler`](crate::ErrorKind::NoHandler) for a request handled nowhere; and every error a local dispatch can
    /// return. Nothing panics on any input.
    pub async fn dispatch_bytes(
        &self,
        name: &str,
        payload: &[u8],
        ctx: Context,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.dispatch_wire(WireFormat::Json, name, payload, ctx)
            .await
    }

    /// [`dispatch_bytes`](Self::dispatch_bytes) for a payload in `format`; the reply is in
    /// the same format.
    ///
    /// # Errors
    /// As [`dispatch_bytes`](Self::dispatch_bytes).
    pub async fn dispatch_wire(
        &self,
        format: WireFormat,
        name: &str,
        payload: &[u8],
        ctx: Context,
    ) -> Result<Option<Vec<u8>>, Error> {
        let limit = self.inner.settings.max_payload_bytes;
        if payload.len() > limit {
            return Err(crate::ErrorKind::Codec {
                message: echo(name),
                source: CodecError::TooLarge {
                    size: payload.len(),
                    limit,
                },
            }
            .into());
        }
        let Some(info) = self.inner.table.by_name(name) else {
            return Err(crate::ErrorKind::UnknownMessage { name: echo(name) }.into());
        };
        let msg = info.decode(format, payload).map_err(|source| {
            Error::from(crate::ErrorKind::Codec {
                message: info.name().to_string(),
                source,
            })
        })?;
        match self.inner.table.entry(info) {
            Some(Entry::Request(entry)) => {
                let output = self.call_local_dyn(entry.erased(), msg, &ctx).await?;
                let reply = info
                    .output_codec()
                    .encode(format, &*output)
                    .map_err(|source| {
                        Error::from(crate::ErrorKind::Codec {
                            message: info.name().to_string(),
                            source,
                        })
                    })?;
                Ok(Some(reply))
            }
            Some(Entry::Event(_)) | None if !info.kind().is_request() => {
                self.publish_dyn(&*msg, ctx).await?;
                Ok(None)
            }
            _ => Err(crate::ErrorKind::NoHandler {
                message: info.name(),
            }
            .into()),
        }
    }
}

fn echo(name: &str) -> String {
    let mut end = name.len().min(MAX_ECHOED_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

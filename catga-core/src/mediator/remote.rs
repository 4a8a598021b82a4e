//! Dispatch through the transport: requests with no handler here, and events (which every
//! service, this one included, receives from the transport).

use std::future::Future;
use std::time::Duration;

use super::Catga;
use super::guard;
use crate::codec::{Json, MessagePack, WireFormat};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::{Event, Request};
use crate::payload::AnyMessage;
use crate::pipeline::{Layer, Terminal};
use crate::transport::{Reply, Transport, TransportError};

/// The end of the pipeline for a request handled in another process.
struct RemoteTerminal<'a> {
    transport: &'a dyn Transport,
    ctx: &'a Context,
    format: WireFormat,
    default_timeout: Duration,
}

fn transport_error(message: &str, transport: &dyn Transport, source: TransportError) -> Error {
    ErrorKind::Transport {
        message: message.to_string(),
        transport: transport.name(),
        source,
    }
    .into()
}

fn codec_error(message: &str, source: crate::codec::CodecError) -> Error {
    ErrorKind::Codec {
        message: message.to_string(),
        source,
    }
    .into()
}

impl<M: Request> Terminal<M> for RemoteTerminal<'_> {
    fn call(
        &self,
        msg: M,
        _ctx: &Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send {
        let (transport, ctx, format) = (self.transport, self.ctx, self.format);
        let timeout = ctx.remaining().unwrap_or(self.default_timeout);
        async move {
            let envelope =
                Envelope::wrap(&msg, ctx, format).map_err(|e| codec_error(M::NAME, e))?;
            match transport.request(envelope, timeout).await {
                Ok(Reply::Ok(bytes)) => match format {
                    WireFormat::Json => M::__decode_output(&Json, &bytes),
                    WireFormat::MessagePack => M::__decode_output(&MessagePack, &bytes),
                }
                .map_err(|e| codec_error(M::NAME, e)),
                // The deadline travels with the request, so the handling process may notice it
                // first (its clock, its timer): that is still this call timing out, and callers
                // should see one kind of error whichever side won the race.
                Ok(Reply::Err(failure)) if failure.code == "timeout" => Err(ErrorKind::Timeout {
                    message: M::NAME,
                    after: None,
                }
                .into()),
                Ok(Reply::Err(failure)) => Err(ErrorKind::Remote {
                    message: M::NAME.to_string(),
                    remote_code: failure.code,
                    detail: failure.message,
                    retryable: failure.retryable,
                }
                .into()),
                Err(TransportError::Timeout(after)) => Err(ErrorKind::Timeout {
                    message: M::NAME,
                    after: Some(after),
                }
                .into()),
                Err(source) => Err(transport_error(M::NAME, transport, source)),
            }
        }
    }
}

impl<L: Layer> Catga<L> {
    /// A request with no handler here: through the behaviours, then the transport.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` stores its arguments twice; see `publish_with`"
    )]
    pub(super) fn send_remote<M: Request>(
        &self,
        msg: M,
        ctx: Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + '_ {
        // An `async` block, not an `async fn`: see `Catga::publish_with`.
        async move {
            let settings = &self.inner.settings;
            let Some(transport) = settings.transport.as_deref() else {
                return Err(ErrorKind::NoHandler { message: M::NAME }.into());
            };
            let terminal = RemoteTerminal {
                transport,
                ctx: &ctx,
                format: settings.wire_format,
                default_timeout: settings.request_timeout,
            };
            if ctx.is_guarded() {
                guard::watch(&ctx, M::NAME, self.inner.layers.run(msg, &ctx, &terminal)).await
            } else {
                self.inner.layers.run(msg, &ctx, &terminal).await
            }
        }
    }

    /// An event, to the transport. Not an `async fn`: the envelope is built and handed to the
    /// transport before the first await, so only the transport's boxed future is kept across
    /// it (callers move the publish future; a kept envelope would add a few hundred bytes).
    pub(super) fn publish_remote<'a, E: Event>(
        transport: &'a dyn Transport,
        format: WireFormat,
        event: &E,
        ctx: &Context,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        let sent = Envelope::wrap(event, ctx, format)
            .map(|envelope| transport.publish(envelope))
            .map_err(|e| codec_error(E::NAME, e));
        async move {
            sent?
                .await
                .map_err(|source| transport_error(E::NAME, transport, source))
        }
    }

    /// A queued follow-up event: to the transport if there is one, else to the handlers here.
    pub(super) async fn publish_out(
        &self,
        event: &dyn AnyMessage,
        ctx: Context,
    ) -> Result<(), Error> {
        if self.inner.settings.transport.is_none() {
            return self.publish_dyn(event, ctx).await;
        }
        self.inner.layers.observe_publish(event, &ctx);
        let info = event.info();
        let format = self.inner.settings.wire_format;
        let payload = event
            .encode(format)
            .map_err(|e| codec_error(info.name(), e))?;
        let envelope = Envelope::with_payload(info.name(), info.kind(), &ctx, format, payload);
        self.send_envelope(info.name(), envelope).await
    }

    /// `name` is the envelope's, borrowed for the error: the envelope moves into the transport.
    async fn send_envelope(&self, name: &str, envelope: Envelope) -> Result<(), Error> {
        let Some(transport) = self.inner.settings.transport.as_deref() else {
            return Ok(());
        };
        transport
            .publish(envelope)
            .await
            .map_err(|source| transport_error(name, transport, source))
    }
}

//! Dispatch through the transport: requests with no handler here, and events (which every
//! service, this one included, receives from the transport).

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use super::Catga;
use crate::codec::{CodecError, WireFormat, in_format, json_of};
use crate::context::Context;
use crate::dispatch::guard;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::AnyMessage;
use crate::message::{Event, Request};
use crate::payload::Payload;
use crate::pipeline::{Layer, Terminal};
use crate::store::dead_letter::FailureStage;
use crate::telemetry::span::Produced;
use crate::transport::{Reply, Transport, TransportError};
use uuid::Uuid;

/// The end of the pipeline for a request handled in another process (typed here; the
/// type-erased one is in `dyn_send`).
pub(super) struct RemoteTerminal<'a> {
    pub(super) transport: &'a dyn Transport,
    pub(super) ctx: &'a Context,
    pub(super) format: WireFormat,
    default_timeout: Duration,
    /// The largest reply decoded (`max_payload_bytes`): a reply is bytes off the wire too.
    pub(super) max_reply: usize,
}

impl RemoteTerminal<'_> {
    /// How long the request may wait: what is left of the context's deadline, else the
    /// application's `request_timeout`.
    pub(super) fn timeout(&self) -> Duration {
        self.ctx.remaining().unwrap_or(self.default_timeout)
    }
}

fn transport_error(message: &str, transport: &dyn Transport, source: TransportError) -> Error {
    ErrorKind::Transport {
        message: message.to_string(),
        transport: transport.name(),
        source,
    }
    .into()
}

pub(super) fn codec_error(message: &str, source: CodecError) -> Error {
    ErrorKind::Codec {
        message: message.to_string(),
        source,
    }
    .into()
}

/// Sends `envelope` (the request `name`) and maps what comes back, `decode` reading a
/// successful reply of at most `max_reply` bytes: one mapping for the typed and the
/// type-erased path.
pub(super) async fn exchange<T>(
    transport: &dyn Transport,
    name: &'static str,
    envelope: Envelope,
    (timeout, max_reply): (Duration, usize),
    decode: impl FnOnce(&[u8]) -> Result<T, CodecError>,
) -> Result<T, Error> {
    let mut envelope = envelope.or_deadline_in(timeout);
    let produced = Produced::start(transport.name(), &mut envelope);
    let replied = transport
        .request(envelope, timeout)
        .instrument(produced.span.clone())
        .await;
    let result = replied_with(transport, name, replied, (timeout, max_reply), decode);
    produced.finish(result.as_ref().err().map(Error::code));
    result
}

/// Maps what came back for the request `name`: see [`exchange`].
fn replied_with<T>(
    transport: &dyn Transport,
    name: &'static str,
    replied: Result<Reply, TransportError>,
    (timeout, max_reply): (Duration, usize),
    decode: impl FnOnce(&[u8]) -> Result<T, CodecError>,
) -> Result<T, Error> {
    match replied {
        Ok(Reply::Ok(bytes)) if bytes.len() > max_reply => Err(codec_error(
            name,
            CodecError::TooLarge {
                size: bytes.len(),
                limit: max_reply,
            },
        )),
        Ok(Reply::Ok(bytes)) => decode(&bytes).map_err(|e| codec_error(name, e)),
        // The deadline travels with the request, so the handling process may notice it
        // first (its clock, its timer): that is still this call timing out after the time it
        // allowed, and callers should see one error whichever side won the race. (A domain
        // code cannot be `timeout`: catga's codes are reserved.)
        Ok(Reply::Err(failure)) if failure.code == "timeout" => Err(ErrorKind::Timeout {
            message: name,
            after: Some(timeout),
        }
        .into()),
        Ok(Reply::Err(failure)) => Err(ErrorKind::Remote {
            message: name.to_string(),
            failure,
        }
        .into()),
        Err(TransportError::Timeout(after)) => Err(ErrorKind::Timeout {
            message: name,
            after: Some(after),
        }
        .into()),
        Err(source) => Err(transport_error(name, transport, source)),
    }
}

impl<M: Request> Terminal<M> for RemoteTerminal<'_> {
    fn goes_remote(&self) -> bool {
        true
    }

    fn call(
        &self,
        msg: M,
        _ctx: &Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send {
        let (transport, ctx, format) = (self.transport, self.ctx, self.format);
        let limits = (self.timeout(), self.max_reply);
        async move {
            let envelope =
                Envelope::wrap(&msg, ctx, format).map_err(|e| codec_error(M::NAME, e))?;
            exchange(transport, M::NAME, envelope, limits, |bytes| {
                let json = json_of(format, bytes, std::any::type_name::<M::Output>())?;
                M::__decode_output_json(&json).map_err(|e| in_format(format, e))
            })
            .await
        }
    }
}

impl<L: Layer> Catga<L> {
    /// A request with no handler here: through the behaviours, then the transport. Typed
    /// for `send`, type-erased (`DynRequest`) for the sends of a saga.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` stores its arguments twice; see `publish_with`"
    )]
    pub(super) fn send_remote<'a, P>(
        &'a self,
        msg: P,
        ctx: Context,
    ) -> impl Future<Output = Result<P::Output, Error>> + 'a
    where
        P: Payload + 'a,
        for<'t> RemoteTerminal<'t>: Terminal<P>,
    {
        // An `async` block, not an `async fn`: see `Catga::publish_with`.
        async move {
            let name = msg.info().name();
            let settings = &self.inner.settings;
            let Some(transport) = settings.transport.as_deref() else {
                return Err(ErrorKind::NoHandler { message: name }.into());
            };
            let terminal = RemoteTerminal {
                transport,
                ctx: &ctx,
                format: settings.wire_format,
                default_timeout: settings.request_timeout,
                max_reply: settings.max_payload_bytes,
            };
            if ctx.is_guarded() {
                guard::watch(&ctx, name, self.inner.layers.run(msg, &ctx, &terminal)).await
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
            .map(|mut envelope| {
                let produced = Produced::start(transport.name(), &mut envelope);
                (transport.publish(envelope), produced)
            })
            .map_err(|e| codec_error(E::NAME, e));
        async move {
            let (publishing, produced) = sent?;
            let published = publishing.instrument(produced.span.clone()).await;
            let result = published.map_err(|source| transport_error(E::NAME, transport, source));
            produced.finish(result.as_ref().err().map(Error::code));
            result
        }
    }

    /// A queued follow-up event, to the transport.
    pub(super) async fn publish_out(
        &self,
        event: &dyn AnyMessage,
        ctx: Context,
    ) -> Result<(), Error> {
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
    pub(super) async fn send_envelope(
        &self,
        name: &str,
        mut envelope: Envelope,
    ) -> Result<(), Error> {
        let Some(transport) = self.inner.settings.transport.as_deref() else {
            return Ok(());
        };
        let produced = Produced::start(transport.name(), &mut envelope);
        let result = transport
            .publish(envelope)
            .instrument(produced.span.clone())
            .await
            .map_err(|source| transport_error(name, transport, source));
        produced.finish(result.as_ref().err().map(Error::code));
        result
    }
}

impl<L: Layer> Catga<L> {
    /// Keeps a follow-up event the transport would not take in the application's dead-letter
    /// store, to be published again with [`Catga::replay_dead_letter`]. Returns the record's
    /// id, or `None` if it could not be kept (the error is logged).
    pub(super) async fn keep_unpublished(
        &self,
        event: &dyn AnyMessage,
        id: Uuid,
        error: &Error,
    ) -> Option<Uuid> {
        let info = event.info();
        let ctx = Context::new().with_message_id(id);
        let mut record = crate::behavior::dead_letter_record(
            info.name(),
            None,
            event.encode_json().ok(),
            error,
            &ctx,
        );
        record.stage = FailureStage::Publish;
        let kept = record.id;
        match self.inner.settings.dead_letters.put_dyn(record).await {
            Ok(()) => Some(kept),
            Err(e) => {
                tracing::error!(target: "catga", event = info.name(), message_id = %id, error = %e,
                    "could not keep an unpublished follow-up event in the dead-letter store");
                None
            }
        }
    }

    /// Publishes again an event that was dead-lettered before it reached the transport: to
    /// the transport if there is one, else to the handlers here.
    pub(crate) async fn republish(
        &self,
        name: &str,
        json: Vec<u8>,
        ctx: &Context,
    ) -> Result<(), Error> {
        let Some(info) = self.inner.table.by_name(name) else {
            return Err(ErrorKind::UnknownMessage {
                name: name.to_string(),
            }
            .into());
        };
        let event = info
            .decode(WireFormat::Json, &json)
            .map_err(|e| codec_error(info.name(), e))?;
        let child = Context::new()
            .with_message_id(ctx.message_id())
            .with_correlation_id(ctx.correlation_id());
        let child = match ctx.causation_id() {
            Some(causation) => child.with_causation_id(causation),
            None => child,
        };
        if self.inner.settings.transport.is_some() {
            self.publish_out(&*event, child).await
        } else {
            self.publish_dyn(&*event, child).await
        }
    }
}

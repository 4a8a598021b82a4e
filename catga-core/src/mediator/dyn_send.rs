//! `send` for a request whose type is known only at run time.
//!
//! A saga keeps its steps type-erased (it is generic over its data, not over each step's
//! command nor the application's behaviours), yet a step must go where `send` would send it:
//! to its handler in this process if there is one, else through the application's transport
//! as a request, through the same behaviours either way. Replaying a dead-lettered request
//! takes the same road.

use std::any::Any;
use std::future::Future;

use super::Catga;
use super::remote::{RemoteTerminal, codec_error, exchange};
use super::terminal::DynRequestTerminal;
use crate::codec::WireFormat;
use crate::context::Context;
use crate::dispatch::guard::guarded;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::message::AnyMessage;
use crate::payload::DynRequest;
use crate::pipeline::{Layer, Terminal};
use crate::registry::{AnyRequestEntry, Entry};

/// A reply whose type is known only at run time: the request's `Output`.
pub(crate) type AnyReply = Box<dyn Any + Send>;

impl<L: Layer> Catga<L> {
    /// Sends a command or query as [`send_with`](Catga::send_with) would: to its handler
    /// here, else through the transport (the context's deadline, else the application's
    /// `request_timeout`, bounding the wait), through the behaviour stack either way. The
    /// reply is of the request's output type.
    ///
    /// # Errors
    /// As `send_with`; [`ErrorKind::WrongKind`] for an event.
    pub(crate) async fn send_dyn(
        &self,
        msg: Box<dyn AnyMessage>,
        ctx: Context,
    ) -> Result<AnyReply, Error> {
        let info = msg.info();
        if !info.kind().is_request() {
            return Err(ErrorKind::WrongKind {
                message: info.name(),
                expected: "a command or query",
                actual: "an event",
            }
            .into());
        }
        match self.inner.table.entry(info) {
            Some(Entry::Request(entry)) => self.call_local_dyn(entry.erased(), msg, &ctx).await,
            _ => self.send_remote(DynRequest(msg), ctx).await,
        }
    }

    /// Runs a type-erased request through the behaviours and its handler here, then
    /// publishes what the handler queued (the bytes path and [`send_dyn`](Self::send_dyn)).
    pub(super) async fn call_local_dyn(
        &self,
        entry: &dyn AnyRequestEntry,
        msg: Box<dyn AnyMessage>,
        ctx: &Context,
    ) -> Result<AnyReply, Error> {
        let terminal = DynRequestTerminal { entry, ctx };
        let run = self.inner.layers.run(DynRequest(msg), ctx, &terminal);
        let output = guarded(ctx, entry.info().name(), run).await?;
        if ctx.pending_len() > 0 {
            self.after_reply(ctx).await;
        }
        Ok(output)
    }

    /// Dispatches a JSON-encoded message by wire name, a request going where `send` would
    /// send it (see [`send_dyn`](Self::send_dyn)); an event goes to its handlers here, as
    /// [`dispatch_bytes`](Catga::dispatch_bytes) does. The reply is JSON.
    pub(crate) async fn dispatch_routed(
        &self,
        name: &str,
        payload: &[u8],
        ctx: Context,
    ) -> Result<Option<Vec<u8>>, Error> {
        let request = self
            .inner
            .table
            .by_name(name)
            .filter(|info| info.kind().is_request());
        let Some(info) = request else {
            return self.dispatch_bytes(name, payload, ctx).await;
        };
        let msg = info
            .decode(WireFormat::Json, payload)
            .map_err(|e| codec_error(info.name(), e))?;
        let output = self.send_dyn(msg, ctx).await?;
        info.output_codec()
            .encode(WireFormat::Json, &*output)
            .map(Some)
            .map_err(|e| codec_error(info.name(), e))
    }
}

impl Terminal<DynRequest> for RemoteTerminal<'_> {
    fn goes_remote(&self) -> bool {
        true
    }

    fn call(
        &self,
        msg: DynRequest,
        _ctx: &Context,
    ) -> impl Future<Output = Result<AnyReply, Error>> + Send {
        let (transport, ctx, format) = (self.transport, self.ctx, self.format);
        let limits = (self.timeout(), self.max_reply);
        async move {
            let info = msg.0.info();
            let payload = msg
                .0
                .encode(format)
                .map_err(|e| codec_error(info.name(), e))?;
            let envelope = Envelope::with_payload(info.name(), info.kind(), ctx, format, payload);
            exchange(transport, info.name(), envelope, limits, |bytes| {
                info.output_codec().decode(format, bytes)
            })
            .await
        }
    }
}

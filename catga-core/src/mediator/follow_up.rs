//! Events queued with `ctx.publish`, and events of a type known only at run time.
//!
//! A handler's queued events are published after it succeeded. What becomes of them never
//! changes the outcome of the message that queued them: a command that committed returns its
//! reply even when a handler of its follow-up event fails, since a caller that saw an error
//! would retry and run the command again. Follow-up failures go where failed events go: the
//! `DeadLetter` layer (it runs around each follow-up handler), the application's dead-letter
//! store for an event the transport would not take, a metric
//! (`catga_follow_up_failures_total`) and an error log with the ids.
//!
//! These go through the type-erased entries (`AnyEventEntry`) and the same behaviour stack,
//! with [`DynEventRef`] as the payload. This path boxes its futures: it is recursive (a
//! follow-up's handlers may queue follow-ups) and only taken when events were queued.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::context::{Context, Pending};
use crate::error::{Error, ErrorKind, HandlerFailure};
use crate::payload::{AnyMessage, DynEventRef};
use crate::pipeline::Layer;
use crate::registry::Entry;

use super::Catga;
use super::panic::panicked;
use super::terminal::DynEventTerminal;

/// The events one dispatch queued, and the context they are caused under (each gets a
/// sibling of it, with its own id).
pub(crate) struct Queued {
    events: Vec<Pending>,
    caused: Context,
}

impl<L: Layer> Catga<L> {
    /// Takes the events the handler of `ctx` queued, in order.
    pub(crate) fn queued(ctx: &Context) -> Queued {
        Queued {
            events: ctx.take_pending(),
            caused: ctx.caused(),
        }
    }

    /// Publishes queued events, in order. Never fails: see the module docs. Owned, so a
    /// caller whose deadline passes can leave it running in the background.
    pub(crate) fn publish_queued(&self, queued: Queued) -> BoxFuture<'static, ()> {
        let app = self.clone();
        Box::pin(async move {
            for pending in queued.events {
                let ctx = queued.caused.sibling();
                app.publish_follow_up(&*pending.event, ctx).await;
            }
        })
    }

    /// One queued event: to the transport if there is one, else to the handlers here.
    async fn publish_follow_up(&self, event: &dyn AnyMessage, ctx: Context) {
        let info = event.info();
        let id = ctx.message_id();
        let (correlation, causation) = (ctx.correlation_id(), ctx.causation_id());
        let failure = if self.inner.settings.transport.is_some() {
            match self.publish_out(event, ctx).await {
                Ok(()) => return,
                Err(error) => {
                    let kept = self.keep_unpublished(event, id, &error).await;
                    tracing::error!(target: "catga", event = info.name(), message_id = %id,
                        correlation_id = %correlation, causation_id = ?causation, error = %error,
                        kept_as = ?kept,
                        "a follow-up event could not be published; it is in the dead-letter store, replay it from there");
                    error
                }
            }
        } else {
            match self.publish_dyn(event, ctx).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(target: "catga", event = info.name(), message_id = %id,
                        correlation_id = %correlation, causation_id = ?causation, error = %error,
                        "a handler of a follow-up event failed (a DeadLetter layer keeps it); the message that published it is not affected");
                    error
                }
            }
        };
        metrics::counter!("catga_follow_up_failures_total", "event" => info.name(), "code" => failure.code())
            .increment(1);
    }

    /// Publishes an event of a type known only at run time to all its handlers. A handler
    /// that panics fails alone ([`ErrorKind::Panicked`]); its siblings finish.
    pub(crate) fn publish_dyn<'a>(
        &'a self,
        event: &'a dyn AnyMessage,
        ctx: Context,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.layers.observe_publish(event, &ctx);
        self.handle_dyn(event, ctx)
    }

    /// [`publish_dyn`](Self::publish_dyn) once behaviours have observed the publish: runs the
    /// handlers and publishes what they queued.
    pub(crate) fn handle_dyn<'a>(
        &'a self,
        event: &'a dyn AnyMessage,
        ctx: Context,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let info = event.info();
            let Some(Entry::Event(entry)) = self.inner.table.entry(info) else {
                return Ok(());
            };
            let ctx = &ctx;
            let runs = entry.metas().iter().enumerate().map(|(index, meta)| {
                let scope = u32::try_from(index + 1).unwrap_or(u32::MAX);
                async move {
                    let terminal = DynEventTerminal {
                        entry: &**entry,
                        event,
                        ctx,
                        index,
                        scope,
                    };
                    let run = self.inner.layers.run(
                        DynEventRef {
                            event,
                            handler: meta.name,
                        },
                        ctx,
                        &terminal,
                    );
                    let result = match AssertUnwindSafe(run).catch_unwind().await {
                        Ok(result) => result,
                        Err(panic) => Err(panicked(info.name(), meta.name, panic)),
                    };
                    result.map_err(|error| HandlerFailure {
                        handler: meta.name,
                        error,
                    })
                }
            });
            let results = super::guard::guarded(ctx, info.name(), async {
                Ok(futures::future::join_all(runs).await)
            })
            .await?;
            let failures: Vec<HandlerFailure> =
                results.into_iter().filter_map(Result::err).collect();
            if ctx.pending_len() > 0 {
                self.publish_queued(Self::queued(ctx)).await;
            }
            outcome(info.name(), failures)
        })
    }
}

/// A publish's outcome: `Ok` when no handler failed, else every failure under the event's name.
pub(crate) fn outcome(event: &'static str, failures: Vec<HandlerFailure>) -> Result<(), Error> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ErrorKind::Publish { event, failures }.into())
    }
}

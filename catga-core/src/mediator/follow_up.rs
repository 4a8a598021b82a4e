//! Events queued with `ctx.publish` and events of a type known only at run time.
//!
//! These go through the type-erased entries (`AnyEventEntry`) and the same behaviour stack,
//! with [`DynEventRef`] as the payload. This path boxes its futures: it is recursive (a
//! follow-up's handlers may queue follow-ups) and only taken when events were queued.

use futures::future::BoxFuture;

use crate::context::Context;
use crate::error::{Error, ErrorKind, HandlerFailure};
use crate::payload::{AnyMessage, DynEventRef};
use crate::pipeline::Layer;
use crate::registry::Entry;

use super::Catga;
use super::terminal::DynEventTerminal;

impl<L: Layer> Catga<L> {
    /// Publishes, in the order queued, the events the handler of `ctx` queued.
    pub(super) fn publish_follow_ups<'a>(
        &'a self,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut failures = Vec::new();
            let mut first_event = None;
            for pending in ctx.take_pending() {
                first_event.get_or_insert(pending.event.info().name());
                if let Err(error) = self.publish_out(&*pending.event, ctx.caused()).await {
                    absorb(&mut failures, error);
                }
            }
            match first_event {
                Some(event) if !failures.is_empty() => {
                    Err(crate::ErrorKind::Publish { event, failures }.into())
                }
                _ => Ok(()),
            }
        })
    }

    /// Publishes an event of a type known only at run time to all its handlers.
    pub(crate) fn publish_dyn<'a>(
        &'a self,
        event: &'a dyn AnyMessage,
        ctx: Context,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let info = event.info();
            self.inner.layers.observe_publish(event, &ctx);
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
                    self.inner
                        .layers
                        .run(
                            DynEventRef {
                                event,
                                handler: meta.name,
                            },
                            ctx,
                            &terminal,
                        )
                        .await
                        .map_err(|error| HandlerFailure {
                            handler: meta.name,
                            error,
                        })
                }
            });
            let results = super::guard::guarded(ctx, info.name(), async {
                Ok(futures::future::join_all(runs).await)
            })
            .await?;
            let mut failures: Vec<HandlerFailure> =
                results.into_iter().filter_map(Result::err).collect();
            if ctx.pending_len() > 0
                && let Err(error) = self.publish_follow_ups(ctx).await
            {
                absorb(&mut failures, error);
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(crate::ErrorKind::Publish {
                    event: info.name(),
                    failures,
                }
                .into())
            }
        })
    }
}

/// Adds a follow-up publish's failures to an outer list, flattening nested publishes so the
/// caller sees every failed handler directly.
pub(crate) fn absorb(failures: &mut Vec<HandlerFailure>, error: Error) {
    match error.into_kind() {
        ErrorKind::Publish {
            failures: inner, ..
        } => failures.extend(inner),
        other => failures.push(HandlerFailure {
            handler: "catga::follow_up",
            error: other.into(),
        }),
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

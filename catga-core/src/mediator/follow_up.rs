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
use crate::dispatch::join::scope_of;
use crate::dispatch::outcome::Outcome;
use crate::dispatch::panic::panicked;
use crate::error::{Error, ErrorKind};
use crate::message::AnyMessage;
use crate::payload::DynEventRef;
use crate::pipeline::Layer;
use crate::registry::Entry;

use super::Catga;
use super::keep::{self, Letter};
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
                app.publish_follow_up(&*pending.event, ctx, &queued.caused)
                    .await;
            }
        })
    }

    /// One queued event: to the transport if there is one, else to the handlers here. What
    /// fails is kept: an event the transport refused, to be published again; a failed
    /// handler here, unless a `DeadLetter` layer kept it. `caused` holds the headers.
    pub(super) async fn publish_follow_up(
        &self,
        event: &dyn AnyMessage,
        ctx: Context,
        caused: &Context,
    ) {
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
                        "a follow-up event could not be published; the message that published it is not affected");
                    error
                }
            }
        } else {
            // With a `DeadLetter` layer, the dispatch notes what the layer kept.
            let ctx = if self.inner.layers.keeps_failures() {
                ctx.with_failure_note()
            } else {
                ctx
            };
            let note = ctx.failure_note();
            match self.publish_dyn(event, ctx).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(target: "catga", event = info.name(), message_id = %id,
                        correlation_id = %correlation, causation_id = ?causation, error = %error,
                        "a handler of a follow-up event failed; it is kept in the dead-letter store, and the message that published it is not affected");
                    let letter = Letter {
                        message: info.name().to_string(),
                        message_id: id,
                        correlation_id: correlation,
                        causation_id: causation,
                        headers: caused
                            .headers()
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect(),
                        payload: event.encode_json().unwrap_or_default(),
                        attempts: 1,
                    };
                    let failures = keep::failures(error);
                    let codes: Vec<String> =
                        failures.iter().map(|(_, e)| e.code().to_string()).collect();
                    let kept_by_layer =
                        |handler: Option<&str>| note.as_ref().is_some_and(|n| n.was_kept(handler));
                    let _ = self.keep_failures(&letter, failures, kept_by_layer).await;
                    for code in codes {
                        metrics::counter!("catga_follow_up_failures_total", "event" => info.name(), "code" => code)
                            .increment(1);
                    }
                    return;
                }
            }
        };
        metrics::counter!("catga_follow_up_failures_total", "event" => info.name(), "code" => failure.code().to_string())
            .increment(1);
    }

    /// Replays an event, read from a dead letter as JSON, to the one handler (by path) that
    /// failed; a request or an event of no handler here as the bytes path would.
    pub(crate) async fn replay_handler(
        &self,
        name: &str,
        handler: Option<&str>,
        json: &[u8],
        ctx: Context,
    ) -> Result<(), Error> {
        match self.inner.table.by_name(name) {
            Some(info) if !info.kind().is_request() => {
                let event =
                    info.decode(crate::codec::WireFormat::Json, json)
                        .map_err(|source| {
                            Error::from(ErrorKind::Codec {
                                message: info.name().to_string(),
                                source,
                            })
                        })?;
                self.handle_dyn(&*event, ctx, handler).await
            }
            _ => self.dispatch_bytes(name, json, ctx).await.map(|_| ()),
        }
    }

    /// Publishes an event of a type known only at run time to all its handlers. A handler
    /// that panics fails alone ([`ErrorKind::Panicked`]); its siblings finish.
    pub(crate) fn publish_dyn<'a>(
        &'a self,
        event: &'a dyn AnyMessage,
        ctx: Context,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.layers.observe_publish(event, &ctx);
        self.handle_dyn(event, ctx, None)
    }

    /// [`publish_dyn`](Self::publish_dyn) once behaviours have observed the publish: runs the
    /// handlers and publishes what they queued.
    /// `only` limits it to one handler, by path (the replay of a dead letter that names the
    /// handler that failed).
    pub(crate) fn handle_dyn<'a>(
        &'a self,
        event: &'a dyn AnyMessage,
        ctx: Context,
        only: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let info = event.info();
            let Some(Entry::Event(entry)) = self.inner.table.entry(info) else {
                return Ok(());
            };
            let ctx = &ctx;
            let chosen = |meta: &crate::handler::HandlerMeta| only.is_none_or(|h| h == meta.name);
            let runs = entry
                .metas()
                .iter()
                .enumerate()
                .filter(|(_, meta)| chosen(meta))
                .map(|(index, meta)| {
                    let scope = scope_of(index);
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
                        (meta.name, result)
                    }
                });
            let results = crate::dispatch::guard::guarded(ctx, info.name(), async {
                Ok(futures::future::join_all(runs).await)
            })
            .await?;
            let mut outcome = Outcome::new();
            for (handler, result) in results {
                outcome.note(handler, result);
            }
            if ctx.pending_len() > 0 {
                self.publish_queued(Self::queued(ctx)).await;
            }
            outcome.finish(info.name())
        })
    }
}

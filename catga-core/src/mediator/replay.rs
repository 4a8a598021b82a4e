//! Replaying a dead letter: the application's side of [`DeadLetter`](crate::behavior::DeadLetter)
//! (the behaviour keeps a failure; the application dispatches it again).

use uuid::Uuid;

use super::Catga;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::pipeline::Layer;
use crate::store::dead_letter::{DeadLetterStore, FailureStage};

impl<L: Layer> Catga<L> {
    /// Takes the dead letter `id` out of `store` and dispatches its message again, as it
    /// arrived (same message id, correlation and headers), through the whole pipeline. Returns
    /// the reply of a command or query (JSON), `None` for an event (which reaches the handler
    /// the letter names, or, for a letter without one, all its handlers here: keep them
    /// idempotent). A command or query goes where
    /// [`send`](Catga::send) would send it: to its handler here, else through the transport
    /// (a saga's compensation kept here may be handled by another service). A follow-up
    /// event that could not be published ([`FailureStage::Publish`]) is published again
    /// instead, through the transport when there is one.
    ///
    /// If the replay fails too, the letter stays in `store` under the same id, with the new
    /// error and one more attempt (a [`DeadLetter`](crate::behavior::DeadLetter) layer does not record it a second time).
    /// A letter that names the event handler that failed is replayed to that handler only:
    /// the event's other handlers succeeded the first time.
    ///
    /// # Errors
    /// [`ErrorKind::Store`] if the store fails, [`ErrorKind::UnknownMessage`] for an id that is
    /// not in the store (or a letter without payload: a `local` message cannot be replayed),
    /// and any error of the dispatch.
    pub async fn replay_dead_letter<S: DeadLetterStore>(
        &self,
        store: &S,
        id: Uuid,
    ) -> Result<Option<Vec<u8>>, Error> {
        let letter = store.take(id).await.map_err(|source| ErrorKind::Store {
            operation: "dead-letter store: take",
            source,
        })?;
        let Some(letter) = letter else {
            return Err(ErrorKind::UnknownMessage {
                name: format!("dead letter {id}"),
            }
            .into());
        };
        let Some(payload) = &letter.payload else {
            // Put it back: it is still the only record of the failure.
            let name = letter.message.clone();
            let _ = store.put(letter).await;
            return Err(ErrorKind::UnknownMessage {
                name: format!("{name} (a local message has no payload to replay)"),
            }
            .into());
        };
        // This replay settles its own failure (below): a `DeadLetter` layer keeps nothing.
        let mut ctx = Context::new()
            .with_message_id(letter.message_id)
            .with_correlation_id(letter.correlation_id)
            .with_failures_settled_by_caller();
        if let Some(causation) = letter.causation_id {
            ctx = ctx.with_causation_id(causation);
        }
        for (name, value) in &letter.headers {
            ctx = ctx.with_header(name.clone(), value.clone());
        }
        metrics::counter!("catga_dead_letter_replays_total").increment(1);
        let replayed = match letter.stage {
            // It never reached the transport: publish it, as its handler queued it.
            FailureStage::Publish => self
                .republish(&letter.message, payload.clone(), &ctx)
                .await
                .map(|()| None),
            // The event's handler that failed, and only that one: the others succeeded.
            FailureStage::Handler if letter.handler.is_some() => self
                .replay_handler(&letter.message, letter.handler.as_deref(), payload, ctx)
                .await
                .map(|()| None),
            // A request goes where `send` would send it: its handler may live in another
            // process.
            _ => self.dispatch_routed(&letter.message, payload, ctx).await,
        };
        if let Err(error) = &replayed {
            // The replay failed too: the record stays, saying so, rather than vanish.
            let mut again = letter.clone();
            again.attempts = again.attempts.saturating_add(1);
            again.code = error.code().to_string();
            again.error = error.to_string();
            again.failed_at = std::time::SystemTime::now();
            if let Err(e) = store.put(again).await {
                tracing::error!(target: "catga", dead_letter = %letter.id, message = %letter.message,
                    error = %e, record = ?letter,
                    "a replay failed and its dead letter could not be put back: this log is its only record");
            }
        }
        replayed
    }
}

//! Scheduled messages: envelopes kept until they are due, then fired once by the instance
//! that leads (see [`cluster::Scheduler`](crate::cluster::Scheduler)).
//!
//! A message is scheduled by anyone ([`ScheduleStore::schedule`]); only the holder of the
//! scheduler's lease takes due messages ([`ScheduleStore::claim_due`]) and, once they went
//! out, removes them ([`ScheduleStore::fired`]), both with its grant's fencing token. A store
//! remembers the highest token it was given and refuses a lower one with [`StaleToken`]: a
//! leader paused past its lease cannot take or finish messages once a newer leader has, so a
//! message is fired by one leader. A message taken by a leader that then died is taken again
//! once its claim runs out (late, never lost); if that leader had already published it, the
//! message goes out a second time with the same message id, which a consumer's inbox or the
//! broker's duplicate window recognises.

use std::future::Future;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use uuid::Uuid;

use super::lease::{FencingToken, StaleToken};
use crate::envelope::Envelope;
use crate::error::BoxError;

/// A message kept until it is due.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduled {
    /// When it is due (a store keeps whole microseconds).
    pub due: SystemTime,
    /// The message, encoded, with its ids: its message id (`envelope.id`) identifies the
    /// scheduled message too.
    pub envelope: Envelope,
}

impl Scheduled {
    /// The scheduled message's id: its envelope's message id.
    pub fn id(&self) -> Uuid {
        self.envelope.id
    }
}

/// Where scheduled messages wait. Implementations must be safe to call concurrently, from many
/// processes for a shared store, and keep these promises (the conformance suite checks each):
///
/// * **Kept once.** Scheduling an id already kept changes nothing and says so.
/// * **Due means due.** [`claim_due`](Self::claim_due) takes only messages whose due time has
///   come by the store's clock, earliest first, and none that another claim holds.
/// * **Fenced.** `claim_due` and `fired` carry the caller's fencing token; the store remembers
///   the highest it was given and refuses a lower one with an error whose source is
///   [`StaleToken`] ([`is_stale`]), taking and changing nothing.
/// * **Late, never lost.** A claimed message that is not `fired` within the claim's lease is
///   claimable again; `fired` removes it for good; a message is removed only by `fired` or
///   [`cancel`](Self::cancel).
pub trait ScheduleStore: Send + Sync + 'static {
    /// Keeps `message` until it is due; `false` (and nothing changed) if its id is kept
    /// already.
    ///
    /// # Errors
    /// The store could not be reached.
    fn schedule(&self, message: &Scheduled) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Removes the message `id` if it was not fired yet (a claimed one included: its firing
    /// may still happen); `false` if there was none.
    ///
    /// # Errors
    /// The store could not be reached.
    fn cancel(&self, id: Uuid) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Takes up to `limit` due messages, earliest first, for the holder of `token`, each for
    /// `lease` (then it may be taken again).
    ///
    /// # Errors
    /// [`StaleToken`] (as the error's source) when a higher token was given before; the store
    /// could not be reached.
    fn claim_due(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Scheduled>, BoxError>> + Send;

    /// Removes the messages `ids` that went out. Ids not kept (cancelled meanwhile) are
    /// skipped.
    ///
    /// # Errors
    /// [`StaleToken`] (as the error's source) when a higher token was given before; the store
    /// could not be reached.
    fn fired(
        &self,
        ids: &[Uuid],
        token: FencingToken,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// The due time of the earliest message not claimed, if any: how long the scheduler may
    /// sleep.
    ///
    /// # Errors
    /// The store could not be reached.
    fn next_due(&self) -> impl Future<Output = Result<Option<SystemTime>, BoxError>> + Send;
}

/// Whether `error` is a store's refusal of a stale fencing token.
pub fn is_stale(error: &BoxError) -> bool {
    error.downcast_ref::<StaleToken>().is_some()
}

/// [`ScheduleStore`] behind a pointer: what the application keeps.
pub trait DynScheduleStore: Send + Sync + 'static {
    /// [`ScheduleStore::schedule`].
    fn schedule_dyn<'a>(&'a self, message: &'a Scheduled) -> BoxFuture<'a, Result<bool, BoxError>>;
    /// [`ScheduleStore::cancel`].
    fn cancel_dyn(&self, id: Uuid) -> BoxFuture<'_, Result<bool, BoxError>>;
    /// [`ScheduleStore::claim_due`].
    fn claim_due_dyn(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Vec<Scheduled>, BoxError>>;
    /// [`ScheduleStore::fired`].
    fn fired_dyn<'a>(
        &'a self,
        ids: &'a [Uuid],
        token: FencingToken,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
    /// [`ScheduleStore::next_due`].
    fn next_due_dyn(&self) -> BoxFuture<'_, Result<Option<SystemTime>, BoxError>>;
}

impl<S: ScheduleStore> DynScheduleStore for S {
    fn schedule_dyn<'a>(&'a self, message: &'a Scheduled) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(self.schedule(message))
    }
    fn cancel_dyn(&self, id: Uuid) -> BoxFuture<'_, Result<bool, BoxError>> {
        Box::pin(self.cancel(id))
    }
    fn claim_due_dyn(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Vec<Scheduled>, BoxError>> {
        Box::pin(self.claim_due(limit, token, lease))
    }
    fn fired_dyn<'a>(
        &'a self,
        ids: &'a [Uuid],
        token: FencingToken,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(self.fired(ids, token))
    }
    fn next_due_dyn(&self) -> BoxFuture<'_, Result<Option<SystemTime>, BoxError>> {
        Box::pin(self.next_due())
    }
}

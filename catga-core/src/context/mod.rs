//! The context: what travels with every message besides the message itself.
//!
//! A [`Context`] carries the message id (a UUID v7), the correlation id that ties a whole
//! conversation together, the causation id (the message that caused this one), a deadline,
//! headers and a cancellation signal. A handler that takes `ctx: &Context` can read them and
//! queue follow-up events with [`Context::publish`]; those are published only after the handler
//! succeeds, with their causation id set to this message's id.
//!
//! Ids are minted lazily, the first time anything reads them: a dispatch nobody observes pays
//! nothing for them, and once read an id never changes.
//!
//! ```
//! use std::time::Duration;
//! use catga_core::Context;
//!
//! let ctx = Context::new()
//!     .with_timeout(Duration::from_secs(2))
//!     .with_header("tenant", "acme");
//! assert_eq!(ctx.header("tenant"), Some("acme"));
//! assert_eq!(ctx.correlation_id(), ctx.message_id()); // a fresh conversation
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use once_cell::race::OnceBox;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::Delivery;
use crate::error::Error;
use crate::message::Event;

mod pending;
mod published;

pub(crate) use pending::{Pending, PendingEvents, in_scope};

/// How many events one handler invocation may queue with [`Context::publish`].
pub const MAX_PENDING_EVENTS: usize = 4096;

/// Per-message metadata and the handler's way to publish follow-up events. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Context {
    /// The message id the caller gave (a message received from another process keeps its id).
    given_id: Option<Uuid>,
    /// Otherwise the id minted on first read.
    message_id: OnceLock<Uuid>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    /// Nanoseconds since [`clock_base`] plus one; `0` means no deadline. Atomic so a behaviour
    /// can tighten it for the layers inside it while handlers hold `&Context`.
    deadline: AtomicU64,
    attempt: AtomicU32,
    /// Headers and cancellation, set while building the context; boxed so an ordinary
    /// context stays small and allocation-free.
    extras: Option<Box<Extras>>,
    /// Events queued with [`Context::publish`], created by the first one. A `OnceBox` is one
    /// atomic pointer: dropping a context that queued nothing is a load and a null check.
    pending: OnceBox<PendingEvents>,
}

#[derive(Clone, Debug, Default)]
struct Extras {
    headers: Vec<(String, String)>,
    cancellation: Option<CancellationToken>,
    /// Set when the message arrived from a transport, or when its caller keeps what fails
    /// (a follow-up event, a replay): which failures a `DeadLetter` layer already kept.
    note: Option<Arc<FailureNote>>,
    /// Set by a caller that settles this dispatch's failures itself (a saga compensates a
    /// failed step and keeps a compensation that failed for good): a `DeadLetter` layer then
    /// keeps nothing, so one failure is kept once. Never inherited by follow-ups.
    failures_settled_by_caller: bool,
}

/// Which failures of a dispatch a `DeadLetter` layer already kept, so the caller that keeps
/// the rest (the serving side of a transport, the publisher of follow-up events) stores each
/// failure once; and the transport delivery, if the message arrived from one.
#[derive(Debug)]
pub(crate) struct FailureNote {
    delivery: Option<Delivery>,
    /// Handlers (`None`: the request's) whose failure was dead-lettered during this dispatch.
    kept: Mutex<Vec<Option<&'static str>>>,
}

impl FailureNote {
    /// Whether the failure of `handler` (`None`: a request's) was dead-lettered during this
    /// dispatch.
    pub(crate) fn was_kept(&self, handler: Option<&str>) -> bool {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&handler)
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// A context for a new conversation: fresh ids, no deadline, no headers.
    #[inline]
    pub const fn new() -> Self {
        Context {
            given_id: None,
            message_id: OnceLock::new(),
            correlation_id: None,
            causation_id: None,
            deadline: AtomicU64::new(0),
            attempt: AtomicU32::new(1),
            extras: None,
            pending: OnceBox::new(),
        }
    }

    /// Uses `id` as the message id (e.g. one received from another process).
    pub fn with_message_id(mut self, id: Uuid) -> Self {
        self.given_id = Some(id);
        self
    }

    /// Joins an existing conversation.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Records the message that caused this one.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// The dispatch fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if it has not finished by `deadline`.
    pub fn with_deadline(self, deadline: Instant) -> Self {
        self.deadline
            .store(encode_instant(deadline), Ordering::Relaxed);
        self
    }

    /// The dispatch fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if it has not finished within `timeout` from
    /// now. A timeout too long for the clock to represent (`Duration::MAX`, say, from a
    /// header) sets no deadline rather than panicking.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.with_deadline(deadline),
            None => self,
        }
    }

    /// Adds a header (later transports carry headers across the wire).
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let header = (name.into(), value.into());
        self.with_extras(|extras| extras.headers.push(header))
    }

    /// The dispatch fails with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) when `token` is cancelled.
    pub fn with_cancellation(self, token: CancellationToken) -> Self {
        self.with_extras(|extras| extras.cancellation = Some(token))
    }

    fn with_extras(mut self, change: impl FnOnce(&mut Extras)) -> Self {
        change(self.extras.get_or_insert_with(Box::default));
        self
    }

    /// This message's id (UUID v7), minted on first read.
    pub fn message_id(&self) -> Uuid {
        match self.given_id {
            Some(id) => id,
            None => *self.message_id.get_or_init(Uuid::now_v7),
        }
    }

    /// The conversation's id: the one given, or this message's id if it starts a conversation.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id.unwrap_or_else(|| self.message_id())
    }

    /// The id of the message whose handler published this one, if any.
    pub fn causation_id(&self) -> Option<Uuid> {
        self.causation_id
    }

    /// When the dispatch must be finished by, if anyone set a deadline or timeout.
    pub fn deadline(&self) -> Option<Instant> {
        decode_instant(self.deadline.load(Ordering::Relaxed))
    }

    /// Time left before the deadline (zero once it passed), if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// All headers in insertion order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extras
            .iter()
            .flat_map(|e| e.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// The cancellation signal, if one was attached.
    pub fn cancellation(&self) -> Option<&CancellationToken> {
        self.extras.as_ref().and_then(|e| e.cancellation.as_ref())
    }

    /// Whether the cancellation signal has fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Which attempt this is: 1 for the first, 2 for the first retry, … For a message that
    /// arrived from a transport, the delivery number (a redelivery is a retry).
    pub fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }

    /// The transport delivery this message arrived with (its number and the most the
    /// transport makes); `None` for a message dispatched in this process.
    pub fn delivery(&self) -> Option<Delivery> {
        self.extras
            .as_ref()
            .and_then(|e| e.note.as_ref())
            .and_then(|note| note.delivery)
    }

    /// Queues `event` to be published when the current handler returns `Ok`.
    ///
    /// If the handler fails (or a retry starts over), the events it queued are discarded, so a
    /// failed command never announces what it did not do. Published events get this message's
    /// correlation id and its message id as their causation id.
    ///
    /// # Errors
    /// [`ErrorKind::TooManyEvents`](crate::ErrorKind::TooManyEvents) if the handler already queued [`MAX_PENDING_EVENTS`].
    pub fn publish<E: Event>(&self, event: E) -> Result<(), Error> {
        self.pending
            .get_or_init(Box::default)
            .push(Box::new(event), E::NAME)
    }

    // ---- crate-internal: used by the mediator and behaviours ----

    /// Moves the deadline earlier (never later) for everything inside the caller.
    pub(crate) fn tighten_deadline(&self, deadline: Instant) {
        let new = encode_instant(deadline);
        let _ = self
            .deadline
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                (current == 0 || new < current).then_some(new)
            });
    }

    /// Restores a deadline saved with [`Context::raw_deadline`].
    pub(crate) fn restore_deadline(&self, raw: u64) {
        self.deadline.store(raw, Ordering::Relaxed);
    }

    pub(crate) fn raw_deadline(&self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }

    /// Marks this context as a transport delivery.
    pub(crate) fn with_delivery(self, delivery: Delivery) -> Self {
        self.attempt.store(delivery.attempt, Ordering::Relaxed);
        self.with_note(Some(delivery))
    }

    /// Marks a dispatch whose caller keeps the failures no `DeadLetter` layer kept (see
    /// [`failure_note`](Self::failure_note)).
    pub(crate) fn with_failure_note(self) -> Self {
        self.with_note(None)
    }

    fn with_note(self, delivery: Option<Delivery>) -> Self {
        let note = Arc::new(FailureNote {
            delivery,
            kept: Mutex::new(Vec::new()),
        });
        self.with_extras(|extras| extras.note = Some(note))
    }

    /// Marks a dispatch whose caller settles its failures itself (see `Extras`).
    pub(crate) fn with_failures_settled_by_caller(self) -> Self {
        self.with_extras(|extras| extras.failures_settled_by_caller = true)
    }

    /// Whether this dispatch's caller settles its failures itself.
    pub(crate) fn failures_settled_by_caller(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|e| e.failures_settled_by_caller)
    }

    /// Records that the failure of `handler` (`None`: a request's) was dead-lettered during
    /// this dispatch.
    pub(crate) fn note_dead_lettered(&self, handler: Option<&'static str>) {
        if let Some(note) = self.extras.as_ref().and_then(|e| e.note.as_ref()) {
            note.kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(handler);
        }
    }

    /// This dispatch's failure note, shared: the caller that keeps what failed (the serving
    /// side, the publisher of follow-ups) reads what the pipeline kept after the context is
    /// gone.
    pub(crate) fn failure_note(&self) -> Option<Arc<FailureNote>> {
        self.extras.as_ref().and_then(|e| e.note.clone())
    }

    /// Takes the deadline and the cancellation signal off this context: the caller's bounds,
    /// which a publish enforces on its own wait while the handlers run unbounded.
    pub(crate) fn take_bounds(&mut self) -> (Option<Instant>, Option<CancellationToken>) {
        let deadline = self.deadline();
        self.deadline.store(0, Ordering::Relaxed);
        let cancellation = self.extras.as_mut().and_then(|e| e.cancellation.take());
        (deadline, cancellation)
    }

    pub(crate) fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    /// Whether the mediator must watch a deadline or a cancellation signal.
    #[inline]
    pub(crate) fn is_guarded(&self) -> bool {
        self.deadline.load(Ordering::Relaxed) != 0 || self.cancellation().is_some()
    }

    /// The events queued so far; `None` if nothing was ever queued (the common case).
    #[inline]
    pub(crate) fn pending(&self) -> Option<&PendingEvents> {
        self.pending.get()
    }

    /// How many events are queued.
    #[inline]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending().map_or(0, PendingEvents::len)
    }

    /// Takes every queued event, in the order queued.
    pub(crate) fn take_pending(&self) -> Vec<Pending> {
        self.pending().map(PendingEvents::take).unwrap_or_default()
    }

    /// The context of an event published by this message's handler: the same conversation
    /// and headers, caused by this message. Not its deadline or cancellation: those bound
    /// the caller's wait, not what the event's subscribers do (an event is a fact), nor its
    /// transport delivery.
    pub(crate) fn caused(&self) -> Context {
        self.linked(Some(self.correlation_id()), Some(self.message_id()))
    }

    /// Another message of the same standing as this one: same conversation, same cause, same
    /// headers, its own id (the contexts of a handler's follow-up events are built from one
    /// [`caused`](Self::caused) context this way).
    pub(crate) fn sibling(&self) -> Context {
        self.linked(self.correlation_id, self.causation_id)
    }

    fn linked(&self, correlation_id: Option<Uuid>, causation_id: Option<Uuid>) -> Context {
        let extras = self.extras.as_ref().and_then(|extras| {
            (!extras.headers.is_empty()).then(|| {
                Box::new(Extras {
                    headers: extras.headers.clone(),
                    cancellation: None,
                    note: None,
                    failures_settled_by_caller: false,
                })
            })
        });
        Context {
            given_id: None,
            message_id: OnceLock::new(),
            correlation_id,
            causation_id,
            deadline: AtomicU64::new(0),
            attempt: AtomicU32::new(1),
            extras,
            pending: OnceBox::new(),
        }
    }
}

/// Deadlines are stored as encoded nanoseconds so they fit an atomic (0: none).
fn encode_instant(at: Instant) -> u64 {
    crate::monotonic::nanos(at)
}

fn decode_instant(raw: u64) -> Option<Instant> {
    crate::monotonic::instant(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_for_the_clock_sets_no_deadline() {
        let ctx = Context::new().with_timeout(Duration::MAX);
        assert_eq!(ctx.remaining(), None);
        let ctx = Context::new().with_timeout(Duration::from_secs(60));
        assert!(ctx.remaining().is_some());
    }

    #[test]
    fn ids_are_lazy_and_stable() {
        let ctx = Context::new();
        let id = ctx.message_id();
        assert_eq!(id, ctx.message_id());
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(ctx.correlation_id(), id);
        assert_eq!(ctx.causation_id(), None);
    }

    #[test]
    fn caused_context_links_ids() {
        let parent = Context::new().with_header("tenant", "a");
        let child = parent.caused();
        assert_eq!(child.correlation_id(), parent.correlation_id());
        assert_eq!(child.causation_id(), Some(parent.message_id()));
        assert_ne!(child.message_id(), parent.message_id());
        assert_eq!(child.header("tenant"), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_caused_by_a_bounded_request_is_not_bounded_by_it() {
        let parent = Context::new()
            .with_timeout(Duration::from_secs(1))
            .with_cancellation(CancellationToken::new())
            .with_delivery(Delivery::new(2, 5));
        let child = parent.caused();
        assert!(
            child.deadline().is_none(),
            "the caller's deadline stays with the caller"
        );
        assert!(child.cancellation().is_none());
        assert!(child.delivery().is_none(), "a follow-up is not a delivery");
        assert!(!child.is_guarded());
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_round_trips_and_tightens() {
        let ctx = Context::new().with_timeout(Duration::from_secs(10));
        let remaining = ctx.remaining().unwrap();
        assert!(remaining <= Duration::from_secs(10) && remaining > Duration::from_secs(9));
        ctx.tighten_deadline(Instant::now() + Duration::from_secs(1));
        assert!(ctx.remaining().unwrap() <= Duration::from_secs(1));
        ctx.tighten_deadline(Instant::now() + Duration::from_secs(5));
        assert!(
            ctx.remaining().unwrap() <= Duration::from_secs(1),
            "never loosened"
        );
    }

    #[test]
    fn tighten_sets_a_missing_deadline() {
        let ctx = Context::new();
        assert!(ctx.deadline().is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            ctx.tighten_deadline(Instant::now() + Duration::from_secs(1));
        });
        assert!(ctx.deadline().is_some());
    }
}

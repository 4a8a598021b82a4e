//! [`Loaded`]: an aggregate as read from its stream, plus what happened to it since.

use std::ops::Deref;

use uuid::Uuid;

use super::root::Aggregate;
use crate::context::Context;

/// An aggregate with its identity, its version and the events recorded since it was loaded
/// (or last saved). Get one from [`Repository::load`](super::Repository::load), record
/// events, and [`save`](super::Repository::save) it.
///
/// Reading the state is open (`Loaded<A>` derefs to `&A`, so command methods can be called
/// on it directly); changing it is only possible by recording events, so the state is always
/// the fold of the stored events followed by the uncommitted ones.
///
/// Two versions matter:
/// * [`stored_version`](Loaded::stored_version): the stream's version when this was loaded
///   or last saved. The next save expects the stream to still be there.
/// * [`version`](Loaded::version): every event applied to the state, stored and uncommitted.
#[derive(Clone, Debug)]
pub struct Loaded<A: Aggregate> {
    id: String,
    stored_version: u64,
    state: A,
    uncommitted: Vec<A::Event>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

impl<A: Aggregate> Loaded<A> {
    /// A fresh aggregate with id `id`: default state, version 0, nothing recorded. Saving it
    /// fails with a conflict if the stream already has events.
    pub fn new(id: impl Into<String>) -> Self {
        Loaded {
            id: id.into(),
            stored_version: 0,
            state: A::default(),
            uncommitted: Vec::new(),
            correlation_id: None,
            causation_id: None,
        }
    }

    /// The aggregate's id (without the type prefix of its stream).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The aggregate's event stream, [`A::stream_id(id)`](Aggregate::stream_id).
    pub fn stream_id(&self) -> String {
        A::stream_id(&self.id)
    }

    /// The number of events applied to the state: stored ones plus uncommitted ones.
    pub fn version(&self) -> u64 {
        self.stored_version + self.uncommitted.len() as u64
    }

    /// The stream's version when this was loaded or last saved: the version the next save
    /// expects to find.
    pub fn stored_version(&self) -> u64 {
        self.stored_version
    }

    /// The current state, with the uncommitted events applied.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The current state, dropping the rest.
    pub fn into_state(self) -> A {
        self.state
    }

    /// Events recorded since the last load or save, oldest first.
    pub fn uncommitted(&self) -> &[A::Event] {
        &self.uncommitted
    }

    /// Applies `event` to the state now and queues it for the next save.
    pub fn record(&mut self, event: A::Event) {
        self.state.apply(&event);
        self.uncommitted.push(event);
    }

    /// [`record`](Loaded::record)s each event in order.
    pub fn record_all(&mut self, events: impl IntoIterator<Item = A::Event>) {
        for event in events {
            self.record(event);
        }
    }

    /// Runs a command (a function that reads the state and returns events or refuses) and
    /// records its events. A refusal records nothing.
    ///
    /// ```
    /// # use catga_core::aggregate::{Aggregate, Loaded};
    /// # #[derive(Default)] struct Counter(i64);
    /// # impl Aggregate for Counter {
    /// #     type Event = i64; const TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, n: &i64) { self.0 += n }
    /// # }
    /// let mut counter = Loaded::<Counter>::new("1");
    /// counter.execute(|_| Ok::<_, String>([2, 3]))?;
    /// assert_eq!((counter.state().0, counter.version()), (5, 2));
    /// assert!(counter.execute(|_| Err::<[i64; 0], _>("no".to_owned())).is_err());
    /// assert_eq!(counter.uncommitted(), &[2, 3]);
    /// # Ok::<(), String>(())
    /// ```
    pub fn execute<I, E>(&mut self, command: impl FnOnce(&A) -> Result<I, E>) -> Result<(), E>
    where
        I: IntoIterator<Item = A::Event>,
    {
        let events = command(&self.state)?;
        self.record_all(events);
        Ok(())
    }

    /// Stamps the uncommitted events with `ctx`'s conversation: its correlation id, and its
    /// message id as their causation id. Applies to the next save only.
    pub fn caused_by(&mut self, ctx: &Context) -> &mut Self {
        self.set_causation(Some(ctx.correlation_id()), Some(ctx.message_id()))
    }

    /// Sets the correlation and causation ids the next save stores with its events.
    pub fn set_causation(
        &mut self,
        correlation_id: Option<Uuid>,
        causation_id: Option<Uuid>,
    ) -> &mut Self {
        self.correlation_id = correlation_id;
        self.causation_id = causation_id;
        self
    }

    /// The correlation and causation ids the next save stores with its events.
    pub fn causation(&self) -> (Option<Uuid>, Option<Uuid>) {
        (self.correlation_id, self.causation_id)
    }

    /// Applies an already stored event (replay): the stored version moves with it.
    pub(super) fn replay(&mut self, event: &A::Event) {
        self.state.apply(event);
        self.stored_version += 1;
    }

    /// The uncommitted events are now stored and the stream is at `version`.
    pub(super) fn mark_saved(&mut self, version: u64) {
        self.stored_version = version;
        self.uncommitted.clear();
        self.correlation_id = None;
        self.causation_id = None;
    }
}

/// Read-only access to the state, so commands can be called as `loaded.withdraw(10)`.
impl<A: Aggregate> Deref for Loaded<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.state
    }
}

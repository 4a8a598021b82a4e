//! The [`Aggregate`] trait: state rebuilt from its own events.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A consistency boundary whose state is the fold of its events.
///
/// Implement it on the state (`Default` is the state before the first event) and write
/// commands as plain methods that check the state and return events without changing
/// anything; [`apply`](Aggregate::apply) is the only place state changes, and it cannot fail:
/// an event is a fact that already happened. Replaying the same events always gives the same
/// state, so `apply` must not read clocks, random numbers or anything else outside the event.
///
/// ```
/// use catga_core::aggregate::Aggregate;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default)]
/// struct Counter { value: i64 }
///
/// #[derive(Clone, Serialize, Deserialize)]
/// enum CounterEvent { Added(i64) }
///
/// impl Counter {
///     /// A command: validates, returns events, changes nothing.
///     fn add(&self, n: i64) -> Result<Vec<CounterEvent>, &'static str> {
///         if n == 0 { return Err("nothing to add") }
///         Ok(vec![CounterEvent::Added(n)])
///     }
/// }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const TYPE: &'static str = "counter";
///
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Added(n) => self.value += n }
///     }
/// }
///
/// let mut counter = Counter::default();
/// for event in counter.add(5).unwrap_or_default() { counter.apply(&event) }
/// assert_eq!(counter.value, 5);
/// assert_eq!(Counter::stream_id("7"), "counter-7");
/// ```
pub trait Aggregate: Default + Send + Sync + 'static {
    /// What happened to the aggregate; usually one enum. Stored as JSON, so renaming a variant
    /// or field is a breaking change for already stored events (add `#[serde(alias)]`).
    type Event: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// The aggregate's type name, e.g. `account`; the prefix of its stream ids.
    const TYPE: &'static str;

    /// Changes the state by one event. Infallible and deterministic.
    fn apply(&mut self, event: &Self::Event);

    /// The type name stored with `event`, for readers that do not decode payloads
    /// (projections, SQL). Defaults to [`TYPE`](Aggregate::TYPE); return the variant's name
    /// to make stored streams self-describing. Loading ignores it: the payload alone decides.
    fn event_type(event: &Self::Event) -> &'static str {
        let _ = event;
        Self::TYPE
    }

    /// The event stream of the aggregate with id `id`: `"{TYPE}-{id}"` by default.
    fn stream_id(id: &str) -> String {
        format!("{}-{id}", Self::TYPE)
    }
}

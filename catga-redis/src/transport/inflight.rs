//! The entries this consumer is handling right now.
//!
//! The same entry can reach a consumer twice while its handler runs: re-reading the
//! consumer's own pending entries after a reconnect returns it, and so does claiming idle
//! entries when a handler runs long. Handling it again would run the handler twice at once,
//! so a second arrival of an entry in flight is dropped (the first will acknowledge it).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Per stream, the ids in flight and since when (nested, so lookups need no owned key).
type Streams = HashMap<Arc<str>, HashMap<String, Instant>>;

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: Mutex<Streams>,
}

impl InFlight {
    fn entries(&self) -> MutexGuard<'_, Streams> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks an entry as in flight; false if it already was.
    pub fn insert(&self, stream: &Arc<str>, id: &str) -> bool {
        let mut entries = self.entries();
        let ids = match entries.get_mut(&**stream) {
            Some(ids) => ids,
            None => entries.entry(stream.clone()).or_default(),
        };
        match ids.entry(id.to_string()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(Instant::now());
                true
            }
        }
    }

    /// The entry is done (acknowledged, or left for redelivery).
    pub fn remove(&self, stream: &str, id: &str) {
        if let Some(ids) = self.entries().get_mut(stream) {
            ids.remove(id);
        }
    }

    /// Entries in flight for longer than `age`, and marks them as seen now: their idle time
    /// on the server is to be reset, so they are not claimed from under their handler.
    pub fn older_than(&self, age: Duration) -> Vec<(Arc<str>, Vec<String>)> {
        let now = Instant::now();
        let mut old = Vec::new();
        for (stream, ids) in self.entries().iter_mut() {
            let mut stale = Vec::new();
            for (id, since) in ids.iter_mut() {
                if now.duration_since(*since) >= age {
                    *since = now;
                    stale.push(id.clone());
                }
            }
            if !stale.is_empty() {
                old.push((stream.clone(), stale));
            }
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_in_flight_once() {
        let inflight = InFlight::default();
        let stream: Arc<str> = Arc::from("s");
        assert!(inflight.insert(&stream, "1-0"));
        assert!(
            !inflight.insert(&stream, "1-0"),
            "a second arrival is dropped"
        );
        assert!(inflight.insert(&Arc::from("t"), "1-0"), "streams are apart");
        inflight.remove("s", "1-0");
        assert!(
            inflight.insert(&stream, "1-0"),
            "once done it may come again"
        );
    }

    #[test]
    fn old_entries_are_reported_once_per_age() {
        let inflight = InFlight::default();
        let stream: Arc<str> = Arc::from("s");
        inflight.insert(&stream, "1-0");
        assert_eq!(
            inflight.older_than(Duration::ZERO),
            vec![(stream, vec!["1-0".to_string()])]
        );
        assert!(
            inflight.older_than(Duration::from_secs(3600)).is_empty(),
            "reporting resets the age"
        );
    }
}

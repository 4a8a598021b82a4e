//! Subjects already built, by wire name: publishing and requesting then cost a map lookup and
//! a reference count instead of building (and allocating) the subject every time.

use std::collections::HashMap;
use std::sync::RwLock;

use async_nats::Subject;

/// How many subjects are kept. Wire names come from the application's message types, so a
/// real application stays far below; names beyond it are built each time, not cached, so
/// hostile or generated names cannot grow the map without bound.
const CAPACITY: usize = 4096;

/// A read-mostly map from wire name to its subject.
#[derive(Debug, Default)]
pub(crate) struct SubjectCache {
    map: RwLock<HashMap<Box<str>, Subject, foldhash::fast::RandomState>>,
}

impl SubjectCache {
    /// The subject of `name`, built with `build` the first time.
    pub(crate) fn get_or_build(&self, name: &str, build: impl FnOnce() -> String) -> Subject {
        // A poisoned lock only means a panic elsewhere while it was held; the map itself is
        // never left half-updated by an insert, so it is still good to read.
        if let Some(subject) = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            return subject.clone();
        }
        let subject = Subject::from(build());
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() < CAPACITY {
            map.entry(name.into()).or_insert_with(|| subject.clone());
        }
        subject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_built_once_and_the_map_stays_bounded() {
        let cache = SubjectCache::default();
        let mut built = 0;
        for _ in 0..3 {
            let subject = cache.get_or_build("Noted", || {
                built += 1;
                "p.events.Noted".to_string()
            });
            assert_eq!(subject.as_str(), "p.events.Noted");
        }
        assert_eq!(built, 1);
        for i in 0..CAPACITY + 10 {
            let name = format!("n{i}");
            let subject = cache.get_or_build(&name, || format!("p.events.{name}"));
            assert_eq!(subject.as_str(), format!("p.events.{name}"));
        }
        assert_eq!(cache.map.read().map(|m| m.len()).unwrap_or(0), CAPACITY);
    }
}

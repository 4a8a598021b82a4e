//! State: the values handlers borrow (`&self` of a handler impl, `&Pool` parameters).
//!
//! State is registered once with [`CatgaBuilder::state`](crate::CatgaBuilder::state) and
//! resolved for every handler when the application is built: each handler keeps `Arc`s to what
//! it needs, so a dispatch never looks state up. A handler that needs state nobody registered
//! is reported by `build()`, together with every other problem.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::Arc;

/// The registered state values, one per type.
#[derive(Clone, Default)]
pub struct States {
    values: HashMap<TypeId, (&'static str, Arc<dyn Any + Send + Sync>)>,
    duplicates: Vec<&'static str>,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.values.values().map(|(name, _)| name))
            .finish()
    }
}

impl States {
    /// No state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `value`. Registering a second value of the same type is reported by `build()`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Registers a value that is already shared.
    pub fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        let name = type_name::<T>();
        if self
            .values
            .insert(TypeId::of::<T>(), (name, value))
            .is_some()
        {
            self.duplicates.push(name);
        }
    }

    /// The value of type `T`, if registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let (_, value) = self.values.get(&TypeId::of::<T>())?;
        Arc::clone(value).downcast::<T>().ok()
    }

    /// Types registered more than once.
    pub(crate) fn duplicates(&self) -> &[&'static str] {
        &self.duplicates
    }

    /// Looks `T` up for a handler, recording its type name in `missing` if absent.
    #[doc(hidden)]
    pub fn resolve<T: Send + Sync + 'static>(
        &self,
        missing: &mut Vec<&'static str>,
    ) -> Option<Arc<T>> {
        let found = self.get::<T>();
        if found.is_none() {
            missing.push(type_name::<T>());
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_reports_missing() {
        let mut states = States::new();
        states.insert(5u32);
        let mut missing = Vec::new();
        assert_eq!(states.resolve::<u32>(&mut missing).as_deref(), Some(&5));
        assert!(states.resolve::<String>(&mut missing).is_none());
        assert_eq!(missing, vec!["alloc::string::String"]);
    }

    #[test]
    fn duplicates_are_recorded() {
        let mut states = States::new();
        states.insert(1u8);
        states.insert(2u8);
        assert_eq!(states.duplicates(), &["u8"]);
    }
}

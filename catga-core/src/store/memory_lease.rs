//! The in-memory [`LeaseStore`]: leases among the tasks of one process (tests, a single
//! instance), on Tokio's clock, so tests on a paused clock can run a lease out without
//! waiting.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use crate::error::BoxError;

/// Leases kept in this process's memory: one map under a short lock, never held across an
/// await. Tokens start at 1 per name and survive releases and expiries (not the process).
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<HashMap<String, Entry>>,
}

/// One name: the last token given, and the running grant if any.
#[derive(Debug, Default)]
struct Entry {
    last_token: u64,
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    holder: String,
    token: u64,
    until: Instant,
}

impl Entry {
    /// The running grant, forgetting one that ran out.
    fn running(&mut self, now: Instant) -> Option<&mut Held> {
        if self.held.as_ref().is_some_and(|held| held.until <= now) {
            self.held = None;
        }
        self.held.as_mut()
    }
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> MemoryLeaseStore {
        MemoryLeaseStore::default()
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while the lock was held left the map consistent (every change is one
        // assignment), so a poisoned lock is used as it is.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        let now = Instant::now();
        let mut leases = self.leases();
        let entry = leases.entry(name.to_owned()).or_default();
        if entry.running(now).is_some() {
            return Ok(None);
        }
        entry.last_token += 1;
        entry.held = Some(Held {
            holder: holder.to_owned(),
            token: entry.last_token,
            until: now + ttl,
        });
        Ok(Some(Grant {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: FencingToken::new(entry.last_token),
            ttl,
        }))
    }

    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        let now = Instant::now();
        let mut leases = self.leases();
        let Some(held) = leases
            .get_mut(&grant.name)
            .and_then(|entry| entry.running(now))
        else {
            return Ok(false);
        };
        if held.token != grant.token.get() {
            return Ok(false);
        }
        held.until = now + ttl;
        Ok(true)
    }

    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        let now = Instant::now();
        let mut leases = self.leases();
        let Some(entry) = leases.get_mut(&grant.name) else {
            return Ok(false);
        };
        if entry
            .running(now)
            .is_none_or(|held| held.token != grant.token.get())
        {
            return Ok(false);
        }
        entry.held = None;
        Ok(true)
    }

    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        let now = Instant::now();
        let mut leases = self.leases();
        Ok(
            match leases.get_mut(name).and_then(|entry| entry.running(now)) {
                Some(held) => LeaseState::Held {
                    holder: held.holder.clone(),
                    token: FencingToken::new(held.token),
                    remaining: held.until - now,
                },
                None => LeaseState::Vacant,
            },
        )
    }
}

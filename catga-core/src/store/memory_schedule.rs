//! The in-memory [`ScheduleStore`]: scheduled messages of one process (tests, a single
//! instance), lost with it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use uuid::Uuid;

use super::lease::{FencingToken, StaleToken};
use super::schedule::{ScheduleStore, Scheduled};
use crate::error::BoxError;

/// Scheduled messages in this process's memory: an index by due time and a map by id, under
/// one short lock never held across an await. Due times are compared with the system clock;
/// claims run out on Tokio's clock (so a paused test clock runs them out).
#[derive(Debug, Default)]
pub struct MemoryScheduleStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The highest fencing token given.
    floor: u64,
    /// Every kept message, by id.
    messages: HashMap<Uuid, Kept>,
    /// (due, id) of every kept message: the order `claim_due` takes them in.
    by_due: BTreeSet<(SystemTime, Uuid)>,
}

#[derive(Debug)]
struct Kept {
    message: Scheduled,
    claimed_until: Option<Instant>,
}

impl State {
    fn admit(&mut self, token: FencingToken) -> Result<(), StaleToken> {
        if token.get() < self.floor {
            return Err(StaleToken {
                presented: token,
                seen: FencingToken::new(self.floor),
            });
        }
        self.floor = token.get();
        Ok(())
    }
}

impl MemoryScheduleStore {
    /// An empty store.
    pub fn new() -> MemoryScheduleStore {
        MemoryScheduleStore::default()
    }

    /// How many messages are kept (claimed ones included).
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change below keeps the map and the index in step before it can panic (none
        // of them can), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScheduleStore for MemoryScheduleStore {
    async fn schedule(&self, message: &Scheduled) -> Result<bool, BoxError> {
        let mut state = self.state();
        let id = message.id();
        if state.messages.contains_key(&id) {
            return Ok(false);
        }
        state.by_due.insert((message.due, id));
        state.messages.insert(
            id,
            Kept {
                message: message.clone(),
                claimed_until: None,
            },
        );
        Ok(true)
    }

    async fn cancel(&self, id: Uuid) -> Result<bool, BoxError> {
        let mut state = self.state();
        let Some(kept) = state.messages.remove(&id) else {
            return Ok(false);
        };
        state.by_due.remove(&(kept.message.due, id));
        Ok(true)
    }

    async fn claim_due(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        let (now, clock) = (SystemTime::now(), Instant::now());
        let mut state = self.state();
        state.admit(token)?;
        let due: Vec<Uuid> = state
            .by_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        let mut taken = Vec::new();
        for id in due {
            if taken.len() == limit {
                break;
            }
            if let Some(kept) = state.messages.get_mut(&id)
                && kept.claimed_until.is_none_or(|until| until <= clock)
            {
                kept.claimed_until = Some(clock + lease);
                taken.push(kept.message.clone());
            }
        }
        Ok(taken)
    }

    async fn fired(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        let mut state = self.state();
        state.admit(token)?;
        for id in ids {
            if let Some(kept) = state.messages.remove(id) {
                state.by_due.remove(&(kept.message.due, *id));
            }
        }
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<SystemTime>, BoxError> {
        let clock = Instant::now();
        let state = self.state();
        Ok(state
            .by_due
            .iter()
            .find(|(_, id)| {
                state
                    .messages
                    .get(id)
                    .is_some_and(|kept| kept.claimed_until.is_none_or(|until| until <= clock))
            })
            .map(|(at, _)| *at))
    }
}

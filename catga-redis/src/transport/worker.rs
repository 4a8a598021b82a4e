//! Handling one entry: hand it to the application, then acknowledge it, answer it (see
//! [responder](super::responder)), or leave it pending for redelivery after the backoff's
//! delay.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use catga_core::envelope::Envelope;
use catga_core::transport::{Delivery, Disposition, Inbound, Rejected};
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Shared;
use super::acker::Acker;
use super::inflight::InFlight;
use super::positions::Positions;
use super::redeliver::Redeliver;
use crate::entry::{self, Decoded, Entry, EntryError};
use crate::error::CommandError;

/// What becomes of an entry once its handling is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    /// Acknowledge it.
    Ack,
    /// Nothing more to do: it was answered (and acknowledged with the answer), or it stays
    /// pending to be delivered again.
    Done,
}

/// What a stream carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Requests (else events).
    pub request: bool,
    /// The wire name.
    pub name: String,
}

/// Takes an entry out of the in-flight set when its task ends, also when a handler panics:
/// the entry then stays pending and is claimed again after `ack_wait` (and, if it
/// keeps panicking, rejected after `max_deliveries`), instead of being skipped for ever.
struct Flight<'a> {
    inflight: &'a InFlight,
    stream: &'a str,
    id: &'a str,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.inflight.remove(self.stream, self.id);
    }
}

/// One serving instance: what its reader, claimer and handler tasks share.
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    /// The consumer group: the service.
    pub group: String,
    /// This instance's consumer name, unique.
    pub consumer: String,
    /// The streams served, events' and requests'.
    pub streams: Vec<String>,
    /// What each stream carries: where an entry was read decides what it is.
    pub routes: HashMap<String, Route>,
    pub inbound: Arc<dyn Inbound>,
    /// One permit per message being handled (`ServePlan::max_in_flight`), held by its task
    /// until the end: all permits free means no task is left.
    pub slots: Arc<Semaphore>,
    pub max_in_flight: usize,
    pub inflight: InFlight,
    /// The last entry seen on each stream, where a vanished group is created again.
    pub positions: Positions,
    pub redeliver: Redeliver,
    pub acker: Acker,
    pub stop: CancellationToken,
}

impl Worker {
    /// Waits until a handler slot is free (`None` once the worker stops) and returns how many
    /// entries to read or claim now: the free slots, at most a batch. Entries taken beyond
    /// the free slots would wait here while another instance could be handling them.
    pub async fn capacity(&self) -> Option<usize> {
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            let free = self.slots.available_permits();
            if free > 0 {
                return Some(free.min(self.shared.config.batch));
            }
            tokio::select! {
                permit = self.slots.acquire() => drop(permit),
                () = self.stop.cancelled() => return None,
            }
        }
    }

    /// Takes `entries` of `stream`, just read or claimed by this consumer, into this
    /// instance's care. Each is marked in flight at once, so the claimer keeps resetting its
    /// idle time from now on, also while it waits for a slot: neither another instance nor
    /// this one's claimer takes it over meanwhile. Then each goes to a handler task once a
    /// slot is free; waiting for slots is the back-pressure, the caller takes nothing more
    /// meanwhile. An entry already in flight here (read again after a reconnection, or
    /// claimed back while its handler runs) is skipped: its handler settles it.
    ///
    /// `redelivered` entries (this consumer's own pending ones, or claimed) are counted from
    /// the pending list; new ones (read with `>`) are on their first delivery.
    pub async fn admit(self: &Arc<Self>, stream: &str, entries: Vec<Entry>, redelivered: bool) {
        if let Some(last) = entries.last() {
            self.positions.saw(stream, &last.id);
        }
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| self.inflight.insert(&e.stream, &e.id))
            .collect();
        let counts = if redelivered {
            self.deliveries(stream, &entries).await
        } else {
            HashMap::new()
        };
        for entry in entries {
            // Missing from the pending list: counted as redelivered once.
            let deliveries = if redelivered {
                counts.get(&entry.id).copied().unwrap_or(2)
            } else {
                1
            };
            self.start(entry, deliveries).await;
        }
    }

    /// Hands `entry` (marked in flight), delivered `deliveries` times so far (this delivery
    /// included), to a handler task once a slot is free.
    async fn start(self: &Arc<Self>, entry: Entry, deliveries: u64) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            // The semaphore is never closed; should it be, the entry stays pending.
            self.inflight.remove(&entry.stream, &entry.id);
            return;
        };
        let worker = self.clone();
        let span = tracing::debug_span!(target: "catga::redis", "deliver",
            stream = %entry.stream, entry = %entry.id, deliveries);
        tokio::spawn(
            async move {
                let flight = Flight {
                    inflight: &worker.inflight,
                    stream: &entry.stream,
                    id: &entry.id,
                };
                let settled = worker.handle(&entry, deliveries).await;
                drop(flight);
                if settled == Settled::Ack {
                    worker.acker.ack(entry.stream, entry.id);
                }
                drop(slot);
            }
            .instrument(span),
        );
    }

    /// How often each of `entries` (this consumer's, just read or claimed) has been delivered,
    /// from the pending list.
    async fn deliveries(&self, stream: &str, entries: &[Entry]) -> HashMap<String, u64> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return HashMap::new();
        };
        let rows = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&self.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len() + self.max_in_flight)
            .arg(&self.consumer)
            .query_async::<redis::Value>(&mut self.shared.manager.clone())
            .await;
        let counts = match rows {
            Ok(rows) => entry::pending_counts(rows).map_err(|e| e.to_string()),
            Err(e) => Err(CommandError::new("XPENDING", stream, e).to_string()),
        };
        match counts {
            Ok(counts) => counts.into_iter().collect(),
            Err(error) => {
                tracing::debug!(target: "catga::redis", stream, error,
                    "delivery counts unknown; counting each entry as redelivered once");
                HashMap::new()
            }
        }
    }

    pub(super) fn delivery(&self, deliveries: u64) -> Delivery {
        Delivery::new(
            u32::try_from(deliveries).unwrap_or(u32::MAX),
            self.shared.config.max_deliveries,
        )
    }

    async fn handle(&self, entry: &Entry, deliveries: u64) -> Settled {
        let Some(route) = self.routes.get(&*entry.stream).cloned() else {
            // Only the streams of this plan are read.
            return Settled::Done;
        };
        let Decoded { envelope, reply_to } = match entry.decode() {
            Ok(decoded) => decoded,
            Err(EntryError::Deleted) => {
                // Nothing is left to handle or keep: trimming (`MAXLEN`) took it before it was
                // handled. Acknowledged, so the pending list forgets it.
                tracing::warn!(target: "catga::redis", stream = %entry.stream, entry = %entry.id,
                    "a pending entry was trimmed from its stream before it was handled; it is lost");
                return Settled::Ack;
            }
            Err(error) => {
                tracing::warn!(target: "catga::redis", error = &error as &dyn std::error::Error,
                    "entry is not a catga envelope; set aside");
                let rejected = Rejected {
                    source: format!("redis {} {}", entry.stream, entry.id),
                    name: Some(route.name.clone()),
                    raw_headers: None,
                    payload: entry.payload(),
                    reason: error.to_string(),
                };
                // The application contains its handlers' panics; this contains anything else
                // that unwinds out of it, even while it is handed the message (here and for
                // events and requests below): the entry is never left without a settlement.
                let work = async { self.inbound.reject(rejected).await };
                let disposition = AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|_| {
                    tracing::error!(target: "catga::redis", stream = %entry.stream, entry = %entry.id,
                        "keeping a rejected entry panicked outside the application; it stays pending");
                    Disposition::Retry
                });
                return match disposition {
                    Disposition::Retry => Settled::Done,
                    Disposition::Ack | Disposition::Terminate => Settled::Ack,
                };
            }
        };
        if route.request {
            self.answer(entry, &route.name, envelope, reply_to, deliveries)
                .await;
            Settled::Done
        } else {
            self.consume(entry, &route.name, envelope, deliveries).await
        }
    }

    /// An event: acknowledged once handled or kept; one not settled stays pending and is
    /// delivered again after the backoff's delay for the delivery that failed.
    async fn consume(
        &self,
        entry: &Entry,
        route: &str,
        envelope: Envelope,
        mut deliveries: u64,
    ) -> Settled {
        let mut envelope = Some(envelope);
        loop {
            // Decoded again for a redelivery rather than cloned for every first one: failures
            // are the rare case. The same fields decoded the first time; should they not,
            // the entry stays pending and its next delivery sets it aside.
            let Some(current) = envelope
                .take()
                .or_else(|| entry.decode().ok().map(|d| d.envelope))
            else {
                return Settled::Done;
            };
            let delivery = self.delivery(deliveries);
            let work = async { self.inbound.event(route, current, delivery).await };
            let disposition = AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|_| {
                tracing::error!(target: "catga::redis", stream = %entry.stream, entry = %entry.id,
                    "handling an event panicked outside the application; it will be delivered again");
                Disposition::Retry
            });
            match disposition {
                Disposition::Ack | Disposition::Terminate => return Settled::Ack,
                Disposition::Retry => {
                    // The backoff's step for the delivery that just failed: later deliveries
                    // wait longer, as the schedule says.
                    let delay = self.shared.config.redelivery_delay(delivery.attempt);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        // Left pending: a restart of this consumer or another instance takes
                        // it up.
                        () = self.stop.cancelled() => return Settled::Done,
                    }
                    deliveries += 1;
                    if !self.reclaim(entry, deliveries).await {
                        return Settled::Done;
                    }
                }
            }
        }
    }

    /// Takes `entry` again for another delivery, counting it. False if another consumer owns it
    /// now (it went idle past `ack_wait` and was claimed), or the server is away: it is
    /// then theirs, or pending until claimed.
    async fn reclaim(&self, entry: &Entry, deliveries: u64) -> bool {
        let taken = self
            .redeliver
            .take_again(
                &mut self.shared.manager.clone(),
                &entry.stream,
                &self.group,
                &self.consumer,
                &entry.id,
                deliveries,
            )
            .await;
        match taken {
            Ok(taken) => taken,
            Err(error) => {
                tracing::debug!(target: "catga::redis", error = &error as &dyn std::error::Error,
                    "could not take the entry again; it stays pending");
                false
            }
        }
    }
}

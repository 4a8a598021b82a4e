//! Handling one entry: hand it to the application, then acknowledge it, answer it, or leave it
//! pending for redelivery.

use std::collections::HashMap;
use std::sync::Arc;

use catga_core::envelope::Envelope;
use catga_core::transport::{Delivery, Disposition, Inbound, Rejected};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::acker::Acker;
use super::inflight::InFlight;
use crate::entry::{self, Decoded, Entry, EntryError};
use crate::error::CommandError;
use crate::reply;
use crate::transport::Shared;

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
/// the entry then stays pending and is claimed again after the claim idle time (and, if it
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
    pub acker: Acker,
    pub stop: CancellationToken,
}

impl Worker {
    /// Hands `entry`, delivered `deliveries` times so far (this delivery included), to a
    /// handler task once a slot is free. Waiting for the slot is the back-pressure: the
    /// caller reads nothing more meanwhile.
    pub async fn start(self: &Arc<Self>, entry: Entry, deliveries: u64) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        if !self.inflight.insert(&entry.stream, &entry.id) {
            return;
        }
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
    /// from the pending list. An entry missing there counts as redelivered once.
    pub async fn deliveries(&self, stream: &str, entries: &[Entry]) -> HashMap<String, u64> {
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

    fn delivery(&self, deliveries: u64) -> Delivery {
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
                tracing::debug!(target: "catga::redis", "pending entry no longer exists (trimmed); dropped");
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
                return match self.inbound.reject(rejected).await {
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
    /// delivered again after the redelivery delay.
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
            // are the rare case.
            let Some(current) = envelope
                .take()
                .or_else(|| entry.decode().ok().map(|d| d.envelope))
            else {
                return Settled::Ack;
            };
            let delivery = self.delivery(deliveries);
            match self.inbound.event(route, current, delivery).await {
                Disposition::Ack | Disposition::Terminate => return Settled::Ack,
                Disposition::Retry => {
                    tokio::select! {
                        () = tokio::time::sleep(self.shared.config.redelivery_delay) => {}
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
    /// now (it went idle past the claim time and was claimed), or the server is away: it is
    /// then theirs, or pending until claimed.
    async fn reclaim(&self, entry: &Entry, deliveries: u64) -> bool {
        let min_idle = self.shared.config.redelivery_delay.as_millis();
        let claimed = redis::cmd("XCLAIM")
            .arg(&*entry.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(min_idle).unwrap_or(u64::MAX))
            .arg(&entry.id)
            .arg("RETRYCOUNT")
            .arg(deliveries)
            .arg("JUSTID")
            .query_async::<Vec<redis::Value>>(&mut self.shared.manager.clone())
            .await;
        match claimed {
            Ok(ids) => !ids.is_empty(),
            Err(e) => {
                let error = CommandError::new("XCLAIM", &*entry.stream, e);
                tracing::debug!(target: "catga::redis", error = &error as &dyn std::error::Error,
                    "could not take the entry again; it stays pending");
                false
            }
        }
    }

    /// A request: the reply (or the failure, typed) goes to the caller's reply list, and the
    /// request is acknowledged and deleted in the same transaction.
    async fn answer(
        &self,
        entry: &Entry,
        route: &str,
        envelope: Envelope,
        reply_to: Option<String>,
        deliveries: u64,
    ) {
        let expired = envelope.expired();
        let name = envelope.name.clone();
        let reply = self
            .inbound
            .request(route, envelope, self.delivery(deliveries))
            .await;
        let mut pipe = redis::pipe();
        pipe.atomic();
        match &reply_to {
            // A caller past its deadline is not waiting any more.
            Some(_) if expired => {}
            Some(key) if !self.shared.keys.is_reply(key) => {
                tracing::warn!(target: "catga::redis", message = %name, reply_to = %key,
                    "request names a reply key outside this transport's prefix; not answered");
            }
            Some(key) => {
                let ttl =
                    u64::try_from(self.shared.config.reply_ttl.as_millis()).unwrap_or(u64::MAX);
                pipe.cmd("RPUSH")
                    .arg(key)
                    .arg(reply::encode(&reply))
                    .ignore();
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
            }
            None => {
                tracing::warn!(target: "catga::redis", message = %name,
                    "request without a reply key: handled, but nobody can be answered");
            }
        }
        // A request is for one consumer; once answered, nothing needs it any more.
        pipe.cmd("XACK")
            .arg(&*entry.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore();
        pipe.cmd("XDEL").arg(&*entry.stream).arg(&entry.id).ignore();
        if let Err(e) = pipe
            .query_async::<()>(&mut self.shared.manager.clone())
            .await
        {
            let error = CommandError::new("RPUSH", reply_to.unwrap_or_default(), e);
            tracing::warn!(target: "catga::redis", message = %name,
                error = &error as &dyn std::error::Error,
                "could not send the reply; the request stays pending and is handled again");
        }
    }
}

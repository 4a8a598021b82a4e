//! Answering one request for one service: queue subscriptions, so each request reaches one
//! instance of the service.
//!
//! An instance joins the service's queue group with as many subscriptions as it has in-flight
//! slots, up to [`MAX_QUEUE_WEIGHT`] ([`queue_weight`]). nats-server hands each message to one
//! subscription of the group picked uniformly at random (`processMsgResults` in
//! `server/client.go`: `startIndex := c.in.prand.Intn(len(qsubs))`, then the first
//! subscription there that can take it; across a cluster a route's queue subscriptions count
//! as many times as the remote server has, `addNodeToResults` in `server/sublist.go`). So an
//! instance's share of the requests is its share of the group's subscriptions, which is its
//! share of the slots, as it is for events, whose pulls ask for the free slots. The pick is
//! random per request: the split is proportional in expectation, not a round robin.
//!
//! One loop reads all of an instance's subscriptions to a subject as one stream, so the
//! subject's requests wait for the instance's slots in one place, and back-pressure leaves them
//! in the subscriptions. A subscription that ends (the client was closed) leaves the stream;
//! the others are still read.
//!
//! Each request is handled within the instance's in-flight slots (in its own task once it has
//! to wait, so requests run concurrently), and always answered: with the handler's output, or
//! with its error in the reply headers (never by silence, which the caller could only read as
//! a timeout). A panic, in a handler or in the transport's own code, fails its one request
//! with a `panic` reply; the subscriptions go on. On shutdown every subscription is drained,
//! all at once: the server sends this instance nothing new, and the requests it already sent
//! are still answered.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use catga_core::transport::{Delivery, Inbound, Rejected, RemoteFailure, Reply, TransportError};
use catga_core::{Error, ErrorKind};
use futures::stream::SelectAll;
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::headers::{self, Implied};

/// How long a stopping instance waits for the server to confirm it left the queue group (with
/// the server down, it would wait forever). The subscriptions are drained together, so this
/// bounds them all, not each.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The most subscriptions an instance makes to one request subject, whatever its in-flight
/// slots (`CatgaBuilder::serve_max_in_flight`): the weight of its pick in the service's queue
/// group stops growing there.
///
/// Each subscription costs the server an entry in its subscription list (sent again on every
/// reconnection) and the client a channel, per request the service handles, and counts against
/// a server's or account's `max_subscriptions` limit; the cap bounds that. An instance with
/// more slots than this takes the same share of requests as one with this many.
pub const MAX_QUEUE_WEIGHT: usize = 256;

/// How many subscriptions an instance with `max_in_flight` slots makes to each request
/// subject: one per slot, at least one, at most [`MAX_QUEUE_WEIGHT`].
pub(crate) fn queue_weight(max_in_flight: usize) -> usize {
    max_in_flight.clamp(1, MAX_QUEUE_WEIGHT)
}

/// One instance answering one request for its service.
pub(crate) struct Responder {
    pub shared: Arc<Shared>,
    /// The instance's subscriptions to `subject` in the service's queue group, as many as its
    /// [`queue_weight`].
    pub subscribers: Vec<Subscriber>,
    pub subject: String,
    /// The wire name of the request this subject carries.
    pub name: Arc<str>,
    pub inbound: Arc<dyn Inbound>,
    pub slots: Arc<Semaphore>,
}

impl Responder {
    /// Answers requests until `stop`, then those already received.
    pub async fn run(mut self, stop: CancellationToken) {
        // Polls only the subscriptions that were woken, and drops one that ended while the
        // others go on; it ends when all have.
        let mut incoming = futures::stream::select_all(std::mem::take(&mut self.subscribers));
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = incoming.next() => next,
            };
            // Every subscription ended (the client was closed): nothing more will come.
            let Some(message) = next else { return };
            self.start(message).await;
        }
        self.drain(&mut incoming).await;
    }

    /// Leaves the queue group and answers what the server had already sent. Every drain is
    /// asked for before any is awaited: each only queues an `UNSUB` and a `PING` for the
    /// connection, and a subscription's stream ends once the server's `PONG` says nothing more
    /// will come, so the server confirms them together and one [`DRAIN_LIMIT`] bounds them all.
    async fn drain(&self, incoming: &mut SelectAll<Subscriber>) {
        let mut refused = 0usize;
        let mut last_error = None;
        for subscriber in incoming.iter_mut() {
            if let Err(e) = subscriber.drain().await {
                refused += 1;
                last_error = Some(e);
            }
        }
        if let Some(e) = last_error {
            // Only a closed client refuses: its subscriptions end with what they hold.
            tracing::warn!(target: "catga::nats", subject = %self.subject, error = %e,
                subscriptions = refused,
                "could not leave the queue group; requests may still arrive until the connection closes");
        }
        let rest = async {
            while let Some(message) = incoming.next().await {
                self.start(message).await;
            }
        };
        if tokio::time::timeout(DRAIN_LIMIT, rest).await.is_err() {
            tracing::warn!(target: "catga::nats", subject = %self.subject,
                "the server did not confirm the unsubscription; stopped waiting for it");
        }
    }

    /// Starts handling `message` once a slot is free (back-pressure: requests wait in the
    /// subscriptions meanwhile).
    async fn start(&self, message: async_nats::Message) {
        // The slots are never closed; without one, nothing may run.
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let mut reply = Box::pin(respond(
            message,
            self.name.clone(),
            self.inbound.clone(),
            self.shared.clone(),
            slot,
        ));
        // Most handlers answer without waiting on anything: polled here once, such a request
        // is answered without a task of its own (a spawn and, on a multi-threaded runtime,
        // often a hop to another thread, which was a tenth of a loopback round trip). One that
        // has to wait goes on in a task, so this loop takes the next request at once; the
        // task's first poll registers its real waker, as every poll must.
        let mut first = std::task::Context::from_waker(std::task::Waker::noop());
        if reply.as_mut().poll(&mut first).is_pending() {
            tokio::spawn(reply);
        }
    }
}

/// Handles one request and sends its reply; `slot` is released once the reply is sent.
async fn respond(
    message: async_nats::Message,
    name: Arc<str>,
    inbound: Arc<dyn Inbound>,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
) {
    let subject = message.subject.clone();
    let reply_to = message.reply.clone();
    // The application contains its handlers' panics; this contains the transport's own code
    // around it, and holds for the first poll `start` makes inline in the subscriptions'
    // loop: a panic there would end the loop and its subscriptions, and every later request
    // would find no responder here.
    let work = AssertUnwindSafe(answer(message, &name, &*inbound));
    let reply = work.catch_unwind().await.unwrap_or_else(|_| {
        tracing::error!(target: "catga::nats", subject = %subject,
            "answering a request panicked outside the application; it gets an error reply");
        let error = Error::from(ErrorKind::Panicked {
            message: name.to_string(),
            detail: "answering the request panicked outside the application".to_string(),
        });
        Reply::Err(RemoteFailure::of(&error))
    });
    match reply_to {
        Some(to) => send_reply(&shared, to, reply).await,
        None => {
            tracing::debug!(target: "catga::nats", subject = %subject,
                "a request without a reply subject was handled; nobody waits for its reply");
        }
    }
    drop(slot);
}

/// The application's reply to one request.
async fn answer(message: async_nats::Message, name: &str, inbound: &dyn Inbound) -> Reply {
    let payload = Vec::from(message.payload);
    match headers::to_envelope(message.headers.as_ref(), Implied::Request(name)) {
        Err(why) => {
            let subject = message.subject.to_string();
            tracing::warn!(target: "catga::nats", subject = %subject, error = %why,
                "a request with an unreadable envelope was set aside");
            let failure = RemoteFailure::new("envelope", why.to_string());
            let _ = inbound
                .reject(Rejected {
                    source: format!("nats request ({subject})"),
                    name: Some(name.to_string()),
                    raw_headers: message.headers.as_ref().map(headers::raw_block),
                    payload,
                    reason: why.to_string(),
                })
                .await;
            Reply::Err(failure)
        }
        Ok(mut envelope) => {
            envelope.payload = payload;
            if envelope.timestamp_ms == 0 {
                // Requests travel without their time (see `headers`): it is now, give or
                // take the trip.
                envelope.timestamp_ms = unix_ms_now();
            }
            inbound.request(name, envelope, Delivery::new(1, 1)).await
        }
    }
}

async fn send_reply(shared: &Shared, to: async_nats::Subject, reply: Reply) {
    let (map, body) = match reply {
        Reply::Ok(output) => {
            let limit = shared.client.max_payload();
            if output.len() > limit {
                // Too large to send: say so, rather than leave the caller to time out. The
                // handler ran, so its outcome is in doubt for the caller.
                let failure = RemoteFailure::new(
                    "transport",
                    TransportError::TooLarge {
                        size: output.len(),
                        limit,
                    }
                    .to_string(),
                )
                .with_in_doubt(true);
                let (map, body) = headers::from_failure(&failure);
                (Some(map), body)
            } else {
                (None, output)
            }
        }
        Reply::Err(failure) => {
            let (map, body) = headers::from_failure(&failure);
            (Some(map), body)
        }
    };
    let sent = match map {
        Some(map) => {
            shared
                .client
                .publish_with_headers(to, map, body.into())
                .await
        }
        None => shared.client.publish(to, body.into()).await,
    };
    if let Err(e) = sent {
        tracing::warn!(target: "catga::nats", error = %e, "could not send a reply; the caller will time out");
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_is_the_slots_at_least_one_at_most_the_cap() {
        assert_eq!(queue_weight(0), 1);
        assert_eq!(queue_weight(1), 1);
        assert_eq!(queue_weight(4), 4);
        assert_eq!(queue_weight(64), 64);
        assert_eq!(queue_weight(MAX_QUEUE_WEIGHT), MAX_QUEUE_WEIGHT);
        assert_eq!(queue_weight(MAX_QUEUE_WEIGHT + 1), MAX_QUEUE_WEIGHT);
        assert_eq!(queue_weight(usize::MAX), MAX_QUEUE_WEIGHT);
    }
}

//! Answering one request for one service: a queue subscription, so each request reaches one
//! instance of the service.
//!
//! Each request is handled within the instance's in-flight slots (in its own task once it has
//! to wait, so requests run concurrently), and always answered: with the handler's output, or
//! with its error in the reply headers (never by silence, which the caller could only read as
//! a timeout). A panic, in a handler or in the transport's own code, fails its one request
//! with a `panic` reply; the subscription goes on. On shutdown the subscription is drained: the server sends this instance nothing
//! new, and the requests it already sent are still answered.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use catga_core::transport::{Delivery, Inbound, Rejected, RemoteFailure, Reply, TransportError};
use catga_core::{Error, ErrorKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::headers::{self, Implied};

/// How long a stopping instance waits for the server to confirm it left the queue group (with
/// the server down, it would wait forever).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// One instance answering one request for its service.
pub(crate) struct Responder {
    pub shared: Arc<Shared>,
    pub subscriber: Subscriber,
    pub subject: String,
    /// The wire name of the request this subject carries.
    pub name: Arc<str>,
    pub inbound: Arc<dyn Inbound>,
    pub slots: Arc<Semaphore>,
}

impl Responder {
    /// Answers requests until `stop`, then those already received.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = self.subscriber.next() => next,
            };
            // The client was closed: nothing more will come.
            let Some(message) = next else { return };
            self.start(message).await;
        }
        if let Err(e) = self.subscriber.drain().await {
            tracing::warn!(target: "catga::nats", subject = %self.subject, error = %e,
                "could not leave the queue group; requests may still arrive until the connection closes");
            return;
        }
        let rest = async {
            while let Some(message) = self.subscriber.next().await {
                self.start(message).await;
            }
        };
        if tokio::time::timeout(DRAIN_LIMIT, rest).await.is_err() {
            tracing::warn!(target: "catga::nats", subject = %self.subject,
                "the server did not confirm the unsubscription; stopped waiting for it");
        }
    }

    /// Starts handling `message` once a slot is free (back-pressure: requests wait in the
    /// subscription meanwhile).
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
    // around it, and holds for the first poll `start` makes inline in the subscription's
    // loop: a panic there would end the subscription, and every later request would find
    // no responder.
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

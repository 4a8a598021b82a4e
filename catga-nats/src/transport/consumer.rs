//! Consuming one event for one service: a pull loop on the service's durable consumer.
//!
//! Each pull asks for no more events than the instance has free in-flight slots (at most the
//! fetch batch), so a busy instance leaves events to the others; each event is handled in its
//! own task and settled as the application decides (see [`settle`](super::settle)). The loop
//! never gives up:
//! * a reconnection renews the pull at once (the old one may have died with the connection),
//!   checks the durable consumer, and, when the server stayed up, looks for a stored event
//!   the client could not read ([`poison`](super::poison));
//! * a pull that comes back empty, and a busy consumer every `fetch_wait`, checks that the
//!   durable consumer still exists (keeping its acknowledgement floor) and creates it again
//!   when the server lost it ([`durable`](super::durable));
//! * a failed request is retried with a growing delay.
//!
//! On shutdown the pull inbox is drained: the server sends nothing more, and whatever it sent
//! and was not started is handed back at once (`-NAK`), so another instance gets it without
//! waiting for the acknowledgement timeout.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::Acker;
use catga_core::transport::{Delivery, Disposition, Inbound, Rejected};
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::durable::{Health, Known, RECHECK};
use super::poison::Scan;
use super::pull::{Arrival, End, Puller};
use super::settle::settle;
use crate::headers::{self, Implied};
use crate::reconnect::Watch;

/// The first and the longest wait between attempts after a failed request.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long after a pull's own expiry the server's silence ends it: a pull to a consumer the
/// server no longer has is never answered.
const SILENCE_GRACE: Duration = Duration::from_secs(1);
/// How long a stopping consumer waits for the server to confirm its pulls are over.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How a pull ended.
enum Pulled {
    /// Events arrived: pull again.
    Some,
    /// Nothing arrived: check the durable, then pull again.
    Empty,
    /// The connection was renewed.
    Reconnected,
    /// The server deleted the consumer.
    Gone,
    /// The server refused the pull.
    Refused(String),
    /// Shutting down.
    Stopped,
    /// The client is closed: nothing more will come.
    Closed,
}

/// One instance consuming one event for its service.
pub(crate) struct EventConsumer {
    pub shared: Arc<Shared>,
    /// The event's wire name.
    pub event: Arc<str>,
    pub config: pull::Config,
    pub known: Known,
    pub puller: Puller,
    pub inbound: Arc<dyn Inbound>,
    pub slots: Arc<Semaphore>,
}

impl EventConsumer {
    fn durable(&self) -> &str {
        self.config.durable_name.as_deref().unwrap_or_default()
    }

    /// How many events to ask for: waits for a free slot, then counts them. The slots are not
    /// held while the pull waits, so one idle event does not starve the others.
    async fn capacity(&self) -> usize {
        if let Ok(slot) = self.slots.acquire().await {
            drop(slot);
        }
        self.slots
            .available_permits()
            .clamp(1, self.shared.config.batch)
    }

    /// Pulls and dispatches until `stop`, then hands back what the server still sends.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut watch = self.shared.reconnects.watch();
        let mut server = self.shared.server_id();
        let mut retry = RETRY_FIRST;
        let mut checked = Instant::now();
        loop {
            if watch.take_reconnection() {
                if stopped(&stop, self.after_reconnection(&mut server)).await {
                    break;
                }
                checked = Instant::now();
            }
            let want = tokio::select! {
                () = stop.cancelled() => break,
                want = self.capacity() => want,
            };
            let wait = self.shared.config.fetch_wait;
            if let Err(error) = self.puller.request(want, wait).await {
                tracing::warn!(target: "catga::nats", consumer = %self.durable(), error = %error,
                    retry_in = ?retry, "could not ask for events; retrying");
                if pause(&stop, &mut retry).await {
                    break;
                }
                continue;
            }
            let pulled = self.take(want, &mut watch, &stop).await;
            if matches!(pulled, Pulled::Some) {
                retry = RETRY_FIRST;
            }
            let interrupted = match pulled {
                // A busy consumer checks too, as often as an idle one: the floor it knows is
                // where a lost durable is created again from.
                Pulled::Some if checked.elapsed() < wait => false,
                Pulled::Some | Pulled::Empty => {
                    checked = Instant::now();
                    stopped(&stop, self.check()).await
                }
                Pulled::Reconnected => {
                    checked = Instant::now();
                    stopped(&stop, self.after_reconnection(&mut server)).await
                }
                Pulled::Gone => stopped(&stop, self.recover()).await,
                Pulled::Refused(why) => {
                    tracing::warn!(target: "catga::nats", consumer = %self.durable(), why = %why,
                        retry_in = ?retry, "the server refused a pull; retrying");
                    pause(&stop, &mut retry).await
                }
                Pulled::Stopped => true,
                Pulled::Closed => return,
            };
            if interrupted {
                break;
            }
        }
        self.puller
            .drain(DRAIN_LIMIT, async |message| nak_now(&message).await)
            .await;
    }

    /// Starts a handler for each event of the pull as slots free up, until it has `want`,
    /// the pull ends, the connection is renewed, or `stop`.
    async fn take(&mut self, want: usize, watch: &mut Watch, stop: &CancellationToken) -> Pulled {
        let silence = tokio::time::sleep(self.shared.config.fetch_wait + SILENCE_GRACE);
        let mut silence = std::pin::pin!(silence);
        let mut got = 0;
        let some = |got: usize| if got > 0 { Pulled::Some } else { Pulled::Empty };
        loop {
            let arrival = tokio::select! {
                biased;
                () = stop.cancelled() => return Pulled::Stopped,
                () = watch.reconnected() => return Pulled::Reconnected,
                () = &mut silence => return some(got),
                arrival = self.puller.next() => arrival,
            };
            let message = match arrival {
                None => return Pulled::Closed,
                Some(Arrival::End(End::Expired)) => return some(got),
                Some(Arrival::End(End::ConsumerGone)) => return Pulled::Gone,
                Some(Arrival::End(End::Refused(why))) => return Pulled::Refused(why),
                Some(Arrival::Delivery(message)) => message,
            };
            got += 1;
            let slot = tokio::select! {
                () = stop.cancelled() => {
                    nak_now(&message).await;
                    return Pulled::Stopped;
                }
                slot = self.slots.clone().acquire_owned() => slot,
            };
            // The slots are never closed; without one, nothing may run.
            let Ok(slot) = slot else {
                nak_now(&message).await;
                return Pulled::Stopped;
            };
            tokio::spawn(handle(
                message,
                self.event.clone(),
                self.inbound.clone(),
                self.shared.clone(),
                slot,
            ));
            if got >= want {
                return Pulled::Some;
            }
        }
    }

    /// Checks the durable consumer; creates it again if the server lost it. The server's
    /// state, when it has the consumer.
    async fn check(&mut self) -> Option<(u64, u64)> {
        match self.shared.health(self.durable()).await {
            Health::Present {
                ack_floor,
                delivered,
            } => {
                self.known.ack_floor = ack_floor;
                Some((ack_floor, delivered))
            }
            Health::Missing => {
                self.recover().await;
                None
            }
            Health::Unknown(why) => {
                tracing::debug!(target: "catga::nats", consumer = %self.durable(), why = %why,
                    "could not check the durable consumer; will check again");
                tokio::time::sleep(RECHECK).await;
                None
            }
        }
    }

    /// After a reconnection: the durable may be gone (a server restarted without its store),
    /// and, when the server stayed up, the connection may have been dropped by the client over
    /// an event it could not read.
    async fn after_reconnection(&mut self, server: &mut String) {
        let now = self.shared.server_id();
        let same_server = now == *server;
        *server = now;
        tracing::debug!(target: "catga::nats", consumer = %self.durable(), same_server,
            "reconnected; checking the durable consumer");
        let Some((ack_floor, delivered)) = self.check().await else {
            return;
        };
        if same_server && delivered > ack_floor {
            let scan = Scan {
                shared: &self.shared,
                durable: self.durable(),
                subject: &self.config.filter_subject,
                event: &self.event,
                inbound: &*self.inbound,
            };
            scan.run(ack_floor, delivered).await;
        }
    }

    /// Creates the durable consumer (and the stream) again.
    async fn recover(&mut self) {
        match self.shared.recreate(self.config.clone(), self.known).await {
            Ok(known) => self.known = known,
            Err(error) => {
                tracing::warn!(target: "catga::nats", consumer = %self.durable(), error = %error,
                    "could not create the durable consumer again; will try again");
                tokio::time::sleep(RECHECK).await;
            }
        }
    }
}

/// Runs `work` unless `stop` comes first; whether it did.
async fn stopped<T>(stop: &CancellationToken, work: impl Future<Output = T>) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        _ = work => false,
    }
}

/// Waits `retry` (longer next time); whether `stop` came first.
async fn pause(stop: &CancellationToken, retry: &mut Duration) -> bool {
    let stopped = tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(*retry) => false,
    };
    *retry = (*retry * 2).min(RETRY_MAX);
    stopped
}

async fn nak_now(message: &async_nats::jetstream::Message) {
    if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(target: "catga::nats", error = %e, "could not give an event back; it returns after the ack wait");
    }
}

/// What the server says of one delivery, from its acknowledgement subject.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    /// The delivery count, from 1.
    attempt: u32,
    /// When the stream stored the event (ms since the epoch), 0 if unknown.
    stored_ms: u64,
    /// Its stream sequence, 0 if unknown.
    sequence: u64,
}

impl Stamp {
    fn of(message: &async_nats::jetstream::Message) -> Stamp {
        let Ok(info) = message.info() else {
            return Stamp {
                attempt: 1,
                stored_ms: 0,
                sequence: 0,
            };
        };
        Stamp {
            // A count beyond u32 is beyond any budget: saturate rather than start at 1.
            attempt: u32::try_from(info.delivered).unwrap_or(u32::MAX),
            stored_ms: u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(0),
            sequence: info.stream_sequence,
        }
    }
}

/// Handles one event and settles it; `slot` is released once it is settled.
async fn handle(
    message: async_nats::jetstream::Message,
    event: Arc<str>,
    inbound: Arc<dyn Inbound>,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
) {
    let stamp = Stamp::of(&message);
    let (message, acker) = message.split();
    // The transport's own code around the application: a panic in it must not leave the
    // event unsettled until the acknowledgement wait (the application contains its own).
    let work = dispose(message, &event, &*inbound, &shared, &acker, stamp);
    let disposition = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(disposition) => disposition,
        Err(_) => {
            tracing::error!(target: "catga::nats", event = %event, sequence = stamp.sequence,
                "handling an event panicked outside the application; it will be delivered again");
            Disposition::Retry
        }
    };
    let kind = settle(disposition, stamp.attempt, &shared.config);
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(target: "catga::nats", error = %e,
            "could not acknowledge an event; it will be delivered again");
    }
    drop(slot);
}

/// What the application says of one delivery.
async fn dispose(
    message: async_nats::Message,
    event: &str,
    inbound: &dyn Inbound,
    shared: &Shared,
    acker: &Acker,
    stamp: Stamp,
) -> Disposition {
    let payload = Vec::from(message.payload);
    match headers::to_envelope(message.headers.as_ref(), Implied::Event(event)) {
        Err(why) => {
            // Unreadable headers will never be readable: keep the message and move on.
            let subject = message.subject.to_string();
            tracing::warn!(target: "catga::nats", subject = %subject, error = %why,
                "an event with an unreadable envelope was set aside");
            let source = format!(
                "nats stream {} seq {} ({subject})",
                shared.stream, stamp.sequence
            );
            inbound
                .reject(Rejected {
                    source,
                    name: Some(event.to_string()),
                    raw_headers: message.headers.as_ref().map(headers::raw_block),
                    payload,
                    reason: why.to_string(),
                })
                .await
        }
        Ok(mut envelope) => {
            envelope.payload = payload;
            if envelope.timestamp_ms == 0 {
                // Events travel without `catga-timestamp`: their time is the one the
                // stream stored.
                envelope.timestamp_ms = stamp.stored_ms;
            }
            let every = shared.config.progress_every();
            let delivery = Delivery::new(stamp.attempt, shared.config.max_deliveries);
            with_progress(inbound.event(event, envelope, delivery), acker, every).await
        }
    }
}

/// Runs `work`, telling the server every `every` that the event is still being worked on, so
/// a slow handler's event is not redelivered to another instance meanwhile.
async fn with_progress<T>(work: impl Future<Output = T>, acker: &Acker, every: Duration) -> T {
    let mut work = std::pin::pin!(work);
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                if let Err(e) = acker.ack_with(AckKind::Progress).await {
                    tracing::debug!(target: "catga::nats", error = %e, "could not extend an event's ack wait");
                }
            }
        }
    }
}

//! Consuming one event for one service: a pull loop on the service's durable consumer.
//!
//! Each pull asks for no more events than the instance has free in-flight slots (at most the
//! fetch batch), so a busy instance leaves events to the others; each event is handled in its
//! own task, acknowledged after its handlers ran (see [`settle`](super::settle)). The loop
//! never gives up: a failed pull is retried with a growing delay, the consumer re-created if
//! the server lost it, and a reconnection renews the pull at once (the old one died with the
//! connection). The durable consumer remembers what was acknowledged, so consumption resumes
//! where it stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::message::Acker;
use catga_core::transport::{Delivery, Inbound, Rejected};
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::settle::settle;
use crate::error::NatsError;
use crate::headers::{self, Implied};
use crate::reconnect::Watch;

/// The first and the longest wait between attempts after a failed pull.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How a pull ended.
enum Pulled {
    /// The batch was taken (or the connection renewed): pull again.
    Done,
    /// Shutting down.
    Stopped,
    /// The pull failed: recover, then pull again.
    Failed(async_nats::Error),
}

/// One instance consuming one event for its service.
pub(crate) struct EventConsumer {
    pub shared: Arc<Shared>,
    /// The event's wire name.
    pub event: Arc<str>,
    pub consumer: PullConsumer,
    pub config: pull::Config,
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
            .clamp(1, self.shared.settings.fetch_batch)
    }

    /// Pulls and dispatches until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut watch = self.shared.reconnects.watch();
        let mut retry = RETRY_FIRST;
        loop {
            let want = tokio::select! {
                () = stop.cancelled() => return,
                want = self.capacity() => want,
            };
            watch.mark_seen();
            let pulled = tokio::select! {
                () = stop.cancelled() => return,
                pulled = self
                    .consumer
                    .batch()
                    .max_messages(want)
                    .expires(self.shared.settings.fetch_wait)
                    .messages() => pulled,
            };
            let outcome = match pulled {
                Ok(mut batch) => self.take(&mut batch, &mut watch, &stop).await,
                Err(e) => Pulled::Failed(Box::new(e)),
            };
            match outcome {
                Pulled::Done => retry = RETRY_FIRST,
                Pulled::Stopped => return,
                Pulled::Failed(error) => self.recover(error, &mut retry, &stop).await,
            }
        }
    }

    /// Starts a handler for each event of `batch` as slots free up, until the batch ends,
    /// the connection is renewed, or `stop`.
    async fn take(
        &self,
        batch: &mut pull::Batch,
        watch: &mut Watch,
        stop: &CancellationToken,
    ) -> Pulled {
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    release(batch).await;
                    return Pulled::Stopped;
                }
                () = watch.reconnected() => {
                    tracing::debug!(target: "catga::nats", consumer = %self.durable(),
                        "reconnected; renewing the pull");
                    return Pulled::Done;
                }
                next = batch.next() => next,
            };
            let message = match next {
                None => return Pulled::Done,
                Some(Err(e)) => return Pulled::Failed(e),
                Some(Ok(message)) => message,
            };
            let slot = tokio::select! {
                () = stop.cancelled() => {
                    nak_now(&message).await;
                    release(batch).await;
                    return Pulled::Stopped;
                }
                slot = self.slots.clone().acquire_owned() => slot,
            };
            // The slots are never closed; without one, nothing may run.
            let Ok(slot) = slot else {
                return Pulled::Stopped;
            };
            tokio::spawn(handle(
                message,
                self.event.clone(),
                self.inbound.clone(),
                self.shared.clone(),
                slot,
            ));
        }
    }

    /// After a failed pull: waits (longer each time), then makes sure the stream and the
    /// durable consumer exist again (a server restarted without its store lost them).
    async fn recover(
        &mut self,
        error: async_nats::Error,
        retry: &mut Duration,
        stop: &CancellationToken,
    ) {
        let error = NatsError::Pull {
            consumer: self.durable().to_string(),
            source: error,
        };
        tracing::warn!(target: "catga::nats", error = %error, source = ?std::error::Error::source(&error),
            retry_in = ?*retry, "pull failed; retrying");
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(*retry) => {}
        }
        *retry = (*retry * 2).min(RETRY_MAX);
        if let Err(e) = self.shared.ensure_stream().await {
            tracing::debug!(target: "catga::nats", error = %e, "stream not ensured; will retry");
            return;
        }
        match self
            .shared
            .jetstream
            .create_consumer_on_stream(self.config.clone(), &self.shared.stream)
            .await
        {
            Ok(consumer) => self.consumer = consumer,
            Err(e) => {
                tracing::debug!(target: "catga::nats", consumer = %self.durable(), error = %e,
                    "consumer not re-created; will retry");
            }
        }
    }
}

/// Gives back, at once, the events a stopping instance received but will not handle, so the
/// other instances get them without waiting for the acknowledgement timeout.
async fn release(batch: &mut pull::Batch) {
    while let Some(Some(Ok(message))) = batch.next().now_or_never() {
        nak_now(&message).await;
    }
}

async fn nak_now(message: &async_nats::jetstream::Message) {
    if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(target: "catga::nats", error = %e, "could not give an event back; it returns after the ack wait");
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
    let info = message.info().ok();
    let attempt = info
        .as_ref()
        .and_then(|info| u32::try_from(info.delivered).ok())
        .unwrap_or(1);
    // Events travel without `catga-timestamp`: their time is the one the stream stored.
    let stored_ms = info.map_or(0, |info| {
        u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    });
    let sequence = message.info().map_or(0, |info| info.stream_sequence);
    let (message, acker) = message.split();
    let payload = Vec::from(message.payload);
    let disposition = match headers::to_envelope(message.headers.as_ref(), Implied::Event(&event)) {
        Err(why) => {
            // Unreadable headers will never be readable: keep the message and move on.
            let subject = message.subject.to_string();
            tracing::warn!(target: "catga::nats", subject = %subject, error = %why,
                "an event with an unreadable envelope was set aside");
            inbound
                .reject(Rejected {
                    source: format!("nats stream {} seq {sequence} ({subject})", shared.stream),
                    name: Some(event.to_string()),
                    raw_headers: None,
                    payload,
                    reason: why.to_string(),
                })
                .await
        }
        Ok(mut envelope) => {
            envelope.payload = payload;
            if envelope.timestamp_ms == 0 {
                envelope.timestamp_ms = stored_ms;
            }
            let every = shared.settings.progress_every();
            let delivery = Delivery::new(attempt, shared.settings.max_deliver);
            with_progress(inbound.event(&event, envelope, delivery), &acker, every).await
        }
    };
    let kind = settle(disposition, attempt, &shared.settings);
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(target: "catga::nats", error = %e,
            "could not acknowledge an event; it will be delivered again");
    }
    drop(slot);
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

//! Events every instance must see ([`ServePlan::observe`](catga_core::transport::ServePlan)):
//! a plain subscription per instance to the event's subject, neither the service's queue group
//! nor its durable consumer, so each instance hears each publish (cache invalidation).
//!
//! The subscription sees what JetStream stores as it is published; nothing is stored for it.
//! While the connection is down it hears nothing, so after each reconnection it reports the
//! event as possibly published: the application drops what the event would have invalidated.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use catga_core::transport::Inbound;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// How long a stopping instance waits for the server to confirm its unsubscription.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// One instance observing one event.
pub(crate) struct Observer {
    pub shared: Arc<Shared>,
    /// The event's wire name.
    pub event: Arc<str>,
    pub subscriber: Subscriber,
    pub inbound: Arc<dyn Inbound>,
}

impl Observer {
    /// Reports each publish of the event, and each reconnection, until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut watch = self.shared.reconnects.watch();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = watch.reconnected() => {
                    tracing::debug!(target: "catga::nats", event = %self.event,
                        "reconnected; the event may have been published meanwhile");
                    self.report();
                }
                next = self.subscriber.next() => match next {
                    Some(_) => self.report(),
                    // The client was closed: nothing more will come.
                    None => return,
                },
            }
        }
        if let Err(e) = self.subscriber.drain().await {
            tracing::debug!(target: "catga::nats", event = %self.event, error = %e,
                "could not stop observing an event");
            return;
        }
        let rest = async { while self.subscriber.next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_LIMIT, rest).await.is_err() {
            tracing::debug!(target: "catga::nats", event = %self.event,
                "the server did not confirm the end of an observation; stopped waiting");
        }
    }

    /// Tells the application; a panic in what it runs must not end the observation.
    fn report(&self) {
        let reported =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.inbound.observe(&self.event)));
        if reported.is_err() {
            tracing::error!(target: "catga::nats", event = %self.event,
                "observing an event panicked; the observation goes on");
        }
    }
}

//! Waking waiting dispatches over pub/sub: one subscriber connection per store (shared by its
//! clones), subscribed to the store's channel, opened by the first `wait` and kept until the
//! last clone is dropped.
//!
//! Completing or releasing a key that a dispatch waits for (its value is `W`) publishes the
//! key on the channel, in the same script, so every instance hears it. A waiter registers for
//! its key *before* it looks at the key (which marks it `W`): a change after the look is heard,
//! one before it is seen by the look. Messages are not durable: while the subscriber is
//! disconnected they are lost, so each time it is subscribed again every waiter looks at its
//! key again, and waiters look again on their own every poll interval besides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long the subscriber may take to connect and subscribe before it tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest rest between attempts to connect the subscriber.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The waiters of one store and the subscriber that wakes them.
pub(super) struct Wakeups {
    client: Option<redis::Client>,
    channel: String,
    waiters: Arc<Waiters>,
    /// Told each time the subscriber is subscribed (again): waiters look again.
    resubscribed: Arc<Notify>,
    started: AtomicBool,
    /// Whether the subscriber is subscribed now.
    ready: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
    _stopped_on_drop: DropGuard,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("channel", &self.channel)
            .field("subscribed", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

/// The keys being waited for, each with its `Notify` and how many subscriptions hold it.
#[derive(Default)]
struct Waiters {
    slots: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
}

impl Waiters {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, (Arc<Notify>, usize)>> {
        // Every change under the lock is one insert, count change or removal.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        if let Some((notify, _)) = self.slots().get(key) {
            notify.notify_waiters();
        }
    }
}

/// A waiter's interest in one key, until dropped.
pub(super) struct Subscription {
    key: String,
    notify: Arc<Notify>,
    waiters: Arc<Waiters>,
}

impl Subscription {
    /// Woken by a completion or release of the key published from when this subscription was
    /// made (`notify_waiters` reaches every `Notified` created before it).
    pub(super) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut slots = self.waiters.slots();
        if let Some((_, count)) = slots.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

impl Wakeups {
    /// Wake-ups on `channel`, subscribing through a connection of `client` once needed; with
    /// no client, waiters only poll.
    pub(super) fn new(client: Option<redis::Client>, channel: String) -> Wakeups {
        let stop = CancellationToken::new();
        Wakeups {
            client,
            channel,
            waiters: Arc::default(),
            resubscribed: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            ready: Arc::new(watch::channel(false).0),
            _stopped_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    /// The channel completions and releases are published on.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// Registers interest in `key`, starting the subscriber if it does not run yet, and waits
    /// up to `bound` for it to be subscribed (the first wait of a store), so that the look
    /// that follows is covered.
    pub(super) async fn subscribe(&self, key: &str, bound: Duration) -> Subscription {
        let notify = {
            let mut slots = self.waiters.slots();
            let (notify, count) = slots
                .entry(key.to_owned())
                .or_insert_with(|| (Arc::new(Notify::new()), 0));
            *count += 1;
            Arc::clone(notify)
        };
        let subscription = Subscription {
            key: key.to_owned(),
            notify,
            waiters: Arc::clone(&self.waiters),
        };
        if let Some(client) = &self.client {
            if !self.started.swap(true, Ordering::AcqRel) {
                tokio::spawn(listen(
                    client.clone(),
                    self.channel.clone(),
                    Arc::clone(&self.waiters),
                    Arc::clone(&self.resubscribed),
                    Arc::clone(&self.ready),
                    self.stop.clone(),
                ));
            }
            let mut ready = self.ready.subscribe();
            let _ = tokio::time::timeout(bound, ready.wait_for(|subscribed| *subscribed)).await;
        }
        subscription
    }

    /// Whether the subscriber is subscribed now: a waiter is then woken by a notification.
    pub(super) fn subscribed(&self) -> bool {
        *self.ready.borrow()
    }

    /// Told each time the subscriber is subscribed (again): what was published while it was
    /// not is lost, so a waiter looks at its key again.
    pub(super) fn resubscribed(&self) -> &Notify {
        &self.resubscribed
    }
}

/// The subscriber: connects, subscribes to `channel`, wakes the waiters of each key published,
/// and connects again whenever the connection is lost (telling every waiter to look again once
/// it is subscribed), until `stop`.
async fn listen(
    client: redis::Client,
    channel: String,
    waiters: Arc<Waiters>,
    resubscribed: Arc<Notify>,
    ready: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
) {
    let mut rest = RETRY_MIN;
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => connected,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                tracing::warn!(target: "catga::redis", channel = %channel, error = %error,
                    "idempotency store: cannot subscribe for completions; waiters poll until it can");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(rest) => {}
                }
                rest = (rest * 2).min(RETRY_MAX);
                continue;
            }
            Err(_) => {
                tracing::warn!(target: "catga::redis", channel = %channel, timeout = ?CONNECT_TIMEOUT,
                    "idempotency store: subscribing for completions timed out; waiters poll until it succeeds");
                rest = (rest * 2).min(RETRY_MAX);
                continue;
            }
        };
        rest = RETRY_MIN;
        ready.send_replace(true);
        // Whoever looked while nobody listened looks again.
        resubscribed.notify_waiters();
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = messages.next() => message,
            };
            match message {
                Some(message) => waiters.wake(message.get_payload_bytes()),
                None => break,
            }
        }
        ready.send_replace(false);
        tracing::warn!(target: "catga::redis", channel = %channel,
            "idempotency store: the subscriber connection was lost; waiters poll until it is subscribed again");
    }
}

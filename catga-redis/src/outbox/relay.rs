//! The relay: publishes committed outbox entries and removes each once the transport took it.
//!
//! One claim rule serves every trigger. The relay of the committing process is handed the
//! entries in memory at commit (the fast round: no read of the stream); relays of other
//! processes are woken by the commit's `PUBLISH` on `{P:outbox}:notify` when they
//! [`listen`](RedisOutboxRelay::listen), and every relay polls. A claim is a lease (an entry id
//! → expiry field of `{P:outbox}:claims`), decided by a script, so two relays never publish
//! one entry at once; a relay killed mid-batch leaves leases that expire, and another relay
//! publishes those entries again: at most one batch twice, which an inbox absorbs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use catga_core::Catga;
use catga_core::cluster::{Elected, LeaderGate};
use catga_core::pipeline::Layer;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::backlog::Backlog;
use super::commit::FAST;
use super::error::RedisOutboxError;
use super::round::Committed;

const DEFAULT_BATCH: usize = 256;
const MAX_BATCH: usize = 10_000;
const DEFAULT_POLL: Duration = Duration::from_secs(1);
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How long opening the wake-up subscription may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes a [`RedisOutbox`](super::RedisOutbox)'s entries. Made by
/// [`RedisOutbox::relay`](super::RedisOutbox::relay), started with [`start`](Self::start). Run
/// one in every instance: they share the work.
///
/// ```no_run
/// # async fn demo(stores: catga_redis::store::RedisStores) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::Catga;
/// use catga_redis::RedisOutbox;
///
/// let outbox = RedisOutbox::new(&stores);
/// let relay = outbox
///     .relay()
///     .batch(256)?                          // entries per claim (the default)
///     .lease(Duration::from_secs(30))?;     // how long a claim holds (the default)
/// let app = Catga::builder().layer(outbox).build()?;
/// let running = relay.start(app.clone()).await?;
/// // … serve …
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisOutboxRelay {
    pub(super) shared: Arc<Shared>,
    pub(super) batch: usize,
    poll: Duration,
    pub(super) lease: Duration,
    /// When set, only the leader claims entries other processes left (see
    /// [`recover_while_leading`](RedisOutboxRelay::recover_while_leading)).
    leadership: LeaderGate,
}

impl std::fmt::Debug for RedisOutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutboxRelay")
            .field("stream", &self.shared.keys.stream)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisOutboxRelay {
    pub(super) fn new(shared: Arc<Shared>) -> RedisOutboxRelay {
        RedisOutboxRelay {
            shared,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            lease: DEFAULT_LEASE,
            leadership: LeaderGate::always(),
        }
    }

    /// Claims the entries other processes left (committed where no relay ran, or by a process
    /// that died before its fast round) only while this instance leads `election`: one
    /// recovery claim per poll across the service instead of one per instance. This relay
    /// still publishes its own process's commits, from memory and by claiming what its fast
    /// round could not, whether it leads or not. A claim needs no fencing token: it is a lease
    /// on the entries, taken by whichever relay is first; entries a dead leader left are
    /// claimed by the next leader once their claims run out. Without it (the default), every
    /// relay claims.
    pub fn recover_while_leading(mut self, election: &Elected) -> RedisOutboxRelay {
        self.leadership = LeaderGate::of(election);
        self
    }

    pub(super) fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Entries claimed and published per round (default 256, at most 10,000); a claim reads
    /// up to four batches of the stream. A crash publishes at most one batch twice.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidOption`] for 0 or more than 10,000.
    pub fn batch(mut self, entries: usize) -> Result<RedisOutboxRelay, RedisOutboxError> {
        if entries == 0 || entries > MAX_BATCH {
            return Err(RedisOutboxError::InvalidOption {
                option: "batch",
                value: entries.to_string(),
                reason: "give between 1 and 10000 entries",
            });
        }
        self.batch = entries;
        Ok(self)
    }

    /// How often the relay looks for entries nobody announced (default 1 s): those of a
    /// process that died before its fast round, or committed while no relay listened.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidOption`] for less than 10 ms.
    pub fn poll_interval(mut self, every: Duration) -> Result<RedisOutboxRelay, RedisOutboxError> {
        if every < Duration::from_millis(10) {
            return Err(RedisOutboxError::InvalidOption {
                option: "poll_interval",
                value: format!("{every:?}"),
                reason: "give at least 10 ms",
            });
        }
        self.poll = every;
        Ok(self)
    }

    /// How long a claim holds (default 30 s). A relay starts no publish after 80 % of it,
    /// so keep it well above the time a batch takes to publish; a relay that died is
    /// replaced after it.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidOption`] for less than 100 ms.
    pub fn lease(mut self, lease: Duration) -> Result<RedisOutboxRelay, RedisOutboxError> {
        if lease < Duration::from_millis(100) {
            return Err(RedisOutboxError::InvalidOption {
                option: "lease",
                value: format!("{lease:?}"),
                reason: "give at least 100 ms",
            });
        }
        self.lease = lease;
        Ok(self)
    }

    /// Starts relaying for `app` on the current Tokio runtime. The relay subscribes to the
    /// outbox's wake-up channel on a connection of its own (a subscribed connection can do
    /// nothing else), so commits of processes without a relay are published at once rather
    /// than at the next poll.
    ///
    /// # Errors
    /// [`RedisOutboxError::Store`] if the wake-up subscription cannot be opened.
    pub async fn start<L: Layer>(self, app: Catga<L>) -> Result<RunningRelay, RedisOutboxError> {
        let listener = match self.shared.conn.client() {
            Some(client) => Some(Listener::open(client.clone(), &self.shared.keys.notify).await?),
            None => None,
        };
        // Taken before this returns, so every dispatch that begins after `start` hands its
        // entries to this relay (taken in the task, a send right after `start` could still
        // see no relay and leave its entries to the leader).
        let fast = self.take_fast();
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run(app, listener, fast, stop.clone()));
        Ok(RunningRelay {
            stop,
            task: Some(task),
        })
    }

    /// The hand-over queue of this process's commits, if no relay here took it before: the
    /// first relay started in a process gets the entries its commits hand over.
    fn take_fast(&self) -> Option<mpsc::Receiver<Vec<Committed>>> {
        let fast = self.shared.fast_rx.lock().ok().and_then(|mut rx| rx.take());
        if fast.is_some() {
            self.shared.fast_taken.store(true, Ordering::Release);
        }
        fast
    }

    /// Relays until `stop`, measuring the backlog beside it (see [`backlog`](super::backlog))
    /// in the same task, so `abort` stops both and a round never waits for a measurement.
    async fn run<L: Layer>(
        self,
        app: Catga<L>,
        listener: Option<Listener>,
        fast: Option<mpsc::Receiver<Vec<Committed>>>,
        stop: CancellationToken,
    ) {
        let backlog = Backlog::new(&self.shared);
        tokio::join!(self.relay(app, listener, fast, &stop), backlog.run(&stop));
    }

    async fn relay<L: Layer>(
        &self,
        app: Catga<L>,
        mut listener: Option<Listener>,
        mut fast: Option<mpsc::Receiver<Vec<Committed>>>,
        stop: &CancellationToken,
    ) {
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if self.leadership.is_open() {
            self.drain(&app, stop).await;
        }
        let mut leadership = self.leadership.clone();
        loop {
            let others = tokio::select! {
                () = stop.cancelled() => return,
                Some(committed) = recv(&mut fast) => {
                    self.fast(&app, committed, &mut fast).await;
                    false
                }
                // This process's own entries its fast round could not take: always.
                () = self.shared.committed.notified() => {
                    self.drain(&app, stop).await;
                    false
                }
                // Just became the leader: what the last one left.
                () = leadership.opened() => true,
                woken = wake(&mut listener) => woken,
                _ = poll.tick() => {
                    if let Some(listener) = listener.as_mut() {
                        listener.reopen().await;
                    }
                    true
                }
            };
            if others && self.leadership.is_open() {
                self.drain(&app, stop).await;
            }
        }
    }

    /// Publishes entries just committed here, from memory, with everything else handed over
    /// meanwhile; a claim round then takes whatever they could not.
    async fn fast<L: Layer>(
        &self,
        app: &Catga<L>,
        committed: Vec<Committed>,
        fast: &mut Option<mpsc::Receiver<Vec<Committed>>>,
    ) {
        let mut pending = committed;
        if let Some(rx) = fast.as_mut() {
            while pending.len() < self.batch
                && let Ok(more) = rx.try_recv()
            {
                pending.extend(more);
            }
        }
        let mut short = false;
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(self.batch));
            let expected = pending.len();
            let published = match self.fast_round(app, pending).await {
                Ok(published) => published,
                Err(error) => {
                    tracing::warn!(target: "catga::redis", error = %error, "outbox relay: a fast round failed; a claim round publishes its entries");
                    0
                }
            };
            short |= published < expected;
            pending = rest;
        }
        if short {
            // Held by another relay, behind an older entry, or failed: a claim round decides.
            self.shared.committed.notify_one();
        }
    }

    async fn drain<L: Layer>(&self, app: &Catga<L>, stop: &CancellationToken) {
        if let Err(error) = self.relay_backlog_until(app, stop).await {
            tracing::warn!(target: "catga::redis", error = %error, "outbox relay: a round failed; its entries stay in the outbox and are published later");
        }
    }

    /// Relays rounds until the outbox has nothing left this relay may claim, and returns how
    /// many entries were claimed. What a started relay does when woken; for tests and tools.
    ///
    /// # Errors
    /// [`RedisOutboxError::Store`] if Redis failed; the entries of a failed round stay.
    pub async fn relay_backlog<L: Layer>(&self, app: &Catga<L>) -> Result<usize, RedisOutboxError> {
        self.relay_backlog_until(app, &CancellationToken::new())
            .await
    }

    async fn relay_backlog_until<L: Layer>(
        &self,
        app: &Catga<L>,
        stop: &CancellationToken,
    ) -> Result<usize, RedisOutboxError> {
        let mut total = 0;
        let mut start = "-".to_string();
        while !stop.is_cancelled() {
            let round = self.claim_round(app, &start).await?;
            total += round.claimed;
            // A transport that is down: wait for the next trigger instead of spinning.
            if round.failed || !round.more {
                break;
            }
            start = format!("({}", round.last);
        }
        Ok(total)
    }

    /// One claim round from the stream's start: claims up to a batch, publishes it, removes
    /// what was published. Returns how many entries it claimed. For tests and tools.
    ///
    /// # Errors
    /// [`RedisOutboxError::Store`] if Redis failed.
    pub async fn relay_once<L: Layer>(&self, app: &Catga<L>) -> Result<usize, RedisOutboxError> {
        Ok(self.claim_round(app, "-").await?.claimed)
    }
}

/// Receives from the fast channel, or never (a relay without one).
async fn recv(fast: &mut Option<mpsc::Receiver<Vec<Committed>>>) -> Option<Vec<Committed>> {
    match fast {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The wake-up subscription: a connection of its own (a subscribed connection can do nothing
/// else), opened again at the next poll when it is lost.
struct Listener {
    client: redis::Client,
    channel: String,
    messages: Option<redis::aio::PubSubStream>,
}

impl Listener {
    async fn open(client: redis::Client, channel: &str) -> Result<Listener, RedisOutboxError> {
        let mut listener = Listener {
            client,
            channel: channel.to_string(),
            messages: None,
        };
        listener.subscribe().await?;
        Ok(listener)
    }

    /// Bounded, so a server that does not answer cannot stall the relay's loop.
    async fn subscribe(&mut self) -> Result<(), RedisOutboxError> {
        let failed = || RedisOutboxError::command("outbox relay: subscribe", self.channel.clone());
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe).await {
            Ok(subscribed) => subscribed.map_err(failed())?,
            Err(_) => {
                let timed_out = redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to SUBSCRIBE",
                ));
                return Err(failed()(timed_out));
            }
        };
        self.messages = Some(pubsub.into_on_message());
        Ok(())
    }

    /// Subscribes again if the connection was lost.
    async fn reopen(&mut self) {
        if self.messages.is_some() {
            return;
        }
        if let Err(error) = self.subscribe().await {
            tracing::debug!(target: "catga::redis", error = %error, "outbox relay: the wake-up subscription is still down; polling");
        }
    }
}

/// Waits for a wake-up: `true` for entries whoever hears may claim, `false` for entries the
/// committing process's relay publishes itself (or a lost subscription: the poll covers it).
async fn wake(listener: &mut Option<Listener>) -> bool {
    let Some(messages) = listener.as_mut().and_then(|l| l.messages.as_mut()) else {
        return std::future::pending().await;
    };
    match messages.next().await {
        Some(message) => message.get_payload_bytes() != FAST.as_bytes(),
        None => {
            tracing::warn!(target: "catga::redis", "outbox relay: the wake-up subscription was lost; polling until it is back");
            if let Some(listener) = listener.as_mut() {
                listener.messages = None;
            }
            true
        }
    }
}

/// A running relay. [`shutdown`](Self::shutdown) stops it after the round in progress;
/// dropping it stops it too, without waiting.
///
/// ```no_run
/// # async fn demo(stores: catga_redis::store::RedisStores) -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_redis::RedisOutbox;
///
/// let outbox = RedisOutbox::new(&stores);
/// let relay = outbox.relay();
/// let app = Catga::builder().layer(outbox).build()?;
/// let running = relay.start(app).await?;   // keep it while the application runs
/// running.shutdown().await;                // finishes the round in progress
/// # Ok(()) }
/// ```
#[must_use = "dropping a `RunningRelay` stops it; keep it while the application runs"]
pub struct RunningRelay {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRelay").finish_non_exhaustive()
    }
}

impl RunningRelay {
    /// Stops taking new rounds and waits for the one in progress.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops at once, abandoning the round in progress as a crash would: its claims expire
    /// after the lease and its entries are published again by a relay. For tests of that
    /// path.
    pub fn abort(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

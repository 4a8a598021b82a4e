//! Electing a leader through a lease: the instance holding it does the singleton work, with
//! the grant's fencing token, and stops as soon as it may no longer hold it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health::{CheckStatus, HealthCheck};
use crate::store::lease::{FencingToken, Grant, LeaseStore};
use crate::telemetry::metric;

use super::timing::{self, InvalidTiming};

/// What this instance is in one election, as [`Elected::role`] reports it from memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not started yet, or stopped.
    Stopped,
    /// Not the leader. `leader_seen` is whether the last attempt found the lease held (by
    /// another instance): a leader exists.
    Follower {
        /// Whether another instance held the lease at the last attempt.
        leader_seen: bool,
    },
    /// The leader, with the grant's fencing token.
    Leader {
        /// The fencing token of this instance's grant.
        token: FencingToken,
    },
}

/// A leadership held: the token to hand to fenced writes, and how to know it ended. Cheap to
/// clone; every clone ends together.
#[derive(Clone, Debug)]
pub struct Leader {
    token: FencingToken,
    lost: CancellationToken,
    /// When this instance must stop believing it leads unless a renewal moved it: the moment
    /// before the last grant or renewal was asked for, plus its TTL (by this process's clock,
    /// so never later than the store's own expiry).
    deadline: Arc<Mutex<Instant>>,
}

impl Leader {
    /// The grant's fencing token: pass it to every write the singleton work does, so a store
    /// can refuse it once a newer leader exists.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Whether this leadership still holds: not stepped down, and within its lease by this
    /// process's clock. Checked without I/O; a process paused past its lease (`SIGSTOP`, a
    /// long stall) sees `false` as soon as it runs again, before its elector does.
    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled() && Instant::now() < self.deadline()
    }

    /// Resolves when this leadership ends: stepped down, lost, or the election stopped.
    pub async fn lost(&self) {
        tokio::select! {
            () = self.lost.cancelled() => {}
            () = async {
                // The deadline moves with each renewal: sleep to it, look again.
                loop {
                    let deadline = self.deadline();
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(deadline).await;
                }
            } => {}
        }
    }

    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An election for the lease `name` in a [`LeaseStore`]: this instance keeps trying to
/// acquire it, renews it while it holds it, and reports its [`Role`].
///
/// Timing, with the defaults for a TTL of 5 s: a follower tries every `ttl / 10` (500 ms), so
/// after a leader releases (a graceful stop) another leads within about that; after a leader
/// dies, within the TTL plus that. A leader renews every `ttl / 3` and steps down when a
/// renewal says the grant was lost, or when its TTL, counted from before its last successful
/// renewal was asked, runs out (the store unreachable meanwhile), whichever comes first.
///
/// ```
/// use std::time::Duration;
/// use catga_core::cluster::Leadership;
/// use catga_core::store::memory_lease::MemoryLeaseStore;
///
/// # async fn demo() {
/// let election = Leadership::new(MemoryLeaseStore::new(), "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// let mut leading = election.subscribe();
/// # let _ = &mut leading;
/// election.stop().await; // releases the lease if held: another instance leads at once
/// # }
/// ```
#[derive(Debug)]
pub struct Leadership<S> {
    store: Arc<S>,
    name: String,
    holder: String,
    ttl: Duration,
    renew_every: Option<Duration>,
    retry_every: Option<Duration>,
}

impl<S: LeaseStore> Leadership<S> {
    /// An election for `name` in `store`, as a holder named by a fresh UUID (v7), with a TTL of
    /// 5 s.
    pub fn new(store: S, name: impl Into<String>) -> Leadership<S> {
        Leadership::sharing(Arc::new(store), name)
    }

    /// The same, on a store shared with other elections or stores.
    pub fn sharing(store: Arc<S>, name: impl Into<String>) -> Leadership<S> {
        Leadership {
            store,
            name: name.into(),
            holder: uuid::Uuid::now_v7().to_string(),
            ttl: Duration::from_secs(5),
            renew_every: None,
            retry_every: None,
        }
    }

    /// How this instance is named as a holder (default: a fresh UUID). Make it unique per
    /// process start: two processes with one name would each take the other's grant for its
    /// own.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// The lease's TTL (default 5 s, at least [`MIN_LEASE_TTL`](super::MIN_LEASE_TTL)): how
    /// long a dead leader keeps the work from others.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often the leader renews (default a third of the TTL).
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// How often a follower tries to acquire (default a tenth of the TTL).
    pub fn retry_every(mut self, every: Duration) -> Self {
        self.retry_every = Some(every);
        self
    }

    /// Starts the election on the current Tokio runtime.
    ///
    /// Timing that cannot work (a TTL below [`MIN_LEASE_TTL`](super::MIN_LEASE_TTL), a `renew_every` of zero or
    /// not below the TTL, a `retry_every` of zero) is logged once at `error` and the
    /// election does not run: its [`Role`] is `Stopped` and its
    /// [`health_check`](Elected::health_check) is down with the reason.
    /// [`try_start`](Self::try_start) returns the reason instead.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(self) -> Elected {
        let name = self.name.clone();
        let holder = self.holder.clone();
        self.try_start().unwrap_or_else(|invalid| {
            tracing::error!(target: "catga", lease = %name, error = %invalid,
                "the election cannot start");
            let (_, role) = watch::channel(Role::Stopped);
            let (_, leader) = watch::channel(None);
            Elected {
                name,
                holder,
                role,
                leader,
                stop: CancellationToken::new(),
                task: Mutex::new(None),
                refused: Some(Arc::from(invalid.to_string())),
            }
        })
    }

    /// [`start`](Self::start), or why its timing cannot work.
    ///
    /// # Errors
    /// [`InvalidTiming`] for a TTL below [`MIN_LEASE_TTL`](super::MIN_LEASE_TTL), a `renew_every` of zero or not
    /// below the TTL, or a `retry_every` of zero.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn try_start(self) -> Result<Elected, InvalidTiming> {
        let (renew_every, retry_every) =
            timing::intervals(self.ttl, self.renew_every, self.retry_every)?;
        let (role_tx, role_rx) = watch::channel(Role::Follower { leader_seen: false });
        let (leader_tx, leader_rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let elector = Elector {
            renew_every,
            retry_every,
            store: self.store,
            name: self.name.clone(),
            holder: self.holder.clone(),
            ttl: self.ttl,
            role: role_tx,
            leader: leader_tx,
            stop: stop.clone(),
        };
        let task = tokio::spawn(elector.run());
        Ok(Elected {
            name: self.name,
            holder: self.holder,
            role: role_rx,
            leader: leader_rx,
            stop,
            task: Mutex::new(Some(task)),
            refused: None,
        })
    }
}

/// A running election (see [`Leadership`]). Dropping it stops the election without releasing
/// the lease (it runs out); [`stop`](Self::stop) releases it.
#[derive(Debug)]
#[must_use = "dropping an `Elected` stops the election (without releasing the lease); keep it while the instance runs, and call `stop().await` to hand the lease over"]
pub struct Elected {
    name: String,
    holder: String,
    role: watch::Receiver<Role>,
    leader: watch::Receiver<Option<Leader>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Why the election never started (its timing), for the health check.
    refused: Option<Arc<str>>,
}

impl Elected {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This instance's holder name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// This instance's role now, from memory (no I/O).
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The leadership this instance holds now, if any.
    pub fn leader(&self) -> Option<Leader> {
        self.leader.borrow().clone().filter(Leader::is_held)
    }

    /// A readiness check for [`Catga::add_health_check`](crate::Catga::add_health_check): up
    /// while a leader is known (this instance, or another found holding the lease at the last
    /// attempt), down while none is (the store unreachable, or the lease vacant and not yet
    /// taken) and once the election stopped. From memory, no I/O.
    pub fn health_check(&self) -> impl HealthCheck {
        let role = self.role.clone();
        let refused = self.refused.clone();
        move || match &*role.borrow() {
            Role::Leader { .. } | Role::Follower { leader_seen: true } => CheckStatus::Up,
            Role::Follower { leader_seen: false } => CheckStatus::down("no leader known"),
            Role::Stopped => match &refused {
                Some(why) => CheckStatus::down(format!("the election cannot start: {why}")),
                None => CheckStatus::down("the election stopped"),
            },
        }
    }

    /// A receiver of the leaderships this instance takes: `Some` each time it becomes leader,
    /// `None` when it steps down.
    pub fn subscribe(&self) -> watch::Receiver<Option<Leader>> {
        self.leader.clone()
    }

    /// Stops the election: ends the leadership if held (its work sees
    /// [`Leader::lost`]), releases the lease so another instance leads at once, and returns
    /// when that is done.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(target: "catga", lease = %self.name, error = %error,
                "the elector task ended abnormally; the lease runs out by itself");
        }
    }
}

impl Drop for Elected {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The task that acquires, renews and releases.
struct Elector<S> {
    store: Arc<S>,
    name: String,
    holder: String,
    ttl: Duration,
    renew_every: Duration,
    retry_every: Duration,
    role: watch::Sender<Role>,
    leader: watch::Sender<Option<Leader>>,
    stop: CancellationToken,
}

impl<S: LeaseStore> Elector<S> {
    async fn run(self) {
        loop {
            let Some(grant) = self.follow().await else {
                break;
            };
            if !self.lead(grant).await {
                break;
            }
        }
        let _ = self.role.send(Role::Stopped);
    }

    /// Sets the leader gauges: 1 and the token while `leading`, else 0 (the epoch gauge keeps
    /// the last token this process held).
    fn report(&self, leading: Option<FencingToken>) {
        let labels = [("lease", self.name.clone())];
        metrics::gauge!(metric::LEADER, &labels).set(if leading.is_some() { 1.0 } else { 0.0 });
        if let Some(token) = leading {
            // A gauge is an `f64`: exact for tokens below 2^53, which a lease renewed every
            // second reaches in some 285 million years.
            #[allow(clippy::cast_precision_loss, reason = "exact below 2^53; see above")]
            metrics::gauge!(metric::LEADER_EPOCH, &labels).set(token.get() as f64);
        }
    }

    /// Tries to acquire until it does (`Some`) or the election stops (`None`).
    async fn follow(&self) -> Option<(Grant, Instant)> {
        // A store that keeps failing is reported once, not at every retry.
        let mut failing = false;
        loop {
            let asked = Instant::now();
            let acquired = tokio::select! {
                () = self.stop.cancelled() => return None,
                acquired = self.store.acquire(&self.name, &self.holder, self.ttl) => acquired,
            };
            match acquired {
                Ok(Some(grant)) => return Some((grant, asked + self.ttl)),
                Ok(None) => {
                    failing = false;
                    self.role.send_if_modified(|role| {
                        let follower = Role::Follower { leader_seen: true };
                        let changed = *role != follower;
                        *role = follower;
                        changed
                    });
                }
                Err(error) => {
                    if failing {
                        tracing::debug!(target: "catga", lease = %self.name, error = %error,
                            "could not try to acquire the lease; trying again");
                    } else {
                        tracing::warn!(target: "catga", lease = %self.name, error = %error,
                            retry_every = ?self.retry_every,
                            "could not try to acquire the lease; trying again (further failures are logged at debug until an attempt succeeds)");
                    }
                    failing = true;
                    self.role.send_if_modified(|role| {
                        let follower = Role::Follower { leader_seen: false };
                        let changed = *role != follower;
                        *role = follower;
                        changed
                    });
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep(self.retry_every) => {}
            }
        }
    }

    /// Leads until the grant is lost (`true`: follow again) or the election stops (`false`,
    /// after releasing the grant).
    async fn lead(&self, (grant, deadline): (Grant, Instant)) -> bool {
        let lost = CancellationToken::new();
        let shared_deadline = Arc::new(Mutex::new(deadline));
        let leader = Leader {
            token: grant.token,
            lost: lost.clone(),
            deadline: Arc::clone(&shared_deadline),
        };
        tracing::info!(target: "catga", lease = %self.name, holder = %self.holder,
            token = grant.token.get(), "leading");
        let _ = self.role.send(Role::Leader { token: grant.token });
        let _ = self.leader.send(Some(leader));
        self.report(Some(grant.token));
        let mut deadline = deadline;
        let mut next_renewal = Instant::now() + self.renew_every;
        let outcome = loop {
            tokio::select! {
                () = self.stop.cancelled() => break false,
                () = tokio::time::sleep_until(next_renewal.min(deadline)) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(target: "catga", lease = %self.name, token = grant.token.get(),
                    "the lease ran out before a renewal succeeded; stepping down");
                break true;
            }
            let asked = Instant::now();
            let renewed = tokio::select! {
                () = self.stop.cancelled() => break false,
                renewed = tokio::time::timeout_at(deadline, self.store.renew(&grant, self.ttl)) => renewed,
            };
            match renewed {
                Ok(Ok(true)) => {
                    deadline = asked + self.ttl;
                    *shared_deadline
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = deadline;
                    next_renewal = asked + self.renew_every;
                }
                Ok(Ok(false)) => {
                    tracing::warn!(target: "catga", lease = %self.name, token = grant.token.get(),
                        "the lease was lost (it ran out, or another instance holds it); stepping down");
                    break true;
                }
                Ok(Err(error)) => {
                    tracing::warn!(target: "catga", lease = %self.name, error = %error,
                        "could not renew the lease; trying again until it runs out");
                    next_renewal = Instant::now() + self.retry_every.min(self.renew_every);
                }
                Err(_) => {
                    tracing::warn!(target: "catga", lease = %self.name, token = grant.token.get(),
                        "the lease ran out while a renewal was under way; stepping down");
                    break true;
                }
            }
        };
        lost.cancel();
        let _ = self.leader.send(None);
        let _ = self.role.send(Role::Follower { leader_seen: false });
        self.report(None);
        if !outcome {
            match self.store.release(&grant).await {
                Ok(_) => tracing::info!(target: "catga", lease = %self.name,
                    token = grant.token.get(), "released the lease"),
                Err(error) => tracing::warn!(target: "catga", lease = %self.name, error = %error,
                    "could not release the lease; it runs out by itself"),
            }
        }
        outcome
    }
}

/// Whether this instance may do the part of a component's work reserved to the leader (an
/// outbox relay's recovery of rows other processes left, say): open always when the component
/// was given no election ([`LeaderGate::always`], the default), else while the election's
/// instance leads. Cheap to clone; read from memory.
#[derive(Clone, Debug, Default)]
pub struct LeaderGate {
    leaders: Option<watch::Receiver<Option<Leader>>>,
}

impl LeaderGate {
    /// A gate that is always open: no election, every instance does the work.
    pub fn always() -> LeaderGate {
        LeaderGate::default()
    }

    /// A gate open while `election`'s instance leads.
    pub fn of(election: &Elected) -> LeaderGate {
        LeaderGate {
            leaders: Some(election.subscribe()),
        }
    }

    /// Whether the work may run now.
    pub fn is_open(&self) -> bool {
        self.leaders
            .as_ref()
            .is_none_or(|leaders| leaders.borrow().as_ref().is_some_and(Leader::is_held))
    }

    /// Resolves when the gate opens after having been closed (this instance became the
    /// leader); never for a gate that is always open, nor once the election is gone.
    pub async fn opened(&mut self) {
        let Some(leaders) = self.leaders.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            if leaders.changed().await.is_err() {
                return std::future::pending().await;
            }
            if leaders
                .borrow_and_update()
                .as_ref()
                .is_some_and(Leader::is_held)
            {
                return;
            }
        }
    }
}

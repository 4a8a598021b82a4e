//! Where a read that may be a moment old goes: the primary, or one of its replicas, with
//! read-your-writes for keys this process wrote (or heard were written) a moment ago. What
//! the stores ([`RedisStores`](crate::store::RedisStores)) and the cache
//! ([`RedisCache`](crate::RedisCache)) share: finding and connecting the replicas, leaving
//! out one that failed, and the read-your-writes window. [`ReadFrom`] says which reads may
//! go to a replica at all.
//!
//! The replicas are found when connecting, then again every [`REPLICA_REFRESH`] by a task of
//! the routing's own: a replica down at connect time, started later or added later is read
//! from once it answers and is in sync with its primary, and one the primary no longer
//! lists is no longer read. The task holds the routing only weakly, so it ends with
//! the stores or the cache; the set it changes is swapped whole, so a read only clones the
//! replica it picked and never waits for a connect.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use catga_core::secret::redact_url;
use redis::ConnectionInfo;
use redis::aio::ConnectionManager;
use tokio::time::MissedTickBehavior;

use crate::error::ConnectError;
use crate::store::{DEFAULT_READ_YOUR_WRITES, REPLICA_BACKOFF, REPLICA_REFRESH, ReadFrom};
use crate::tls::TlsOptions;

/// Keys written at most this many at once are remembered; the oldest are forgotten first
/// (their reads may then go to a replica early, which only `ReadFrom` allows anyway).
const REMEMBERED_WRITES: usize = 65_536;

/// Which replica this is, to tell a known one from one to connect: the `n`th URL given with
/// `.replica(url)`, or a replica the primary lists, by its `host:port` there.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Given(usize),
    Listed(String),
}

/// One replica's connection and whether it is left out.
pub(crate) struct Replica {
    pub(crate) manager: ConnectionManager,
    /// Its address, `host:port`, for logs.
    pub(crate) addr: String,
    source: Source,
    down_until: Mutex<Option<Instant>>,
}

impl Replica {
    fn new(manager: ConnectionManager, addr: String, source: Source) -> Replica {
        Replica {
            manager,
            addr,
            source,
            down_until: Mutex::new(None),
        }
    }

    /// Whether it is not left out at `now`.
    pub(crate) fn is_up(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .map(|until| until.is_none_or(|until| until <= now))
            .unwrap_or(true)
    }

    /// Leaves it out for [`REPLICA_BACKOFF`]. Returns whether it was up until now (the first
    /// failure of a run, the one worth a log line).
    pub(crate) fn mark_down(&self) -> bool {
        let now = Instant::now();
        match self.down_until.lock() {
            Ok(mut until) => {
                let was_up = until.is_none_or(|until| until <= now);
                *until = Some(now + REPLICA_BACKOFF);
                was_up
            }
            Err(_) => true,
        }
    }
}

/// Where one read goes, as [`Routing::replica_for`] decides.
pub(crate) enum ReadAt {
    Primary,
    /// This replica (with `ReadFrom::Replica` possibly one left out: the only place left).
    Replica(Arc<Replica>),
    /// `ReadFrom::Replica` and no replica known right now: the read has nowhere to go.
    NoReplica,
}

/// The routing state shared by the stores of one [`RedisStores`](crate::store::RedisStores),
/// or by the clones of one [`RedisCache`](crate::RedisCache).
pub(crate) struct Routing {
    pub(crate) read_from: ReadFrom,
    /// The replicas reads may go to now. Replaced whole by the refresh (never changed in
    /// place), so a read takes the lock only to clone the `Arc`, and a replica removed
    /// meanwhile stays usable for the reads that already picked it.
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    window: Duration,
    next: AtomicUsize,
    written: Mutex<HashMap<u64, Instant>>,
    /// Until when every read goes to the primary ([`wrote_all`](Self::wrote_all)).
    all_until: Mutex<Option<Instant>>,
    hasher: RandomState,
}

impl Routing {
    fn new(read_from: ReadFrom, replicas: Vec<Replica>, window: Duration) -> Routing {
        Routing {
            read_from,
            replicas: RwLock::new(replicas.into_iter().map(Arc::new).collect()),
            window,
            next: AtomicUsize::new(0),
            written: Mutex::new(HashMap::new()),
            all_until: Mutex::new(None),
            hasher: RandomState::new(),
        }
    }

    /// Only the primary.
    pub(crate) fn primary_only() -> Routing {
        Routing::new(ReadFrom::Primary, Vec::new(), DEFAULT_READ_YOUR_WRITES)
    }

    /// Whether some reads may go to a replica, now or once one is found.
    pub(crate) fn uses_replicas(&self) -> bool {
        self.read_from != ReadFrom::Primary
    }

    /// How many replicas reads may go to now.
    pub(crate) fn replica_count(&self) -> usize {
        self.current().len()
    }

    /// The replicas now. The lock is held only to clone the `Arc`; a panic cannot happen
    /// while it is held, so a poisoned lock still holds a whole set.
    fn current(&self) -> Arc<[Arc<Replica>]> {
        Arc::clone(&self.replicas.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Notes that `key` was just written (reads of it go to the primary for the window).
    pub(crate) fn wrote<K: Hash + ?Sized>(&self, key: &K) {
        if self.read_from == ReadFrom::Primary || self.window.is_zero() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut written) = self.written.lock() {
            if written.len() >= REMEMBERED_WRITES {
                let window = self.window;
                written.retain(|_, at| now.duration_since(*at) < window);
                if written.len() >= REMEMBERED_WRITES {
                    written.clear();
                }
            }
            written.insert(self.hasher.hash_one(key), now);
        }
    }

    /// Notes that any key may have been written just now, unseen (reads of every key go to
    /// the primary for the window).
    pub(crate) fn wrote_all(&self) {
        if self.read_from == ReadFrom::Primary || self.window.is_zero() {
            return;
        }
        if let Ok(mut until) = self.all_until.lock() {
            *until = Some(Instant::now() + self.window);
        }
    }

    /// Where a read of `key` goes.
    pub(crate) fn replica_for<K: Hash + ?Sized>(&self, key: &K) -> ReadAt {
        if !self.uses_replicas() {
            return ReadAt::Primary;
        }
        let now = Instant::now();
        let all = self
            .all_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| now < until);
        let recent = all
            || self
                .written
                .lock()
                .ok()
                .and_then(|written| written.get(&self.hasher.hash_one(key)).copied())
                .is_some_and(|at| now.duration_since(at) < self.window);
        if recent {
            return ReadAt::Primary;
        }
        let replicas = self.current();
        let count = replicas.len();
        if count == 0 {
            return match self.read_from {
                ReadFrom::Replica => ReadAt::NoReplica,
                _ => ReadAt::Primary,
            };
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let up = (0..count)
            .map(|i| &replicas[(start + i) % count])
            .find(|replica| replica.is_up(now));
        match (up, self.read_from) {
            (Some(replica), _) => ReadAt::Replica(Arc::clone(replica)),
            // Every replica is left out: `Replica` still tries one (it has nowhere else to
            // go), `PreferReplica` reads from the primary.
            (None, ReadFrom::Replica) => ReadAt::Replica(Arc::clone(&replicas[start % count])),
            (None, _) => ReadAt::Primary,
        }
    }

    /// Swaps in the set without the replicas `gone` and with those `added`, and logs each
    /// change.
    fn update(&self, added: Vec<Replica>, gone: &[Source], user: &'static str) {
        if added.is_empty() && gone.is_empty() {
            return;
        }
        let (mut removed, mut new) = (Vec::new(), Vec::new());
        {
            let mut replicas = self
                .replicas
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut next: Vec<Arc<Replica>> = Vec::with_capacity(replicas.len() + added.len());
            for replica in replicas.iter() {
                if gone.contains(&replica.source) {
                    removed.push(replica.addr.clone());
                } else {
                    next.push(Arc::clone(replica));
                }
            }
            for replica in added {
                if !next.iter().any(|known| known.source == replica.source) {
                    new.push(replica.addr.clone());
                    next.push(Arc::new(replica));
                }
            }
            *replicas = next.into();
        }
        for replica in new {
            tracing::info!(target: "catga::redis", user, replica = %replica,
                read_from = ?self.read_from, "a replica was found: reads may go to it from now on");
        }
        for replica in removed {
            tracing::info!(target: "catga::redis", user, replica = %replica,
                "the primary no longer lists a replica: reads no longer go to it");
        }
    }
}

/// What connecting the replicas needs besides the primary.
pub(crate) struct ReplicaOptions<'a> {
    pub(crate) read_from: ReadFrom,
    /// The URLs given with `.replica(url)`.
    pub(crate) given: &'a [String],
    pub(crate) tls: &'a TlsOptions,
    /// How long a replica's commands (and connecting to it) may take.
    pub(crate) timeout: Duration,
    pub(crate) read_your_writes: Duration,
    /// Who connects, for the logs (`redis stores`, `redis cache`).
    pub(crate) user: &'static str,
}

/// The routing for `options.read_from`, with the replicas reads may go to: those given (URLs,
/// the primary's credentials unless a URL has its own), else the ones the primary lists
/// (`ROLE`, asked on `manager`), reached as `primary` is. Each is reached with `options.tls`,
/// its commands answering within `options.timeout`. One that cannot be reached now is left
/// out with a warning, unless none is left and `read_from` is [`ReadFrom::Replica`]. Unless
/// `read_from` is [`ReadFrom::Primary`], a task then looks for replicas again every
/// [`REPLICA_REFRESH`] while the routing lives.
///
/// # Errors
/// [`ConnectError::InvalidUrl`] (or [`ConnectError::TlsUnsupported`]) for a given URL that
/// cannot be used; with [`ReadFrom::Replica`] and no replica reached, the last replica's
/// connection error, or [`ConnectError::InvalidOption`] (`read_from`) when there was none
/// to reach.
pub(crate) async fn connect_replicas(
    options: ReplicaOptions<'_>,
    primary: &ConnectionInfo,
    manager: &ConnectionManager,
) -> Result<Arc<Routing>, ConnectError> {
    let ReplicaOptions {
        read_from,
        given,
        tls,
        timeout,
        read_your_writes,
        user,
    } = options;
    if read_from == ReadFrom::Primary {
        return Ok(Arc::new(Routing::primary_only()));
    }
    let mut targets = Vec::new();
    for (n, url) in given.iter().enumerate() {
        let info = super::connection_info(url, None, None)?;
        // The primary's credentials unless the URL has its own.
        let info = if info.redis_settings().password().is_none() {
            info.set_redis_settings(primary.redis_settings().clone())
        } else {
            info
        };
        targets.push(Target {
            info,
            shown: redact_url(url).into_owned(),
            source: Source::Given(n),
        });
    }
    let finder = Finder {
        given: targets,
        primary: primary.clone(),
        manager: manager.clone(),
        tls: tls.clone(),
        timeout,
        user,
    };
    let mut replicas = Vec::new();
    let mut last_error = None;
    for target in finder.targets().await.unwrap_or_default() {
        let shown = target.shown.clone();
        match finder.connect(target).await {
            Ok(replica) => replicas.push(replica),
            Err(error) => {
                let instead = match read_from {
                    ReadFrom::Replica => "the other replicas (none left fails connecting)",
                    _ => "the other replicas, or the primary",
                };
                tracing::warn!(target: "catga::redis", user, replica = %shown, error = %error,
                    reads_go_to = instead,
                    "a replica cannot be reached when connecting; it is tried again while running");
                last_error = Some(error);
            }
        }
    }
    if replicas.is_empty() && read_from == ReadFrom::PreferReplica {
        tracing::warn!(target: "catga::redis", user,
            "`ReadFrom::PreferReplica` found no replica to read from when connecting (none given, the primary lists none, or none answered): reads go to the primary until one is found (looked for every `REPLICA_REFRESH`)");
    }
    if replicas.is_empty() && read_from == ReadFrom::Replica {
        return Err(last_error.unwrap_or(ConnectError::InvalidOption {
            option: "read_from",
            value: "ReadFrom::Replica".to_string(),
            reason: "the primary has no replica and none was given: add one with \
                     `.replica(url)`, or read from the primary",
        }));
    }
    let routing = Arc::new(Routing::new(read_from, replicas, read_your_writes));
    tokio::spawn(refresh(Arc::downgrade(&routing), finder));
    Ok(routing)
}

/// A replica to connect: how to reach it, its address for logs, and which it is.
#[derive(Clone)]
struct Target {
    info: ConnectionInfo,
    shown: String,
    source: Source,
}

/// How to find and connect the replicas, when connecting and while running.
struct Finder {
    /// The replicas given with `.replica(url)`; none: those the primary lists.
    given: Vec<Target>,
    primary: ConnectionInfo,
    /// The primary's connection, for `ROLE`.
    manager: ConnectionManager,
    tls: TlsOptions,
    timeout: Duration,
    user: &'static str,
}

impl Finder {
    /// The replicas there should be: those given, else those the primary lists now; `None`
    /// when the primary did not say (no answer, or not a primary's): nothing is known then.
    async fn targets(&self) -> Option<Vec<Target>> {
        if !self.given.is_empty() {
            return Some(self.given.clone());
        }
        let listed = listed_replicas(&mut self.manager.clone(), self.timeout).await?;
        let targets = listed
            .into_iter()
            .map(|(host, port)| {
                let shown = format!("{host}:{port}");
                Target {
                    info: super::at(&self.primary, host, port),
                    source: Source::Listed(shown.clone()),
                    shown,
                }
            })
            .collect();
        Some(targets)
    }

    async fn connect(&self, target: Target) -> Result<Replica, ConnectError> {
        let (_client, manager) =
            super::manager(target.info, &target.shown, &self.tls, self.timeout).await?;
        Ok(Replica::new(manager, target.shown, target.source))
    }

    /// Connects `target` while running: `None` (logged at `debug`, tried again at the next
    /// round) if it cannot be reached or is a replica still synchronising, whose data may
    /// be arbitrarily old or missing.
    async fn connect_in_sync(&self, target: Target) -> Option<Replica> {
        let shown = target.shown.clone();
        let replica = match self.connect(target).await {
            Ok(replica) => replica,
            Err(error) => {
                tracing::debug!(target: "catga::redis", user = self.user, replica = %shown,
                    error = %error, "a replica still cannot be reached");
                return None;
            }
        };
        if !in_sync(&replica.manager, self.timeout).await {
            tracing::debug!(target: "catga::redis", user = self.user, replica = %shown,
                "a replica answers but is not in sync with its primary yet");
            return None;
        }
        Some(replica)
    }
}

/// Looks for replicas every [`REPLICA_REFRESH`] while `routing` lives: connects those not
/// connected yet, and (when they come from the primary's list) drops those it no longer lists.
async fn refresh(routing: Weak<Routing>, finder: Finder) {
    let start = tokio::time::Instant::now() + REPLICA_REFRESH;
    let mut ticks = tokio::time::interval_at(start, REPLICA_REFRESH);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Only the sources are kept across the connects below, not the routing: dropping
        // the stores or the cache ends this task at its next round.
        let Some(known) = routing.upgrade().map(|routing| {
            let current = routing.current();
            current
                .iter()
                .map(|replica| replica.source.clone())
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        let Some(targets) = finder.targets().await else {
            continue;
        };
        let wanted: Vec<Source> = targets.iter().map(|t| t.source.clone()).collect();
        let (missing, gone) = plan(&known, &wanted);
        let connects = targets
            .into_iter()
            .enumerate()
            .filter(|(n, _)| missing.contains(n))
            .map(|(_, target)| finder.connect_in_sync(target));
        let added: Vec<Replica> = futures::future::join_all(connects)
            .await
            .into_iter()
            .flatten()
            .collect();
        let Some(routing) = routing.upgrade() else {
            return;
        };
        routing.update(added, &gone, finder.user);
    }
}

/// Which of `wanted` are not `known` (their indices), and which `known` replicas the primary
/// no longer lists. A given replica is never gone: it was asked for by name.
fn plan(known: &[Source], wanted: &[Source]) -> (Vec<usize>, Vec<Source>) {
    let missing = (0..wanted.len())
        .filter(|&n| !known.contains(&wanted[n]))
        .collect();
    let gone = known
        .iter()
        .filter(|source| matches!(source, Source::Listed(_)) && !wanted.contains(source))
        .cloned()
        .collect();
    (missing, gone)
}

/// A bulk or simple string's text.
fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// `ROLE` on `manager` within `timeout`; `None` without an answer.
async fn role(
    manager: &mut ConnectionManager,
    timeout: Duration,
) -> Option<redis::RedisResult<redis::Value>> {
    tokio::time::timeout(timeout, redis::cmd("ROLE").query_async(manager))
        .await
        .ok()
}

/// The replicas `ROLE` on the primary lists, as (host, port); `None` if it did not answer
/// as a primary.
async fn listed_replicas(
    manager: &mut ConnectionManager,
    timeout: Duration,
) -> Option<Vec<(String, u16)>> {
    let Some(Ok(redis::Value::Array(parts))) = role(manager, timeout).await else {
        return None;
    };
    if parts.first().and_then(text).as_deref() != Some("master") {
        return None;
    }
    let Some(redis::Value::Array(replicas)) = parts.get(2) else {
        return None;
    };
    let listed = replicas
        .iter()
        .filter_map(|replica| {
            let redis::Value::Array(fields) = replica else {
                return None;
            };
            let host = text(fields.first()?)?;
            let port = text(fields.get(1)?)?.parse().ok()?;
            Some((host, port))
        })
        .collect();
    Some(listed)
}

/// Whether the server on `manager` may be read: not a replica whose link to its primary is
/// down or still synchronising (`ROLE` says `connect`, `connecting`, `sync`, not
/// `connected`). A server refusing `ROLE` (an ACL) is taken as it is given, as when
/// connecting; one that does not answer is not.
async fn in_sync(manager: &ConnectionManager, timeout: Duration) -> bool {
    match role(&mut manager.clone(), timeout).await {
        Some(Ok(redis::Value::Array(parts))) => {
            parts.first().and_then(text).as_deref() != Some("slave")
                || parts.get(3).and_then(text).as_deref() == Some("connected")
        }
        Some(Ok(_)) => true,
        Some(Err(error)) => {
            !(error.is_io_error()
                || error.is_timeout()
                || error.is_connection_dropped()
                || error.is_connection_refusal())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{Source, plan};

    fn listed(addr: &str) -> Source {
        Source::Listed(addr.to_string())
    }

    #[test]
    fn a_new_listed_replica_is_connected_and_an_unlisted_one_is_gone() {
        let known = [listed("a:1"), listed("b:1")];
        let wanted = [listed("b:1"), listed("c:1")];
        assert_eq!(plan(&known, &wanted), (vec![1], vec![listed("a:1")]));
    }

    #[test]
    fn a_given_replica_not_connected_is_tried_and_never_gone() {
        let known = [Source::Given(1)];
        let wanted = [Source::Given(0), Source::Given(1)];
        assert_eq!(plan(&known, &wanted), (vec![0], vec![]));
        // A given replica is kept even when not wanted (never happens: all are wanted).
        assert_eq!(plan(&known, &[]), (vec![], vec![]));
    }

    #[test]
    fn nothing_changes_when_the_set_is_the_same() {
        let known = [listed("a:1")];
        assert_eq!(plan(&known, &known), (vec![], vec![]));
    }
}

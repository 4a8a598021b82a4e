//! Where a read that may be a moment old goes: the primary, or one of its replicas, with
//! read-your-writes for keys this process wrote (or heard were written) a moment ago. What
//! the stores ([`RedisStores`](crate::store::RedisStores)) and the cache
//! ([`RedisCache`](crate::RedisCache)) share: finding and connecting the replicas, leaving
//! out one that failed, and the read-your-writes window. [`ReadFrom`] says which reads may
//! go to a replica at all.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use catga_core::secret::redact_url;
use redis::ConnectionInfo;
use redis::aio::ConnectionManager;

use crate::error::ConnectError;
use crate::store::{DEFAULT_READ_YOUR_WRITES, REPLICA_BACKOFF, ReadFrom};
use crate::tls::TlsOptions;

/// Keys written at most this many at once are remembered; the oldest are forgotten first
/// (their reads may then go to a replica early, which only `ReadFrom` allows anyway).
const REMEMBERED_WRITES: usize = 65_536;

/// One replica's connection and whether it is left out.
pub(crate) struct Replica {
    pub(crate) manager: ConnectionManager,
    /// Its address, `host:port`, for logs.
    pub(crate) addr: String,
    down_until: Mutex<Option<Instant>>,
}

impl Replica {
    pub(crate) fn new(manager: ConnectionManager, addr: String) -> Replica {
        Replica {
            manager,
            addr,
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

/// The routing state shared by the stores of one [`RedisStores`](crate::store::RedisStores),
/// or by the clones of one [`RedisCache`](crate::RedisCache).
pub(crate) struct Routing {
    pub(crate) read_from: ReadFrom,
    pub(crate) replicas: Vec<Replica>,
    window: Duration,
    next: AtomicUsize,
    written: Mutex<HashMap<u64, Instant>>,
    /// Until when every read goes to the primary ([`wrote_all`](Self::wrote_all)).
    all_until: Mutex<Option<Instant>>,
    hasher: RandomState,
}

impl Routing {
    pub(crate) fn new(read_from: ReadFrom, replicas: Vec<Replica>, window: Duration) -> Routing {
        Routing {
            read_from,
            replicas,
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

    /// Whether some reads may go to a replica.
    pub(crate) fn uses_replicas(&self) -> bool {
        self.read_from != ReadFrom::Primary && !self.replicas.is_empty()
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

    /// The replica a read of `key` goes to, or `None` for the primary.
    pub(crate) fn replica_for<K: Hash + ?Sized>(&self, key: &K) -> Option<&Replica> {
        if !self.uses_replicas() {
            return None;
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
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.replicas.len();
        let up = (0..count)
            .map(|i| &self.replicas[(start + i) % count])
            .find(|replica| replica.is_up(now));
        match (up, self.read_from) {
            (Some(replica), _) => Some(replica),
            // Every replica is left out: `Replica` still tries one (it has nowhere else to
            // go), `PreferReplica` reads from the primary.
            (None, ReadFrom::Replica) => Some(&self.replicas[start % count]),
            (None, _) => None,
        }
    }
}

/// Connects the replicas reads may go to: those `given` (URLs, the primary's credentials
/// unless a URL has its own), else the ones the primary lists (`ROLE`, asked on `manager`),
/// reached as `primary` is. Each is reached with `tls`, its commands answering within
/// `timeout`. One that cannot be reached now is left out with a warning naming `user` (the
/// caller, for the log), unless none is left and `read_from` is [`ReadFrom::Replica`].
///
/// # Errors
/// [`ConnectError::InvalidUrl`] (or [`ConnectError::TlsUnsupported`]) for a given URL that
/// cannot be used; with [`ReadFrom::Replica`] and no replica reached, the last replica's
/// connection error, or [`ConnectError::InvalidOption`] (`read_from`) when there was none
/// to reach.
pub(crate) async fn connect_replicas(
    read_from: ReadFrom,
    given: &[String],
    primary: &ConnectionInfo,
    manager: &mut ConnectionManager,
    tls: &TlsOptions,
    timeout: Duration,
    user: &'static str,
) -> Result<Vec<Replica>, ConnectError> {
    let mut targets = Vec::new();
    for url in given {
        let info = super::connection_info(url, None, None)?;
        // The primary's credentials unless the URL has its own.
        let info = if info.redis_settings().password().is_none() {
            info.set_redis_settings(primary.redis_settings().clone())
        } else {
            info
        };
        targets.push((info, redact_url(url).into_owned()));
    }
    if given.is_empty() {
        for (host, port) in listed_replicas(manager).await {
            let info = super::at(primary, host.clone(), port);
            targets.push((info, format!("{host}:{port}")));
        }
    }
    let mut replicas = Vec::new();
    let mut last_error = None;
    for (info, shown) in targets {
        match super::manager(info, &shown, tls, timeout).await {
            Ok((_client, manager)) => replicas.push(Replica::new(manager, shown)),
            Err(error) => {
                // Replicas are found once, when connecting: one left out now is not used
                // until the stores or the cache connect again.
                let instead = match read_from {
                    ReadFrom::Replica => "the other replicas (none left fails connecting)",
                    _ => "the other replicas, or the primary",
                };
                tracing::warn!(target: "catga::redis", user, replica = %shown, error = %error,
                    reads_go_to = instead,
                    "a replica cannot be reached when connecting; it is not used until the next connect");
                last_error = Some(error);
            }
        }
    }
    if replicas.is_empty() && read_from == ReadFrom::PreferReplica {
        tracing::warn!(target: "catga::redis", user,
            "`ReadFrom::PreferReplica` found no replica to read from when connecting (none given, the primary lists none, or none answered): every read goes to the primary until the stores or the cache connect again");
    }
    if replicas.is_empty() && read_from == ReadFrom::Replica {
        return Err(last_error.unwrap_or(ConnectError::InvalidOption {
            option: "read_from",
            value: "ReadFrom::Replica".to_string(),
            reason: "the primary has no replica and none was given: add one with \
                     `.replica(url)`, or read from the primary",
        }));
    }
    Ok(replicas)
}

/// The replicas `ROLE` on the primary lists, as (host, port); none if it lists none or the
/// answer is not a primary's.
async fn listed_replicas(manager: &mut ConnectionManager) -> Vec<(String, u16)> {
    let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(manager).await;
    let Ok(redis::Value::Array(parts)) = role else {
        return Vec::new();
    };
    let Some(redis::Value::Array(replicas)) = parts.get(2) else {
        return Vec::new();
    };
    replicas
        .iter()
        .filter_map(|replica| {
            let redis::Value::Array(fields) = replica else {
                return None;
            };
            let text = |value: &redis::Value| match value {
                redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                redis::Value::SimpleString(text) => Some(text.clone()),
                _ => None,
            };
            let host = text(fields.first()?)?;
            let port = text(fields.get(1)?)?.parse().ok()?;
            Some((host, port))
        })
        .collect()
}

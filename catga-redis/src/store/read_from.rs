//! Where reads go: the primary, or its replicas, with read-your-writes for keys this process
//! wrote a moment ago.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// Which servers serve what the stores only read: idempotency lookups of completed replies,
/// event-stream reads, saga loads, cached query replies. Writes always go to the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every read from the primary (the default): always the latest value.
    #[default]
    Primary,
    /// Reads from a replica while one answers, else from the primary. A replica that fails a
    /// read (down, timed out) is left out for [`REPLICA_BACKOFF`] and the read goes to the
    /// primary: a read never fails because a replica did.
    PreferReplica,
    /// Reads only from replicas: a read fails when no replica answers. For keeping read load
    /// off the primary entirely.
    Replica,
}

/// How long a replica that failed a read is left out before it is tried again.
pub const REPLICA_BACKOFF: Duration = Duration::from_secs(5);

/// Read-your-writes window unless configured: a key this process wrote less than this long
/// ago is read from the primary, whatever [`ReadFrom`] says. On loopback a replica is well
/// under a millisecond behind; a second covers a replica under load or across a data centre
/// (Redis's `INFO replication` shows the offset lag to set it by).
pub const DEFAULT_READ_YOUR_WRITES: Duration = Duration::from_secs(1);

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

    fn is_up(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .map(|until| until.is_none_or(|until| until <= now))
            .unwrap_or(true)
    }

    /// Leaves it out for [`REPLICA_BACKOFF`].
    pub(crate) fn mark_down(&self) {
        if let Ok(mut until) = self.down_until.lock() {
            *until = Some(Instant::now() + REPLICA_BACKOFF);
        }
    }
}

/// The routing state shared by the stores of one [`RedisStores`](super::RedisStores).
pub(crate) struct Routing {
    pub(crate) read_from: ReadFrom,
    pub(crate) replicas: Vec<Replica>,
    window: Duration,
    next: AtomicUsize,
    written: Mutex<HashMap<u64, Instant>>,
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
            hasher: RandomState::new(),
        }
    }

    /// Only the primary.
    pub(crate) fn primary_only() -> Routing {
        Routing::new(ReadFrom::Primary, Vec::new(), DEFAULT_READ_YOUR_WRITES)
    }

    /// Notes that `key` was just written (reads of it go to the primary for the window).
    pub(crate) fn wrote(&self, key: &str) {
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

    /// The replica a read of `key` goes to, or `None` for the primary.
    pub(crate) fn replica_for(&self, key: &str) -> Option<&Replica> {
        if self.read_from == ReadFrom::Primary || self.replicas.is_empty() {
            return None;
        }
        let now = Instant::now();
        let recent = self
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

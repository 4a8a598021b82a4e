//! [`NatsLeaseStore`]: catga's [`LeaseStore`] on a JetStream key-value bucket, one entry per
//! lease, every change a compare-and-set on the entry's revision.
//!
//! The builder is in `connect`, the key escape in `key`, the value format in `value`, the
//! errors in `error`.

mod connect;
mod error;
mod key;
mod value;

use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use async_nats::jetstream::kv::UpdateErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};

pub use connect::{DEFAULT_LEASE_BUCKET, DEFAULT_LEASE_MAX_AGE, NatsLeaseStoreConnect};
pub use error::{MalformedLeaseValue, NatsLeaseError};
use value::Value;

/// How many times a renewal or a release reads and writes again after a conflict with a
/// write of the same grant (by a clone of its holder) before it reports the grant lost.
const ATTEMPTS: usize = 3;

/// Leases with fencing tokens on NATS JetStream's key-value store, shared by every process
/// using the same server and bucket. Cheap to clone (clones share the connection). Make one
/// with [`NatsLeaseStore::connect`], [`with_client`](Self::with_client) or
/// [`with_jetstream`](Self::with_jetstream), then `.await` it.
///
/// ```no_run
/// use std::time::Duration;
/// use catga_core::cluster::Leadership;
/// use catga_nats::NatsLeaseStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let leases = NatsLeaseStore::connect("nats://127.0.0.1:4222")
///     .bucket("shop_leases")                  // default `catga_leases`
///     .max_age(Duration::from_secs(3600))     // how long an abandoned entry lingers
///     .await?;                                // opens the bucket, or creates it
/// let election = Leadership::new(leases, "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// let mut leading = election.subscribe();
/// while leading.changed().await.is_ok() {
///     if let Some(leader) = leading.borrow_and_update().clone() {
///         // The singleton work, handing `leader.token()` to every fenced write.
///         # let _ = leader.token();
///     }
///     # break;
/// }
/// election.stop().await; // releases the lease: another instance leads at once
/// # Ok(())
/// # }
/// ```
///
/// # Bucket and keys
/// One key-value bucket ([`DEFAULT_LEASE_BUCKET`] unless
/// [`bucket`](NatsLeaseStoreConnect::bucket) says otherwise) holds every lease, one key per
/// lease name. A key is the name with ASCII letters, digits, `-` and `_` kept and every other
/// byte of its UTF-8 written `=XX` (two upper-case hex digits): `outbox-recovery` →
/// `outbox-recovery`, `jobs:{eu}` → `jobs=3A=7Beu=7D`; the empty name is the key `=`. The
/// escape is reversible, so two names never share a key; [`key`](Self::key) gives a name's
/// (`nats kv get catga_leases scheduler` shows a lease). The value is a small JSON object,
/// read strictly (every field required, no other accepted):
///
/// ```text
/// {"holder":"node-a","token":7,"ttl_ms":5000,"v":1}   held by node-a with token 7 for 5 s
/// {"holder":"","token":7,"ttl_ms":0,"v":1}             released; the token counter kept
/// {"holder":"node-a","token":0,"ttl_ms":5000,"v":1}    a first grant: token = the revision
/// ```
///
/// A value this store did not write is [`NatsLeaseError::Malformed`], never a panic and
/// never a lease taken over. A key deleted or purged by hand reads as a lease never granted.
///
/// # Time
/// A grant runs for its TTL from the entry's timestamp, which the server sets when it stores
/// the write that granted or last renewed it; the store compares that end with the current
/// time of the process asking. On one machine that is the server's own clock. Across
/// machines, clock skew between a client and the server shortens the lease (client ahead) or
/// lengthens it (client behind) by the skew, as every client judges: keep clocks
/// synchronised (NTP) and the TTL well above the skew. The fencing tokens are what protects
/// the work when timing fails: a holder paused or misjudging time writes with a token a newer
/// holder has already superseded, and a fenced store refuses it.
///
/// # Atomicity and round trips
/// Every change is a compare-and-set: the write carries the revision the store just read
/// (`Nats-Expected-Last-Subject-Sequence`), and the server refuses it if anything was written
/// to the key since. A conflict on [`acquire`](LeaseStore::acquire) means another process won
/// (`None`). Reads go to the stream's leader (`STREAM.MSG.GET`, not a direct get a replica
/// may answer late), so in a replicated bucket a read sees the last write.
///
/// | operation | round trips |
/// |---|---|
/// | `acquire` | 2: read the entry, then create it (expecting no entry) or update it |
/// | `renew` | 2: read, then update |
/// | `release` | 2: read, then update to a vacant value (the key is never deleted) |
/// | `observe` | 1: read |
///
/// A renewal or release whose write conflicts with another write of the same grant (a clone
/// of the holder renewing at the same time) reads again: 2 more, at most twice.
///
/// # Fencing tokens
/// A grant on a key whose value says a token continues from it: the next grant gets that
/// token + 1, so a lease's tokens count its grants (7, 8, 9, …); renewing keeps the token,
/// releasing writes a vacant value that keeps it. A grant on a key with no value (never
/// granted, deleted by hand, or removed after `max_age`) takes as token the revision of the
/// entry that grants it: revisions are the bucket stream's sequence numbers, which grow with
/// every write to the bucket and are never reused, and no token exceeds the revision of the
/// write that granted it, so this token too is greater than every earlier one of the name.
/// The first grant of a name is thus at least 1, not always 1 (1 only when it is the first
/// write to a new bucket). Tokens grow across restarts of a server that keeps its store; a
/// bucket deleted and created again starts over.
///
/// # `max_age`
/// The bucket keeps an entry at most `max_age` after its last write
/// ([`max_age`](NatsLeaseStoreConnect::max_age), an hour by default for a bucket this store
/// creates, zero for good; nats-server 2.9 has no per-key TTL). A running grant is rewritten
/// at every renewal, so this only bounds how long the entry of an abandoned lease lingers. A
/// TTL must be shorter than the bucket's `max_age`: a longer one is refused with
/// [`NatsLeaseError::TtlTooLong`], since the grant's entry could vanish while it runs.
#[derive(Clone)]
pub struct NatsLeaseStore {
    kv: kv::Store,
    bucket: String,
    max_age: Duration,
}

impl std::fmt::Debug for NatsLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLeaseStore")
            .field("bucket", &self.bucket)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// A lease's entry as read: the revision a write must expect, and what it says now.
struct Current {
    /// The entry's revision; 0 when the key has none (a write then expects no entry).
    revision: u64,
    seen: Seen,
}

/// What an entry says, judged at the time it was read.
enum Seen {
    /// No value: never written, deleted or purged by hand, or removed after `max_age`.
    Absent,
    /// Released, or granted and run out: nobody holds it; the last grant's token.
    Free { token: u64 },
    /// A grant running for `remaining` more.
    Running {
        holder: String,
        token: u64,
        remaining: Duration,
    },
}

impl NatsLeaseStore {
    /// The bucket holding the leases.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket's `max_age`: how long it keeps an entry after its last write (zero: for
    /// good). Every TTL must be shorter.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The key of the lease `name` in the bucket (see "Bucket and keys" above).
    pub fn key(&self, name: &str) -> String {
        key::key(name)
    }

    /// Refuses a TTL the bucket would not keep.
    fn check_ttl(&self, ttl: Duration) -> Result<(), NatsLeaseError> {
        if !self.max_age.is_zero() && ttl >= self.max_age {
            return Err(NatsLeaseError::TtlTooLong {
                ttl,
                bucket: self.bucket.clone(),
                max_age: self.max_age,
            });
        }
        Ok(())
    }

    /// Reads the entry of `name` (key `key`) from the stream's leader: one round trip.
    async fn read(&self, name: &str, key: &str) -> Result<Current, NatsLeaseError> {
        let subject = format!("{}{key}", self.kv.prefix);
        let message = match self
            .kv
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok(Current {
                    revision: 0,
                    seen: Seen::Absent,
                });
            }
            Err(error) => {
                return Err(NatsLeaseError::Read {
                    name: name.to_string(),
                    key: key.to_string(),
                    bucket: self.bucket.clone(),
                    source: Box::new(error),
                });
            }
        };
        let revision = message.sequence;
        // A delete or purge marker (`nats kv del`): no value, but a revision to expect.
        if message.headers.get("KV-Operation").is_some() {
            return Ok(Current {
                revision,
                seen: Seen::Absent,
            });
        }
        let value =
            Value::decode(&message.payload).map_err(|source| NatsLeaseError::Malformed {
                name: name.to_string(),
                key: key.to_string(),
                bucket: self.bucket.clone(),
                revision,
                source,
            })?;
        let seen = match value {
            Value::Vacant { token } => Seen::Free { token },
            Value::Held { holder, token, ttl } => {
                // Token 0: the first grant on this key, whose token is its own revision.
                let token = if token == 0 { revision } else { token };
                let now = SystemTime::now();
                let written = SystemTime::from(message.time);
                match written.checked_add(ttl) {
                    // A TTL beyond the clock's range never runs out.
                    None => Seen::Running {
                        holder,
                        token,
                        remaining: ttl,
                    },
                    Some(until) => match until.duration_since(now) {
                        Ok(left) if !left.is_zero() => Seen::Running {
                            holder,
                            token,
                            // A client clock behind the server's must not stretch a grant.
                            remaining: left.min(ttl),
                        },
                        _ => Seen::Free { token },
                    },
                }
            }
        };
        Ok(Current { revision, seen })
    }

    /// Writes `value` to `key` if its revision is still `expected` (0: if it has no entry):
    /// the new revision, or `None` on a conflict. One round trip.
    async fn write(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        expected: u64,
    ) -> Result<Option<u64>, NatsLeaseError> {
        match self.kv.update(key, value.encode(), expected).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::debug!(target: "catga::nats", lease = %name, expected,
                    "lease write conflict: another write came first");
                Ok(None)
            }
            Err(error) => Err(NatsLeaseError::Write {
                name: name.to_string(),
                key: key.to_string(),
                bucket: self.bucket.clone(),
                source: Box::new(error),
            }),
        }
    }

    /// Writes `next` over `grant`'s entry if the grant still runs, reading again after a
    /// conflict (at most [`ATTEMPTS`] times): whether it was written.
    async fn replace_running(&self, grant: &Grant, next: &Value) -> Result<bool, NatsLeaseError> {
        let key = key::key(&grant.name);
        for _ in 0..ATTEMPTS {
            let current = self.read(&grant.name, &key).await?;
            let ours = matches!(&current.seen, Seen::Running { holder, token, .. }
                if *token == grant.token.get() && *holder == grant.holder);
            if !ours {
                return Ok(false);
            }
            if self
                .write(&grant.name, &key, next, current.revision)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, NatsLeaseError> {
        if holder.is_empty() {
            return Err(NatsLeaseError::EmptyHolder {
                name: name.to_string(),
            });
        }
        self.check_ttl(ttl)?;
        let key = key::key(name);
        let current = self.read(name, &key).await?;
        let token = match current.seen {
            Seen::Running { .. } => return Ok(None),
            // No value to continue from: the entry's own revision (see "Fencing tokens").
            Seen::Absent => 0,
            Seen::Free { token } => match token.checked_add(1) {
                Some(next) => next,
                None => {
                    return Err(NatsLeaseError::Malformed {
                        name: name.to_string(),
                        key,
                        bucket: self.bucket.clone(),
                        revision: current.revision,
                        source: MalformedLeaseValue::Inconsistent("a token at its maximum"),
                    });
                }
            },
        };
        let value = Value::Held {
            holder: holder.to_string(),
            token,
            ttl,
        };
        let Some(revision) = self.write(name, &key, &value, current.revision).await? else {
            return Ok(None);
        };
        let token = if token == 0 { revision } else { token };
        tracing::debug!(target: "catga::nats", lease = %name, holder = %holder, token,
            "lease granted");
        Ok(Some(Grant {
            name: name.to_string(),
            holder: holder.to_string(),
            token: FencingToken::new(token),
            ttl,
        }))
    }

    async fn observe_lease(&self, name: &str) -> Result<LeaseState, NatsLeaseError> {
        let current = self.read(name, &key::key(name)).await?;
        Ok(match current.seen {
            Seen::Running {
                holder,
                token,
                remaining,
            } => LeaseState::Held {
                holder,
                token: FencingToken::new(token),
                remaining,
            },
            Seen::Absent | Seen::Free { .. } => LeaseState::Vacant,
        })
    }
}

impl LeaseStore for NatsLeaseStore {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        Ok(self.acquire_lease(name, holder, ttl).await?)
    }

    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        self.check_ttl(ttl)?;
        let renewed = Value::Held {
            holder: grant.holder.clone(),
            token: grant.token.get(),
            ttl,
        };
        Ok(self.replace_running(grant, &renewed).await?)
    }

    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        let vacant = Value::Vacant {
            token: grant.token.get(),
        };
        let released = self.replace_running(grant, &vacant).await?;
        if released {
            tracing::debug!(target: "catga::nats", lease = %grant.name,
                token = grant.token.get(), "lease released");
        }
        Ok(released)
    }

    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        Ok(self.observe_lease(name).await?)
    }
}

//! The idempotency store on Redis: which messages were handled, and their replies, shared by
//! every instance of the application on one server and key prefix. How it works is documented
//! on [`RedisIdempotencyStore`]; the Lua scripts are in `scripts.rs`, the key layout in
//! `key.rs`, the pub/sub wake-ups in `wakeup.rs`, the batches in `batch.rs`.

mod batch;
mod key;
mod scripts;
mod unit;
mod wakeup;

pub(in crate::store) use key::escape;

use std::sync::Arc;
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::idempotency::{Claim, IdempotencyStore, ReplyKey};
use redis::Value;
use tokio::time::Instant;

use super::DEFAULT_MAX_WRITE_BYTES;
use super::conn::StoreConn;
use super::connect::RedisStores;
use super::error::RedisStoreError;
pub(crate) use unit::UnitCompletion;
use wakeup::Wakeups;

/// How often a waiter looks at its key unless configured.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// The shortest poll interval accepted.
const MIN_POLL: Duration = Duration::from_millis(10);
/// How long a wait waits for the store's subscriber to be subscribed before it looks anyway.
const SUBSCRIBE_BOUND: Duration = Duration::from_millis(250);
/// Longer leases, TTLs and waits are taken as this: 100 years.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The largest `max_write_bytes` accepted: the server's default `proto-max-bulk-len`.
pub(in crate::store) const MAX_WRITE_BYTES_LIMIT: usize = 512 * 1024 * 1024;

/// `bytes` as a store's write limit, or why it cannot be one.
pub(in crate::store) fn write_limit(bytes: usize) -> Result<usize, RedisStoreError> {
    if bytes == 0 || bytes > MAX_WRITE_BYTES_LIMIT {
        return Err(RedisStoreError::InvalidOption {
            option: "max_write_bytes",
            value: bytes.to_string(),
            reason: "give from 1 byte to 512 MiB (the server's default `proto-max-bulk-len`)",
        });
    }
    Ok(bytes)
}

/// `duration` in whole milliseconds, rounded up, at least 1 (Redis refuses an expiry of 0),
/// at most 100 years.
fn millis(duration: Duration) -> u64 {
    let duration = duration.min(LONGEST);
    let whole =
        duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole).unwrap_or(u64::MAX).max(1)
}

const CLAIM: &str = "idempotency: claim";
const CLAIM_MANY: &str = "idempotency: claim_many";
const COMPLETE: &str = "idempotency: complete";
const COMPLETE_MANY: &str = "idempotency: complete_many";
const RELEASE: &str = "idempotency: release";
const WAIT: &str = "idempotency: wait";

/// An [`IdempotencyStore`] on Redis, shared by every instance on the same server and key
/// prefix. Make one with [`RedisStores::idempotency`]. Cheap to clone: clones share the
/// connection and the subscriber that wakes waiters.
///
/// # Keys and values
/// One string key per [`ReplyKey`], `<prefix>:idempotency:<message>:<handler>:<kind>:<id>`:
///
/// ```text
/// shop:idempotency:orders.place:-:id:0190f2c4-…            a command, by message id
/// shop:idempotency:orders.placed:shop%3A%3Amail:key:cart-7  an event's handler, declared key
/// ```
///
/// `<handler>` is `-` for a command or query; `<kind>` is `id` (the message id) or `key` (a
/// declared key, as declared). Each part has `%`, `:`, `{`, `}`, space and control characters
/// written `%XX`, so user text can neither make two keys meet nor add a Cluster hash tag (a
/// key's slot is that of the whole key). Every operation touches one key, so keys need no
/// shared tag. [`key_of`](Self::key_of) gives the key of a [`ReplyKey`].
///
/// The value is `H` while a dispatch holds the key (the key expires with the lease, `PX`),
/// `W` once a dispatch elsewhere waits for it, `D<reply>` once completed (the key expires with
/// the TTL). An expired key is absent: a claimant that died frees the key when its lease ends,
/// and a reply is forgotten after its TTL, with nothing to purge. Leases and TTLs are whole
/// milliseconds, rounded up (at least 1 ms), by the server's clock; over 100 years is taken as
/// 100 years.
///
/// # Round trips
/// | operation | cost |
/// |---|---|
/// | `claim`, `complete`, `release` | 1 (`EVALSHA`) |
/// | [`claim_many`](Self::claim_many), [`complete_many`](Self::complete_many) | 1 for the batch (a pipeline of `EVALSHA`s) |
/// | `wait` | 1 to look at the key, then 1 per [poll interval](Self::poll_interval) while it stays held; none for the wake-up |
/// | [`load_scripts`](Self::load_scripts) | 1 |
///
/// Claim, complete and release are Lua scripts so that reading and changing a key is one
/// atomic step. A script the server does not know (`NOSCRIPT`: a restart without data, a
/// `SCRIPT FLUSH`, a failover) is loaded and the call repeated, two more round trips, once.
///
/// # Waiting
/// A wait marks the key `W`; completing or releasing a `W` key publishes the key on the
/// channel `<prefix>:idempotency` in the same script. Each store (with its clones) keeps one
/// subscriber connection to that channel, opened by its first `wait`, so a dispatch waiting in
/// any instance is woken as soon as the key is settled (about one round trip later), without
/// polling and without pub/sub traffic for keys nobody waits for. A waiter also looks again
/// every [poll interval](Self::poll_interval) (1 s by default) and whenever the subscriber
/// connects again, in case a notification was lost, and returns at the lease's end.
///
/// # Durability
/// The server's: with `appendonly no` a restart forgets every record, so a message
/// redelivered after it is handled again; with `appendonly yes` and `appendfsync always`
/// nothing acknowledged is lost. A failover to a replica may lose the last writes.
///
/// # Limits and errors
/// * A reply may be up to [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default);
///   a larger one is refused with [`RedisStoreError::TooLarge`] before anything is sent.
/// * The trait names no owner: as in the in-memory and Postgres stores, a release removes
///   whatever claim holds the key, and a completion overwrites it, even one a later claimant
///   took after this dispatch's lease ran out. Choose leases longer than handlers run.
/// * A key holding something the store did not write (another type, another value) is never
///   overwritten: operations on it fail with [`RedisStoreError::Malformed`], or
///   [`RedisStoreError::Command`] with the server's `WRONGTYPE`.
/// * Errors are [`RedisStoreError`]s (boxed by the trait). A server that cannot be reached
///   gives one whose [`is_retryable`](RedisStoreError::is_retryable) is true, within the
///   response timeout; the connection reconnects by itself (the first command after the
///   server dropped it fails, retryable, and the next one reconnects).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::Catga;
/// use catga_core::behavior::Idempotency;
/// use catga_redis::store::RedisStores;
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .await?;
/// let idempotency = stores.idempotency();
/// idempotency.load_scripts().await?; // optional: no `NOSCRIPT` on the first calls
/// let app = Catga::builder()
///     .layer(Idempotency::new(idempotency).lease(Duration::from_secs(30)))
///     .build()?;
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    conn: StoreConn,
    wakeups: Arc<Wakeups>,
    poll: Duration,
    max_write_bytes: usize,
}

impl std::fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("prefix", &self.conn.prefix())
            .field("wakeups", &self.wakeups)
            .field("poll", &self.poll)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish()
    }
}

impl RedisStores {
    /// The idempotency store of these stores' server and prefix (see
    /// [`RedisIdempotencyStore`]). Does no I/O; the subscriber connection that wakes waiters
    /// is opened by the first [`wait`](IdempotencyStore::wait).
    pub fn idempotency(&self) -> RedisIdempotencyStore {
        let channel = format!("{}:idempotency", self.conn.prefix());
        RedisIdempotencyStore {
            wakeups: Arc::new(Wakeups::new(self.conn.client().cloned(), channel)),
            conn: self.conn.clone(),
            poll: DEFAULT_POLL,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }
}

/// What a claim script's answer means for the key `key`.
fn claim_of(operation: &'static str, key: &str, value: Value) -> Result<Claim, RedisStoreError> {
    match value {
        Value::Int(0) => Ok(Claim::Claimed),
        Value::BulkString(bytes) => match bytes.split_first() {
            Some((b'D', reply)) => Ok(Claim::Completed(Arc::from(reply))),
            _ if bytes == b"H" || bytes == b"W" => Ok(Claim::InProgress),
            _ => Err(RedisStoreError::malformed(
                operation,
                key,
                format!("{} is not `H`, `W` or `D<reply>`", shown(&bytes)),
            )),
        },
        other => Err(RedisStoreError::malformed(
            operation,
            key,
            format!("the claim script answered {other:?}"),
        )),
    }
}

/// At most the first 32 bytes of a value, for an error.
fn shown(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned();
    if bytes.len() > 32 {
        format!("{head:?}… ({} bytes)", bytes.len())
    } else {
        format!("{head:?}")
    }
}

/// The error for a key whose value the store did not write, as a script reported it.
fn not_ours(operation: &'static str, key: &str) -> RedisStoreError {
    RedisStoreError::malformed(
        operation,
        key,
        "the value is not one the idempotency store writes (`H`, `W` or `D<reply>`); left as it is",
    )
}

/// The key a batch error names: its first key, and how many more there were.
fn batch_key(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl RedisIdempotencyStore {
    /// How often a waiting dispatch looks at its key besides being notified (default 1 s):
    /// the bound on how late a waiter learns of a completion whose notification was lost (the
    /// subscriber was reconnecting at that moment). One round trip per interval while waiting.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for less than 10 ms.
    pub fn poll_interval(mut self, every: Duration) -> Result<Self, RedisStoreError> {
        if every < MIN_POLL {
            return Err(RedisStoreError::InvalidOption {
                option: "poll_interval",
                value: format!("{every:?}"),
                reason: "give at least 10 ms",
            });
        }
        self.poll = every;
        Ok(self)
    }

    /// The largest reply [`complete`](IdempotencyStore::complete) stores, in bytes (default
    /// [`DEFAULT_MAX_WRITE_BYTES`], 64 MiB); a larger one is refused with
    /// [`RedisStoreError::TooLarge`] before anything is sent.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for 0 or more than 512 MiB.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, RedisStoreError> {
        self.max_write_bytes = write_limit(bytes)?;
        Ok(self)
    }

    /// The Redis key of `key` (see [Keys and values](Self#keys-and-values)), e.g. to look at
    /// it with `redis-cli`.
    pub fn key_of(&self, key: &ReplyKey) -> String {
        key::redis_key(self.conn.prefix(), key)
    }

    /// Loads the store's scripts into the server's script cache: one round trip. Optional:
    /// a call that finds its script missing loads it itself (two more round trips, once).
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or refused a script.
    pub async fn load_scripts(&self) -> Result<(), RedisStoreError> {
        self.conn
            .load_scripts("idempotency: load scripts", &scripts::all())
            .await
    }

    fn fits(&self, operation: &'static str, reply: &[u8]) -> Result<(), RedisStoreError> {
        if reply.len() > self.max_write_bytes {
            return Err(RedisStoreError::TooLarge {
                operation,
                size: reply.len(),
                limit: self.max_write_bytes,
            });
        }
        Ok(())
    }

    async fn claim_key(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, RedisStoreError> {
        let name = self.key_of(key);
        let value: Value = self
            .conn
            .invoke(CLAIM, &name, scripts::CLAIM.key(&name).arg(millis(lease)))
            .await?;
        claim_of(CLAIM, &name, value)
    }

    async fn complete_key(
        &self,
        key: &ReplyKey,
        reply: &[u8],
        ttl: Duration,
    ) -> Result<(), RedisStoreError> {
        self.fits(COMPLETE, reply)?;
        let name = self.key_of(key);
        let mut call = scripts::COMPLETE.prepare_invoke();
        call.key(&name)
            .arg(reply)
            .arg(millis(ttl))
            .arg(self.wakeups.channel());
        match self.conn.invoke::<i64>(COMPLETE, &name, &call).await? {
            1 => Ok(()),
            _ => Err(not_ours(COMPLETE, &name)),
        }
    }

    async fn release_key(&self, key: &ReplyKey) -> Result<(), RedisStoreError> {
        let name = self.key_of(key);
        let released: i64 = self
            .conn
            .invoke(
                RELEASE,
                &name,
                scripts::RELEASE.key(&name).arg(self.wakeups.channel()),
            )
            .await?;
        if released < 0 {
            return Err(not_ours(RELEASE, &name));
        }
        Ok(())
    }

    /// Marks the key waited for and says how long it is still held: `None` if it is not,
    /// `Some(None)` if it is held without an expiry.
    async fn look(&self, name: &str) -> Result<Option<Option<Duration>>, RedisStoreError> {
        let held: i64 = self
            .conn
            .invoke(WAIT, name, &scripts::LOOK.key(name))
            .await?;
        match held {
            -1 => Ok(None),
            -3 => Ok(Some(None)),
            ms if ms >= 0 => Ok(Some(Some(Duration::from_millis(ms.unsigned_abs())))),
            _ => Err(not_ours(WAIT, name)),
        }
    }

    async fn wait_for(&self, key: &ReplyKey, timeout: Duration) -> Result<(), RedisStoreError> {
        let name = self.key_of(key);
        let deadline = Instant::now() + timeout.min(LONGEST);
        // Registered (and, on a store's first wait, subscribed) before looking, so that a
        // completion after the look is heard. A subscriber that is not subscribed within the
        // bound (the server is down or slow) makes the waiter look again once it is.
        let subscription = self
            .wakeups
            .subscribe(&name, self.poll.min(timeout).min(SUBSCRIBE_BOUND))
            .await;
        let notified = subscription.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        loop {
            let resubscribed = self.wakeups.resubscribed().notified();
            tokio::pin!(resubscribed);
            resubscribed.as_mut().enable();
            let Some(held_for) = self.look(&name).await? else {
                return Ok(());
            };
            let now = Instant::now();
            let until = held_for.map_or(deadline, |held| deadline.min(now + held));
            if !self.wakeups.subscribed() {
                tracing::debug!(target: "catga::redis", key = %name,
                    "idempotency store: waiting without a subscriber; polling");
            }
            tokio::select! {
                () = &mut notified => return Ok(()),
                () = tokio::time::sleep_until(until) => return Ok(()),
                // A notification may have been lost: look again.
                () = &mut resubscribed => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

impl IdempotencyStore for RedisIdempotencyStore {
    /// One round trip (`EVALSHA`): takes the key if it is absent (or its lease or TTL ran
    /// out), else reads it.
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        Ok(self.claim_key(key, lease).await?)
    }

    /// One round trip (`EVALSHA`); wakes the key's waiters in every instance.
    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        Ok(self.complete_key(key, reply, ttl).await?)
    }

    /// `true`: the commit script of a [`RedisOutbox`](crate::RedisOutbox) or
    /// [`RedisInbox`](crate::RedisInbox) around the handler, on the same
    /// [`RedisStores`](crate::store::RedisStores), writes the reply with the handler's
    /// effects (no `complete` round trip; no moment when the effects are applied and the
    /// key still claimed). On a Redis Cluster only a key in the unit's slot can be.
    fn completes_in_unit_of_work(&self) -> bool {
        true
    }

    /// One round trip (`EVALSHA`); removes a claim, never a reply, and wakes the key's
    /// waiters in every instance.
    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        Ok(self.release_key(key).await?)
    }

    /// Always `false`: giving up a claim takes a round trip, which a destructor cannot await.
    /// The [`Idempotency`](catga_core::behavior::Idempotency) behaviour then spawns
    /// [`release`](IdempotencyStore::release), as the trait documents.
    fn release_now(&self, _key: &ReplyKey) -> bool {
        false
    }

    /// Returns when the key is completed or released in any instance (notified over pub/sub),
    /// when its lease runs out, or at `timeout`. One round trip to look at the key, one more
    /// per [poll interval](Self::poll_interval) spent waiting; nothing for the wake-up itself.
    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        Ok(self.wait_for(key, timeout).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_whole_milliseconds_rounded_up() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), millis(LONGEST));
    }

    #[test]
    fn claim_answers_are_read_strictly() {
        let claim = |value| claim_of(CLAIM, "k", value);
        assert_eq!(claim(Value::Int(0)).ok(), Some(Claim::Claimed));
        assert_eq!(
            claim(Value::BulkString(b"H".to_vec())).ok(),
            Some(Claim::InProgress)
        );
        assert_eq!(
            claim(Value::BulkString(b"W".to_vec())).ok(),
            Some(Claim::InProgress)
        );
        assert_eq!(
            claim(Value::BulkString(b"D{}".to_vec())).ok(),
            Some(Claim::Completed(Arc::from(&b"{}"[..])))
        );
        assert_eq!(
            claim(Value::BulkString(b"D".to_vec())).ok(),
            Some(Claim::Completed(Arc::from(&b""[..])))
        );
        for garbage in [&b""[..], b"Hx", b"garbage"] {
            assert!(matches!(
                claim(Value::BulkString(garbage.to_vec())),
                Err(RedisStoreError::Malformed { .. })
            ));
        }
        assert!(claim(Value::Int(7)).is_err());
    }
}

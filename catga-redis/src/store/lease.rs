//! The lease store on Redis: leases with fencing tokens, granted by the server to whichever
//! instance asks first, so singleton work (a scheduler, an outbox recovery) runs on one instance
//! of the application at a time. How it works is documented on [`RedisLeaseStore`]; the Lua
//! scripts are in `scripts.rs`.

mod scripts;

use std::sync::Arc;
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use redis::{Script, Value};

use super::conn::StoreConn;
use super::connect::RedisStores;
use super::error::RedisStoreError;
use super::event::outcome::{Outcome, count, outcome, text, typed};
use super::idempotency::escape;

const ACQUIRE: &str = "leases: acquire";
const RENEW: &str = "leases: renew";
const RELEASE: &str = "leases: release";
const OBSERVE: &str = "leases: observe";
const LOAD_SCRIPTS: &str = "leases: load scripts";

/// The longest TTL accepted: 100 years.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A [`LeaseStore`] on Redis, shared by every instance on the same server and key prefix.
/// Make one with [`RedisStores::leases`]. Cheap to clone; does no I/O until used.
///
/// # Keys
/// Both keys of a lease start with the hash tag `{<prefix>:leases}`, so each script runs on one
/// Redis Cluster slot (one node holds every lease of a prefix); `<name>` is the lease's name
/// with `%`, `:`, `{`, `}`, space and control characters written `%XX`, as the other stores
/// escape user text:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{p:leases}:held:<name>` | hash, with an expiry | `holder` and `token` of the running grant; expires (`PEXPIRE`) when the grant runs out |
/// | `{p:leases}:epoch:<name>` | string, no expiry | the last fencing token granted for the name (decimal) |
///
/// A lease is held while its holder key exists: Redis's clock ends it, nothing needs purging.
/// The counter never expires and is never deleted by the store, so tokens only grow, across
/// releases and expiries: the first grant of a name gets token 1, each later one the next.
/// [`held_key`](Self::held_key) and [`epoch_key`](Self::epoch_key) give the keys of a name.
///
/// # Round trips
/// Every operation is one round trip, one Lua script (`EVALSHA`) that reads and changes the
/// lease's keys as one atomic step (Redis runs one script at a time, so of concurrent acquirers
/// exactly one is granted the lease):
///
/// | operation | script |
/// |---|---|
/// | `acquire` | if the holder key exists: held (`None`); else `INCR` the counter and write the holder key with the TTL |
/// | `renew` | if the holder key names the grant's token and holder: `PEXPIRE` it to the new TTL (`true`), else `false` |
/// | `release` | the same check, then `DEL` (`true`), else `false` |
/// | `observe` | the holder key's `holder`, `token` and `PTTL` |
/// | [`load_scripts`](Self::load_scripts) | 1 (`SCRIPT LOAD` of all four) |
///
/// A script the server does not know (`NOSCRIPT`: a restart, a `SCRIPT FLUSH`, a failover) is
/// loaded and the call repeated: two more round trips, once.
///
/// # Clock and TTLs
/// A grant runs by the server's clock: `PEXPIRE` sets its end when the script runs, and Redis
/// treats a key past its end as absent. TTLs are whole milliseconds, rounded up (so at least
/// 1 ms); a TTL of zero or over 100 years is refused with [`RedisStoreError::InvalidOption`]
/// (option `ttl`) before anything is sent. The [`Grant`] says the TTL as asked, at most the
/// rounding shorter than what the server keeps, and the holder counts it on its own clock from
/// before it asked, so it stops believing it holds the lease no later than the server lets it
/// go. Redis counts expiries on its wall clock: a step of the server's clock (not a gradual NTP
/// adjustment) shortens or lengthens every running lease by as much.
///
/// # Durability, and what it means for fencing
/// The counters are what make tokens grow, so they must outlive the server's restarts:
///
/// * With `appendonly no` and no RDB snapshot, a restart loses every key, the counters
///   included: **tokens start again from 1**, and a resource that remembered a token from
///   before ([`TokenFloor`](catga_core::store::lease::TokenFloor) or the adapters' fenced
///   writes) refuses the new holders' writes as stale until their tokens pass it. The running
///   grants are lost too: every lease is vacant at once.
/// * With `appendonly yes` the counters survive a restart (with `appendfsync always`, every
///   grant acknowledged; with `everysec`, all but about the last second's). With RDB snapshots
///   alone they survive as of the last snapshot: a grant made after it gets its token again
///   after the restart, and two holders may then carry one token.
/// * A failover to a replica may lose the last grants (replication is asynchronous), with the
///   same effect as a snapshot's. The store does not wait for replicas (`WAIT`).
/// * Keep `maxmemory-policy noeviction` (the default): an `allkeys-*` policy may evict a
///   counter (tokens restart), a `volatile-*` one a holder key (the lease ends early, and
///   another holder may act while the first still believes it holds it; fencing tokens then
///   still tell them apart).
///
/// A renewal or a release checks the holder's name as well as the token, so after such a loss
/// a grant from before cannot renew or release a later grant that happens to carry its token.
///
/// # Errors
/// [`RedisStoreError`]s, boxed by the trait: [`Command`](RedisStoreError::Command) when the
/// server could not be reached or refused (a server that cannot be reached gives one whose
/// [`is_retryable`](RedisStoreError::is_retryable) is true, within the response timeout; the
/// connection reconnects by itself), [`Malformed`](RedisStoreError::Malformed) for a key
/// holding what the store never writes (another type, other fields, a token that is no
/// positive number, a holder key without an expiry or a counter with one, a counter at
/// `i64::MAX` with no greater token to give), which is never overwritten, and
/// [`InvalidOption`](RedisStoreError::InvalidOption) for a TTL it cannot keep.
///
/// Leader election on it, with [`Leadership`](catga_core::cluster::Leadership):
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::cluster::Leadership;
/// use catga_redis::store::RedisStores;
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .await?;
/// let election = Leadership::new(stores.leases(), "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// let mut leading = election.subscribe();
/// while leading.changed().await.is_ok() {
///     let leader = leading.borrow_and_update().clone();
///     if let Some(leader) = leader {
///         // Do the singleton work, passing `leader.token()` to every fenced write, until
///         // `leader.lost()` resolves.
///         leader.lost().await;
///     }
/// }
/// election.stop().await; // releases the lease if held: another instance leads at once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLeaseStore {
    conn: StoreConn,
    keys: Arc<Keys>,
}

/// The keys of the store less the lease's name.
struct Keys {
    /// `{<prefix>:leases}:held:`.
    held: String,
    /// `{<prefix>:leases}:epoch:`.
    epoch: String,
}

impl std::fmt::Debug for RedisLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaseStore")
            .field("held", &self.keys.held)
            .field("epoch", &self.keys.epoch)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// The lease store of these stores' server and prefix (see [`RedisLeaseStore`]), on their
    /// shared connection. Does no I/O.
    pub fn leases(&self) -> RedisLeaseStore {
        let tag = self.conn.tag("leases");
        RedisLeaseStore {
            conn: self.conn.clone(),
            keys: Arc::new(Keys {
                held: format!("{tag}:held:"),
                epoch: format!("{tag}:epoch:"),
            }),
        }
    }
}

impl RedisLeaseStore {
    /// The key holding the running grant of `name`, if any: `{<prefix>:leases}:held:<name>`,
    /// the name escaped (see [Keys](Self#keys)).
    pub fn held_key(&self, name: &str) -> String {
        format!("{}{}", self.keys.held, escape(name))
    }

    /// The key counting the tokens granted for `name`: `{<prefix>:leases}:epoch:<name>`, the
    /// name escaped (see [Keys](Self#keys)).
    pub fn epoch_key(&self, name: &str) -> String {
        format!("{}{}", self.keys.epoch, escape(name))
    }

    /// Loads the store's scripts into the server's script cache: one round trip. Optional: a
    /// call that finds its script missing loads it itself (two more round trips, once).
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or refused a script.
    pub async fn load_scripts(&self) -> Result<(), RedisStoreError> {
        self.conn.load_scripts(LOAD_SCRIPTS, &scripts::all()).await
    }

    /// Runs `script` with `keys` and `args` (errors name `held`, the lease's holder key): the
    /// values of its `{'ok', …}` answer.
    async fn run(
        &self,
        operation: &'static str,
        held: &str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Vec<Value>, RedisStoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Value = self
            .conn
            .invoke(operation, held, &invocation)
            .await
            .map_err(typed)?;
        match outcome(operation, held, reply)? {
            Outcome::Done(values) => Ok(values),
            Outcome::Conflict(_) => Err(RedisStoreError::malformed(
                operation,
                held,
                "the script answered a conflict, which it never does",
            )),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, RedisStoreError> {
        let millis = millis(ttl)?.to_string();
        let (held, epoch) = (self.held_key(name), self.epoch_key(name));
        let values = self
            .run(
                ACQUIRE,
                &held,
                &scripts::ACQUIRE,
                &[&held, &epoch],
                &[holder.as_bytes(), millis.as_bytes()],
            )
            .await?;
        let token = match values.as_slice() {
            [] => return Ok(None),
            [token] => token_of(ACQUIRE, &epoch, token)?,
            _ => return Err(unexpected(ACQUIRE, &held)),
        };
        Ok(Some(Grant {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token,
            ttl,
        }))
    }

    /// Runs `script` (renew or release) on `grant`, with `extra` after its token and holder.
    async fn settle(
        &self,
        operation: &'static str,
        script: &Script,
        grant: &Grant,
        extra: Option<&str>,
    ) -> Result<bool, RedisStoreError> {
        let held = self.held_key(&grant.name);
        let token = grant.token.get().to_string();
        let mut args: Vec<&[u8]> = vec![token.as_bytes(), grant.holder.as_bytes()];
        args.extend(extra.map(str::as_bytes));
        let values = self.run(operation, &held, script, &[&held], &args).await?;
        match values.as_slice() {
            [Value::Int(1)] => Ok(true),
            [Value::Int(0)] => Ok(false),
            _ => Err(unexpected(operation, &held)),
        }
    }

    async fn observe_lease(&self, name: &str) -> Result<LeaseState, RedisStoreError> {
        let held = self.held_key(name);
        let values = self
            .run(OBSERVE, &held, &scripts::OBSERVE, &[&held], &[])
            .await?;
        let (holder, token, left) = match values.as_slice() {
            [] => return Ok(LeaseState::Vacant),
            [holder, token, Value::Int(left)] => (holder, token, *left),
            _ => return Err(unexpected(OBSERVE, &held)),
        };
        let holder = text(holder.clone()).ok_or_else(|| {
            RedisStoreError::malformed(OBSERVE, &held, "its `holder` is not UTF-8 text")
        })?;
        Ok(LeaseState::Held {
            holder,
            token: token_of(OBSERVE, &held, token)?,
            // Never negative: the script answers only for a key with an expiry.
            remaining: Duration::from_millis(left.max(0).unsigned_abs()),
        })
    }
}

/// `ttl` in whole milliseconds, rounded up (so at least 1).
///
/// # Errors
/// [`RedisStoreError::InvalidOption`] for zero or over 100 years.
fn millis(ttl: Duration) -> Result<u64, RedisStoreError> {
    if ttl.is_zero() || ttl > LONGEST {
        return Err(RedisStoreError::InvalidOption {
            option: "ttl",
            value: format!("{ttl:?}"),
            reason: "a lease runs from 1 ms to 100 years: give a TTL in that range",
        });
    }
    let whole = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
    // At most 100 years' worth, so it fits.
    Ok(u64::try_from(whole).unwrap_or(u64::MAX))
}

/// A token as a script answered it: a whole number from 1.
fn token_of(
    operation: &'static str,
    key: &str,
    token: &Value,
) -> Result<FencingToken, RedisStoreError> {
    match count(token) {
        Some(token) if token >= 1 => Ok(FencingToken::new(token)),
        _ => Err(RedisStoreError::malformed(
            operation,
            key,
            "the fencing token is not a whole number from 1",
        )),
    }
}

/// The error for a script answer of a shape the script never gives.
fn unexpected(operation: &'static str, key: &str) -> RedisStoreError {
    RedisStoreError::malformed(operation, key, "the script answered an unexpected shape")
}

impl LeaseStore for RedisLeaseStore {
    /// One `EVALSHA`. Of concurrent acquirers of a lease nobody holds, in any number of
    /// processes, exactly one is granted it.
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        Ok(self.acquire_lease(name, holder, ttl).await?)
    }

    /// One `EVALSHA`: `true` if the holder key still names the grant's token and holder.
    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        let millis = millis(ttl)?.to_string();
        Ok(self
            .settle(RENEW, &scripts::RENEW, grant, Some(&millis))
            .await?)
    }

    /// One `EVALSHA`: `true` if the holder key still named the grant's token and holder.
    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        Ok(self.settle(RELEASE, &scripts::RELEASE, grant, None).await?)
    }

    /// One `EVALSHA` on the primary (a replica may lag behind it).
    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        Ok(self.observe_lease(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_rounded_up_within_bounds() {
        assert_eq!(millis(Duration::from_nanos(1)).ok(), Some(1));
        assert_eq!(millis(Duration::from_millis(300)).ok(), Some(300));
        assert_eq!(millis(Duration::from_micros(1_001)).ok(), Some(2));
        assert_eq!(
            millis(LONGEST).ok(),
            u64::try_from(LONGEST.as_millis()).ok()
        );
        for absurd in [
            Duration::ZERO,
            LONGEST + Duration::from_millis(1),
            Duration::MAX,
        ] {
            assert!(
                matches!(
                    millis(absurd),
                    Err(RedisStoreError::InvalidOption { option: "ttl", .. })
                ),
                "{absurd:?}"
            );
        }
    }

    #[test]
    fn tokens_are_whole_numbers_from_one() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        assert_eq!(
            token_of("op", "k", &bulk("7")).ok(),
            Some(FencingToken::new(7))
        );
        assert_eq!(
            token_of("op", "k", &Value::Int(3)).ok(),
            Some(FencingToken::new(3))
        );
        for bad in [bulk("0"), bulk("-1"), bulk("x"), Value::Nil, Value::Int(0)] {
            assert!(
                matches!(
                    token_of("op", "k", &bad),
                    Err(RedisStoreError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
    }
}

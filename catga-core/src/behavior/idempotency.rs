//! Idempotency: a message handled once is not handled again; a repeat gets the first reply.

use std::sync::Arc;
use std::time::Duration;

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;
use crate::store::idempotency::{
    Claim, IdempotencyStore, KeyId, MemoryIdempotencyStore, PendingReply, ReplyKey,
};

/// A key a message declares for idempotency, instead of its message id: two messages with the
/// same key are the same operation (e.g. a client-supplied request id, or `order_id`).
///
/// ```
/// use catga_core::behavior::IdempotencyKey;
///
/// struct ChargeCard { payment_id: String, cents: u64 }
///
/// impl IdempotencyKey for ChargeCard {
///     fn idempotency_key(&self) -> String {
///         self.payment_id.clone()
///     }
/// }
/// ```
pub trait IdempotencyKey {
    /// The key; equal keys are one operation.
    fn idempotency_key(&self) -> String;
}

/// Handles each command (and each handler of each event) at most once per key: a repeat
/// returns the stored reply without running the handler, and a repeat that arrives while the
/// first is still running waits for its reply.
///
/// The key is the message's [`IdempotencyKey`] if it declares one, else the dispatch's message
/// id ([`Context::message_id`]; transports carry it across processes, so a redelivered message
/// keeps its id).
///
/// An attempt that ends without a reply releases the key, however it ends: an error, a
/// deadline or cancellation, a `Timeout` outside this layer, the caller dropping the future,
/// a panic. A repeat then runs the handler at once instead of waiting for the claim's lease.
/// (A destructor cannot await: the in-memory store releases in place, any other store on a
/// task spawned on the current Tokio runtime, see
/// [`IdempotencyStore::release_now`].) Only a process that dies holding a claim leaves it
/// to expire after the lease (60 s by default). An attempt dropped after its handler
/// succeeded, while its reply was being recorded, finishes recording it in the background.
/// A repeat waiting for a claim stops at its own deadline with
/// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
///
/// Replies are kept for the TTL (24 h by default). Queries are not deduplicated (they change
/// nothing), nor are `local` messages (their replies have no stored form); `skip(idempotency)`
/// exempts a message. A request this process sends to another service through a transport
/// passes through: the serving side's `Idempotency` deduplicates it around the handler (with a
/// store both share, a claim on each side under one key would leave each waiting for the
/// other).
///
/// ```
/// use std::time::Duration;
/// use catga_core::behavior::Idempotency;
/// use catga_core::store::idempotency::MemoryIdempotencyStore;
///
/// let idempotency = Idempotency::new(MemoryIdempotencyStore::new()).ttl(Duration::from_secs(3600));
/// # let _ = idempotency;
/// ```
#[derive(Debug)]
pub struct Idempotency<S = MemoryIdempotencyStore> {
    /// Shared so that a claim dropped mid-dispatch can be released by a spawned task.
    store: Arc<S>,
    ttl: Duration,
    lease: Duration,
    counters: PerMessage<Counters>,
}

/// A message's counters, registered once (a labelled counter looked up per call would cost
/// more than the hit it counts).
#[derive(Debug)]
struct Counters {
    hits: metrics::Counter,
    misses: metrics::Counter,
    waits: metrics::Counter,
}

impl Counters {
    fn new(message: &'static str) -> Self {
        Counters {
            hits: metrics::counter!("catga_idempotency_hits_total", "message" => message),
            misses: metrics::counter!("catga_idempotency_misses_total", "message" => message),
            waits: metrics::counter!("catga_idempotency_waits_total", "message" => message),
        }
    }
}

impl Default for Idempotency<MemoryIdempotencyStore> {
    fn default() -> Self {
        Idempotency::new(MemoryIdempotencyStore::new())
    }
}

impl<S: IdempotencyStore> Idempotency<S> {
    /// Deduplicates through `store`.
    pub fn new(store: S) -> Self {
        Idempotency {
            store: Arc::new(store),
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            counters: PerMessage::default(),
        }
    }

    /// How long replies are kept (and repeats recognised).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim lasts before another dispatch may take it over (the longest a
    /// handler is expected to run).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

fn store_error(operation: &'static str) -> impl FnOnce(crate::error::BoxError) -> Error {
    move |source| ErrorKind::Store { operation, source }.into()
}

impl<S: IdempotencyStore> Behavior for Idempotency<S> {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        // A request sent to another service is deduplicated there, around its handler: a
        // claim here under the same key would keep that side waiting for this one.
        if info.kind() == MessageKind::Query
            || !info.is_wire()
            || info.policy().skip.contains(Skip::IDEMPOTENCY)
            || next.goes_remote()
        {
            return next.run(msg).await;
        }
        let id = match msg.message().idempotency_key() {
            Some(declared) => KeyId::Declared(declared),
            None => KeyId::MessageId(ctx.message_id()),
        };
        let key = ReplyKey {
            message: info.name(),
            handler: msg.handler(),
            id,
        };
        let counters = self
            .counters
            .get_or_init(info, || Counters::new(info.name()));
        loop {
            match self
                .store
                .claim(&key, self.lease)
                .await
                .map_err(store_error("idempotency store: claim"))?
            {
                Claim::Claimed => break,
                Claim::Completed(reply) => {
                    counters.hits.increment(1);
                    return P::decode_output(info, &reply).map_err(|source| {
                        ErrorKind::Codec {
                            message: info.name().to_string(),
                            source,
                        }
                        .into()
                    });
                }
                Claim::InProgress => {
                    counters.waits.increment(1);
                    let timeout = ctx.remaining().unwrap_or(self.lease).min(self.lease);
                    // Past the deadline, every wait returns at once and so would every claim:
                    // the loop would spin without ever yielding to the timer that ends it.
                    if timeout.is_zero() {
                        return Err(ErrorKind::Timeout {
                            message: info.name(),
                            after: None,
                        }
                        .into());
                    }
                    self.store
                        .wait(&key, timeout)
                        .await
                        .map_err(store_error("idempotency store: wait"))?;
                }
            }
        }
        counters.misses.increment(1);
        // From here on the claim is ours: `held` gives it back if this future is dropped or
        // unwinds before it is settled below.
        let mut held = HeldClaim {
            store: &self.store,
            key: &key,
            message: info.name(),
            state: Held::Claim,
        };
        // A unit of work inside may record the reply with the handler's effects (one round
        // trip fewer, and no window between them); only a store that allows it pays for the
        // offer.
        let pending = self.store.completes_in_unit_of_work().then(|| {
            PendingReply::new(
                key.clone(),
                self.ttl,
                ctx.message_id(),
                Arc::clone(&self.store),
            )
        });
        let result = match &pending {
            Some(pending) => PendingReply::scope(Arc::clone(pending), next.run(msg)).await,
            None => next.run(msg).await,
        };
        if pending.as_ref().is_some_and(|p| p.is_recorded()) {
            // Recorded by the commit: nothing left to complete, and nothing to release (a
            // layer between may still have failed the dispatch; the record stands, as the
            // effects it goes with do).
            held.state = Held::Settled;
            return result;
        }
        match &result {
            Ok(output) => {
                // The handler ran: whatever happens to the record, its reply is returned. A
                // record that cannot be written only means a repeat would run it again.
                let stored = match P::encode_output(info, output) {
                    Ok(reply) => {
                        held.state = Held::Reply {
                            reply,
                            ttl: self.ttl,
                        };
                        let reply = held.reply();
                        let stored = self.store.complete(&key, reply, self.ttl).await;
                        held.state = Held::Settled;
                        stored.map_err(|e| e.to_string())
                    }
                    Err(codec) => {
                        let _ = self.store.release(&key).await;
                        held.state = Held::Settled;
                        Err(codec.to_string())
                    }
                };
                if let Err(why) = stored {
                    tracing::error!(target: "catga", message = info.name(), key = %key, error = %why,
                        "could not record an idempotent reply; a repeat of this message would be handled again");
                }
            }
            Err(_) => {
                let released = self.store.release(&key).await;
                held.state = Held::Settled;
                if let Err(e) = released {
                    tracing::warn!(target: "catga", message = info.name(), key = %key, error = %e,
                        "could not release an idempotency claim; repeats wait for its lease to end");
                }
            }
        }
        result
    }
}

/// What a dispatch still holds in the store.
enum Held {
    /// The claim: released if the dispatch goes away.
    Claim,
    /// The handler's reply, being recorded: recorded in the background if the dispatch goes
    /// away (the handler ran; a repeat must get this reply, not run it again).
    Reply { reply: Vec<u8>, ttl: Duration },
    /// Completed or released.
    Settled,
}

/// A claim held by a running dispatch. When the dispatch's future is dropped before it
/// settled the claim (a deadline or cancellation enforced outside this layer, a caller that
/// stopped waiting, a panic unwinding through the handler), the drop settles it: a claim is
/// released, a reply being recorded is recorded. Borrowed references only: the store's `Arc`
/// is cloned on that cold path alone.
struct HeldClaim<'a, S: IdempotencyStore> {
    store: &'a Arc<S>,
    key: &'a ReplyKey,
    message: &'static str,
    state: Held,
}

impl<S: IdempotencyStore> HeldClaim<'_, S> {
    fn reply(&self) -> &[u8] {
        match &self.state {
            Held::Reply { reply, .. } => reply,
            Held::Claim | Held::Settled => &[],
        }
    }
}

impl<S: IdempotencyStore> Drop for HeldClaim<'_, S> {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, Held::Settled);
        if matches!(state, Held::Settled) {
            return;
        }
        let message = self.message;
        if matches!(state, Held::Claim) && self.store.release_now(self.key) {
            tracing::debug!(target: "catga", message, key = %self.key,
                "a dispatch ended without a reply; its idempotency claim was released");
            return;
        }
        // A destructor cannot await: the store's own calls go on in a task of their own.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "catga", message, key = %self.key,
                "a dispatch ended outside a Tokio runtime while holding an idempotency claim; repeats wait for its lease to end");
            return;
        };
        let store = Arc::clone(self.store);
        let key = self.key.clone();
        runtime.spawn(async move {
            match state {
                Held::Reply { reply, ttl } => {
                    if let Err(e) = store.complete(&key, &reply, ttl).await {
                        tracing::error!(target: "catga", message, key = %key, error = %e,
                            "could not record an idempotent reply; a repeat of this message would be handled again");
                    }
                }
                Held::Claim | Held::Settled => {
                    if let Err(e) = store.release(&key).await {
                        tracing::warn!(target: "catga", message, key = %key, error = %e,
                            "could not release an idempotency claim; repeats wait for its lease to end");
                    }
                }
            }
        });
    }
}

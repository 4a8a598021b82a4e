//! Idempotency: a message handled once is not handled again; a repeat gets the first reply.

use std::time::Duration;

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;
use crate::store::idempotency::{Claim, IdempotencyStore, KeyId, MemoryIdempotencyStore, ReplyKey};

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
/// keeps its id). A failed attempt releases the key, so a retry runs the handler again.
/// Replies are kept for the TTL (24 h by default); a crashed holder's claim expires after the
/// lease (60 s). Queries are not deduplicated (they change nothing), nor are `local` messages
/// (their replies have no stored form); `skip(idempotency)` exempts a message.
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
    store: S,
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
            store,
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
        if info.kind() == MessageKind::Query
            || !info.is_wire()
            || info.policy().skip.contains(Skip::IDEMPOTENCY)
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
                    self.store
                        .wait(&key, timeout)
                        .await
                        .map_err(store_error("idempotency store: wait"))?;
                }
            }
        }
        counters.misses.increment(1);
        let result = next.run(msg).await;
        match &result {
            Ok(output) => {
                // The handler ran: whatever happens to the record, its reply is returned. A
                // record that cannot be written only means a repeat would run it again.
                let stored = match P::encode_output(info, output) {
                    Ok(reply) => self
                        .store
                        .complete(&key, &reply, self.ttl)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(codec) => {
                        let _ = self.store.release(&key).await;
                        Err(codec.to_string())
                    }
                };
                if let Err(why) = stored {
                    tracing::error!(target: "catga", message = info.name(), key = %key, error = %why,
                        "could not record an idempotent reply; a repeat of this message would be handled again");
                }
            }
            Err(_) => {
                if let Err(e) = self.store.release(&key).await {
                    tracing::warn!(target: "catga", message = info.name(), key = %key, error = %e,
                        "could not release an idempotency claim; repeats wait for its lease to end");
                }
            }
        }
        result
    }
}

//! Batches: many keys claimed or completed in one pipeline, one round trip.

use std::time::Duration;

use catga_core::store::idempotency::{Claim, ReplyKey};
use redis::{ScriptInvocation, Value};

use super::{
    CLAIM_MANY, COMPLETE_MANY, RedisIdempotencyStore, batch_key, claim_of, millis, not_ours,
    scripts,
};
use crate::store::error::RedisStoreError;

impl RedisIdempotencyStore {
    /// Claims every key of `keys` for `lease`, as [`claim`] would one by one: one pipeline
    /// of `EVALSHA`s, **one round trip** for the batch. The claims come back in the order of
    /// `keys`. A key given twice is claimed by its first occurrence and found in progress by
    /// the second.
    ///
    /// # Errors
    /// The first error of a key ([`RedisStoreError::Malformed`], or
    /// [`RedisStoreError::Command`] for `WRONGTYPE`), after giving back the keys this call
    /// claimed (one more round trip); [`RedisStoreError::Command`] when the connection failed,
    /// when claims the server made before the failure hold until their lease ends.
    ///
    /// [`claim`]: catga_core::store::idempotency::IdempotencyStore::claim
    pub async fn claim_many(
        &self,
        keys: &[ReplyKey],
        lease: Duration,
    ) -> Result<Vec<Claim>, RedisStoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|key| self.key_of(key)).collect();
        let lease = millis(lease);
        let calls: Vec<ScriptInvocation<'_>> = names
            .iter()
            .map(|name| {
                let mut call = scripts::CLAIM.prepare_invoke();
                call.key(name).arg(lease);
                call
            })
            .collect();
        let replies = self
            .conn
            .invoke_many(CLAIM_MANY, &batch_key(&names), &scripts::CLAIM, &calls)
            .await?;
        let mut claims = Vec::with_capacity(names.len());
        let mut first_error = None;
        for (name, reply) in names.iter().zip(replies) {
            let claim = reply
                .map_err(RedisStoreError::command(CLAIM_MANY, name.as_str()))
                .and_then(|value| claim_of(CLAIM_MANY, name, value));
            match claim {
                Ok(claim) => claims.push(claim),
                Err(error) => {
                    first_error.get_or_insert(error);
                    claims.push(Claim::InProgress);
                }
            }
        }
        let Some(error) = first_error else {
            return Ok(claims);
        };
        let taken: Vec<&String> = names
            .iter()
            .zip(&claims)
            .filter(|(_, claim)| **claim == Claim::Claimed)
            .map(|(name, _)| name)
            .collect();
        if !taken.is_empty() {
            let channel = self.wakeups.channel();
            let releases: Vec<ScriptInvocation<'_>> = taken
                .iter()
                .map(|name| {
                    let mut call = scripts::RELEASE.prepare_invoke();
                    call.key(name.as_str()).arg(channel);
                    call
                })
                .collect();
            let released = self
                .conn
                .invoke_many(CLAIM_MANY, &batch_key(&names), &scripts::RELEASE, &releases)
                .await;
            if let Err(release_error) = released {
                tracing::warn!(target: "catga::redis", error = %release_error, keys = taken.len(),
                    "idempotency store: a batch claim failed and the keys it took could not be given back; they are held until their lease ends");
            }
        }
        Err(error)
    }

    /// Completes every `(key, reply)` of `completions` with `ttl`, as [`complete`] would one
    /// by one: one pipeline, **one round trip** for the batch, waking the waiters of each
    /// key.
    ///
    /// # Errors
    /// [`RedisStoreError::TooLarge`] before anything is sent if any reply is over
    /// [`max_write_bytes`](Self::max_write_bytes); else the first error of a key (the others
    /// were completed), or [`RedisStoreError::Command`] when the connection failed.
    ///
    /// [`complete`]: catga_core::store::idempotency::IdempotencyStore::complete
    pub async fn complete_many(
        &self,
        completions: &[(&ReplyKey, &[u8])],
        ttl: Duration,
    ) -> Result<(), RedisStoreError> {
        for (_, reply) in completions {
            self.fits(COMPLETE_MANY, reply)?;
        }
        if completions.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = completions
            .iter()
            .map(|(key, _)| self.key_of(key))
            .collect();
        let ttl = millis(ttl);
        let channel = self.wakeups.channel();
        let calls: Vec<ScriptInvocation<'_>> = names
            .iter()
            .zip(completions)
            .map(|(name, (_, reply))| {
                let mut call = scripts::COMPLETE.prepare_invoke();
                call.key(name).arg(*reply).arg(ttl).arg(channel);
                call
            })
            .collect();
        let replies = self
            .conn
            .invoke_many(
                COMPLETE_MANY,
                &batch_key(&names),
                &scripts::COMPLETE,
                &calls,
            )
            .await?;
        let mut first_error = None;
        for (name, reply) in names.iter().zip(replies) {
            let done = match reply {
                Ok(Value::Int(1)) => Ok(()),
                Ok(_) => Err(not_ours(COMPLETE_MANY, name)),
                Err(error) => Err(RedisStoreError::command(COMPLETE_MANY, name.as_str())(
                    error,
                )),
            };
            if let Err(error) = done {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

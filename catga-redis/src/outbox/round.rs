//! One relay round: claim (one script), publish, finish (one script). Two kinds: the fast
//! round is handed the entries this process just committed, envelopes in memory, and only
//! claims them by id; the claim round reads entries from the stream, whatever their origin.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Instant, SystemTime};

use catga_core::Catga;
use catga_core::envelope::Envelope;
use catga_core::error::Error;
use catga_core::pipeline::Layer;
use catga_core::store::dead_letter::{DeadLetterRecord, FailureStage};
use redis::{Script, Value};
use uuid::Uuid;

use super::commit::text;
use super::error::RedisOutboxError;
use super::keys::ORDERING_FIELD;
use super::relay::RedisOutboxRelay;
use crate::entry::{Entry, entries};

static CLAIM_FAST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim_fast.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("finish.lua")));

/// An event this process just committed, handed to its relay with its envelope.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) id: String,
    /// The escaped ordering key.
    pub(crate) ordering: String,
    pub(crate) envelope: Envelope,
}

/// An entry a round claimed.
struct Claimed {
    id: String,
    /// The escaped ordering key; `None` for an entry without one (written by hand).
    ordering: Option<String>,
    /// The wire name, for a dead letter.
    name: String,
    /// The envelope, or why the entry cannot be one.
    envelope: Result<Envelope, String>,
}

/// What a claim round did.
pub(crate) struct ClaimRound {
    /// Entries claimed.
    pub(crate) claimed: usize,
    /// The last entry read, to continue after.
    pub(crate) last: String,
    /// Whether entries may follow `last`.
    pub(crate) more: bool,
    /// Whether an entry could not be published (the transport is down).
    pub(crate) failed: bool,
}

/// What a round published (id, ordering key) and what it gives back.
#[derive(Default)]
struct Published {
    done: Vec<(String, Option<String>)>,
    release: Vec<String>,
}

impl RedisOutboxRelay {
    /// A fast round over `committed` (at most a batch): one script claims those that are free
    /// and due, they are published from memory, one script removes them. Returns how many it
    /// published; the others are left to a claim round.
    pub(super) async fn fast_round<L: Layer>(
        &self,
        app: &Catga<L>,
        committed: Vec<Committed>,
    ) -> Result<usize, RedisOutboxError> {
        let keys = &self.shared.keys;
        let started = Instant::now();
        let (expiry, claimed): (String, Vec<String>) = {
            let mut invocation = CLAIM_FAST.prepare_invoke();
            invocation.key(&keys.claims);
            let mut lists: HashMap<&str, usize> = HashMap::new();
            for entry in &committed {
                if !lists.contains_key(entry.ordering.as_str()) {
                    lists.insert(&entry.ordering, lists.len() + 2);
                    invocation.key(keys.list(&entry.ordering));
                }
            }
            invocation.arg(self.lease_ms());
            for entry in &committed {
                let list = lists.get(entry.ordering.as_str()).copied().unwrap_or(0);
                invocation.arg(&entry.id).arg(list);
            }
            let reply: Value = self
                .shared
                .conn
                .invoke("outbox relay: claim committed", &keys.claims, &invocation)
                .await
                .map_err(RedisOutboxError::Store)?;
            read_fast_claim(&keys.claims, reply)?
        };
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut by_id: HashMap<String, Committed> =
            committed.into_iter().map(|c| (c.id.clone(), c)).collect();
        let claims = claimed
            .into_iter()
            .filter_map(|id| by_id.remove(&id))
            .map(|c| Claimed {
                name: c.envelope.name.to_string(),
                id: c.id,
                ordering: Some(c.ordering),
                envelope: Ok(c.envelope),
            })
            .collect();
        let published = self.publish_by_key(app, claims, started).await;
        self.finish(&expiry, &published).await?;
        Ok(published.done.len())
    }

    /// A claim round: reads up to four batches of the stream from `start` (`-`, or `(id`
    /// to continue after an entry), claims up to a batch of due entries, publishes them and
    /// removes what was published: two round trips.
    pub(super) async fn claim_round<L: Layer>(
        &self,
        app: &Catga<L>,
        start: &str,
    ) -> Result<ClaimRound, RedisOutboxError> {
        let keys = &self.shared.keys;
        let started = Instant::now();
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(&keys.stream)
            .key(&keys.claims)
            .arg(start)
            .arg(self.batch * 4)
            .arg(self.batch)
            .arg(self.lease_ms())
            .arg(&keys.list_prefix)
            .arg(ORDERING_FIELD);
        let reply: Value = self
            .shared
            .conn
            .invoke("outbox relay: claim", &keys.stream, &invocation)
            .await
            .map_err(RedisOutboxError::Store)?;
        let (expiry, last, more, entries) = read_claim(&keys.stream, reply)?;
        let claimed = entries.len();
        let claims = entries.into_iter().map(claimed_entry).collect();
        let published = self.publish_by_key(app, claims, started).await;
        let failed = !published.release.is_empty();
        self.finish(&expiry, &published).await?;
        Ok(ClaimRound {
            claimed,
            last,
            more,
            failed,
        })
    }

    /// Publishes `claims`: the entries of one key one after the other, in commit order;
    /// different keys at the same time. A key stops at its first failure, and nothing starts
    /// once most of the lease is spent (another relay may then claim the rest).
    async fn publish_by_key<L: Layer>(
        &self,
        app: &Catga<L>,
        claims: Vec<Claimed>,
        started: Instant,
    ) -> Published {
        let mut groups: Vec<Vec<Claimed>> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for claim in claims {
            match &claim.ordering {
                Some(key) => {
                    let at = *by_key.entry(key.clone()).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[at].push(claim);
                }
                None => groups.push(vec![claim]),
            }
        }
        let until = started + self.lease.mul_f64(0.8);
        let outcomes = futures::future::join_all(groups.into_iter().map(|group| async move {
            let mut done = Vec::with_capacity(group.len());
            let mut release = Vec::new();
            let mut stopped = false;
            for claim in group {
                if stopped || Instant::now() >= until {
                    release.push(claim.id);
                    continue;
                }
                let (id, ordering) = (claim.id.clone(), claim.ordering.clone());
                match self.publish(app, claim).await {
                    Ok(()) => done.push((id, ordering)),
                    Err(error) => {
                        // The transport is down or refused: the key's later entries wait.
                        tracing::debug!(target: "catga::redis", entry = %id, error = %error,
                            "outbox relay: an entry could not be published; it is published later");
                        stopped = true;
                        release.push(id);
                    }
                }
            }
            (done, release)
        }))
        .await;
        let mut published = Published::default();
        for (done, release) in outcomes {
            published.done.extend(done);
            published.release.extend(release);
        }
        published
    }

    /// Removes what was published and releases the rest: one round trip.
    async fn finish(&self, expiry: &str, published: &Published) -> Result<(), RedisOutboxError> {
        if published.done.is_empty() && published.release.is_empty() {
            return Ok(());
        }
        let keys = &self.shared.keys;
        let mut invocation = FINISH.prepare_invoke();
        invocation.key(&keys.stream).key(&keys.claims);
        let mut lists: HashMap<&str, usize> = HashMap::new();
        for (_, ordering) in &published.done {
            if let Some(key) = ordering
                && !lists.contains_key(key.as_str())
            {
                lists.insert(key, lists.len() + 3);
                invocation.key(keys.list(key));
            }
        }
        invocation.arg(expiry).arg(published.done.len());
        for (id, ordering) in &published.done {
            let list = ordering
                .as_deref()
                .and_then(|key| lists.get(key).copied())
                .unwrap_or(0);
            invocation.arg(id).arg(list);
        }
        for id in &published.release {
            invocation.arg(id);
        }
        let _: Value = self
            .shared
            .conn
            .invoke("outbox relay: finish", &keys.stream, &invocation)
            .await
            .map_err(RedisOutboxError::Store)?;
        if !published.done.is_empty() {
            metrics::counter!("catga_outbox_published_total")
                .increment(published.done.len() as u64);
        }
        Ok(())
    }

    /// Publishes one claimed entry. `Ok` means it may be removed: the transport took it, or
    /// it can never be published and is now in the application's dead-letter store.
    async fn publish<L: Layer>(&self, app: &Catga<L>, claim: Claimed) -> Result<(), Error> {
        let Claimed {
            id, name, envelope, ..
        } = claim;
        let (failure, message_id, payload, correlation_id, causation_id, headers) = match envelope {
            Ok(envelope) => {
                let kept = (
                    envelope.id,
                    envelope.payload.clone(),
                    envelope.correlation_id,
                    envelope.causation_id,
                    envelope.headers.clone(),
                );
                match app.publish_envelope(envelope).await {
                    Ok(()) => return Ok(()),
                    Err(error) if error.is_retryable() => return Err(error),
                    Err(error) => (error.to_string(), kept.0, kept.1, kept.2, kept.3, kept.4),
                }
            }
            Err(malformed) => (
                malformed,
                Uuid::nil(),
                Vec::new(),
                Uuid::nil(),
                None,
                Vec::new(),
            ),
        };
        // Permanent: an unknown name, a payload that does not decode, an entry that is not
        // an envelope. Keep it where a person can find it, once, and go on.
        tracing::error!(target: "catga::redis", event = %name, entry = %id, error = %failure,
            "outbox relay: an entry can never be published; it is moved to the dead-letter store");
        let record = DeadLetterRecord {
            id: Uuid::now_v7(),
            message: name,
            handler: None,
            payload: Some(payload),
            code: "outbox".to_string(),
            error: failure,
            attempts: 1,
            message_id,
            correlation_id,
            causation_id,
            headers,
            failed_at: SystemTime::now(),
            stage: FailureStage::Publish,
            source: Some(format!("{} {id}", self.shared.keys.stream)),
            raw_headers: None,
        };
        app.dead_letters().put_dyn(record).await.map_err(|source| {
            catga_core::error::ErrorKind::Store {
                operation: "outbox relay: dead-letter an entry",
                source,
            }
            .into()
        })
    }
}

/// An entry read from the stream as a claim: its envelope, or why it is none.
fn claimed_entry(entry: Entry) -> Claimed {
    let field = |name: &str| {
        entry.fields.iter().flatten().find_map(|(k, v)| {
            (k == name.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned())
        })
    };
    let ordering = field(ORDERING_FIELD);
    let name = field(catga_core::envelope::header::NAME).unwrap_or_default();
    let envelope = entry
        .decode()
        .map_err(|e| format!("the outbox entry is not an envelope: {e}"))
        .and_then(|decoded| {
            if decoded.envelope.kind == catga_core::message::MessageKind::Event {
                Ok(decoded.envelope)
            } else {
                Err(format!(
                    "the outbox entry is a {}, not an event",
                    decoded.envelope.kind.as_str()
                ))
            }
        });
    Claimed {
        id: entry.id,
        ordering,
        name,
        envelope,
    }
}

fn shape(key: &str, why: &str) -> RedisOutboxError {
    RedisOutboxError::malformed("outbox relay: claim", key, why)
}

/// `{expiry, {id…}}`.
fn read_fast_claim(key: &str, reply: Value) -> Result<(String, Vec<String>), RedisOutboxError> {
    let Value::Array(items) = reply else {
        return Err(shape(key, "the claim script's reply is not an array"));
    };
    let mut items = items.into_iter();
    let expiry = items
        .next()
        .and_then(text)
        .ok_or_else(|| shape(key, "no lease expiry"))?;
    let ids = match items.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(text).collect(),
        Some(Value::Nil) | None => Vec::new(),
        Some(_) => return Err(shape(key, "the claimed ids are not an array")),
    };
    Ok((expiry, ids))
}

/// `{expiry, last, more, {{id, fields}…}}`.
fn read_claim(
    key: &str,
    reply: Value,
) -> Result<(String, String, bool, Vec<Entry>), RedisOutboxError> {
    let Value::Array(items) = reply else {
        return Err(shape(key, "the claim script's reply is not an array"));
    };
    let mut items = items.into_iter();
    let expiry = items
        .next()
        .and_then(text)
        .ok_or_else(|| shape(key, "no lease expiry"))?;
    let last = items.next().and_then(text).unwrap_or_default();
    let more = items.next().and_then(text).is_some_and(|m| m == "1");
    let claimed = entries("outbox claim", key, items.next().unwrap_or(Value::Nil))
        .map_err(|e| shape(key, &e.to_string()))?;
    Ok((expiry, last, more, claimed))
}

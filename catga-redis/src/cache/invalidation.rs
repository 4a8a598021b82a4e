//! Telling every instance about an invalidation, and hearing the others'.
//!
//! Every instance subscribes to one channel per prefix, `{prefix}:cache:invalidations`. An
//! invalidation moves the query's generation in Redis and publishes on that channel in the
//! same script, so the moment another instance hears it, the generation has moved on the
//! primary: its next read of the primary cannot find the old reply. What the message does
//! there is drop that instance's near-cache entries, and, when lookups may read replicas,
//! send the query's lookups to the primary for the read-your-writes window (a replica may
//! not have the new generation yet). Deleting one key is a script too (`DEL` and `PUBLISH`):
//! one slot, so it runs on a Redis Cluster as on one server.
//!
//! Messages: `q:{query}` (every reply of the query) and `k:{len}:{query}{key}` (one key;
//! `len` is the query name's length in bytes, so a key may hold any byte). A message the
//! cache cannot read (a newer format, another writer) clears the whole near-cache: dropping
//! too much only costs round trips.
//!
//! Pub/sub delivers at most once: a message sent while the subscription is down is lost. So
//! the near-cache is used only while subscribed, and cleared both when the subscription is
//! lost and when it is back (and lookups read the primary for the window after it is back);
//! a heartbeat (`PING` on the subscription every second) notices a connection that died
//! without closing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use redis::RedisError;
use tokio::sync::oneshot;

use super::{QueryInner, Shared};

/// How often the subscription is pinged, so a silently dead connection is noticed.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// What an invalidation message says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'m> {
    /// Every reply of the query.
    Query(&'m str),
    /// The reply under one key.
    Key(&'m str, &'m [u8]),
}

impl Message<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Message::Query(query) => [b"q:", query.as_bytes()].concat(),
            Message::Key(query, key) => {
                let len = query.len().to_string();
                [b"k:", len.as_bytes(), b":", query.as_bytes(), key].concat()
            }
        }
    }

    /// The message in `bytes`, or `None` if it is not one this version writes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Message<'_>> {
        if let Some(query) = bytes.strip_prefix(b"q:") {
            return std::str::from_utf8(query).ok().map(Message::Query);
        }
        let rest = bytes.strip_prefix(b"k:")?;
        let colon = rest.iter().position(|b| *b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let rest = &rest[colon + 1..];
        let (query, key) = (rest.get(..len)?, rest.get(len..)?);
        Some(Message::Key(std::str::from_utf8(query).ok()?, key))
    }
}

impl Shared {
    /// What hearing `payload` on the channel does: drop the near entries it names, and, when
    /// lookups may read replicas, send the query's lookups to the primary for the
    /// read-your-writes window (a replica may not have the invalidation yet).
    fn heard(&self, payload: &[u8]) {
        match Message::decode(payload) {
            Some(Message::Query(name)) => {
                self.changed(name);
                if let Some(query) = self.query_named(name) {
                    query.near.clear();
                }
            }
            Some(Message::Key(name, key)) => {
                self.changed(name);
                if let Some(query) = self.query_named(name) {
                    query.near.remove(key);
                }
            }
            None => {
                tracing::warn!(target: "catga::redis::cache", channel = %self.channel,
                    "an invalidation message the cache cannot read; the whole near-cache is \
                     dropped");
                self.routing.wrote_all();
                self.clear_near();
            }
        }
    }

    /// Moves `query` to a new generation (or deletes one key) and tells every instance,
    /// trying again after each `retry_interval` (or as soon as another command finds Redis
    /// back) while Redis is out, until it is done, a later invalidation of the whole query
    /// did it, or the cache is dropped.
    pub(crate) async fn invalidate(&self, query: &QueryInner, key: Option<&[u8]>) {
        // Invalidations of the whole query are numbered: one that moved the generation after
        // another was asked for does that one's work too (useful after an outage).
        let ticket = key
            .is_none()
            .then(|| query.generations_asked.fetch_add(1, Ordering::AcqRel) + 1);
        loop {
            if ticket.is_some_and(|t| query.generations_done.load(Ordering::Acquire) >= t) {
                return;
            }
            let recovered = self.health.recovered();
            if self.health.may_try() {
                let started = query.generations_asked.load(Ordering::Acquire);
                let done = match key {
                    None => self.bump(query).await,
                    Some(key) => self.delete(query, key).await,
                };
                if done {
                    // A replica may not have it yet: read the primary for a while.
                    self.changed(query.name);
                    if key.is_none() {
                        query.generations_done.fetch_max(started, Ordering::AcqRel);
                    }
                    return;
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(self.config.retry_interval) => {}
                () = recovered => {}
            }
        }
    }

    /// `INCR` the generation and publish, in one script.
    async fn bump(&self, query: &QueryInner) -> bool {
        let message = Message::Query(query.name).encode();
        let mut invocation = self.scripts.invalidate.key(&query.generation_key);
        invocation.arg(&self.channel).arg(message);
        let mut manager = self.manager.clone();
        let result = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async::<i64>(&mut manager),
        )
        .await;
        self.settle("EVALSHA", &query.generation_key, result)
            .is_some()
    }

    /// `DEL` the entry and publish, in one script (one slot: the entry's).
    async fn delete(&self, query: &QueryInner, key: &[u8]) -> bool {
        let entry = query.entry_key(key);
        let mut invocation = self.scripts.drop.key(&entry);
        invocation
            .arg(&self.channel)
            .arg(Message::Key(query.name, key).encode());
        let mut manager = self.manager.clone();
        let result = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async::<i64>(&mut manager),
        )
        .await;
        self.settle("EVALSHA", &entry, result).is_some()
    }
}

/// Keeps this instance subscribed to the invalidation channel for as long as the cache lives,
/// subscribing again after every loss. `ready` hears how the first attempt went.
pub(crate) async fn subscribe(
    shared: Arc<Shared>,
    client: redis::Client,
    ready: oneshot::Sender<Result<(), RedisError>>,
) {
    let mut ready = Some(ready);
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let connected = tokio::select! {
            () = shared.stop.cancelled() => return,
            connected = tokio::time::timeout(super::CONNECT_TIMEOUT, attempt) => connected,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                pause(&shared).await;
                continue;
            }
            Err(_) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    ))));
                    return;
                }
                pause(&shared).await;
                continue;
            }
        };
        // Whatever was kept near while not subscribed may have missed an invalidation.
        shared.clear_near();
        if ready.is_none() {
            // Invalidations sent while unsubscribed were not heard: a replica might still
            // serve what they dropped, so lookups read the primary for a while.
            shared.routing.wrote_all();
        }
        shared.subscribed.store(true, Ordering::Release);
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            None => tracing::info!(target: "catga::redis::cache", channel = %shared.channel,
                "subscribed to cache invalidations again; the near-cache is back on"),
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        let why: &str = loop {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                message = messages.next() => match message {
                    Some(message) => shared.heard(message.get_payload_bytes()),
                    None => break "the connection closed",
                },
                _ = beat.tick() => {
                    let pong = tokio::time::timeout(shared.config.timeout, sink.ping::<()>());
                    if !matches!(pong.await, Ok(Ok(()))) {
                        break "no answer to the heartbeat";
                    }
                }
            }
        };
        shared.subscribed.store(false, Ordering::Release);
        shared.clear_near();
        tracing::info!(target: "catga::redis::cache", channel = %shared.channel, why,
            "lost the cache invalidation subscription; the near-cache is off until it is back");
    }
}

/// Waits `retry_interval` (or until the cache is dropped) before subscribing again.
async fn pause(shared: &Shared) {
    tokio::select! {
        () = shared.stop.cancelled() => {}
        () = tokio::time::sleep(shared.config.retry_interval) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_whatever_the_key_holds() {
        let cases = [
            Message::Query("orders.get"),
            Message::Key("orders.get", b"7"),
            Message::Key("a:b", b"k:2:xx\xff"),
            Message::Key("Q", b""),
        ];
        for message in cases {
            assert_eq!(Message::decode(&message.encode()), Some(message));
        }
    }

    #[test]
    fn a_foreign_message_is_not_read() {
        for bytes in [
            &b""[..],
            b"x",
            b"k:",
            b"k:9:short",
            b"k:-1:q",
            b"k:a:q",
            b"q:\xff",
        ] {
            assert_eq!(Message::decode(bytes), None, "{bytes:?}");
        }
    }
}

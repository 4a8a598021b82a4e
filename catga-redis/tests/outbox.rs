//! The outbox on a real Redis: a handler's writes and events are applied together or not at
//! all (a failing handler, a write Redis refuses), the relay publishes every committed event
//! once, in order per ordering key, also with two relays of two applications, and each step
//! costs the round trips it promises.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::error::{BoxError, ErrorKind};
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_redis::store::RedisStores;
use catga_redis::{RedisOutbox, RedisOutboxError, RedisOutboxRelay, RedisWrites};
use common::round_trips::RoundTrips;
use common::slice::Slice;
use redis::aio::MultiplexedConnection;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub id: u64,
    /// Events to publish, numbered 0..events.
    pub events: u32,
    pub fail: bool,
    /// A write Redis refuses: 1 an `INCRBY` of a key that is not an integer (checked before
    /// anything is applied), 2 a raw `LPUSH` onto a string (fails while the unit is applied).
    pub refused: u8,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order: u64,
    pub seq: u32,
}

/// What the event handler saw: per order, the sequence numbers in arrival order.
#[derive(Default)]
pub struct Seen {
    by_order: Mutex<HashMap<u64, Vec<u32>>>,
}

impl Seen {
    fn total(&self) -> usize {
        self.by_order
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

pub mod orders {
    use super::*;

    /// Writes the order and a counter through the unit of work and publishes its events.
    #[handler]
    pub async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, BoxError> {
        let writes = RedisWrites::current()?;
        writes.hset(&writes.key(&format!("order:{}", cmd.id)), "id", cmd.id)?;
        writes.rpush(&writes.key("placed"), cmd.id)?;
        match cmd.refused {
            1 => writes.incr_by(&writes.key("not-a-number"), 1)?,
            2 => {
                writes.incr_by(&writes.key("count"), 1)?;
                let mut lpush = redis::cmd("LPUSH");
                let key = writes.key("not-a-list");
                lpush.arg(&key).arg("x");
                writes.command(lpush, &[&key])?;
            }
            _ => writes.incr_by(&writes.key("count"), 1)?,
        }
        for seq in 0..cmd.events {
            ctx.publish(OrderEvent { order: cmd.id, seq })?;
        }
        if cmd.fail {
            return Err("the handler failed on purpose".into());
        }
        Ok(cmd.id)
    }

    #[handler]
    impl Seen {
        async fn on_event(&self, event: &OrderEvent) -> Result<(), BoxError> {
            if let Ok(mut seen) = self.by_order.lock() {
                seen.entry(event.order).or_default().push(event.seq);
            }
            Ok(())
        }
    }
}

/// Writes `{P:outbox}:<suffix>`.
#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tamper {
    pub suffix: String,
}

pub mod tampering {
    use super::*;

    #[handler]
    pub async fn tamper(cmd: Tamper) -> Result<(), BoxError> {
        let writes = RedisWrites::current()?;
        writes.set(&writes.key(&cmd.suffix), "x")?;
        Ok(())
    }
}

fn order(id: u64, events: u32) -> PlaceOrder {
    PlaceOrder {
        id,
        events,
        fail: false,
        refused: 0,
    }
}

/// An application with the outbox and no transport: the relay hands events to this
/// process's handlers.
fn app(stores: &RedisStores, seen: &Arc<Seen>) -> (Catga<impl Layer>, RedisOutboxRelay) {
    let outbox = RedisOutbox::new(stores);
    let relay = outbox.relay();
    let app = Catga::builder()
        .state_arc(Arc::clone(seen))
        .handlers(|h| h.is_in("orders") || h.is_in("tampering"))
        .layer(outbox)
        .build()
        .expect("the application builds");
    (app, relay)
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> T {
    cmd.query_async(conn).await.expect("a query")
}

async fn keys(conn: &mut MultiplexedConnection, pattern: String) -> Vec<String> {
    query(conn, redis::cmd("KEYS").arg(pattern)).await
}

async fn len(conn: &mut MultiplexedConnection, command: &str, key: &str) -> u64 {
    query(conn, redis::cmd(command).arg(key)).await
}

/// Per order, the sequence numbers of its events in the order of the event stream `stream`.
async fn published_order(conn: &mut MultiplexedConnection, stream: &str) -> HashMap<u64, Vec<u32>> {
    let reply: redis::streams::StreamRangeReply =
        query(conn, redis::cmd("XRANGE").arg(stream).arg("-").arg("+")).await;
    let mut by_order: HashMap<u64, Vec<u32>> = HashMap::new();
    for entry in reply.ids {
        let payload: Vec<u8> = entry.get("catga-payload").expect("a payload");
        let event: OrderEvent = serde_json::from_slice(&payload).expect("an event");
        by_order.entry(event.order).or_default().push(event.seq);
    }
    by_order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_command_stores_its_writes_and_its_events_together() {
    let Some(slice) = Slice::open("outbox_commit").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, _relay) = app(&slice.stores, &seen);
    let outbox = RedisOutbox::new(&slice.stores);
    assert_eq!(app.send(order(7, 2)).await.expect("committed"), 7);
    let mut raw = slice.raw().await;
    let id: Option<u64> = query(
        &mut raw,
        redis::cmd("HGET").arg(outbox.key("order:7")).arg("id"),
    )
    .await;
    assert_eq!(id, Some(7), "the handler's write was applied");
    let count: u64 = query(&mut raw, redis::cmd("GET").arg(outbox.key("count"))).await;
    assert_eq!(count, 1);
    // No relay runs: the events wait in the outbox, in their ordering key's list.
    assert_eq!(len(&mut raw, "XLEN", outbox.stream_key()).await, 2);
    let lists = keys(&mut raw, format!("{{{}:outbox}}:key:*", slice.prefix)).await;
    assert_eq!(lists.len(), 1, "one ordering key (the correlation id)");
    assert_eq!(len(&mut raw, "LLEN", &lists[0]).await, 2);
    let stored = published_order(&mut raw, outbox.stream_key()).await;
    assert_eq!(
        stored,
        HashMap::from([(7, vec![0, 1])]),
        "the events, in order"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.total(), 0, "nothing is published without a relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_leaves_no_write_and_no_event() {
    let Some(slice) = Slice::open("outbox_failing").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, relay) = app(&slice.stores, &seen);
    let running = relay.start(app.clone()).await.expect("the relay starts");
    let error = app
        .send(PlaceOrder {
            fail: true,
            ..order(1, 3)
        })
        .await
        .expect_err("the handler fails");
    assert!(error.to_string().contains("failed on purpose"), "{error}");
    let outbox = RedisOutbox::new(&slice.stores);
    let mut raw = slice.raw().await;
    let written = keys(&mut raw, format!("{{{}:outbox}}*", slice.prefix)).await;
    assert!(
        written.is_empty(),
        "no write, no event, no list: {written:?}"
    );
    assert_eq!(len(&mut raw, "XLEN", outbox.stream_key()).await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.total(), 0, "no event of a failed command is published");
    running.shutdown().await;
}

/// A write Redis refuses aborts the whole unit: nothing of it is applied, whether the script
/// refuses it before applying anything (a typed write it checks) or after applying the writes
/// before it (a raw command: the declared keys are restored, TTLs included). The dispatch
/// fails with the handler's own error, not retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_applies_nothing_of_the_unit() {
    let Some(slice) = Slice::open("outbox_refused").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, _relay) = app(&slice.stores, &seen);
    let outbox = RedisOutbox::new(&slice.stores);
    let mut raw = slice.raw().await;
    let _: () = query(
        &mut raw,
        redis::cmd("SET").arg(outbox.key("not-a-number")).arg("abc"),
    )
    .await;
    let _: () = query(
        &mut raw,
        redis::cmd("SET").arg(outbox.key("not-a-list")).arg("text"),
    )
    .await;
    let _: () = query(
        &mut raw,
        redis::cmd("SET")
            .arg(outbox.key("count"))
            .arg(41)
            .arg("PX")
            .arg(600_000),
    )
    .await;
    let _: () = query(
        &mut raw,
        redis::cmd("RPUSH").arg(outbox.key("placed")).arg("earlier"),
    )
    .await;

    for (refused, reason) in [(1, "not an integer"), (2, "WRONGTYPE")] {
        let error = app
            .send(PlaceOrder {
                refused,
                ..order(5, 2)
            })
            .await
            .expect_err("the unit is refused");
        assert!(
            matches!(error.kind(), ErrorKind::Handler { .. }),
            "{error:?}"
        );
        assert!(
            !error.is_retryable(),
            "the same write would be refused again"
        );
        let cause = error
            .downcast_ref::<RedisOutboxError>()
            .expect("the unit's error");
        assert!(
            matches!(cause, RedisOutboxError::Refused { .. }),
            "nothing was applied: {cause}"
        );
        assert!(cause.to_string().contains(reason), "{cause}");
        let order: Option<u64> = query(
            &mut raw,
            redis::cmd("HGET").arg(outbox.key("order:5")).arg("id"),
        )
        .await;
        assert_eq!(
            order, None,
            "write 1 (before the refused one) was not applied"
        );
        let placed: Vec<String> = query(
            &mut raw,
            redis::cmd("LRANGE")
                .arg(outbox.key("placed"))
                .arg(0)
                .arg(-1),
        )
        .await;
        assert_eq!(
            placed,
            vec!["earlier"],
            "write 2 was not applied (restored)"
        );
        let count: u64 = query(&mut raw, redis::cmd("GET").arg(outbox.key("count"))).await;
        assert_eq!(
            count, 41,
            "the increment before the refused command was undone"
        );
        let ttl: i64 = query(&mut raw, redis::cmd("PTTL").arg(outbox.key("count"))).await;
        assert!(ttl > 500_000, "with its TTL: {ttl}");
        assert_eq!(
            len(&mut raw, "XLEN", outbox.stream_key()).await,
            0,
            "no event stored"
        );
    }
    // The unit's other writes still work once the keys hold what they should.
    let _: () = query(
        &mut raw,
        redis::cmd("SET").arg(outbox.key("not-a-number")).arg(9),
    )
    .await;
    app.send(PlaceOrder {
        refused: 1,
        ..order(6, 1)
    })
    .await
    .expect("committed");
    let value: u64 = query(&mut raw, redis::cmd("GET").arg(outbox.key("not-a-number"))).await;
    assert_eq!(value, 10);
    assert_eq!(len(&mut raw, "XLEN", outbox.stream_key()).await, 1);
}

/// A handler may not write the outbox's own keys, and a unit of work exists only inside a
/// dispatch the outbox or the inbox runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_keys_are_reserved_and_a_unit_exists_only_in_a_dispatch() {
    assert!(matches!(
        RedisWrites::current(),
        Err(RedisOutboxError::NoUnit)
    ));
    let Some(slice) = Slice::open("outbox_reserved").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (app, _relay) = app(&slice.stores, &seen);
    let tamper = |suffix: &str| Tamper {
        suffix: suffix.to_string(),
    };
    for suffix in ["stream", "claims", "key:abc", "inbox:x:y"] {
        let error = app.send(tamper(suffix)).await.expect_err("refused");
        let cause = error.downcast_ref::<RedisOutboxError>().expect("typed");
        assert!(
            matches!(cause, RedisOutboxError::ReservedKey { .. }),
            "{cause}"
        );
    }
    app.send(tamper("streams"))
        .await
        .expect("a key of the handler's own");
    let outbox = RedisOutbox::new(&slice.stores);
    let mut raw = slice.raw().await;
    assert_eq!(len(&mut raw, "XLEN", outbox.stream_key()).await, 0);
    let value: Option<String> = query(&mut raw, redis::cmd("GET").arg(outbox.key("streams"))).await;
    assert_eq!(value.as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_every_event_once_in_order_through_the_redis_transport() {
    let Some(slice) = Slice::open("outbox_relay").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let outbox = RedisOutbox::new(&slice.stores);
    let relay = outbox.relay();
    let transport = slice.transport().await;
    let app = Catga::builder()
        .transport(transport.clone())
        .service("orders")
        .state_arc(Arc::clone(&seen))
        .handlers(|h| h.is_in("orders"))
        .layer(outbox.clone())
        .build()
        .expect("builds");
    let serving = app.serve().await.expect("serves");
    let running = relay.start(app.clone()).await.expect("the relay starts");
    for id in 0..20 {
        app.send(order(id, 5)).await.expect("committed");
    }
    eventually("100 events handled", || async { seen.total() >= 100 }).await;
    let mut raw = slice.raw().await;
    eventually("the outbox emptied", || async {
        len(&mut raw.clone(), "XLEN", outbox.stream_key()).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.total(), 100, "each event once");
    // The transport's consumers handle entries concurrently, so the order to check is the
    // order the relay published in: the event stream's.
    let published = published_order(&mut raw, &transport.event_stream("OrderEvent")).await;
    assert_eq!(published.values().map(Vec::len).sum::<usize>(), 100);
    for (order, seqs) in published {
        assert_eq!(
            seqs,
            vec![0, 1, 2, 3, 4],
            "order {order}: published in commit order"
        );
    }
    let left = keys(&mut raw, format!("{{{}:outbox}}:*", slice.prefix)).await;
    let internal: Vec<&String> = left
        .iter()
        .filter(|k| k.contains(":key:") || k.ends_with(":claims"))
        .collect();
    assert!(
        internal.is_empty(),
        "the ordering-key lists and the claims are gone: {internal:?}"
    );
    running.shutdown().await;
    serving.shutdown().await;
}

/// Two applications (two instances, each with its own connection and relay) on one prefix,
/// over a backlog: every event once, in order per ordering key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_of_two_applications_share_the_entries_without_publishing_one_twice() {
    let Some(slice) = Slice::open("outbox_two_relays").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (first_app, first_relay) = app(&slice.stores, &seen);
    for id in 0..100 {
        first_app.send(order(id, 4)).await.expect("committed");
    }
    let other_stores = slice.connect().await;
    let (second_app, second_relay) = app(&other_stores, &seen);
    let first = first_relay
        .batch(7)
        .expect("valid")
        .start(first_app.clone())
        .await
        .expect("relay 1 starts");
    let second = second_relay
        .batch(7)
        .expect("valid")
        .start(second_app.clone())
        .await
        .expect("relay 2 starts");
    // And commits while both relay: fast rounds race the other relay's claim rounds.
    for id in 100..120 {
        second_app.send(order(id, 4)).await.expect("committed");
    }
    eventually("480 events handled", || async { seen.total() >= 480 }).await;
    let outbox = RedisOutbox::new(&slice.stores);
    let raw = slice.raw().await;
    eventually("the outbox emptied", || async {
        len(&mut raw.clone(), "XLEN", outbox.stream_key()).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.total(), 480, "no entry published twice");
    for (order, seqs) in seen.by_order.lock().expect("lock").iter() {
        assert_eq!(
            seqs,
            &vec![0, 1, 2, 3],
            "order {order}: in order across two relays"
        );
    }
    first.shutdown().await;
    second.shutdown().await;
}

/// What each step costs, counted at the wire: a commit is one round trip (one `EVALSHA`),
/// the relay's fast claim one, its finish one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_and_its_fast_round_cost_one_round_trip_each() {
    let Some(slice) = Slice::open("outbox_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let stores = slice.connect_at(proxy.url()).await;
    let seen = Arc::new(Seen::default());
    let (app, relay) = app(&stores, &seen);
    // Loads the commit script (`NOSCRIPT` once) before counting.
    app.send(order(1, 2)).await.expect("committed");

    proxy.reset();
    app.send(order(2, 2)).await.expect("committed");
    assert_eq!(proxy.names(), vec!["EVALSHA"], "a commit");
    assert_eq!(proxy.round_trips(), 1, "a commit");

    // No poll during the count; starting loads the claim scripts, relaying four events.
    let relay = relay
        .poll_interval(Duration::from_secs(3600))
        .expect("valid");
    let running = relay.start(app.clone()).await.expect("starts");
    eventually("the waiting events", || async { seen.total() == 4 }).await;
    // Loads the fast claim script.
    app.send(order(3, 1)).await.expect("committed");
    eventually("the next event", || async { seen.total() == 5 }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    proxy.reset();
    app.send(order(4, 2)).await.expect("committed");
    eventually("the events", || async { seen.total() == 7 }).await;
    eventually("the fast round's finish", || async {
        proxy.round_trips() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        proxy.names(),
        vec!["EVALSHA", "EVALSHA", "EVALSHA"],
        "commit, fast claim, finish"
    );
    assert_eq!(proxy.round_trips(), 3);
    running.shutdown().await;
}

/// A process with no relay of its own announces its commits as "plain": a relay of another
/// process, woken by the notification, publishes them at once, not at its next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_a_relay_here_wakes_another_process_relay_at_once() {
    let Some(slice) = Slice::open("outbox_wake").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let (committing, _no_relay) = app(&slice.stores, &seen);
    let other_stores = slice.connect().await;
    let (relaying, relay) = app(&other_stores, &seen);
    let relay = relay
        .poll_interval(Duration::from_secs(3600))
        .expect("valid");
    let running = relay.start(relaying).await.expect("starts");
    let sent = std::time::Instant::now();
    committing.send(order(1, 3)).await.expect("committed");
    catga_core::testkit::within(Duration::from_secs(5), "the other relay woken", || async {
        seen.total() == 3
    })
    .await;
    println!(
        "published by another process's relay {:?} after the commit",
        sent.elapsed()
    );
    assert_eq!(
        seen.by_order.lock().expect("lock").get(&1),
        Some(&vec![0, 1, 2])
    );
    running.shutdown().await;
}

//! The Redis schedule store: the schedule store conformance suite (`catga_core::testkit::stores`),
//! each scenario on a key prefix of its own; one round trip per operation, counted at the wire;
//! the key layout; values the store did not write, reported as typed errors naming the key;
//! a server that goes away, and what a restart keeps; and catga-core's `Scheduler` on two
//! instances electing their leader through `RedisLeaseStore`, firing every message exactly
//! once across a change of leader.

mod common;
#[path = "store_schedule/end_to_end.rs"]
mod end_to_end;
#[path = "store_schedule/garbage.rs"]
mod garbage;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::message::MessageKind;
use catga_core::store::lease::{FencingToken, StaleToken};
use catga_core::store::schedule::{ScheduleStore, Scheduled, is_stale};
use catga_core::testkit::PATIENCE;
use catga_redis::store::{RedisStoreError, RedisStores};
use common::outage::{self, RESPONSE_TIMEOUT};
use common::private_redis::Persistence;
use common::round_trips::RoundTrips;
use common::scoped::{Scoped, scoped};
use common::slice::Slice;
use common::store_error::{assert_invalid_option, assert_too_large, redis_error};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

/// A claim lease no test outlives.
const LONG: Duration = Duration::from_secs(120);

catga_core::testkit::stores::schedule_store_conformance!(|scenario| async move {
    scoped(&format!("schedule:{scenario}"), RedisStores::schedules).await
});

// `Scoped` is its store: each method passes straight through.
impl<S: ScheduleStore> ScheduleStore for Scoped<S> {
    async fn schedule(&self, message: &Scheduled) -> Result<bool, BoxError> {
        self.store.schedule(message).await
    }
    async fn cancel(&self, id: Uuid) -> Result<bool, BoxError> {
        self.store.cancel(id).await
    }
    async fn claim_due(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        self.store.claim_due(limit, token, lease).await
    }
    async fn fired(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        self.store.fired(ids, token).await
    }
    async fn next_due(&self) -> Result<Option<SystemTime>, BoxError> {
        self.store.next_due().await
    }
}

fn token(n: u64) -> FencingToken {
    FencingToken::new(n)
}

/// Now, to the microsecond (what the store keeps).
fn now() -> SystemTime {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros();
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).expect("fits"))
}

/// An event due at `due`.
fn message(due: SystemTime) -> Scheduled {
    let id = Uuid::now_v7();
    Scheduled {
        due,
        envelope: Envelope {
            id,
            name: "tests.reminder_due".into(),
            kind: MessageKind::Event,
            correlation_id: id,
            causation_id: None,
            timestamp_ms: 1_700_000_000_000,
            deadline_ms: None,
            traceparent: None,
            tracestate: None,
            headers: vec![("tenant".into(), "acme".into())],
            format: WireFormat::Json,
            payload: br#"{"n":1}"#.to_vec(),
        },
    }
}

/// `claim_due` with a long lease: the ids taken.
async fn claim(store: &impl ScheduleStore, limit: usize, t: u64) -> Result<Vec<Uuid>, BoxError> {
    let taken = store.claim_due(limit, token(t), LONG).await?;
    Ok(taken.iter().map(Scheduled::id).collect())
}

/// What one operation cost at the wire: (round trips, commands).
fn cost(proxy: &RoundTrips) -> (usize, usize) {
    let cost = (proxy.round_trips(), proxy.commands());
    proxy.reset();
    cost
}

/// Every operation, whatever its outcome (a refused token, a firing of nothing included), is
/// one `EVALSHA`; what cannot be kept is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(slice) = Slice::open_within("schedule_round_trips", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.schedules();
    store.load_scripts().await.expect("load scripts");
    let past = now() - Duration::from_secs(1);
    let (a, b) = (message(past), message(past + Duration::from_micros(1)));

    proxy.reset();
    assert!(store.schedule(&a).await.expect("schedule"));
    assert_eq!(cost(&proxy), (1, 1), "a schedule");
    assert!(!store.schedule(&a).await.expect("schedule"));
    assert_eq!(cost(&proxy), (1, 1), "an id kept already");
    assert!(store.schedule(&b).await.expect("schedule"));
    proxy.reset();
    assert_eq!(store.next_due().await.expect("next_due"), Some(a.due));
    assert_eq!(cost(&proxy), (1, 1), "next_due");
    let taken = store.claim_due(1, token(5), LONG).await.expect("claim");
    assert_eq!(taken, vec![a.clone()]);
    assert_eq!(cost(&proxy), (1, 1), "a claim taking one");
    assert_eq!(claim(&store, 1, 5).await.expect("claim"), vec![b.id()]);
    assert_eq!(
        claim(&store, 1, 5).await.expect("claim"),
        Vec::<Uuid>::new()
    );
    assert_eq!(cost(&proxy), (2, 2), "claims taking one, none");
    assert_eq!(store.next_due().await.expect("next_due"), None);
    assert_eq!(cost(&proxy), (1, 1), "next_due, every message claimed");
    let refused = claim(&store, 10, 4).await.expect_err("token 4 after 5");
    let stale = StaleToken {
        presented: token(4),
        seen: token(5),
    };
    assert_eq!(refused.downcast_ref(), Some(&stale), "{refused}");
    assert_eq!(cost(&proxy), (1, 1), "a refused claim");
    let refused = store
        .fired(&[a.id()], token(4))
        .await
        .expect_err("4 after 5");
    assert!(is_stale(&refused), "{refused}");
    assert_eq!(cost(&proxy), (1, 1), "a refused firing");
    store
        .fired(&[a.id(), b.id()], token(5))
        .await
        .expect("fired");
    assert_eq!(cost(&proxy), (1, 1), "a firing");
    store.fired(&[], token(6)).await.expect("fired");
    assert_eq!(cost(&proxy), (1, 1), "a firing of nothing");
    let refused = claim(&store, 1, 5).await.expect_err("5 after 6");
    assert!(is_stale(&refused), "a firing of nothing raised the floor");
    assert!(!store.cancel(a.id()).await.expect("cancel"));
    assert_eq!(cost(&proxy), (2, 2), "a refused claim, a cancel");
    assert_eq!(proxy.names(), Vec::<String>::new());
    let c = message(now() + LONG);
    store.schedule(&c).await.expect("schedule");
    assert!(store.cancel(c.id()).await.expect("cancel"));
    assert_eq!(proxy.names(), ["EVALSHA", "EVALSHA"]);
    proxy.reset();

    // What cannot be kept is refused before anything is sent.
    let small = store.clone().max_write_bytes(64).expect("a valid limit");
    let error = small.schedule(&message(past)).await.expect_err("too large");
    assert_too_large(redis_error(&error), 64);
    let far = message(SystemTime::UNIX_EPOCH + Duration::from_secs(300 * 366 * 24 * 3600));
    let error = store.schedule(&far).await.expect_err("beyond 2^53 µs");
    assert_invalid_option(redis_error(&error), "due");
    for bytes in [0, 513 * 1024 * 1024] {
        let error = store.clone().max_write_bytes(bytes).expect_err("a limit");
        assert_invalid_option(&error, "max_write_bytes");
    }
    assert_eq!(cost(&proxy), (0, 0), "none of these reached the server");
}

/// Every key starts with `{<prefix>:schedule}`: the message hash holds its due time and its
/// envelope's fields, numbered; the due index scores ids by due µs, the claims by their end in
/// ms; the fence holds the highest token; firing leaves the fence alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_share_the_hash_tag_and_hold_what_the_docs_say() {
    let Some(slice) = Slice::open("schedule_keys").await else {
        return;
    };
    let store = slice.stores.schedules();
    let tag = format!("{{{}:schedule}}", slice.prefix);
    let m = message(now() - Duration::from_secs(1));
    let key = store.message_key(m.id());
    assert_eq!(key, format!("{tag}:msg:{}", m.id()));
    assert_eq!(store.due_key(), format!("{tag}:due"));
    assert_eq!(store.claims_key(), format!("{tag}:claims"));
    assert_eq!(store.fence_key(), format!("{tag}:fence"));

    store.schedule(&m).await.expect("schedule");
    let mut raw = slice.raw().await;
    let due_us = m
        .due
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
        .to_string();
    let fields: HashMap<String, Vec<u8>> = query(&mut raw, &["HGETALL", &key]).await;
    assert_eq!(fields["due"], due_us.as_bytes());
    assert_eq!(fields["fields"], b"9", "{:?}", fields.keys());
    assert_eq!(fields["0.catga-id"], m.id().to_string().as_bytes());
    assert_eq!(fields["7.tenant"], b"acme");
    assert_eq!(fields["8.catga-payload"], m.envelope.payload);
    let due: Vec<(String, String)> = query(
        &mut raw,
        &["ZRANGE", store.due_key(), "0", "-1", "WITHSCORES"],
    )
    .await;
    assert_eq!(due, [(m.id().to_string(), due_us)]);

    claim(&store, 10, 3).await.expect("claim");
    let claims: Vec<(String, f64)> = query(
        &mut raw,
        &["ZRANGE", store.claims_key(), "0", "-1", "WITHSCORES"],
    )
    .await;
    let (secs, micros): (u64, u64) = query(&mut raw, &["TIME"]).await;
    let server_ms = (secs * 1000 + micros / 1000) as f64;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].0, m.id().to_string());
    let left = claims[0].1 - server_ms;
    assert!(
        left > 0.0 && left <= 120_000.0,
        "the claim ends in {left} ms"
    );
    let fence: Option<String> = query(&mut raw, &["GET", store.fence_key()]).await;
    assert_eq!(fence.as_deref(), Some("3"));

    store.fired(&[m.id()], token(3)).await.expect("fired");
    assert_eq!(slice.keys().await, [store.fence_key().to_owned()]);
    assert!(
        slice.keys().await.iter().all(|k| k.starts_with(&tag)),
        "every key under the tag"
    );
}

async fn query<T: redis::FromRedisValue>(raw: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query_async(raw)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Tries `attempt` until the server answers again (every failure meanwhile retryable).
async fn until_up<T>(attempt: impl AsyncFnMut() -> Result<T, BoxError>) {
    outage::until_up(attempt, |e| redis_error(e).is_retryable()).await;
}

/// While the server is down, every operation fails within its response timeout with an error
/// worth trying again; once it is back (with its append-only file), the store works again by
/// itself, with the messages and the fence from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably() {
    let Some((mut server, slice)) =
        outage::private("schedule_server_down", Persistence::AppendOnly).await
    else {
        return;
    };
    let store = slice.stores.schedules();
    let (kept, claimed) = (message(now() - Duration::from_secs(1)), message(now()));
    store.schedule(&claimed).await.expect("schedule");
    assert_eq!(claim(&store, 10, 3).await.expect("claim"), [claimed.id()]);

    server.kill();
    for round in 0..3 {
        // Each fails within its response timeout; the bound only fails the test instead of
        // letting it hang.
        let errors = tokio::time::timeout(PATIENCE, async {
            [
                store.schedule(&kept).await.map(drop),
                store.cancel(kept.id()).await.map(drop),
                store.claim_due(10, token(3), LONG).await.map(drop),
                store.fired(&[claimed.id()], token(3)).await,
                store.next_due().await.map(drop),
            ]
        })
        .await
        .expect("operations on a server that is down fail, they do not hang");
        for error in errors {
            let error = error.expect_err("the server is down");
            let error = redis_error(&error);
            assert!(
                matches!(error, RedisStoreError::Command { .. }) && error.is_retryable(),
                "round {round}: a server that is down is worth trying again: {error:?}"
            );
        }
    }

    server.restart().await;
    until_up(async || store.next_due().await).await;
    assert!(store.schedule(&kept).await.expect("schedule"));
    let refused = claim(&store, 10, 2).await.expect_err("the fence survived");
    assert!(is_stale(&refused), "{refused}");
    assert_eq!(
        claim(&store, 10, 3).await.expect("claim"),
        [kept.id()],
        "claimed survived"
    );
}

/// What the documentation says of a server without data: a restart loses every scheduled
/// message and the fence (a lower token is admitted again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_loses_scheduled_messages_and_the_fence() {
    let Some((mut server, slice)) =
        outage::private("schedule_restart_without_data", Persistence::None).await
    else {
        return;
    };
    let store = slice.stores.schedules();
    store
        .schedule(&message(now() + LONG))
        .await
        .expect("schedule");
    store.fired(&[], token(7)).await.expect("fired");

    server.kill();
    server.restart().await;
    until_up(async || store.next_due().await).await;
    assert_eq!(
        store.next_due().await.expect("next_due"),
        None,
        "the message is lost"
    );
    store
        .fired(&[], token(1))
        .await
        .expect("the floor is lost: token 1 is admitted");
}

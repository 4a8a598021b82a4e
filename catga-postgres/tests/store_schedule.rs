//! The Postgres schedule store: the schedule store conformance suite
//! (`catga_core::testkit::stores`), each scenario on a fresh schema of its own; one round trip
//! per operation, counted on the wire; what Postgres cannot store refused before sending; rows
//! the store did not write refused by the table or reported as typed errors naming the row;
//! and catga-core's `Scheduler` on two instances electing their leader through
//! `PostgresLeaseStore`, firing every message exactly once across a change of leader.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use catga_core::cluster::{Leadership, Scheduler};
use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::message::MessageKind;
use catga_core::prelude::*;
use catga_core::store::lease::{FencingToken, StaleToken};
use catga_core::store::schedule::{ScheduleStore, Scheduled, is_stale};
use catga_core::testkit;
use catga_postgres::{PostgresError, PostgresLeaseStore, PostgresScheduleStore};
use common::Db;
use common::round_trips::RoundTrips;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// A claim lease no test outlives.
const LONG: Duration = Duration::from_secs(120);

/// A store on a schema of its own: the schema is dropped after the store (fields drop in
/// order), when the scenario ends.
struct Scoped<S> {
    store: S,
    _db: Db,
}

/// A store of the scenario's own, on a fresh schema; `None` when Postgres is unreachable (the
/// scenario is skipped, or fails under `CATGA_REQUIRE_SERVICES=1`).
async fn scoped(scenario: &str) -> Option<Scoped<PostgresScheduleStore>> {
    let db = Db::open(&format!("sched_{scenario}")).await?;
    Some(Scoped {
        store: PostgresScheduleStore::new(db.pool.clone(), &db.schema),
        _db: db,
    })
}

catga_core::testkit::stores::schedule_store_conformance!(scoped);

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

/// The `PostgresError` inside a store's boxed error.
fn postgres_error(error: &BoxError) -> &PostgresError {
    error
        .downcast_ref::<PostgresError>()
        .unwrap_or_else(|| panic!("a `PostgresError`, got {error:?}"))
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

/// `claim_due` with a long lease: the ids taken.
async fn claim(store: &impl ScheduleStore, limit: usize, t: u64) -> Result<Vec<Uuid>, BoxError> {
    let taken = store.claim_due(limit, token(t), LONG).await?;
    Ok(taken.iter().map(Scheduled::id).collect())
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

/// Through a proxy that counts round trips, on one connection (so each statement, prepared at
/// its first use, is reused): every operation, whatever its outcome, is one round trip, a
/// refused claim or firing included; what cannot be stored is refused without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(db) = Db::open("sched_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&common::url()).await;
    let pool = common::with_search_path(PgPoolOptions::new().max_connections(1), &db.schema)
        .connect(proxy.url())
        .await
        .expect("connects through the proxy");
    let store = PostgresScheduleStore::new(pool, &db.schema);
    let past = now() - Duration::from_secs(1);

    // Each statement once, so the connection has them all prepared.
    let warm = message(past);
    assert!(store.schedule(&warm).await.expect("schedule"));
    assert_eq!(claim(&store, 10, 1).await.expect("claim"), vec![warm.id()]);
    store.fired(&[warm.id()], token(1)).await.expect("fired");
    assert!(!store.cancel(warm.id()).await.expect("cancel"));
    assert_eq!(store.next_due().await.expect("next_due"), None);
    let warmed = proxy.take();
    assert!(warmed >= 5, "the proxy saw the warm-up ({warmed})");

    let (a, b) = (message(past), message(past + Duration::from_micros(1)));
    assert!(store.schedule(&a).await.expect("schedule"));
    assert_eq!(proxy.take(), 1, "a schedule: one round trip");
    assert!(!store.schedule(&a).await.expect("schedule"));
    assert_eq!(proxy.take(), 1, "an id kept already: one round trip");
    assert!(store.schedule(&b).await.expect("schedule"));
    proxy.take();
    assert_eq!(store.next_due().await.expect("next_due"), Some(a.due));
    assert_eq!(proxy.take(), 1, "next_due: one round trip");
    let taken = store.claim_due(1, token(5), LONG).await.expect("claim");
    assert_eq!(taken, vec![a.clone()]);
    assert_eq!(proxy.take(), 1, "a claim: one round trip");
    assert_eq!(claim(&store, 1, 5).await.expect("claim"), vec![b.id()]);
    assert_eq!(
        claim(&store, 1, 5).await.expect("claim"),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        proxy.take(),
        2,
        "claims taking one, none: one round trip each"
    );
    let refused = claim(&store, 10, 4).await.expect_err("token 4 after 5");
    let stale = StaleToken {
        presented: token(4),
        seen: token(5),
    };
    assert_eq!(refused.downcast_ref(), Some(&stale), "{refused}");
    assert_eq!(proxy.take(), 1, "a refused claim: one round trip");
    let refused = store
        .fired(&[a.id()], token(4))
        .await
        .expect_err("4 after 5");
    assert!(is_stale(&refused), "{refused}");
    assert_eq!(proxy.take(), 1, "a refused firing: one round trip");
    store
        .fired(&[a.id(), b.id()], token(5))
        .await
        .expect("fired");
    assert_eq!(proxy.take(), 1, "a firing: one round trip");
    store.fired(&[], token(6)).await.expect("fired");
    assert_eq!(proxy.take(), 1, "a firing of nothing: one round trip");
    assert!(is_stale(&claim(&store, 1, 5).await.expect_err("5 after 6")));
    assert!(!store.cancel(a.id()).await.expect("cancel"));
    assert_eq!(
        proxy.take(),
        2,
        "a refused claim, a cancel: one round trip each"
    );

    // What cannot be stored is refused before anything is sent.
    let (mut nul, mut far) = (message(past), message(past));
    nul.envelope.headers = vec![("te\0nant".into(), "acme".into())];
    far.envelope.timestamp_ms = u64::MAX;
    for refused in [
        store.schedule(&nul).await.map(|_| ()),
        store.schedule(&far).await.map(|_| ()),
        claim(&store, 1, u64::MAX).await.map(|_| ()),
    ] {
        let error = refused.expect_err("a NUL, a timestamp or a token beyond a bigint");
        assert!(matches!(
            postgres_error(&error),
            PostgresError::Unrepresentable { .. }
        ));
    }
    let small = PostgresScheduleStore::new(db.pool.clone(), &db.schema)
        .max_write_bytes(64)
        .expect("a valid limit");
    let mut large = message(past);
    large.envelope.payload = vec![7; 65];
    let error = small.schedule(&large).await.expect_err("over the limit");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::TooLarge { bytes, limit: 64, .. } if *bytes > 65
    ));
    assert!(
        PostgresScheduleStore::new(db.pool.clone(), &db.schema)
            .max_write_bytes(0)
            .is_err()
    );
    assert_eq!(proxy.take(), 0, "none of these reached the database");
}

/// Six claimers, each on a pool of its own (as six processes), claim and fire 300 due
/// messages at once, each claim and firing with a token greater than any drawn before it:
/// whichever statement carries a token lower than one the fence already admitted is refused
/// with the floor it found, and no message is ever taken twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_with_rising_tokens_take_each_message_once() {
    let Some(db) = Db::open("sched_rising").await else {
        return;
    };
    let setup = PostgresScheduleStore::new(db.pool.clone(), &db.schema);
    let past = now() - Duration::from_secs(1);
    for _ in 0..300 {
        assert!(setup.schedule(&message(past)).await.expect("schedule"));
    }
    let tokens = Arc::new(AtomicU64::new(0));
    let taken = Arc::new(Mutex::new(HashSet::new()));
    let mut claimers = Vec::new();
    for _ in 0..6 {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&common::url())
            .await
            .expect("a pool of the claimer's own");
        let store = PostgresScheduleStore::new(pool, &db.schema);
        let (tokens, taken) = (Arc::clone(&tokens), Arc::clone(&taken));
        claimers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + testkit::PATIENCE;
            while taken.lock().unwrap_or_else(PoisonError::into_inner).len() < 300 {
                assert!(tokio::time::Instant::now() < deadline, "claims stalled");
                let t = token(tokens.fetch_add(1, Ordering::SeqCst) + 1);
                let batch = match store.claim_due(7, t, LONG).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        let stale = error
                            .downcast_ref::<StaleToken>()
                            .unwrap_or_else(|| panic!("only a stale token fails: {error}"));
                        assert!(stale.seen > stale.presented, "{stale}");
                        continue;
                    }
                };
                let ids: Vec<Uuid> = batch.iter().map(Scheduled::id).collect();
                {
                    let mut taken = taken.lock().unwrap_or_else(PoisonError::into_inner);
                    for id in &ids {
                        assert!(taken.insert(*id), "{id} was claimed twice");
                    }
                }
                let t = token(tokens.fetch_add(1, Ordering::SeqCst) + 1);
                if let Err(error) = store.fired(&ids, t).await {
                    assert!(is_stale(&error), "only a stale token fails: {error}");
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.expect("a claimer panicked");
    }
    assert_eq!(
        taken.lock().unwrap_or_else(PoisonError::into_inner).len(),
        300
    );
    let floor = db.count("SELECT token FROM {schema}.schedule_fence").await;
    let drawn = i64::try_from(tokens.load(Ordering::SeqCst)).expect("a bigint");
    assert!(
        floor <= drawn && floor > 0,
        "the floor {floor} is a token drawn (of {drawn})"
    );
    // Whatever was refused, the floor only grew: a token below it is refused now.
    let error = setup
        .claim_due(1, token(u64::try_from(floor - 1).expect("positive")), LONG)
        .await
        .expect_err("below the floor");
    assert_eq!(
        error.downcast_ref::<StaleToken>().map(|s| s.seen),
        Some(token(u64::try_from(floor).expect("positive")))
    );
}

/// The `sqlx` error of a statement the table refused, and the constraint it names.
async fn refused(db: &Db, statement: &str) -> String {
    let error = sqlx::raw_sql(sqlx::AssertSqlSafe(
        statement.replace("{schema}", db.schema.as_str()),
    ))
    .execute(&db.pool)
    .await
    .expect_err("the table refuses a row the store never writes");
    error
        .as_database_error()
        .and_then(|e| e.constraint())
        .unwrap_or_else(|| panic!("a constraint violation, got {error:?}"))
        .to_owned()
}

/// SQL writing by hand the row `id`, due `ago` seconds ago, as the store would write it but
/// for `column = value`; one implicit transaction, so a refused update leaves no row.
fn hand_written(id: Uuid, ago: usize, column: &str, value: &str) -> String {
    format!(
        "INSERT INTO {{schema}}.scheduled_messages (id, due, name, kind, correlation_id, \
           timestamp_ms, headers, format, payload) \
         VALUES ('{id}', now() - interval '{ago} seconds', 'tests.reminder_due', 'event', \
           '{id}', 1700000000000, '[[\"tenant\", \"acme\"]]', 'application/json', '\\x7b7d'); \
         UPDATE {{schema}}.scheduled_messages SET {column} = {value} WHERE id = '{id}'"
    )
}

/// Rows the store never writes: the tables refuse an infinite due time, an unknown kind or
/// format, headers that are not pairs of strings, negative times, half a claim, a second fence
/// row. With the constraints dropped, a claim that takes such a row fails with a
/// `MalformedRow` naming it, never a panic, and the next claim goes on past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_store_did_not_write_are_refused_or_reported_by_id() {
    let Some(db) = Db::open("sched_garbage").await else {
        return;
    };
    let store = PostgresScheduleStore::new(db.pool.clone(), &db.schema);
    // (column, value, the constraint refusing it, what the claim reports), earliest first.
    let garbage = [
        ("due", "'-infinity'", "due_finite", "due at infinity"),
        ("kind", "'Event'", "kind", "unknown kind `Event`"),
        (
            "format",
            "'text/xml'",
            "format",
            "unknown format `text/xml`",
        ),
        (
            "headers",
            r#"'{"tenant": "acme"}'"#,
            "headers",
            "headers are not",
        ),
        ("headers", r#"'[["tenant"]]'"#, "headers", "headers are not"),
        (
            "headers",
            r#"'[["tenant", 7]]'"#,
            "headers",
            "headers are not",
        ),
        ("timestamp_ms", "-1", "times", "negative timestamp -1"),
        ("deadline_ms", "-5", "times", "negative deadline -5"),
        ("claimed_until", "now()", "claim", ""),
        ("claimed_by", "3", "claim", ""),
    ];
    for (column, value, constraint, _) in garbage {
        let sql = hand_written(Uuid::now_v7(), 1, column, value);
        let refused_by = refused(&db, &sql).await;
        assert_eq!(refused_by, format!("scheduled_messages_{constraint}"));
    }
    let second_fence = "INSERT INTO {schema}.schedule_fence (id, token) VALUES (false, 1)";
    assert_eq!(refused(&db, second_fence).await, "schedule_fence_one_row");

    // A table whose constraints were dropped (edited by hand, or made before them).
    for constraint in ["due_finite", "kind", "format", "headers", "times"] {
        db.execute(&format!(
            "ALTER TABLE {{schema}}.scheduled_messages \
             DROP CONSTRAINT scheduled_messages_{constraint}"
        ))
        .await;
    }
    db.execute("ALTER TABLE {schema}.scheduled_messages ALTER COLUMN name DROP NOT NULL")
        .await;
    let garbage: Vec<_> = garbage[..8]
        .iter()
        .map(|(column, value, _, reason)| (*column, *value, *reason))
        .chain([("name", "NULL", "unexpected null")])
        .enumerate()
        .map(|(i, (column, value, reason))| (Uuid::now_v7(), 100 - i, column, value, reason))
        .collect();
    for (id, ago, column, value, _) in &garbage {
        db.execute(&hand_written(*id, *ago, column, value)).await;
    }
    let good = message(now() - Duration::from_secs(1));
    assert!(store.schedule(&good).await.expect("schedule"));
    for (id, _, _, _, reason) in garbage {
        let error = claim(&store, 1, 1)
            .await
            .expect_err("a row the store did not write");
        match postgres_error(&error) {
            PostgresError::MalformedRow {
                table: "scheduled_messages",
                reason: why,
            } => {
                assert!(why.contains(&id.to_string()), "names the row {id}: {why}");
                assert!(why.contains(reason), "says why ({reason}): {why}");
            }
            other => panic!("a malformed row, got {other:?}"),
        }
    }
    assert_eq!(
        store.claim_due(10, token(1), LONG).await.expect("claim"),
        vec![good],
        "the store's own message is claimed past them"
    );
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReminderDue {
    pub n: u32,
}

/// How often each reminder was handled.
#[derive(Default)]
pub struct Deliveries(Mutex<HashMap<u32, u32>>);

impl Deliveries {
    fn counts(&self) -> HashMap<u32, u32> {
        self.0.lock().expect("not poisoned").clone()
    }
}

pub mod reminders {
    use super::*;

    #[handler]
    impl Deliveries {
        async fn reminder(&self, event: &ReminderDue) -> Result<(), BoxError> {
            *self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(event.n)
                .or_default() += 1;
            Ok(())
        }
    }
}

/// Two schedulers of one application share one schedule store, each running on an election of
/// its own through the Postgres lease store with a 1 s TTL. 200 reminders are
/// scheduled 0 to 1 s ahead; midway the leader's election stops (it releases the lease, and the
/// other instance leads with a greater token): every reminder is handled exactly once, and the
/// store is left empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fire_every_message_exactly_once_across_a_change_of_leader() {
    let Some(db) = Db::open("sched_end_to_end").await else {
        return;
    };
    let deliveries = Arc::new(Deliveries::default());
    let app = Catga::builder()
        .state_arc(Arc::clone(&deliveries))
        .handlers(|h| h.is_in("reminders"))
        .build()
        .expect("builds");
    let store = Arc::new(PostgresScheduleStore::new(db.pool.clone(), &db.schema));
    let mut instances = Vec::new();
    for holder in ["a", "b"] {
        let scheduler = Scheduler::sharing(app.clone(), Arc::clone(&store))
            .poll_interval(Duration::from_millis(20))
            .claim_lease(Duration::from_secs(2))
            .batch(16);
        let leases = PostgresLeaseStore::new(db.pool.clone(), &db.schema);
        let election = Leadership::new(leases, "scheduler")
            .holder(holder)
            .ttl(Duration::from_secs(1))
            .start();
        let running = scheduler.run(&election);
        instances.push((scheduler, election, running));
    }
    for n in 0..200u32 {
        let scheduler = &instances[usize::try_from(n % 2).expect("0 or 1")].0;
        scheduler
            .publish_after(ReminderDue { n }, Duration::from_millis(u64::from(n) * 5))
            .await
            .expect("scheduled");
    }

    // Midway through, stop whichever leads (once one does, and some reminders went out).
    testkit::eventually("a leader handling reminders", || async {
        instances.iter().any(|(_, e, _)| e.leader().is_some()) && !deliveries.counts().is_empty()
    })
    .await;
    let (first, first_token) = instances
        .iter()
        .enumerate()
        .find_map(|(i, (_, e, _))| e.leader().map(|l| (i, l.token())))
        .expect("one leads");
    let handled_before = deliveries.counts().len();
    instances[first].1.stop().await;
    let other = &instances[1 - first].1;
    testkit::eventually("the other instance leads", || async {
        other.leader().is_some()
    })
    .await;
    let second_token = other.leader().expect("leads").token();
    assert!(
        second_token > first_token,
        "a newer leader, a greater token"
    );

    testkit::eventually("all 200 reminders handled, the store empty", || async {
        deliveries.counts().len() == 200
            && db
                .count("SELECT count(*) FROM {schema}.scheduled_messages")
                .await
                == 0
    })
    .await;
    let counts = deliveries.counts();
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert!(
        handled_before < 200,
        "the leader was stopped before all were handled ({handled_before})"
    );
    assert_eq!(
        db.count("SELECT token FROM {schema}.schedule_fence").await,
        i64::try_from(second_token.get()).expect("a bigint"),
        "the fence was raised to the second leader's token"
    );
    for (_, election, running) in instances {
        running.stop().await;
        election.stop().await;
    }
}

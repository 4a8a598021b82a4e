//! The Postgres lease store: the lease store conformance suite (`catga_core::testkit::stores`),
//! each scenario on a fresh schema of its own; one round trip per operation, counted on the
//! wire; rows the store did not write refused by the table or reported as typed errors; and
//! catga-core's `Leadership` electing one of three instances on it, and handing over when the
//! leader stops.

mod common;

use std::time::Duration;

use catga_core::cluster::{Elected, Leadership, Role};
use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use catga_core::testkit::eventually;
use catga_postgres::{PostgresError, PostgresLeaseStore};
use common::Db;
use common::round_trips::RoundTrips;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A TTL no test outlives.
const LONG: Duration = Duration::from_secs(120);

/// A store on a schema of its own: the schema is dropped after the store (fields drop in
/// order), when the scenario ends.
struct Scoped<S> {
    store: S,
    _db: Db,
}

/// A store of the scenario's own, on a fresh schema; `None` when Postgres is unreachable (the
/// scenario is skipped, or fails under `CATGA_REQUIRE_SERVICES=1`).
async fn scoped(scenario: &str) -> Option<Scoped<PostgresLeaseStore>> {
    let db = Db::open(&format!("lease_{scenario}")).await?;
    Some(Scoped {
        store: PostgresLeaseStore::new(db.pool.clone(), &db.schema),
        _db: db,
    })
}

catga_core::testkit::stores::lease_store_conformance!(scoped);

// `Scoped` is its store: each method passes straight through.
impl<S: LeaseStore> LeaseStore for Scoped<S> {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        self.store.acquire(name, holder, ttl).await
    }
    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        self.store.renew(grant, ttl).await
    }
    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        self.store.release(grant).await
    }
    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        self.store.observe(name).await
    }
}

/// The `PostgresError` inside a store's boxed error.
fn postgres_error(error: &BoxError) -> &PostgresError {
    error
        .downcast_ref::<PostgresError>()
        .unwrap_or_else(|| panic!("a `PostgresError`, got {error:?}"))
}

/// A second pool on the same database, as another process of the application would have.
async fn other_process() -> PgPool {
    PgPool::connect(&common::url())
        .await
        .expect("a second pool on the test database")
}

/// Through a proxy that counts round trips, on one connection (so each statement, prepared at
/// its first use, is reused): every operation, granted or refused, is one round trip; one on a
/// grant or name the store cannot have made is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(db) = Db::open("lease_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&common::url()).await;
    let pool = common::with_search_path(PgPoolOptions::new().max_connections(1), &db.schema)
        .connect(proxy.url())
        .await
        .expect("connects through the proxy");
    let store = PostgresLeaseStore::new(pool, &db.schema);

    // Each statement once, so the connection has them all prepared.
    let warm = store
        .acquire("warm", "node-a", LONG)
        .await
        .expect("acquire")
        .expect("vacant");
    assert!(store.renew(&warm, LONG).await.expect("renew"));
    assert!(matches!(
        store.observe("warm").await.expect("observe"),
        LeaseState::Held { .. }
    ));
    assert!(store.release(&warm).await.expect("release"));
    let warmed = proxy.take();
    assert!(warmed >= 4, "the proxy saw the warm-up ({warmed})");

    let name = "scheduler";
    let grant = store
        .acquire(name, "node-a", LONG)
        .await
        .expect("acquire")
        .expect("vacant");
    assert_eq!(proxy.take(), 1, "a granted acquire: one round trip");
    assert_eq!(
        store.acquire(name, "node-b", LONG).await.expect("acquire"),
        None
    );
    assert_eq!(proxy.take(), 1, "a refused acquire: one round trip");
    assert!(store.renew(&grant, LONG).await.expect("renew"));
    assert_eq!(proxy.take(), 1, "a renewal: one round trip");
    assert!(matches!(
        store.observe(name).await.expect("observe"),
        LeaseState::Held { token, .. } if token == grant.token
    ));
    assert_eq!(proxy.take(), 1, "observing a held lease: one round trip");
    assert!(store.release(&grant).await.expect("release"));
    assert_eq!(proxy.take(), 1, "a release: one round trip");
    assert!(!store.renew(&grant, LONG).await.expect("renew"));
    assert_eq!(proxy.take(), 1, "renewing a lost grant: one round trip");
    assert!(!store.release(&grant).await.expect("release"));
    assert_eq!(proxy.take(), 1, "releasing a lost grant: one round trip");
    assert_eq!(
        store.observe(name).await.expect("observe"),
        LeaseState::Vacant
    );
    assert_eq!(proxy.take(), 1, "observing a vacant lease: one round trip");

    // What this store cannot have granted is answered without asking the database.
    let error = store
        .acquire("sched\0uler", "node-a", LONG)
        .await
        .expect_err("a NUL in a name cannot be stored");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Unrepresentable { .. }
    ));
    let error = store
        .acquire(name, "node\0a", LONG)
        .await
        .expect_err("a NUL in a holder cannot be stored");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Unrepresentable { .. }
    ));
    let beyond = Grant {
        token: FencingToken::new(u64::MAX),
        ..grant.clone()
    };
    assert!(!store.renew(&beyond, LONG).await.expect("renew"));
    assert!(!store.release(&beyond).await.expect("release"));
    let nul = Grant {
        name: "sched\0uler".to_owned(),
        ..grant
    };
    assert!(!store.renew(&nul, LONG).await.expect("renew"));
    assert_eq!(
        store.observe(&nul.name).await.expect("observe"),
        LeaseState::Vacant
    );
    assert_eq!(proxy.take(), 0, "none of these reached the database");
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

/// Rows the store never writes: the table refuses a token below 1, a holder without an expiry
/// (or an expiry without a holder) and an infinite expiry. What it can hold yet the store would
/// not have written gets a typed error, never a panic: a token at `i64::MAX` cannot grow (the
/// acquire fails and changes nothing); with the constraints dropped, a negative token is a
/// malformed row, a half-released row counts as vacant, and an infinite expiry cannot be
/// observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_store_did_not_write_are_refused_or_reported() {
    let Some(db) = Db::open("lease_garbage").await else {
        return;
    };
    let store = PostgresLeaseStore::new(db.pool.clone(), &db.schema);
    let insert = "INSERT INTO {schema}.leases (name, holder, token, expires_at) VALUES";
    for (row, constraint) in [
        (
            "('a', 'node-a', -5, now() + interval '1 minute')",
            "leases_token_positive",
        ),
        ("('a', NULL, 0, NULL)", "leases_token_positive"),
        (
            "('a', NULL, 3, now() + interval '1 minute')",
            "leases_held_until",
        ),
        ("('a', 'node-a', 3, NULL)", "leases_held_until"),
        ("('a', 'node-a', 3, 'infinity')", "leases_expiry_finite"),
    ] {
        assert_eq!(refused(&db, &format!("{insert} {row}")).await, constraint);
    }

    // The last token there is: the next grant cannot have a greater one.
    db.execute(&format!("{insert} ('last', NULL, {}, NULL)", i64::MAX))
        .await;
    assert_eq!(
        store.observe("last").await.expect("observe"),
        LeaseState::Vacant
    );
    let error = store
        .acquire("last", "node-a", LONG)
        .await
        .expect_err("no token beyond i64::MAX");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Database {
            operation: "lease store: acquire",
            ..
        }
    ));
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM {{schema}}.leases WHERE name = 'last' AND holder IS NULL AND token = {}",
            i64::MAX
        ))
        .await,
        1,
        "the failed acquire changed nothing"
    );

    // A table whose constraints were dropped (edited by hand, or made before them).
    db.execute(
        "ALTER TABLE {schema}.leases DROP CONSTRAINT leases_token_positive, \
         DROP CONSTRAINT leases_held_until, DROP CONSTRAINT leases_expiry_finite",
    )
    .await;
    db.execute(&format!(
        "{insert} ('negative', 'node-a', -5, now() + interval '1 minute'), \
                  ('negative-vacant', NULL, -5, NULL), \
                  ('half', NULL, 3, now() + interval '1 minute'), \
                  ('half-held', 'node-a', 3, NULL), \
                  ('forever', 'node-a', 3, 'infinity')"
    ))
    .await;
    let error = store
        .observe("negative")
        .await
        .expect_err("a negative token is malformed");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::MalformedRow {
            table: "leases",
            ..
        }
    ));
    assert_eq!(
        store.observe("negative-vacant").await.expect("observe"),
        LeaseState::Vacant
    );
    assert_eq!(
        store
            .acquire("negative", "node-b", LONG)
            .await
            .expect("acquire"),
        None,
        "held until its expiry, whatever its token"
    );
    let error = store
        .acquire("negative-vacant", "node-b", LONG)
        .await
        .expect_err("the grant's token (-4) is malformed");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::MalformedRow {
            table: "leases",
            ..
        }
    ));
    // Held only with both a holder and an expiry: by every operation alike.
    for half in ["half", "half-held"] {
        assert_eq!(
            store.observe(half).await.expect("observe"),
            LeaseState::Vacant
        );
        let grant = store
            .acquire(half, "node-b", LONG)
            .await
            .expect("acquire")
            .unwrap_or_else(|| panic!("`{half}` counts as vacant, so it is granted"));
        assert_eq!(grant.token, FencingToken::new(4), "the token still grows");
    }
    let error = store
        .observe("forever")
        .await
        .expect_err("an infinite expiry has no time left to tell");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Database {
            operation: "lease store: observe",
            ..
        }
    ));
    assert_eq!(
        store
            .acquire("forever", "node-b", LONG)
            .await
            .expect("acquire"),
        None,
        "held for ever"
    );
}

/// The one of `elections` that leads, once exactly one does (and it is not `not`), with its
/// token.
async fn leader_among(elections: &[Elected], not: Option<usize>) -> (usize, FencingToken) {
    let leading = || {
        let leaders: Vec<_> = elections
            .iter()
            .enumerate()
            .filter_map(|(i, election)| election.leader().map(|leader| (i, leader.token())))
            .collect();
        match leaders[..] {
            [(i, token)] if Some(i) != not => Some((i, token)),
            _ => None,
        }
    };
    eventually("exactly one election leads", || async {
        leading().is_some()
    })
    .await;
    leading().expect("a leader (it just led)")
}

/// Three instances (three pools, as three processes) elect one leader through the Postgres
/// store with a 1 s TTL; the store names it with its token, and the other two follow, having
/// seen it. When the leader stops, it releases the lease and one of the others leads with a
/// greater token; when all stop, the lease is vacant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_elects_one_of_three_instances_and_hands_over_on_stop() {
    let Some(db) = Db::open("lease_leadership").await else {
        return;
    };
    let mut elections = Vec::new();
    for i in 0..3 {
        let store = PostgresLeaseStore::new(other_process().await, &db.schema);
        elections.push(
            Leadership::new(store, "scheduler")
                .holder(format!("node-{i}"))
                .ttl(Duration::from_secs(1))
                .start(),
        );
    }
    let observer = PostgresLeaseStore::new(db.pool.clone(), &db.schema);

    let (first, first_token) = leader_among(&elections, None).await;
    match observer.observe("scheduler").await.expect("observe") {
        LeaseState::Held { holder, token, .. } => {
            assert_eq!(holder, elections[first].holder());
            assert_eq!(token, first_token);
        }
        LeaseState::Vacant => panic!("node-{first} leads, yet the lease is vacant"),
    }
    eventually("the other two follow the leader they saw", || async {
        elections.iter().enumerate().all(|(i, election)| {
            i == first || election.role() == Role::Follower { leader_seen: true }
        })
    })
    .await;

    elections[first].stop().await;
    assert_eq!(elections[first].role(), Role::Stopped);
    assert!(elections[first].leader().is_none());
    let (second, second_token) = leader_among(&elections, Some(first)).await;
    assert!(
        second_token > first_token,
        "the next leader's token {second_token} is greater than {first_token}"
    );
    match observer.observe("scheduler").await.expect("observe") {
        LeaseState::Held { holder, token, .. } => {
            assert_eq!(holder, elections[second].holder());
            assert_eq!(token, second_token);
        }
        LeaseState::Vacant => panic!("node-{second} leads, yet the lease is vacant"),
    }

    for election in &elections {
        election.stop().await;
    }
    assert_eq!(
        observer.observe("scheduler").await.expect("observe"),
        LeaseState::Vacant,
        "the last leader released the lease as it stopped"
    );
}

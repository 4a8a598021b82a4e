//! What the Postgres event store does beyond the conformance suite: global positions follow
//! commit order (a projection that resumes after the last position it read misses nothing,
//! even when transactions commit in another order than they appended), a conflict inside a
//! transaction leaves it usable, and bad input gets typed errors.

mod common;

use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use catga_postgres::{PostgresError, PostgresEventStore};
use common::Db;

fn event(n: u32) -> NewEvent {
    NewEvent::new("Counted", format!("{{\"n\":{n}}}").into_bytes())
}

/// The streams and versions of `read`, in order.
fn streams(read: &[(i64, StoredEvent)]) -> Vec<(String, u64)> {
    read.iter()
        .map(|(_, e)| (e.stream.clone(), e.version))
        .collect()
}

/// Transaction A appends first but commits last. While it is open, a reader sees B's event
/// only; after A commits, reading after B's position gives A's event, whose position is
/// greater. With positions drawn at insert (a plain bigserial), A's would be smaller than B's
/// and that read would miss it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_follow_commit_order_so_a_projection_misses_nothing() {
    let Some(db) = Db::open("events_commit_order").await else {
        return;
    };
    let store = PostgresEventStore::new(db.pool.clone(), &db.schema);

    let mut a = db.pool.begin().await.expect("begin A");
    let first = event(1);
    assert_eq!(
        store
            .append_in(&mut a, "a", 0, vec![first.clone()])
            .await
            .expect("A appends"),
        1
    );
    let mut b = db.pool.begin().await.expect("begin B");
    store
        .append_in(&mut b, "b", 0, vec![event(2), event(3)])
        .await
        .expect("B appends");
    assert_eq!(
        store.read_all(0, 100).await.expect("read all"),
        [],
        "nothing committed yet"
    );
    b.commit().await.expect("commit B");

    let seen = store.read_all(0, 100).await.expect("read all");
    assert_eq!(streams(&seen), [("b".to_owned(), 1), ("b".to_owned(), 2)]);
    let checkpoint = seen[1].0;
    assert!(seen[0].0 < checkpoint, "one transaction's events in order");

    a.commit().await.expect("commit A");
    let next = store.read_all(checkpoint, 100).await.expect("read all");
    assert_eq!(
        streams(&next),
        [("a".to_owned(), 1)],
        "the event A appended first and committed last comes after B's"
    );
    assert!(next[0].0 > checkpoint);
    let (_, read) = &next[0];
    assert_eq!(
        (read.event_id, &read.event_type, &read.payload),
        (first.event_id, &first.event_type, &first.payload)
    );
    assert_eq!(store.read_all(next[0].0, 100).await.expect("read all"), []);
}

/// `read_all` pages through every stream by position, `limit` at a time, and a rolled-back
/// append leaves no event and no position behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_pages_through_every_stream_and_skips_rolled_back_appends() {
    let Some(db) = Db::open("events_read_all").await else {
        return;
    };
    let store = PostgresEventStore::new(db.pool.clone(), &db.schema);
    store
        .append("x", 0, vec![event(1), event(2)])
        .await
        .expect("append");
    let mut rolled_back = db.pool.begin().await.expect("begin");
    store
        .append_in(&mut rolled_back, "y", 0, vec![event(9)])
        .await
        .expect("append");
    rolled_back.rollback().await.expect("rollback");
    store.append("z", 0, vec![event(3)]).await.expect("append");
    store.append("x", 2, vec![event(4)]).await.expect("append");

    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 2).await.expect("read all");
        let Some((last, _)) = page.last() else { break };
        after = *last;
        pages.push(streams(&page));
    }
    let pair = |s: &str, v| (s.to_owned(), v);
    assert_eq!(
        pages,
        [
            vec![pair("x", 1), pair("x", 2)],
            vec![pair("z", 1), pair("x", 3)]
        ],
        "pages of 2 in commit order; the rolled-back append of `y` is nowhere"
    );
    assert_eq!(store.load("y", 0).await.expect("load"), []);
    assert_eq!(
        store.append("y", 0, vec![event(5)]).await.expect("append"),
        1
    );
}

/// A conflict inside a transaction is an answer, not an error of the transaction: the writer
/// reloads and appends at the right version in the same transaction, which then commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_inside_a_transaction_leaves_it_usable() {
    let Some(db) = Db::open("events_tx_conflict").await else {
        return;
    };
    let store = PostgresEventStore::new(db.pool.clone(), &db.schema);
    store
        .append("acct", 0, vec![event(1)])
        .await
        .expect("append");

    let mut tx = db.pool.begin().await.expect("begin");
    let stale = store.append_in(&mut tx, "acct", 0, vec![event(2)]).await;
    assert!(
        matches!(
            stale,
            Err(EventStoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ),
        "got {stale:?}"
    );
    let stale = store.append_in(&mut tx, "new", 4, vec![event(2)]).await;
    assert!(matches!(
        stale,
        Err(EventStoreError::Conflict { actual: 0, .. })
    ));
    assert_eq!(
        store
            .append_in(&mut tx, "acct", 1, vec![event(3)])
            .await
            .expect("append at 1"),
        2
    );
    tx.commit()
        .await
        .expect("the transaction is still usable and commits");
    let versions: Vec<u64> = store
        .load("acct", 0)
        .await
        .expect("load")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(store.load("new", 0).await.expect("load"), []);
}

/// Oversized appends, names Postgres cannot hold and versions no stream can be at are refused
/// with typed errors, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_bad_input_gets_typed_errors() {
    let Some(db) = Db::open("events_bad_input").await else {
        return;
    };
    let store = PostgresEventStore::new(db.pool.clone(), &db.schema)
        .max_write_bytes(1024)
        .expect("a valid limit");
    let postgres_error = |result: Result<u64, EventStoreError>| match result {
        Err(EventStoreError::Backend { source, .. }) => match source.downcast::<PostgresError>() {
            Ok(error) => *error,
            Err(other) => panic!("a `PostgresError`, got {other:?}"),
        },
        other => panic!("a backend error, got {other:?}"),
    };
    let big = vec![event(1), NewEvent::new("Big", vec![0; 1024])];
    assert!(matches!(
        postgres_error(store.append("s", 0, big).await),
        PostgresError::TooLarge { limit: 1024, .. }
    ));
    assert!(matches!(
        postgres_error(store.append("s\0", 0, vec![event(1)]).await),
        PostgresError::Unrepresentable { .. }
    ));
    assert!(matches!(
        postgres_error(
            store
                .append("s", 0, vec![NewEvent::new("T\0", vec![])])
                .await
        ),
        PostgresError::Unrepresentable { .. }
    ));
    assert!(matches!(
        store.append("s", u64::MAX, vec![event(1)]).await,
        Err(EventStoreError::Conflict { actual: 0, .. })
    ));
    assert_eq!(store.load("s", u64::MAX).await.expect("load"), []);
    assert_eq!(store.read_all(0, 10).await.expect("read all"), []);
    assert!(
        PostgresEventStore::new(db.pool.clone(), &db.schema)
            .max_write_bytes(0)
            .is_err()
    );
}

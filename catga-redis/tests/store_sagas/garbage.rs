//! Garbage in the saga store's keys, written with a raw client: every operation returns a
//! typed error, never panics, and a refused save writes nothing.

use catga_core::saga::SagaStatus;
use catga_core::store::saga::SagaStore;
use uuid::Uuid;

use crate::{Slice, assert_malformed, raw, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_keys_is_a_typed_error_never_a_panic() {
    let Some(slice) = Slice::open("sagas_garbage").await else {
        return;
    };
    let store = slice.sagas().await;
    let mut conn = slice.raw().await;
    let running = record("checkout", SagaStatus::Running);
    let key = store.instance_key(running.id);
    let index = store.unfinished_key("checkout");

    // An instance's key holding a string: every operation on it.
    raw(&mut conn, &["SET", &key, "x"]).await;
    assert_malformed(&store.save(&running, 0).await.unwrap_err(), "save");
    assert_malformed(&store.load(running.id).await.unwrap_err(), "load");
    assert_malformed(&store.delete(running.id).await.unwrap_err(), "delete");
    raw(&mut conn, &["DEL", &key]).await;

    // A hash with fields missing or unreadable.
    let fields = [
        ("saga", "checkout"),
        ("status", "Running"),
        ("data", "d"),
        ("state", "{}"),
        ("version", "1"),
        ("updated_at", "1700000000000000"),
    ];
    for (broken, bad) in [
        (0, None),
        (1, Some("Sleeping")),
        (2, None),
        (4, Some("-1")),
        (4, None),
        (5, Some("noon")),
    ] {
        raw(&mut conn, &["DEL", &key]).await;
        for (i, (field, value)) in fields.iter().enumerate() {
            match (i == broken, bad) {
                (false, _) => raw(&mut conn, &["HSET", &key, field, value]).await,
                (true, Some(bad)) => raw(&mut conn, &["HSET", &key, field, bad]).await,
                (true, None) => {}
            }
        }
        let what = format!("field `{}` {bad:?}", fields[broken].0);
        assert_malformed(&store.load(running.id).await.unwrap_err(), &what);
        if fields[broken].0 == "version" {
            assert_malformed(&store.save(&running, 1).await.unwrap_err(), &what);
        }
        // The index lists it: so does `unfinished`, which refuses it too.
        raw(&mut conn, &["ZADD", &index, "1", &running.id.to_string()]).await;
        assert_malformed(
            &store.unfinished("checkout", None, 10).await.unwrap_err(),
            &what,
        );
        raw(&mut conn, &["DEL", &index]).await;
    }
    raw(&mut conn, &["DEL", &key]).await;

    // The index: of another type, naming no UUID, an instance not stored, a finished one.
    raw(&mut conn, &["SET", &index, "x"]).await;
    assert_malformed(
        &store.save(&running, 0).await.unwrap_err(),
        "an index of another type",
    );
    assert_eq!(
        store.load(running.id).await.unwrap(),
        None,
        "a refused save wrote nothing"
    );
    assert_malformed(
        &store.unfinished("checkout", None, 10).await.unwrap_err(),
        "a string",
    );
    raw(&mut conn, &["DEL", &index]).await;
    raw(&mut conn, &["ZADD", &index, "1", "not-a-uuid"]).await;
    assert_malformed(
        &store.unfinished("checkout", None, 10).await.unwrap_err(),
        "no uuid",
    );
    raw(&mut conn, &["DEL", &index]).await;
    raw(
        &mut conn,
        &["ZADD", &index, "1", &Uuid::now_v7().to_string()],
    )
    .await;
    assert_malformed(
        &store.unfinished("checkout", None, 10).await.unwrap_err(),
        "not stored",
    );
    raw(&mut conn, &["DEL", &index]).await;
    let done = record("checkout", SagaStatus::Completed);
    store.save(&done, 0).await.unwrap();
    raw(&mut conn, &["ZADD", &index, "1", &done.id.to_string()]).await;
    assert_malformed(
        &store.unfinished("checkout", None, 10).await.unwrap_err(),
        "finished",
    );
}

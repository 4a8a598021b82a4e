//! The NATS lease store: the lease store conformance suite (a bucket per scenario, deleted
//! after); the bucket it creates; values it did not write, and requests it cannot keep, as
//! typed errors; tokens that keep growing when a lease's entry is deleted by hand or removed
//! by the bucket's `max_age`; and `Leadership` electing one of three instances on it.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use catga_core::BoxError;
use catga_core::cluster::{Elected, Leadership, Role};
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use catga_core::testkit::{PATIENCE, eventually};
use catga_nats::{ConnectError, MalformedLeaseValue, NatsLeaseError, NatsLeaseStore};
use common::Corner;

/// A lease store on a bucket of its own, deleted when dropped (even when the test panics).
struct Scoped {
    store: NatsLeaseStore,
    bucket: Bucket,
    /// The test's corner of the server: the reason to skip, the tests' anchor stream.
    _corner: Corner,
}

/// Deletes the bucket `name` on `url` when dropped.
struct Bucket {
    url: String,
    name: String,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop cannot await, and may run inside the test's runtime: delete from a thread of
        // its own with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = jetstream::new(client).delete_key_value(&name).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A store on a fresh bucket with `max_age`, or `None` (the test skipped) without a server.
async fn open_with(test: &str, max_age: Duration) -> Option<Scoped> {
    let corner = Corner::new(test).await?;
    let bucket = Bucket {
        url: corner.url.clone(),
        name: format!("{}_leases", corner.prefix),
    };
    let store = NatsLeaseStore::connect(corner.url.as_str())
        .bucket(bucket.name.as_str())
        .max_age(max_age)
        .await
        .expect("open the test's lease bucket");
    Some(Scoped {
        store,
        bucket,
        _corner: corner,
    })
}

async fn open(test: &str) -> Option<Scoped> {
    open_with(test, Duration::from_secs(600)).await
}

impl Scoped {
    /// Another store on the same bucket, on a connection of its own: another process.
    async fn another(&self) -> NatsLeaseStore {
        NatsLeaseStore::connect(self.bucket.url.as_str())
            .bucket(self.bucket.name.as_str())
            .await
            .expect("open the test's lease bucket again")
    }

    /// The bucket, through the client's own key-value API.
    async fn kv(&self) -> jetstream::kv::Store {
        let client = async_nats::connect(self.bucket.url.as_str())
            .await
            .expect("connect");
        jetstream::new(client)
            .get_key_value(self.bucket.name.as_str())
            .await
            .expect("the lease bucket exists")
    }
}

impl LeaseStore for Scoped {
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

catga_core::testkit::stores::lease_store_conformance!(open);

const LONG: Duration = Duration::from_secs(60);

/// The store's error behind a `LeaseStore` method's boxed one.
fn nats_error(error: &BoxError) -> &NatsLeaseError {
    error
        .downcast_ref::<NatsLeaseError>()
        .unwrap_or_else(|| panic!("not a NatsLeaseError: {error:?}"))
}

fn grant_of(name: &str, holder: &str, token: u64) -> Grant {
    Grant {
        name: name.to_string(),
        holder: holder.to_string(),
        token: FencingToken::new(token),
        ttl: LONG,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_created_with_one_value_per_key_and_its_max_age_and_then_used_as_it_is() {
    let Some(scoped) = open_with("bucket_created", Duration::from_secs(90)).await else {
        return;
    };
    let info = scoped.kv().await.stream.cached_info().config.clone();
    assert_eq!(info.max_messages_per_subject, 1, "history 1");
    assert_eq!(info.max_age, Duration::from_secs(90));
    assert_eq!(scoped.store.max_age(), Duration::from_secs(90));
    let again = NatsLeaseStore::connect(scoped.bucket.url.as_str())
        .bucket(scoped.bucket.name.as_str())
        .max_age(Duration::from_secs(30))
        .await
        .expect("open the existing bucket");
    assert_eq!(
        again.max_age(),
        Duration::from_secs(90),
        "an existing bucket keeps its own max age"
    );
    let refused = again
        .acquire("scheduler", "node-a", Duration::from_secs(90))
        .await
        .expect_err("a ttl as long as the bucket's max age");
    assert!(
        matches!(nats_error(&refused), NatsLeaseError::TtlTooLong { max_age, .. }
            if *max_age == Duration::from_secs(90)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_this_store_did_not_write_is_a_typed_error_for_every_operation() {
    let Some(scoped) = open("garbage").await else {
        return;
    };
    let kv = scoped.kv().await;
    let garbage: [(&[u8], &str); 5] = [
        (b"\xff\x00 not json", "json"),
        (b"", "json"),
        (
            br#"{"v":1,"holder":"a","token":1,"ttl_ms":5000,"extra":1}"#,
            "json",
        ),
        (
            br#"{"v":9,"holder":"a","token":1,"ttl_ms":5000}"#,
            "version",
        ),
        (
            br#"{"v":1,"holder":"","token":3,"ttl_ms":5000}"#,
            "inconsistent",
        ),
    ];
    for (i, (bytes, expected)) in garbage.into_iter().enumerate() {
        let name = format!("garbage {i}");
        let key = scoped.store.key(&name);
        let revision = kv
            .put(key.as_str(), bytes.to_vec().into())
            .await
            .expect("write garbage");
        let check = |error: BoxError, operation: &str| match nats_error(&error) {
            NatsLeaseError::Malformed {
                name: named,
                key: keyed,
                revision: at,
                source,
                ..
            } => {
                assert_eq!((named, keyed, *at), (&name, &key, revision), "{operation}");
                let kind = match source {
                    MalformedLeaseValue::Json(_) => "json",
                    MalformedLeaseValue::Version { .. } => "version",
                    MalformedLeaseValue::Inconsistent(_) => "inconsistent",
                    other => panic!("{other:?}"),
                };
                assert_eq!(kind, expected, "{operation} on {name}");
            }
            other => panic!("{operation} on {name}: {other:?}"),
        };
        check(scoped.observe(&name).await.unwrap_err(), "observe");
        check(
            scoped.acquire(&name, "node-a", LONG).await.unwrap_err(),
            "acquire",
        );
        let grant = grant_of(&name, "a", 1);
        check(scoped.renew(&grant, LONG).await.unwrap_err(), "renew");
        check(scoped.release(&grant).await.unwrap_err(), "release");
        let after = kv.entry(key.as_str()).await.expect("read").expect("entry");
        assert_eq!(after.revision, revision, "garbage is never overwritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_store_cannot_keep_is_refused_before_anything_is_written() {
    let Some(scoped) = open("refusals").await else {
        return;
    };
    let error = scoped.acquire("scheduler", "", LONG).await.unwrap_err();
    assert!(
        matches!(nats_error(&error), NatsLeaseError::EmptyHolder { name } if name == "scheduler"),
        "{error:?}"
    );
    let error = scoped
        .acquire("scheduler", "node-a", Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(
        matches!(nats_error(&error), NatsLeaseError::TtlTooLong { ttl, .. } if *ttl == Duration::from_secs(600)),
        "{error:?}"
    );
    let grant = scoped
        .acquire("scheduler", "node-a", LONG)
        .await
        .unwrap()
        .expect("vacant");
    let error = scoped
        .renew(&grant, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(
        matches!(nats_error(&error), NatsLeaseError::TtlTooLong { .. }),
        "{error:?}"
    );
    assert!(scoped.renew(&grant, LONG).await.unwrap(), "still held");
}

#[tokio::test]
async fn options_are_checked_before_connecting() {
    // Nothing listens on port 1: an option refused says so before any connection attempt.
    let cases = [
        NatsLeaseStore::connect("nats://127.0.0.1:1").bucket("no.dots"),
        NatsLeaseStore::connect("nats://127.0.0.1:1").bucket(""),
        NatsLeaseStore::connect("nats://127.0.0.1:1").max_age(Duration::from_millis(500)),
        NatsLeaseStore::connect("nats://127.0.0.1:1").response_timeout(Duration::ZERO),
    ];
    for (builder, option) in
        cases
            .into_iter()
            .zip(["bucket", "bucket", "max_age", "response_timeout"])
    {
        let error = builder.await.unwrap_err();
        assert!(
            matches!(&error, NatsLeaseError::Connect(ConnectError::InvalidOption { option: o, .. }) if *o == option),
            "{error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_growing_after_the_key_is_deleted_by_hand() {
    let Some(scoped) = open("deleted_key").await else {
        return;
    };
    let first = scoped.acquire("sweeper", "node-a", LONG).await.unwrap();
    let first = first.expect("vacant");
    assert!(scoped.release(&first).await.unwrap());
    let second = scoped.acquire("sweeper", "node-b", LONG).await.unwrap();
    let second = second.expect("released");
    assert_eq!(second.token.get(), first.token.get() + 1, "one more grant");
    let kv = scoped.kv().await;
    kv.delete(scoped.store.key("sweeper").as_str())
        .await
        .expect("delete the key by hand");
    assert_eq!(scoped.observe("sweeper").await.unwrap(), LeaseState::Vacant);
    let third = scoped.acquire("sweeper", "node-c", LONG).await.unwrap();
    let third = third.expect("deleted");
    assert!(third.token > second.token, "{third:?} after {second:?}");
    assert!(
        !scoped.renew(&second, LONG).await.unwrap(),
        "the old grant is gone"
    );
    assert!(scoped.renew(&third, LONG).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_growing_after_the_bucket_removed_an_abandoned_entry() {
    let Some(scoped) = open_with("aged_out", Duration::from_secs(1)).await else {
        return;
    };
    // Other leases write meanwhile, so the bucket's revisions run ahead of this lease's count.
    for i in 0..3 {
        let other = format!("other {i}");
        let grant = scoped.acquire(&other, "node-x", Duration::from_millis(200));
        assert!(grant.await.unwrap().is_some());
    }
    let ttl = Duration::from_millis(200);
    let first = scoped.acquire("sweeper", "node-a", ttl).await.unwrap();
    let first = first.expect("vacant");
    assert!(scoped.release(&first).await.unwrap());
    let second = scoped.acquire("sweeper", "node-a", ttl).await.unwrap();
    let second = second.expect("released");
    assert!(scoped.release(&second).await.unwrap());
    let kv = scoped.kv().await;
    let key = scoped.store.key("sweeper");
    eventually("the bucket to remove the abandoned entry", || async {
        kv.entry(key.as_str()).await.expect("read").is_none()
    })
    .await;
    let third = scoped.acquire("sweeper", "node-b", ttl).await.unwrap();
    let third = third.expect("removed");
    assert!(third.token > second.token, "{third:?} after {second:?}");
}

/// The one of `elections` that leads, when exactly one does and the others have seen it.
fn sole_leader(elections: &[Elected]) -> Option<usize> {
    let leading: Vec<usize> = (0..elections.len())
        .filter(|&i| elections[i].leader().is_some())
        .collect();
    let [leader] = leading[..] else {
        return None;
    };
    let others_follow = elections.iter().enumerate().all(|(i, election)| {
        i == leader || election.role() == Role::Follower { leader_seen: true }
    });
    others_follow.then_some(leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_elects_one_of_three_instances_and_hands_over_when_it_stops() {
    let Some(scoped) = open("leadership").await else {
        return;
    };
    let ttl = Duration::from_secs(1);
    let mut elections = Vec::new();
    for i in 0..3 {
        let store = scoped.another().await;
        let election = Leadership::new(store, "scheduler")
            .holder(format!("node-{i}"))
            .ttl(ttl)
            .start();
        elections.push(election);
    }
    eventually("one of three instances to lead", || async {
        sole_leader(&elections).is_some()
    })
    .await;
    let first = sole_leader(&elections).expect("a leader");
    let leader = elections[first].leader().expect("leading");
    match scoped.observe("scheduler").await.unwrap() {
        LeaseState::Held { holder, token, .. } => {
            assert_eq!(holder, elections[first].holder());
            assert_eq!(token, leader.token());
        }
        LeaseState::Vacant => panic!("the leader's lease is observed vacant"),
    }
    // Across several renewals, never two leaders at once.
    let until = tokio::time::Instant::now() + 3 * ttl;
    while tokio::time::Instant::now() < until {
        let leading = elections.iter().filter(|e| e.leader().is_some()).count();
        assert!(leading <= 1, "{leading} instances lead at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    elections[first].stop().await;
    assert!(!leader.is_held(), "a stopped leader's work sees its end");
    assert_eq!(elections[first].role(), Role::Stopped);
    let rest: Vec<Elected> = {
        let stopped = elections.remove(first);
        drop(stopped);
        elections
    };
    eventually("another instance to lead", || async {
        sole_leader(&rest).is_some()
    })
    .await;
    let next = rest[sole_leader(&rest).expect("a leader")]
        .leader()
        .expect("leading");
    assert!(
        next.token() > leader.token(),
        "a new grant, a greater token"
    );
    for election in &rest {
        election.stop().await;
    }
    let waited = tokio::time::timeout(PATIENCE, async {
        while scoped.observe("scheduler").await.unwrap() != LeaseState::Vacant {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(waited.await.is_ok(), "stopped elections release the lease");
}

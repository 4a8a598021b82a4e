//! The [`IdempotencyStore`] scenarios: a completed key gives its reply to every later claim; a
//! duplicate that finds the key held waits for the first dispatch and gets its reply; a
//! release lets the next attempt run and wakes a waiter, but never erases a reply; a lease
//! that runs out lets another claimant take over; a reply is forgotten after its TTL; of
//! concurrent claims exactly one wins; keys differing by message, handler or id are separate.
//!
//! Each scenario takes a fresh store and panics with what it expected. Keys are made fresh in
//! every scenario, so a store shared by scenarios would do too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Barrier, oneshot};
use uuid::Uuid;

use crate::store::idempotency::{Claim, IdempotencyStore, KeyId, ReplyKey};
use crate::testkit::PATIENCE;

/// Writes the [`IdempotencyStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::idempotency`](crate::testkit::stores::idempotency), in a module
/// `idempotency_store`, each on a store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: IdempotencyStore`: a fresh, isolated store, or `None` to
/// skip the test when its server is unreachable. Expand it once per test binary, at its root.
///
/// ```ignore
/// use catga_core::store::idempotency::MemoryIdempotencyStore;
///
/// catga_core::testkit::stores::idempotency_store_conformance!(|_scenario| async {
///     Some(MemoryIdempotencyStore::new())
/// });
/// ```
#[macro_export]
macro_rules! idempotency_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the idempotency store suite runs on.
        fn __catga_open_idempotency_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::idempotency::IdempotencyStore>,
        > {
            ($open)(scenario)
        }

        /// The idempotency store suite: one test per scenario.
        pub mod idempotency_store {
            $crate::__catga_store_tests!(
                super::__catga_open_idempotency_store,
                idempotency,
                [
                    a_completed_key_gives_its_reply_to_every_later_claim,
                    a_duplicate_waits_for_the_first_dispatch_and_gets_its_reply,
                    of_concurrent_claims_of_a_new_key_exactly_one_wins,
                    a_release_lets_the_next_claim_run,
                    a_release_wakes_a_waiter_which_then_claims,
                    a_release_does_not_erase_a_recorded_reply,
                    an_expired_lease_lets_another_claimant_take_over,
                    a_reply_is_forgotten_after_its_ttl,
                    keys_differing_by_message_handler_or_id_are_separate,
                ]
            );
        }
    };
}

// The names of a key are `'static` strings, and the in-memory store tells them apart by
// address: statics (not consts) keep one address however often they are used.
static PLACE: &str = "testkit.orders.place";
static PLACED: &str = "testkit.orders.placed";
static MAIL: &str = "testkit::mail";
static LEDGER: &str = "testkit::ledger";

/// A lease or TTL no scenario outlives.
const LONG: Duration = Duration::from_secs(120);
/// A lease or TTL a scenario waits out.
const SHORT: Duration = Duration::from_millis(200);
/// How soon a waiter must be woken once the key is completed or released: far below the
/// wait's own timeout ([`LONG`]), so a store whose `wait` only times out fails.
const WOKEN: Duration = Duration::from_secs(10);
/// How long a scenario pauses between polls.
const POLL: Duration = Duration::from_millis(20);

/// A reply as a handler's JSON, with text beyond ASCII.
const REPLY: &[u8] = "{\"order\":42,\"note\":\"café — ünïcode ✓\"}".as_bytes();

/// A fresh key of the command `PLACE`.
fn fresh_key() -> ReplyKey {
    ReplyKey {
        message: PLACE,
        handler: None,
        id: KeyId::MessageId(Uuid::now_v7()),
    }
}

fn completed(reply: &[u8]) -> Claim {
    Claim::Completed(Arc::from(reply))
}

async fn claim(store: &impl IdempotencyStore, key: &ReplyKey, lease: Duration) -> Claim {
    store
        .claim(key, lease)
        .await
        .unwrap_or_else(|e| panic!("claim `{key}` for {lease:?}: {e}"))
}

async fn complete(store: &impl IdempotencyStore, key: &ReplyKey, reply: &[u8], ttl: Duration) {
    store
        .complete(key, reply, ttl)
        .await
        .unwrap_or_else(|e| panic!("complete `{key}` with a TTL of {ttl:?}: {e}"));
}

async fn release(store: &impl IdempotencyStore, key: &ReplyKey) {
    store
        .release(key)
        .await
        .unwrap_or_else(|e| panic!("release `{key}`: {e}"));
}

/// What a dispatch that found `key` held does: waits, claims again, until the key is no longer
/// in progress; gives the claim that ended it. Fails if it is not woken within [`WOKEN`].
async fn wait_then_claim(store: &impl IdempotencyStore, key: &ReplyKey) -> Claim {
    let outcome = tokio::time::timeout(WOKEN, async {
        loop {
            store
                .wait(key, LONG)
                .await
                .unwrap_or_else(|e| panic!("wait for `{key}`: {e}"));
            // `wait` may return early; a key still held means waiting again.
            match claim(store, key, LONG).await {
                Claim::InProgress => continue,
                other => return other,
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| {
        panic!(
            "a dispatch waiting for `{key}` was not woken within {WOKEN:?} of the key being \
             completed or released (its wait's timeout was {LONG:?})"
        )
    })
}

/// Claims `key` until the claim is no longer `InProgress` (a lease running out), for at most
/// [`PATIENCE`]; gives the claim that ended it.
async fn claim_until_not_held(store: &impl IdempotencyStore, key: &ReplyKey, what: &str) -> Claim {
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match claim(store, key, LONG).await {
                Claim::InProgress => tokio::time::sleep(POLL).await,
                other => return other,
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("gave up after {PATIENCE:?} waiting for {what}"))
}

/// Claim, complete, claim again: every later claim gets the reply, byte for byte, and none
/// runs the handler again.
pub async fn a_completed_key_gives_its_reply_to_every_later_claim<S: IdempotencyStore>(store: S) {
    let key = fresh_key();
    assert_eq!(
        claim(&store, &key, LONG).await,
        Claim::Claimed,
        "the first claim of a new key takes it"
    );
    complete(&store, &key, REPLY, LONG).await;
    for later in 1..=2 {
        assert_eq!(
            claim(&store, &key, LONG).await,
            completed(REPLY),
            "claim {later} after the key was completed gets the recorded reply"
        );
    }
}

/// Two tasks, one key: the second finds it in progress, waits, and once the first completes
/// gets the first one's reply (it never runs the handler itself).
pub async fn a_duplicate_waits_for_the_first_dispatch_and_gets_its_reply<S: IdempotencyStore>(
    store: S,
) {
    let store = Arc::new(store);
    let key = fresh_key();
    let (held, is_held) = oneshot::channel();
    let (waiting, is_waiting) = oneshot::channel();

    let first = tokio::spawn({
        let (store, key) = (store.clone(), key.clone());
        async move {
            assert_eq!(claim(&*store, &key, LONG).await, Claim::Claimed);
            let _ = held.send(());
            let _ = is_waiting.await;
            // Give the duplicate time to be inside `wait` (the interesting case); either way
            // the outcome asserted is the same.
            tokio::time::sleep(Duration::from_millis(50)).await;
            complete(&*store, &key, REPLY, LONG).await;
        }
    });
    let duplicate = tokio::spawn({
        let (store, key) = (store.clone(), key.clone());
        async move {
            is_held.await.expect("the first dispatch claimed the key");
            assert_eq!(
                claim(&*store, &key, LONG).await,
                Claim::InProgress,
                "a claim of a key another dispatch holds (and has not finished)"
            );
            let _ = waiting.send(());
            wait_then_claim(&*store, &key).await
        }
    });

    first.await.expect("the first dispatch");
    let outcome = duplicate.await.expect("the duplicate");
    assert_eq!(
        outcome,
        completed(REPLY),
        "the duplicate gets the first dispatch's reply"
    );
}

/// Eight tasks claim one new key at the same moment: exactly one gets it, the others find it
/// in progress.
pub async fn of_concurrent_claims_of_a_new_key_exactly_one_wins<S: IdempotencyStore>(store: S) {
    const CLAIMANTS: usize = 8;
    let store = Arc::new(store);
    let key = fresh_key();
    let start = Arc::new(Barrier::new(CLAIMANTS));
    let claims: Vec<_> = (0..CLAIMANTS)
        .map(|_| {
            let (store, key, start) = (store.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                claim(&*store, &key, LONG).await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(CLAIMANTS);
    for claim in claims {
        outcomes.push(claim.await.expect("a claimant"));
    }
    let won = outcomes.iter().filter(|c| **c == Claim::Claimed).count();
    let held = outcomes.iter().filter(|c| **c == Claim::InProgress).count();
    assert_eq!(
        (won, held),
        (1, CLAIMANTS - 1),
        "of {CLAIMANTS} concurrent claims of a new key, one takes it and the others find it in \
         progress; got {outcomes:?}"
    );
}

/// A released claim (the handler failed) can be claimed again at once, and the new claim
/// holds the key like the first did.
pub async fn a_release_lets_the_next_claim_run<S: IdempotencyStore>(store: S) {
    let key = fresh_key();
    assert_eq!(claim(&store, &key, LONG).await, Claim::Claimed);
    assert_eq!(
        claim(&store, &key, LONG).await,
        Claim::InProgress,
        "a claimed key is held until its lease runs out"
    );
    release(&store, &key).await;
    assert_eq!(
        claim(&store, &key, LONG).await,
        Claim::Claimed,
        "after a release the next attempt takes the key"
    );
    assert_eq!(
        claim(&store, &key, LONG).await,
        Claim::InProgress,
        "the next attempt's claim holds the key"
    );
}

/// A dispatch waiting for a held key is woken when the holder releases it, and takes the key.
pub async fn a_release_wakes_a_waiter_which_then_claims<S: IdempotencyStore>(store: S) {
    let store = Arc::new(store);
    let key = fresh_key();
    assert_eq!(claim(&*store, &key, LONG).await, Claim::Claimed);
    let (waiting, is_waiting) = oneshot::channel();
    let waiter = tokio::spawn({
        let (store, key) = (store.clone(), key.clone());
        async move {
            assert_eq!(claim(&*store, &key, LONG).await, Claim::InProgress);
            let _ = waiting.send(());
            wait_then_claim(&*store, &key).await
        }
    });
    is_waiting.await.expect("the waiter found the key held");
    tokio::time::sleep(Duration::from_millis(50)).await;
    release(&*store, &key).await;
    assert_eq!(
        waiter.await.expect("the waiter"),
        Claim::Claimed,
        "a waiter woken by a release takes the key"
    );
}

/// A release that comes after the key was completed (a late failure path, or a dispatch whose
/// lease ran out while another completed the key) leaves the reply in place.
pub async fn a_release_does_not_erase_a_recorded_reply<S: IdempotencyStore>(store: S) {
    let key = fresh_key();
    assert_eq!(claim(&store, &key, LONG).await, Claim::Claimed);
    complete(&store, &key, REPLY, LONG).await;
    release(&store, &key).await;
    assert_eq!(
        claim(&store, &key, LONG).await,
        completed(REPLY),
        "a release gives up a claim, never a recorded reply"
    );
}

/// A claimant that dies holds the key only for its lease: after it, another takes over, and
/// its claim holds and completes like any other.
pub async fn an_expired_lease_lets_another_claimant_take_over<S: IdempotencyStore>(store: S) {
    let key = fresh_key();
    assert_eq!(claim(&store, &key, SHORT).await, Claim::Claimed);
    // The claimant "dies": it neither completes nor releases.
    let taken = claim_until_not_held(
        &store,
        &key,
        &format!("a lease of {SHORT:?} on `{key}` to run out"),
    )
    .await;
    assert_eq!(
        taken,
        Claim::Claimed,
        "after the lease runs out, another claimant takes the key"
    );
    assert_eq!(
        claim(&store, &key, LONG).await,
        Claim::InProgress,
        "the new claimant holds the key for its own lease"
    );
    complete(&store, &key, REPLY, LONG).await;
    assert_eq!(claim(&store, &key, LONG).await, completed(REPLY));
}

/// A reply completed with a short TTL is given until the TTL runs out, then forgotten: the
/// next claim takes the key afresh.
pub async fn a_reply_is_forgotten_after_its_ttl<S: IdempotencyStore>(store: S) {
    let key = fresh_key();
    assert_eq!(claim(&store, &key, LONG).await, Claim::Claimed);
    complete(&store, &key, REPLY, SHORT).await;
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match claim(&store, &key, LONG).await {
                Claim::Claimed => return,
                Claim::Completed(reply) => assert_eq!(
                    &*reply, REPLY,
                    "until the TTL runs out, a claim gets the recorded reply"
                ),
                Claim::InProgress => panic!("a completed key is never in progress"),
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "gave up after {PATIENCE:?} waiting for a reply with a TTL of {SHORT:?} to be forgotten"
    );
}

/// The handlers of one event are deduplicated each on its own, and a message, an id or a
/// declared key of its own is a key of its own: completing one key claims none of the others.
pub async fn keys_differing_by_message_handler_or_id_are_separate<S: IdempotencyStore>(store: S) {
    let id = Uuid::now_v7();
    let mail = ReplyKey {
        message: PLACED,
        handler: Some(MAIL),
        id: KeyId::MessageId(id),
    };
    assert_eq!(claim(&store, &mail, LONG).await, Claim::Claimed);
    complete(&store, &mail, REPLY, LONG).await;

    let others = [
        ReplyKey {
            handler: Some(LEDGER),
            ..mail.clone()
        },
        ReplyKey {
            handler: None,
            ..mail.clone()
        },
        ReplyKey {
            message: PLACE,
            ..mail.clone()
        },
        ReplyKey {
            id: KeyId::MessageId(Uuid::now_v7()),
            ..mail.clone()
        },
        ReplyKey {
            id: KeyId::Declared(format!("order-{}", Uuid::now_v7().simple())),
            ..mail.clone()
        },
    ];
    for other in &others {
        assert_eq!(
            claim(&store, other, LONG).await,
            Claim::Claimed,
            "`{other}` is not `{mail}`: a new key"
        );
    }
    assert_eq!(
        claim(&store, &mail, LONG).await,
        completed(REPLY),
        "claiming other keys left `{mail}` as it was"
    );

    // A declared key is found again by the same declared text.
    let declared = ReplyKey {
        message: PLACE,
        handler: None,
        id: KeyId::Declared(format!("checkout-{}", Uuid::now_v7().simple())),
    };
    assert_eq!(claim(&store, &declared, LONG).await, Claim::Claimed);
    complete(&store, &declared, b"7", LONG).await;
    assert_eq!(claim(&store, &declared, LONG).await, completed(b"7"));
}

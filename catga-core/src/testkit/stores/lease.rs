//! The [`LeaseStore`] scenarios: a vacant lease is granted with a token and observed as held;
//! a running grant keeps every other acquirer out (its own holder too); of concurrent
//! acquirers exactly one wins; tokens grow across releases and expiries; a renewal keeps a
//! lease past its first TTL; a grant that ran out is lost (it cannot be renewed or released,
//! even before anyone else takes the lease) and its lease goes to another; a release lets
//! another in at once and a stale grant's release changes nothing; names are independent.
//!
//! Each scenario takes a fresh store and panics with what it expected. Lease names are made
//! fresh in every scenario, so a store shared by scenarios would do too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use uuid::Uuid;

use crate::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use crate::testkit::PATIENCE;

/// Writes the [`LeaseStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::lease`](crate::testkit::stores::lease), in a module `lease_store`, each
/// on a store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: LeaseStore`: a fresh, isolated store, or `None` to skip
/// the test when its server is unreachable. Expand it once per test binary, at its root.
///
/// ```ignore
/// use catga_core::store::memory_lease::MemoryLeaseStore;
///
/// catga_core::testkit::stores::lease_store_conformance!(|_scenario| async {
///     Some(MemoryLeaseStore::new())
/// });
/// ```
#[macro_export]
macro_rules! lease_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the lease store suite runs on.
        fn __catga_open_lease_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::lease::LeaseStore>,
        > {
            ($open)(scenario)
        }

        /// The lease store suite: one test per scenario.
        pub mod lease_store {
            $crate::__catga_store_tests!(
                super::__catga_open_lease_store,
                lease,
                [
                    a_vacant_lease_is_granted_with_a_token_and_observed_held,
                    a_running_grant_keeps_every_other_acquirer_out,
                    of_concurrent_acquirers_exactly_one_wins,
                    tokens_grow_across_releases_and_expiries,
                    a_renewed_lease_outlives_its_first_ttl,
                    a_grant_that_ran_out_is_lost_and_its_lease_goes_to_another,
                    a_release_lets_another_in_at_once_and_a_stale_release_changes_nothing,
                    names_are_independent,
                ]
            );
        }
    };
}

/// A TTL no scenario outlives.
const LONG: Duration = Duration::from_secs(120);
/// A TTL a scenario waits out.
const SHORT: Duration = Duration::from_millis(300);
/// How long a scenario pauses between polls.
const POLL: Duration = Duration::from_millis(20);

/// A lease name no other scenario uses, with characters a store must keep apart from its
/// own separators (`:`, `{`, `}`, `.`, a space, text beyond ASCII).
fn fresh_name() -> String {
    format!("testkit:{{lease}}. é {}", Uuid::now_v7())
}

async fn acquire(
    store: &impl LeaseStore,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Option<Grant> {
    store
        .acquire(name, holder, ttl)
        .await
        .unwrap_or_else(|e| panic!("acquire `{name}` for `{holder}`: {e}"))
}

async fn granted(store: &impl LeaseStore, name: &str, holder: &str, ttl: Duration) -> Grant {
    let grant = acquire(store, name, holder, ttl)
        .await
        .unwrap_or_else(|| panic!("`{name}` is vacant, yet `{holder}` was not granted it"));
    assert_eq!(grant.name, name, "the grant names its lease");
    assert_eq!(grant.holder, holder, "the grant names its holder");
    assert_eq!(grant.ttl, ttl, "the grant says its TTL");
    grant
}

async fn renew(store: &impl LeaseStore, grant: &Grant, ttl: Duration) -> bool {
    store
        .renew(grant, ttl)
        .await
        .unwrap_or_else(|e| panic!("renew `{}` (token {}): {e}", grant.name, grant.token))
}

async fn release(store: &impl LeaseStore, grant: &Grant) -> bool {
    store
        .release(grant)
        .await
        .unwrap_or_else(|e| panic!("release `{}` (token {}): {e}", grant.name, grant.token))
}

async fn observe(store: &impl LeaseStore, name: &str) -> LeaseState {
    store
        .observe(name)
        .await
        .unwrap_or_else(|e| panic!("observe `{name}`: {e}"))
}

/// Waits until `name` is observed vacant (its grant ran out), failing after [`PATIENCE`].
async fn wait_vacant(store: &impl LeaseStore, name: &str) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while observe(store, name).await != LeaseState::Vacant {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "`{name}` was still held {PATIENCE:?} after a grant of {SHORT:?} without renewal"
    );
}

/// A never-granted lease is observed vacant; granted, it carries a token of at least 1 and is
/// observed held by its holder, with that token and no more than its TTL left.
pub async fn a_vacant_lease_is_granted_with_a_token_and_observed_held<S: LeaseStore>(store: S) {
    let name = fresh_name();
    assert_eq!(
        observe(&store, &name).await,
        LeaseState::Vacant,
        "never granted"
    );
    let grant = granted(&store, &name, "node-a", LONG).await;
    assert!(grant.token >= FencingToken::new(1), "tokens start at 1");
    match observe(&store, &name).await {
        LeaseState::Held {
            holder,
            token,
            remaining,
        } => {
            assert_eq!(holder, "node-a");
            assert_eq!(token, grant.token);
            assert!(
                remaining <= LONG && remaining > LONG - PATIENCE,
                "a fresh grant of {LONG:?} has {remaining:?} left"
            );
        }
        LeaseState::Vacant => panic!("`{name}` was granted, yet observed vacant"),
    }
}

/// While a grant runs, nobody else is granted the lease, nor its own holder again.
pub async fn a_running_grant_keeps_every_other_acquirer_out<S: LeaseStore>(store: S) {
    let name = fresh_name();
    let grant = granted(&store, &name, "node-a", LONG).await;
    assert_eq!(
        acquire(&store, &name, "node-b", LONG).await,
        None,
        "another holder"
    );
    assert_eq!(
        acquire(&store, &name, "node-a", LONG).await,
        None,
        "its own holder renews, it does not acquire again"
    );
    assert!(renew(&store, &grant, LONG).await, "the grant still runs");
}

/// Sixteen acquirers at once: one grant, and the lease is observed held by its holder.
pub async fn of_concurrent_acquirers_exactly_one_wins<S: LeaseStore>(store: S) {
    let name = Arc::new(fresh_name());
    let store = Arc::new(store);
    let start = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, name, start) = (Arc::clone(&store), Arc::clone(&name), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                acquire(&*store, &name, &format!("node-{i}"), LONG).await
            })
        })
        .collect();
    let mut grants = Vec::new();
    for task in tasks {
        if let Some(grant) = task.await.expect("an acquirer panicked") {
            grants.push(grant);
        }
    }
    assert_eq!(
        grants.len(),
        1,
        "exactly one of 16 concurrent acquirers wins: {grants:?}"
    );
    match observe(&*store, &name).await {
        LeaseState::Held { holder, token, .. } => {
            assert_eq!(holder, grants[0].holder);
            assert_eq!(token, grants[0].token);
        }
        LeaseState::Vacant => panic!("the winner's lease is observed vacant"),
    }
}

/// Released, then granted to another; run out, then granted again (to the same holder even):
/// every grant's token is greater than the one before.
pub async fn tokens_grow_across_releases_and_expiries<S: LeaseStore>(store: S) {
    let name = fresh_name();
    let first = granted(&store, &name, "node-a", LONG).await;
    assert!(release(&store, &first).await);
    let second = granted(&store, &name, "node-b", SHORT).await;
    assert!(
        second.token > first.token,
        "after a release: {second:?} after {first:?}"
    );
    wait_vacant(&store, &name).await;
    let third = granted(&store, &name, "node-b", LONG).await;
    assert!(
        third.token > second.token,
        "after an expiry: {third:?} after {second:?}"
    );
    assert!(renew(&store, &third, LONG).await);
    match observe(&store, &name).await {
        LeaseState::Held { token, .. } => {
            assert_eq!(token, third.token, "a renewal keeps the token")
        }
        LeaseState::Vacant => panic!("a renewed lease is observed vacant"),
    }
}

/// A holder that renews every third of its TTL keeps the lease for four TTLs: nobody else is
/// granted it meanwhile.
pub async fn a_renewed_lease_outlives_its_first_ttl<S: LeaseStore>(store: S) {
    let name = fresh_name();
    let grant = granted(&store, &name, "node-a", SHORT).await;
    let until = tokio::time::Instant::now() + 4 * SHORT;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(SHORT / 3).await;
        assert!(
            renew(&store, &grant, SHORT).await,
            "a renewal within the TTL keeps the grant"
        );
        assert_eq!(
            acquire(&store, &name, "node-b", LONG).await,
            None,
            "a renewed lease is not granted to another"
        );
    }
}

/// A grant not renewed within its TTL is lost: observed vacant, it can be neither renewed nor
/// released (even though nobody took the lease), and another holder is granted it with a
/// greater token, which the old grant cannot disturb either.
pub async fn a_grant_that_ran_out_is_lost_and_its_lease_goes_to_another<S: LeaseStore>(store: S) {
    let name = fresh_name();
    let old = granted(&store, &name, "node-a", SHORT).await;
    wait_vacant(&store, &name).await;
    assert!(
        !renew(&store, &old, LONG).await,
        "a grant that ran out cannot be renewed"
    );
    assert!(!release(&store, &old).await, "nor released");
    let new = granted(&store, &name, "node-b", LONG).await;
    assert!(new.token > old.token);
    assert!(
        !renew(&store, &old, LONG).await,
        "the old grant cannot renew the new one"
    );
    assert!(!release(&store, &old).await, "nor release it");
    match observe(&store, &name).await {
        LeaseState::Held { holder, token, .. } => {
            assert_eq!((holder.as_str(), token), ("node-b", new.token));
        }
        LeaseState::Vacant => panic!("the new grant is observed vacant"),
    }
}

/// A release frees the lease at once: another holder is granted it without waiting for the
/// TTL. Releasing or renewing the released grant again changes nothing.
pub async fn a_release_lets_another_in_at_once_and_a_stale_release_changes_nothing<
    S: LeaseStore,
>(
    store: S,
) {
    let name = fresh_name();
    let first = granted(&store, &name, "node-a", LONG).await;
    assert!(release(&store, &first).await, "a running grant is released");
    assert_eq!(observe(&store, &name).await, LeaseState::Vacant);
    let second = granted(&store, &name, "node-b", LONG).await;
    assert!(!release(&store, &first).await, "the released grant is gone");
    assert!(!renew(&store, &first, LONG).await);
    assert!(renew(&store, &second, LONG).await, "the new grant runs on");
}

/// Two names: each granted, released and observed on its own.
pub async fn names_are_independent<S: LeaseStore>(store: S) {
    let (a, b) = (fresh_name(), fresh_name());
    let on_a = granted(&store, &a, "node-a", LONG).await;
    let on_b = granted(&store, &b, "node-b", LONG).await;
    assert!(release(&store, &on_a).await);
    assert_eq!(observe(&store, &a).await, LeaseState::Vacant);
    assert!(
        matches!(observe(&store, &b).await, LeaseState::Held { ref holder, .. } if holder == "node-b"),
        "releasing one name leaves the other held"
    );
    assert!(renew(&store, &on_b, LONG).await);
}

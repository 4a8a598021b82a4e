//! Waiting for something to happen, with a deadline and a message that says what did not.
//!
//! Each bound guards against hanging; it is not a measurement. Under Tokio's paused clock the
//! waits cost no real time.

use std::future::Future;
use std::time::Duration;

use crate::store::dead_letter::{DeadLetterRecord, DeadLetterStore};

use super::Corner;

/// The generous bound for what normally takes milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done` holds, failing the test with `what` after [`PATIENCE`].
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use catga_core::testkit::eventually;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let done = AtomicU32::new(0);
/// let work = async {
///     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
///     done.store(2, Ordering::SeqCst);
/// };
/// let wait = eventually("both jobs done", || async { done.load(Ordering::SeqCst) == 2 });
/// tokio::join!(work, wait);
/// # }
/// ```
pub async fn eventually<F, Fut>(what: &str, done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(PATIENCE, what, done).await;
}

/// As [`eventually`], with the bound given: for what must happen long before something else
/// could make it happen (a bound far below that other time).
pub async fn within<F, Fut>(bound: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(bound, async {
        while !done().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up after {bound:?} waiting for {what}");
}

/// Waits until `store` holds at least `n` records, and returns them all.
pub async fn dead_letters(
    store: &impl DeadLetterStore,
    n: usize,
    what: &str,
) -> Vec<DeadLetterRecord> {
    let mut kept = Vec::new();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            kept = store.list(10_000).await.expect("list the dead letters");
            if kept.len() >= n {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gave up after {PATIENCE:?} waiting for {what}: {n} dead letters, have {kept:?}"
    );
    kept
}

/// Waits until the broker holds nothing unsettled of `event` for `service`
/// ([`Corner::unsettled`]): every delivery acknowledged or terminated. Returns at once where
/// the transport cannot tell.
pub async fn settled(corner: &impl Corner, service: &str, event: &str, what: &str) {
    if corner.unsettled(service, event).await.is_none() {
        return;
    }
    let waited = tokio::time::timeout(PATIENCE, async {
        while corner.unsettled(service, event).await != Some(0) {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gave up after {PATIENCE:?} waiting for {what}: {:?} of `{event}` unsettled for `{service}`",
        corner.unsettled(service, event).await
    );
}

//! A server that goes away, staged on a private server (`private_redis`) so that killing it or
//! flushing its scripts reaches no other test: the server and a slice on it whose stores give
//! up on an answer within [`RESPONSE_TIMEOUT`], and a wait for a store to work again by itself
//! once the server is back.

use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

use super::private_redis::{self, Persistence, PrivateRedis};
use super::slice::Slice;

/// How long the stores of a fault test wait for an answer: an operation on a server that is
/// down fails within it.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A private server with `persistence`, and a slice on it (prefix `test`) whose stores answer
/// within [`RESPONSE_TIMEOUT`]; `None` (the test returns, having said why, or fails under
/// `CATGA_REQUIRE_SERVICES=1`) when no `redis-server` can be started here.
pub async fn private(test: &str, persistence: Persistence) -> Option<(PrivateRedis, Slice)> {
    if !private_redis::available(test) {
        return None;
    }
    let server = PrivateRedis::start(persistence).await;
    let slice = Slice::at_within(&server.url(), test, RESPONSE_TIMEOUT).await;
    Some((server, slice))
}

/// Tries `attempt` every 50 ms until it succeeds, for at most 15 s: after a restart, a store
/// reconnects by itself, and meanwhile every failure must be `retryable`. How long it took.
pub async fn until_up<T, E: Debug + Display>(
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
    retryable: impl Fn(&E) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(_) => return start.elapsed(),
            Err(e) => {
                assert!(retryable(&e), "while coming back: {e:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "still failing: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

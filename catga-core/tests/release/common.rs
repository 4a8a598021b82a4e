//! The messages, handlers and endings every file of this suite drives.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::behavior::{CacheKey, IdempotencyKey};
use catga_core::prelude::*;
use catga_core::{AnyMessage, CancellationToken};
use futures::FutureExt;

/// How long a handler holds what it was given before the test ends the dispatch.
pub const HELD: Duration = Duration::from_millis(10);

/// What a handler does once it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// Succeeds at once.
    Ok,
    /// Fails with a retryable error.
    Fail,
    /// Never finishes.
    Hang,
    /// Panics after [`HELD`].
    Panic,
    /// Succeeds after this many milliseconds.
    Sleep(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("dependency down")]
pub struct Down;

impl Retryable for Down {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// Performs `act`.
pub async fn perform(act: Act) -> Result<(), Down> {
    match act {
        Act::Ok => Ok(()),
        Act::Fail => Err(Down),
        Act::Hang => std::future::pending().await,
        Act::Panic => {
            tokio::time::sleep(HELD).await;
            panic!("the handler panicked on purpose");
        }
        Act::Sleep(millis) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(())
        }
    }
}

/// How many times a handler started, per test key.
static RUNS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// Counts a start under `key`; returns which run this is (1 for the first).
pub fn start(key: &str) -> u32 {
    let mut runs = RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let run = runs.entry(key.to_string()).or_default();
    *run += 1;
    *run
}

/// How many times a handler started under `key`.
pub fn runs(key: &str) -> u32 {
    RUNS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
        .copied()
        .unwrap_or(0)
}

/// A command deduplicated by its key; replies with its run number.
#[command(output = u32, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub key: String,
    pub act: Act,
}

impl IdempotencyKey for Job {
    fn idempotency_key(&self) -> String {
        self.key.clone()
    }
}

#[handler]
async fn job(cmd: Job) -> Result<u32, Down> {
    let run = start(&cmd.key);
    perform(cmd.act).await?;
    Ok(run)
}

/// A command in the `database` bulkhead group.
#[command(output = u32, bulkhead = "database")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbJob {
    pub key: String,
    pub act: Act,
}

#[handler]
async fn db_job(cmd: DbJob) -> Result<u32, Down> {
    let run = start(&cmd.key);
    perform(cmd.act).await?;
    Ok(run)
}

/// A cached query, keyed by `key` alone (what it does is not part of the key).
#[query(output = u32, cache_ttl = "60s")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    pub key: String,
    pub act: Act,
}

impl CacheKey for Lookup {
    fn cache_key(&self) -> String {
        self.key.clone()
    }
}

#[handler]
async fn lookup(query: Lookup) -> Result<u32, Down> {
    let run = start(&query.key);
    perform(query.act).await?;
    Ok(run)
}

/// The error code of a dispatch's outcome (`ok` for a success).
pub fn code<T>(result: &Result<T, Error>) -> &str {
    result.as_ref().map_or_else(Error::code, |_| "ok")
}

/// The ways a dispatch can end before its handler finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The caller drops the future.
    Drop,
    /// The context's cancellation token fires.
    Cancel,
    /// The context's deadline passes.
    Deadline,
    /// The handler panics.
    Panic,
}

pub const ENDINGS: [Ending; 4] = [
    Ending::Drop,
    Ending::Cancel,
    Ending::Deadline,
    Ending::Panic,
];

/// Runs the dispatch `dispatch(act, ctx)` builds so that it ends as `ending` after its
/// handler held what it was given for [`HELD`]; returns once it ended.
pub async fn end_as<T, F>(ending: Ending, dispatch: impl FnOnce(Act, Context) -> F)
where
    F: Future<Output = Result<T, Error>>,
{
    match ending {
        Ending::Drop => {
            let run = dispatch(Act::Hang, Context::new());
            assert!(
                tokio::time::timeout(HELD, run).await.is_err(),
                "the dispatch should still be running when its caller drops it"
            );
        }
        Ending::Cancel => {
            let token = CancellationToken::new();
            let cancel = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(HELD).await;
                cancel.cancel();
            });
            let ended = dispatch(Act::Hang, Context::new().with_cancellation(token)).await;
            assert_eq!(code(&ended), "cancelled");
        }
        Ending::Deadline => {
            let ended = dispatch(Act::Hang, Context::new().with_timeout(HELD)).await;
            assert_eq!(code(&ended), "timeout");
        }
        Ending::Panic => {
            let ended = AssertUnwindSafe(dispatch(Act::Panic, Context::new()))
                .catch_unwind()
                .await;
            assert!(
                ended.is_err(),
                "the handler's panic reaches a direct caller"
            );
        }
    }
}

/// A behaviour the test keeps a handle on, to read its state.
pub struct Shared<B>(pub Arc<B>);

impl<B: Behavior> Behavior for Shared<B> {
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send {
        self.0.handle(msg, ctx, next)
    }

    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context) {
        self.0.observe_publish(event, ctx);
    }
}

/// Runs `test` on a thread of its own, on a paused single-threaded runtime, and fails the
/// test if it has not finished after a generous bound, instead of hanging the suite: for
/// tests whose failure would be a task that spins without ever yielding.
pub fn on_own_thread<T, F>(test: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let _ = done.send(runtime.block_on(test()));
    });
    finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the test never finished: a dispatch spins without yielding")
}

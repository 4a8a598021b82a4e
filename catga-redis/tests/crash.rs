//! A consumer process crashes mid-stream: its entries are taken over by the other instance
//! after the claim idle time, every event is handled, handler errors and panics during the
//! run are kept exactly once each, and the dead-letter store holds exactly those at the end.
//!
//! The test binary runs itself again as a child process (the `child_instance` test, which
//! does nothing unless `CATGA_REDIS_CRASH_CHILD` is set) serving as one instance of the
//! service; this process runs the other. The child is killed with SIGKILL while it handles
//! events. Effects and dead letters live on the server, where both processes write them.
//!
//! `CATGA_CRASH_CLAIM_IDLE_MS` sets the claim idle time (default 2,000 ms), to measure the
//! takeover with another setting (the transport's default is 30,000 ms).

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use catga_core::store::dead_letter::DeadLetterStore;
use catga_core::testkit::{eventually, within};
use common::redis_dead_letters::RedisDeadLetters;
use common::{Options, Server, consumer_names, pending};
use redis::aio::MultiplexedConnection;

const CHILD: &str = "CATGA_REDIS_CRASH_CHILD";
const CHILD_NAME: &str = "CATGA_REDIS_CRASH_CHILD_NAME";
const CLAIM_IDLE: &str = "CATGA_CRASH_CLAIM_IDLE_MS";
const SERVICE: &str = "crashers";
const EVENTS: u64 = 1_500;
/// The child handles this many, then holds (unacknowledged) what it gets until it is killed,
/// so the kill always leaves entries for the other instance to take over.
const CHILD_SHARE: u64 = 150;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    pub n: u64,
}

/// What event `n`'s handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Succeed,
    /// A retryable failure on its first run only: handled on a redelivery, never kept.
    FailOnce,
    /// A failure that is not retryable: kept at once, code `handler`.
    Fatal,
    /// A panic: kept at once, code `panic`.
    Panic,
}

fn mode(n: u64) -> Mode {
    match n % 50 {
        7 => Mode::FailOnce,
        13 => Mode::Fatal,
        29 => Mode::Panic,
        _ => Mode::Succeed,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the store is busy")]
    Busy,
    #[error("work {0} is malformed")]
    Malformed(u64),
}

impl Retryable for WorkError {
    fn is_retryable(&self) -> bool {
        matches!(self, WorkError::Busy)
    }
}

/// The effects, on the server: how often each event was handled, and by whom.
pub struct Effects {
    conn: MultiplexedConnection,
    prefix: String,
    who: &'static str,
}

pub mod crashers {
    use super::*;

    #[handler(allow(panic_in_handler))]
    impl Effects {
        async fn on_work(&self, event: &Work) -> Result<(), WorkError> {
            tokio::time::sleep(Duration::from_millis(5)).await; // a database write
            let mut conn = self.conn.clone();
            if self.who == "child"
                && count(&mut conn, &format!("{}:by:child", self.prefix)).await >= CHILD_SHARE
            {
                std::future::pending::<()>().await;
            }
            let n = event.n;
            match mode(n) {
                Mode::Succeed => {}
                Mode::Fatal => return Err(WorkError::Malformed(n)),
                Mode::Panic => panic!("a bug in work {n}"),
                Mode::FailOnce => {
                    let attempts: u64 = redis::cmd("HINCRBY")
                        .arg(format!("{}:attempts", self.prefix))
                        .arg(n)
                        .arg(1)
                        .query_async(&mut conn)
                        .await
                        .map_err(|_| WorkError::Busy)?;
                    if attempts == 1 {
                        return Err(WorkError::Busy);
                    }
                }
            }
            redis::pipe()
                .cmd("HINCRBY")
                .arg(format!("{}:handled", self.prefix))
                .arg(n)
                .arg(1)
                .ignore()
                .cmd("INCR")
                .arg(format!("{}:by:{}", self.prefix, self.who))
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(|_| WorkError::Busy)
        }
    }
}

fn claim_idle() -> Duration {
    let ms = std::env::var(CLAIM_IDLE)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Duration::from_millis(ms)
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One instance of the service, named `instance`.
async fn instance(
    url: &str,
    prefix: &str,
    instance: &str,
    who: &'static str,
) -> Catga<impl catga_core::Layer> {
    let options = Options {
        prefix: Some(prefix.to_string()),
        instance: Some(instance.to_string()),
        max_deliveries: Some(3),
        ack_wait: Some(claim_idle()),
        ..Options::for_tests()
    };
    let redis = common::transport::connect(url, &options).await.unwrap();
    let conn = raw(url).await;
    let letters = RedisDeadLetters::new(conn.clone(), format!("{prefix}:dead-letters"));
    Catga::builder()
        .state(Effects {
            conn,
            prefix: prefix.to_string(),
            who,
        })
        .transport(redis)
        .service(SERVICE)
        .serve_max_in_flight(8)
        .handlers(|h| h.name.starts_with("crash::crashers::"))
        .dead_letters(letters)
        .build()
        .unwrap()
}

/// The child process: one instance, serving until it is killed.
#[tokio::test]
async fn child_instance() {
    let (Ok(prefix), Ok(name)) = (std::env::var(CHILD), std::env::var(CHILD_NAME)) else {
        return; // not the child: nothing to do
    };
    let app = instance(&common::url(), &prefix, &name, "child").await;
    let _serving = app.serve().await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// The child, killed (SIGKILL, by its PID) when dropped, also when the test fails.
struct ChildProcess(Child);

impl ChildProcess {
    fn spawn(url: &str, prefix: &str, name: &str) -> ChildProcess {
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = Command::new(exe)
            .args([
                "child_instance",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, prefix)
            .env(CHILD_NAME, name)
            .env("CATGA_REDIS_URL", url)
            .env(CLAIM_IDLE, claim_idle().as_millis().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test binary runs again as the child");
        ChildProcess(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn count(raw: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<u64>>(raw)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// How many entries of `stream` consumer `consumer` holds unacknowledged.
async fn held_by(raw: &mut MultiplexedConnection, stream: &str, consumer: &str) -> usize {
    let rows: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(SERVICE)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .arg(consumer)
        .query_async(raw)
        .await
        .unwrap();
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_process_killed_mid_stream_is_taken_over_and_nothing_is_lost() {
    let Some(server) = Server::get("crash").await else {
        return;
    };
    let (url, prefix) = (server.url.clone(), server.prefix.clone());
    let stream = format!("{prefix}:events:Work");
    let mut raw = server.raw().await;
    let child_name = format!("child-{}", uuid::Uuid::now_v7().simple());
    let parent_name = format!("parent-{}", uuid::Uuid::now_v7().simple());

    let mut child = ChildProcess::spawn(&url, &prefix, &child_name);
    eventually("the child serves", || async {
        redis::cmd("EXISTS")
            .arg(&stream)
            .query_async::<u64>(&mut raw.clone())
            .await
            .unwrap()
            == 1
            && consumer_names(&mut raw.clone(), &stream, SERVICE)
                .await
                .contains(&child_name)
    })
    .await;
    let parent = instance(&url, &prefix, &parent_name, "parent").await;
    let serving = parent.serve().await.unwrap();
    let publisher = Arc::new(
        Catga::builder()
            .transport(server.transport().await)
            .service("publisher")
            .handlers(|_| false)
            .build()
            .unwrap(),
    );
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for n in 0..EVENTS {
                publisher.publish(Work { n }).await.unwrap();
            }
        })
    };

    let by_child = format!("{prefix}:by:child");
    eventually("the child has handled a share", || async {
        count(&mut raw.clone(), &by_child).await >= CHILD_SHARE
            && held_by(&mut raw.clone(), &stream, &child_name).await > 0
    })
    .await;
    child.kill();
    let killed = Instant::now();
    let held = held_by(&mut raw, &stream, &child_name).await;
    let child_handled = count(&mut raw, &by_child).await;
    assert!(
        held > 0,
        "the child was killed holding entries (else this proves nothing)"
    );

    let bound = claim_idle() * 2 + Duration::from_secs(30);
    within(
        bound,
        "the parent takes over the child's entries",
        || async { held_by(&mut raw.clone(), &stream, &child_name).await == 0 },
    )
    .await;
    let taken_over = killed.elapsed();
    publishing.await.unwrap();
    let published = killed.elapsed();
    let handled_key = format!("{prefix}:handled");
    let expected_handled: BTreeSet<u64> = (0..EVENTS)
        .filter(|&n| matches!(mode(n), Mode::Succeed | Mode::FailOnce))
        .collect();
    let handled = || async {
        let keys: Vec<u64> = redis::cmd("HKEYS")
            .arg(&handled_key)
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        keys.into_iter().collect::<BTreeSet<u64>>()
    };
    within(bound, "every event is handled", || async {
        handled().await == expected_handled
    })
    .await;
    let all_handled = killed.elapsed();
    within(bound, "and every entry settled", || async {
        pending(&mut raw.clone(), &stream, SERVICE).await == 0
    })
    .await;
    let all_done = killed.elapsed();
    serving.shutdown().await;

    let letters = RedisDeadLetters::new(raw.clone(), format!("{prefix}:dead-letters"));
    let kept = letters.list(10_000).await.unwrap();
    let mut kept_pairs: Vec<(u64, String)> = kept
        .iter()
        .map(|r| {
            let payload: serde_json::Value =
                serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).unwrap();
            (payload["n"].as_u64().unwrap(), r.code.clone())
        })
        .collect();
    kept_pairs.sort();
    let expected_kept: Vec<(u64, String)> = (0..EVENTS)
        .filter_map(|n| match mode(n) {
            Mode::Fatal => Some((n, "handler".to_string())),
            Mode::Panic => Some((n, "panic".to_string())),
            _ => None,
        })
        .collect();
    let runs: Vec<u64> = redis::cmd("HVALS")
        .arg(&handled_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let duplicates: u64 = runs.iter().map(|r| r - 1).sum();
    println!(
        "crash: claim_idle {} ms; the child handled {child_handled} and held {held} when killed; \
         taken over {} ms after the kill; after the kill, all {EVENTS} published at {} ms, \
         handled at {} ms, settled at {} ms; {duplicates} events handled twice (at least once); \
         {} dead letters",
        claim_idle().as_millis(),
        taken_over.as_millis(),
        published.as_millis(),
        all_handled.as_millis(),
        all_done.as_millis(),
        kept.len()
    );
    assert_eq!(
        kept_pairs, expected_kept,
        "the dead-letter store holds exactly the failures: one per poison event, none for the \
         events that failed once and then succeeded"
    );
    assert!(
        duplicates <= u64::try_from(held).unwrap_or(u64::MAX),
        "only what the child held can have run twice: {duplicates} > {held}"
    );
}

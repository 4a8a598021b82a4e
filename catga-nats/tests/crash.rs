//! A consumer process crashes mid-stream. This test binary runs itself again as a child
//! process (`child_instance`, selected by an environment variable) that serves as one
//! instance of a service; the test serves another instance of the same service, publishes a
//! stream of events, and SIGKILLs the child while it handles its share. Every event is
//! handled: what the child had taken and not acknowledged returns to the other instance after
//! the acknowledgement wait (`ack_wait`, short here), and the time that took is printed.
//!
//! Meanwhile handler errors and panics happen in the surviving instance: events that fail
//! retryably a few times then succeed, fail for good (retryably or not), or panic. At the end
//! the dead-letter store holds exactly one record for each event that failed for good, and
//! none for the others.
//!
//! `CATGA_CRASH_ACK_WAIT_MS` sets the acknowledgement wait (default 2000), to measure the
//! takeover time of another setting (the transport's default is 30 s).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catga_core::Retryable;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::{PATIENCE, dead_letters, settled, unique};
use catga_nats::NatsTransport;
use common::{Corner, Options};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

const TICKS: u64 = 3_000;
/// The child handles this many, then holds (unacknowledged) what it gets until it is killed.
const KILL_AFTER: usize = 300;
/// A failing event every this many ticks.
const FAULT_EVERY: u64 = 100;
const MAX_DELIVER: u32 = 4;
/// The variable that makes `child_instance` serve (its value: the child's settings).
const CHILD: &str = "CATGA_CRASH_CHILD";
const READY: &str = "CATGA-CRASH-CHILD-READY";

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

/// What a faulty event's handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Fails retryably twice, then succeeds: no dead letter.
    FailTwice,
    /// Fails retryably every time: one dead letter after `MAX_DELIVER` runs.
    AlwaysRetryable,
    /// Fails, not retryably: one dead letter after one run.
    Fatal,
    /// Panics: one dead letter after one run.
    Panic,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Faulty {
    pub id: u64,
    pub fault: Fault,
}

#[derive(Debug, thiserror::Error)]
#[error("job failed (retryable: {0})")]
pub struct Failed(bool);

impl Retryable for Failed {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

/// Where an instance records the ticks it handled: a file the parent reads for the child (it
/// survives the SIGKILL), memory for the parent.
pub struct Ledger {
    file: Option<Mutex<std::fs::File>>,
    handled: Mutex<BTreeMap<u64, u32>>,
    /// Ticks handled on a second or later delivery, and when: the crashed instance's.
    redelivered: Mutex<Vec<(u64, Instant)>>,
}

impl Ledger {
    fn in_memory() -> Self {
        Ledger {
            file: None,
            handled: Mutex::new(BTreeMap::new()),
            redelivered: Mutex::new(Vec::new()),
        }
    }

    fn distinct(&self) -> BTreeSet<u64> {
        self.handled.lock().unwrap().keys().copied().collect()
    }
}

pub mod ticks {
    use super::*;

    #[handler]
    async fn tick(tick: &Tick, ledger: &Ledger, ctx: &Context) -> Result<(), Failed> {
        // Some work, so the child has events in hand when it is killed.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let handled = ledger.handled.lock().map_err(|_| Failed(false))?.len();
        if let Some(file) = ledger.file.as_ref().filter(|_| handled >= KILL_AFTER) {
            // The child's share is done: it holds what it gets from now on, unacknowledged,
            // until the parent kills it (so the kill always leaves events to take over).
            {
                let mut file = file.lock().map_err(|_| Failed(false))?;
                writeln!(file, "held {}", tick.n).map_err(|_| Failed(true))?;
            }
            std::future::pending::<()>().await;
        }
        if let Some(file) = &ledger.file {
            let mut file = file.lock().map_err(|_| Failed(false))?;
            writeln!(file, "{}", tick.n).map_err(|_| Failed(true))?;
        }
        *ledger
            .handled
            .lock()
            .map_err(|_| Failed(false))?
            .entry(tick.n)
            .or_insert(0) += 1;
        if ctx.attempt() > 1 {
            ledger
                .redelivered
                .lock()
                .map_err(|_| Failed(false))?
                .push((tick.n, Instant::now()));
        }
        Ok(())
    }
}

/// Runs by faulty event.
#[derive(Default)]
pub struct FaultRuns(Mutex<BTreeMap<u64, u32>>);

pub mod faults {
    use super::*;

    #[handler(allow(panic_in_handler))]
    async fn faulty(event: &Faulty, runs: &FaultRuns) -> Result<(), Failed> {
        let run = {
            let mut runs = runs.0.lock().map_err(|_| Failed(false))?;
            let n = runs.entry(event.id).or_insert(0);
            *n += 1;
            *n
        };
        match event.fault {
            Fault::FailTwice if run <= 2 => Err(Failed(true)),
            Fault::FailTwice => Ok(()),
            Fault::AlwaysRetryable => Err(Failed(true)),
            Fault::Fatal => Err(Failed(false)),
            Fault::Panic => panic!("a bug in the faulty handler"),
        }
    }
}

fn ack_wait() -> Duration {
    let ms = std::env::var("CATGA_CRASH_ACK_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Duration::from_millis(ms)
}

async fn transport(url: &str, prefix: &str, stream: &str) -> NatsTransport {
    let options = Options {
        prefix: Some(prefix.to_string()),
        stream: Some(stream.to_string()),
        ack_wait: Some(ack_wait()),
        fetch_wait: Some(Duration::from_secs(1)),
        max_deliveries: Some(MAX_DELIVER),
        backoff: Some(vec![Duration::from_millis(20), Duration::from_millis(50)]),
        ..Options::default()
    };
    common::transport::connect(url, &options)
        .await
        .expect("connect")
}

/// The child: serves ticks as one instance of the service until it is killed. Returns at
/// once in a normal test run.
#[test]
fn child_instance() {
    let Ok(settings) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = settings.split('|').collect();
    let [url, prefix, stream, service, ledger] = parts[..] else {
        panic!("bad {CHILD}: {settings}");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ledger)
            .unwrap();
        let ledger = Arc::new(Ledger {
            file: Some(Mutex::new(file)),
            handled: Mutex::new(BTreeMap::new()),
            redelivered: Mutex::new(Vec::new()),
        });
        let app = Catga::builder()
            .state_arc(ledger)
            .transport(transport(url, prefix, stream).await)
            .service(service)
            .handlers(|h| h.name.starts_with("crash::ticks::"))
            .serve_max_in_flight(16)
            .build()
            .unwrap();
        let _serving = app.serve().await.unwrap();
        println!("{READY}");
        std::future::pending::<()>().await;
    });
}

/// The ticks the child wrote to its ledger.
/// How many events the child holds, unacknowledged, waiting to be killed.
fn child_held(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("held "))
        .count()
}

fn child_ticks(path: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

/// Removes the child's ledger at the end, even on panic.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_events_are_taken_over_and_failures_kept_exactly_once() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some(corner) = Corner::new("crash").await else {
        return;
    };
    let service = unique("svc");
    let ledger_path = TempFile(std::env::temp_dir().join(unique("catga-crash-ledger-")));
    let ledger = Arc::new(Ledger::in_memory());
    let fault_runs = Arc::new(FaultRuns::default());
    let letters = MemoryDeadLetterStore::new();
    let parent = Catga::builder()
        .state_arc(ledger.clone())
        .state_arc(fault_runs.clone())
        .transport(transport(&corner.url, &corner.prefix, &corner.stream).await)
        .service(&service)
        .handlers(|h| h.name.starts_with("crash::ticks::") || h.name.starts_with("crash::faults::"))
        .dead_letters(letters.clone())
        .serve_max_in_flight(16)
        .build()
        .unwrap();
    let parent_serving = parent.serve().await.unwrap();

    let settings = [
        corner.url.as_str(),
        &corner.prefix,
        &corner.stream,
        &service,
        &ledger_path.0.display().to_string(),
    ]
    .join("|");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_instance",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, settings)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child instance");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(READY) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "the child instance serves");

    let publisher = Catga::builder()
        .transport(transport(&corner.url, &corner.prefix, &corner.stream).await)
        .handlers(|_| false)
        .build()
        .unwrap();
    let kinds = [
        Fault::FailTwice,
        Fault::AlwaysRetryable,
        Fault::Fatal,
        Fault::Panic,
    ];
    let mut faults = BTreeMap::new();
    let publishing = {
        let publisher = publisher.clone();
        let mut planned = Vec::new();
        for n in 0..TICKS {
            if n % FAULT_EVERY == 0 {
                let id = n / FAULT_EVERY;
                let fault = kinds[(id as usize) % kinds.len()];
                let message_id = Uuid::now_v7();
                faults.insert(id, (fault, message_id));
                planned.push((n, Some((id, fault, message_id))));
            } else {
                planned.push((n, None));
            }
        }
        tokio::spawn(async move {
            let publishes = futures::stream::iter(planned).map(|(n, fault)| {
                let publisher = publisher.clone();
                async move {
                    publisher.publish(Tick { n }).await.unwrap();
                    if let Some((id, fault, message_id)) = fault {
                        let ctx = Context::new().with_message_id(message_id);
                        publisher
                            .publish_with(Faulty { id, fault }, ctx)
                            .await
                            .unwrap();
                    }
                }
            });
            publishes.buffer_unordered(32).collect::<Vec<()>>().await;
        })
    };

    let kill_wait = tokio::time::timeout(PATIENCE, async {
        while child_ticks(&ledger_path.0).len() < KILL_AFTER || child_held(&ledger_path.0) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        kill_wait.is_ok(),
        "the child handled its share before the kill"
    );
    let killed = Instant::now();
    child.kill().await.expect("SIGKILL the child");
    let at_kill = (child_ticks(&ledger_path.0).len(), ledger.distinct().len());
    publishing.await.unwrap();

    let all: BTreeSet<u64> = (0..TICKS).collect();
    let handled = || {
        let mut handled = child_ticks(&ledger_path.0);
        handled.extend(ledger.distinct());
        handled
    };
    let took_over = tokio::time::timeout(PATIENCE + ack_wait() * 2, async {
        while handled() != all {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let all_done = killed.elapsed();
    let missing: Vec<u64> = all.difference(&handled()).copied().collect();
    assert!(
        took_over.is_ok(),
        "never handled after the kill: {missing:?}"
    );
    let child_share = child_ticks(&ledger_path.0);
    let twice = child_share.intersection(&ledger.distinct()).count();
    let redelivered = ledger.redelivered.lock().unwrap().clone();
    let takeover = redelivered
        .iter()
        .map(|(_, at)| at.duration_since(killed))
        .max();
    println!(
        "crash: killed the child after it handled {} ticks (the parent {}); the {} ticks it held unacknowledged were \
         handled by the other instance within {takeover:?} of the SIGKILL (ack_wait {:?}); all {TICKS} handled \
         {all_done:?} after it; {twice} handled by both",
        at_kill.0,
        at_kill.1,
        redelivered.len(),
        ack_wait()
    );
    assert!(
        !redelivered.is_empty(),
        "the child held events when it was killed, and the other instance took them over"
    );

    // The failures: exactly one record for each event that failed for good.
    let expected: BTreeMap<Uuid, &str> = faults
        .values()
        .filter_map(|(fault, id)| match fault {
            Fault::FailTwice => None,
            Fault::AlwaysRetryable | Fault::Fatal => Some((*id, "handler")),
            Fault::Panic => Some((*id, "panic")),
        })
        .collect();
    let kept = dead_letters(&letters, expected.len(), "every failure kept").await;
    settled(&corner, &service, "Faulty", "every faulty event settled").await;
    tokio::time::sleep(ack_wait()).await;
    let kept_after = letters.list(10_000).await.unwrap();
    assert_eq!(
        kept_after.len(),
        expected.len(),
        "exactly one record per failed event: {kept:?}"
    );
    let found: BTreeMap<Uuid, &str> = kept_after
        .iter()
        .map(|r| (r.message_id, r.code.as_str()))
        .collect();
    assert_eq!(
        found, expected,
        "the records are the failed events, with their codes"
    );
    let runs = fault_runs.0.lock().unwrap().clone();
    for (id, (fault, _)) in &faults {
        let expected_runs = match fault {
            Fault::FailTwice => 3,
            Fault::AlwaysRetryable => MAX_DELIVER,
            Fault::Fatal | Fault::Panic => 1,
        };
        assert_eq!(
            runs.get(id),
            Some(&expected_runs),
            "faulty {id} ({fault:?})"
        );
    }
    parent_serving.shutdown().await;
}

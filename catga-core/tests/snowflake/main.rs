//! Snowflake ids through the public API: layout and configuration errors, round trips,
//! uniqueness and order under threads and random layouts, batches, and what the generator does
//! when a millisecond's sequence runs out or the clock steps back (driven by injected clocks).

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catga_core::id::{
    Clock, ConfigError, LayoutError, ManualClock, ParseIdError, Part, SnowflakeError,
    SnowflakeGenerator, SnowflakeId, SnowflakeLayout, SnowflakeParts, WORKER_ID_VAR,
};
use proptest::prelude::*;

/// 2024-01-01T00:00:00Z, the default epoch, in Unix milliseconds.
const EPOCH_MS: u64 = 1_704_067_200_000;

fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(EPOCH_MS)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A clock that returns `script` in order, then its last reading for ever.
struct ScriptedClock {
    script: Vec<u64>,
    reads: AtomicU64,
}

impl ScriptedClock {
    fn new(script: &[u64]) -> Self {
        ScriptedClock {
            script: script.to_vec(),
            reads: AtomicU64::new(0),
        }
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for ScriptedClock {
    fn unix_millis(&self) -> u64 {
        let i = self.reads.fetch_add(1, Ordering::SeqCst) as usize;
        self.script[i.min(self.script.len() - 1)]
    }
}

/// A clock that moves forward 1 ms every `every` reads, starting at `start`.
struct TickingClock {
    start: u64,
    every: u64,
    reads: AtomicU64,
}

impl TickingClock {
    fn new(start: u64, every: u64) -> Self {
        TickingClock {
            start,
            every,
            reads: AtomicU64::new(0),
        }
    }

    /// The reading the clock would give now, without counting as a read.
    fn peek(&self) -> u64 {
        self.start + self.reads.load(Ordering::SeqCst) / self.every
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for TickingClock {
    fn unix_millis(&self) -> u64 {
        self.start + self.reads.fetch_add(1, Ordering::SeqCst) / self.every
    }
}

fn generator<C: Clock>(layout: SnowflakeLayout, worker: u64, clock: C) -> SnowflakeGenerator<C> {
    match SnowflakeGenerator::builder()
        .layout(layout)
        .epoch(epoch())
        .worker(worker)
        .clock(clock)
        .build()
    {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

fn layout(t: u8, w: u8, s: u8) -> SnowflakeLayout {
    SnowflakeLayout::new(t, w, s).unwrap_or_else(|e| panic!("{e}"))
}

fn zero() -> SnowflakeId {
    SnowflakeId::from_u64(0).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_strictly_increasing(ids: &[SnowflakeId]) {
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{} is not below {}", pair[0], pair[1]);
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

#[test]
fn layout_rejects_a_part_of_zero_bits() {
    for (t, w, s, part) in [
        (0, 51, 12, Part::Timestamp),
        (51, 0, 12, Part::Worker),
        (51, 12, 0, Part::Sequence),
    ] {
        assert_eq!(
            SnowflakeLayout::new(t, w, s),
            Err(LayoutError::EmptyPart { part })
        );
    }
    let message = SnowflakeLayout::new(53, 0, 10).err().map(|e| e.to_string());
    assert_eq!(
        message.as_deref().and_then(|m| m.lines().next()),
        Some("the worker of a snowflake layout needs at least 1 bit, got 0")
    );
}

#[test]
fn layout_rejects_a_total_other_than_63_bits() {
    for (t, w, s) in [(41, 10, 11), (41, 10, 13), (42, 10, 12), (64, 1, 1)] {
        assert_eq!(
            SnowflakeLayout::new(t, w, s),
            Err(LayoutError::WrongTotal {
                timestamp_bits: t,
                worker_bits: w,
                sequence_bits: s
            })
        );
    }
    let message = SnowflakeLayout::new(41, 10, 11)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with("a snowflake layout must use exactly 63 bits, got 41 + 10 + 11 = 62\n"),
        "{message}"
    );
    assert!(message.contains("help: the sign bit stays 0"), "{message}");
}

#[test]
fn layout_figures() {
    let twitter = SnowflakeLayout::default();
    assert_eq!(twitter, SnowflakeLayout::TWITTER);
    assert_eq!(
        (
            twitter.timestamp_bits(),
            twitter.worker_bits(),
            twitter.sequence_bits()
        ),
        (41, 10, 12)
    );
    assert_eq!(twitter.max_worker(), 1_023);
    assert_eq!(twitter.ids_per_millisecond(), 4_096);
    assert_eq!(twitter.max_sequence(), 4_095);
    assert_eq!(twitter.max_timestamp(), 2_199_023_255_551);
    // 2^41 ms after 2024 is in 2093.
    let last = twitter.last_time(epoch());
    let year_2093 = UNIX_EPOCH + Duration::from_secs(3_881_174_400); // 2093-01-01
    let year_2094 = UNIX_EPOCH + Duration::from_secs(3_912_710_400);
    assert!(last.is_some_and(|t| year_2093 < t && t < year_2094));

    let narrow = layout(50, 8, 5);
    assert_eq!(
        (narrow.max_worker(), narrow.ids_per_millisecond()),
        (255, 32)
    );
}

#[test]
fn compose_rejects_parts_wider_than_their_field() {
    let l = layout(50, 8, 5);
    let ok = SnowflakeParts {
        timestamp: (1 << 50) - 1,
        worker: 255,
        sequence: 31,
    };
    assert_eq!(l.compose(ok).map(SnowflakeId::as_i64), Ok(i64::MAX));
    for (parts, part, value, max) in [
        (SnowflakeParts { worker: 256, ..ok }, Part::Worker, 256, 255),
        (
            SnowflakeParts { sequence: 32, ..ok },
            Part::Sequence,
            32,
            31,
        ),
        (
            SnowflakeParts {
                timestamp: 1 << 50,
                ..ok
            },
            Part::Timestamp,
            1 << 50,
            (1 << 50) - 1,
        ),
    ] {
        assert_eq!(
            l.compose(parts),
            Err(LayoutError::PartOutOfRange { part, value, max })
        );
    }
    assert_eq!(
        l.compose(SnowflakeParts { worker: 256, ..ok })
            .err()
            .map(|e| e.to_string()),
        Some("worker 256 does not fit the layout: the largest worker is 255".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn worker_id_must_fit_the_layout() {
    let out_of_range = SnowflakeGenerator::new(1_024).err();
    assert_eq!(
        out_of_range,
        Some(ConfigError::WorkerOutOfRange {
            worker: 1_024,
            max: 1_023,
            worker_bits: 10
        })
    );
    assert!(
        out_of_range
            .map(|e| e.to_string())
            .unwrap_or_default()
            .starts_with("worker id 1024 does not fit in 10 bits: the largest is 1023\n")
    );
    assert_eq!(
        SnowflakeGenerator::new(1_023).map(|g| g.worker()),
        Ok(1_023)
    );

    let eight_bits = SnowflakeGenerator::builder()
        .layout(layout(50, 8, 5))
        .worker(256)
        .build();
    assert!(matches!(
        eight_bits,
        Err(ConfigError::WorkerOutOfRange { max: 255, .. })
    ));
}

#[test]
fn a_worker_id_is_required() {
    let err = SnowflakeGenerator::builder().build().err();
    assert_eq!(err, Some(ConfigError::NoWorker));
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("help: call `.worker(n)`, or `.worker_from_env()` to read `CATGA_WORKER_ID`")
    );
}

#[test]
fn epoch_must_be_past_and_leave_timestamps() {
    let clock = ManualClock::new(EPOCH_MS);
    let future = SnowflakeGenerator::builder()
        .worker(1)
        .epoch(epoch() + ms(250))
        .clock(clock.clone())
        .build();
    assert_eq!(
        future.err(),
        Some(ConfigError::EpochInFuture { by: ms(250) })
    );

    // The epoch itself is fine: the first id has timestamp 0.
    let at_epoch = generator(SnowflakeLayout::TWITTER, 1, clock.clone());
    let first = at_epoch.next_id().map(|id| at_epoch.parts(id));
    assert_eq!(
        first,
        Ok(SnowflakeParts {
            timestamp: 0,
            worker: 1,
            sequence: 0
        })
    );

    // 20 timestamp bits last 17.5 minutes.
    let short = layout(20, 20, 23);
    clock.set(EPOCH_MS + (1 << 20) + 99);
    let exhausted = SnowflakeGenerator::builder()
        .layout(short)
        .worker(1)
        .epoch(epoch())
        .clock(clock.clone())
        .build();
    assert_eq!(
        exhausted.err(),
        Some(ConfigError::EpochExhausted {
            timestamp_bits: 20,
            ago: ms(100)
        })
    );

    let before_1970 = SnowflakeGenerator::builder()
        .worker(1)
        .epoch(UNIX_EPOCH - ms(1))
        .build();
    assert_eq!(before_1970.err(), Some(ConfigError::EpochOutOfRange));
}

/// Runs this test binary again with `CATGA_WORKER_ID` set (or removed) and returns what
/// [`worker_from_env_probe`] printed: no test here changes its own process's environment.
fn probe_worker_env(value: Option<&str>) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no test binary path: {e}"));
    let mut command = Command::new(exe);
    command.args([
        "worker_from_env_probe",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    match value {
        Some(value) => command.env(WORKER_ID_VAR, value),
        None => command.env_remove(WORKER_ID_VAR),
    };
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the probe: {e}"));
    assert!(output.status.success(), "probe failed: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        // The harness prints the test's name on the same line, before the output.
        .find_map(|line| line.split_once("probe: ").map(|(_, result)| result))
        .unwrap_or_else(|| panic!("the probe printed no result: {stdout}"))
        .to_owned()
}

#[test]
#[ignore = "run in a child process by `worker_id_comes_from_the_environment`"]
fn worker_from_env_probe() {
    let built = SnowflakeGenerator::from_env();
    match built {
        Ok(g) => println!("probe: worker {}", g.worker()),
        Err(e) => println!("probe: {e:?}"),
    }
}

#[test]
fn worker_id_comes_from_the_environment() {
    assert_eq!(probe_worker_env(Some("7")), "worker 7");
    assert_eq!(probe_worker_env(Some(" 1023\n")), "worker 1023");
    assert!(probe_worker_env(None).starts_with("WorkerMissing"));
    let unparsable = probe_worker_env(Some("node-7"));
    assert!(
        unparsable.starts_with("WorkerUnparsable") && unparsable.contains("\"node-7\""),
        "{unparsable}"
    );
    assert!(probe_worker_env(Some("-1")).starts_with("WorkerUnparsable"));
    assert!(probe_worker_env(Some("1024")).starts_with("WorkerOutOfRange"));
}

#[test]
fn config_errors_read_like_rustc() {
    let errors = [
        ConfigError::WorkerMissing { var: WORKER_ID_VAR },
        ConfigError::EpochInFuture { by: ms(3) },
        ConfigError::NoWorker,
    ];
    for e in errors {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(|c: char| c.is_lowercase() || c == '`'),
            "{first}"
        );
        assert!(!first.ends_with('.'), "{first}");
        assert!(text.contains("\n   help: "), "{text}");
    }
    let unparsable = "x"
        .parse::<u64>()
        .err()
        .map(|source| ConfigError::WorkerUnparsable {
            var: WORKER_ID_VAR,
            value: "x".into(),
            source,
        });
    assert_eq!(
        unparsable.map(|e| e.to_string()).as_deref(),
        Some("`CATGA_WORKER_ID` is `x`, not a worker id: invalid digit found in string")
    );
}

// ---------------------------------------------------------------------------------------------
// Ids: parsing and round trips

#[test]
fn generated_ids_parse_back_to_themselves() {
    let ids = SnowflakeGenerator::new(513).unwrap_or_else(|e| panic!("{e}"));
    let before = SystemTime::now();
    for _ in 0..1_000 {
        let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
        assert!(id.as_i64() > 0);
        assert_eq!(id.to_string().parse::<SnowflakeId>(), Ok(id));
        assert_eq!(SnowflakeId::parse(&id.as_i64().to_string()), Ok(id));
        assert_eq!(SnowflakeId::try_from(id.as_u64()), Ok(id));
        assert_eq!(ids.layout().compose(id.parts(&ids.layout())), Ok(id));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, id.to_string());
        assert_eq!(serde_json::from_str::<SnowflakeId>(&json).ok(), Some(id));
    }
    let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    let at = ids.time_of(id);
    // Timestamps are whole milliseconds, so the id may read up to 1 ms before `before`.
    assert!(before - ms(1) <= at && at <= SystemTime::now(), "{at:?}");
    assert!(ids.time_of(id) >= ids.epoch());
    assert_eq!(ids.parts(id).worker, 513);
}

#[test]
fn malformed_ids_are_rejected() {
    for text in ["", "abc", " 1", "1.5", "9223372036854775808", "0x10"] {
        assert!(
            matches!(
                SnowflakeId::parse(text),
                Err(ParseIdError::Malformed { .. })
            ),
            "{text:?}"
        );
    }
    assert_eq!(
        SnowflakeId::parse("-1"),
        Err(ParseIdError::Negative { value: -1 })
    );
    assert_eq!(
        SnowflakeId::from_u64(1 << 63),
        Err(ParseIdError::Negative { value: i64::MIN })
    );
    assert!(serde_json::from_str::<SnowflakeId>("9223372036854775808").is_err());
    assert!(serde_json::from_str::<SnowflakeId>("-5").is_err());
    assert_eq!(
        SnowflakeId::parse("abc").err().map(|e| e.to_string()),
        Some("`abc` is not a snowflake id: invalid digit found in string".to_owned())
    );
}

proptest! {
    #[test]
    fn display_and_parse_round_trip(value in 0..=i64::MAX) {
        let id = SnowflakeId::from_i64(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(id.to_string(), value.to_string());
        prop_assert_eq!(id.to_string().parse::<SnowflakeId>(), Ok(id));
        prop_assert_eq!(i64::from(id), value);
    }

    /// Over random layouts, workers, start times and clock speeds (including clocks much slower
    /// than the sequence, so the generator waits): ids increase strictly, take apart into the
    /// worker and a timestamp the clock had reached, and compose back to themselves.
    #[test]
    fn random_layouts_issue_unique_increasing_round_tripping_ids(
        (t, w, s) in (1u8..=25, 1u8..=20).prop_map(|(w, s)| (63 - w - s, w, s)),
        worker_seed in any::<u64>(),
        start_seed in any::<u64>(),
        every in 1u64..=64,
        n in 1usize..=300,
        batch in any::<bool>(),
    ) {
        let l = layout(t, w, s);
        let worker = worker_seed % (l.max_worker() + 1);
        // Start anywhere, leaving room for the ids asked for.
        let start = EPOCH_MS + start_seed % (l.max_timestamp() - 2 * n as u64);
        let clock = TickingClock::new(start, every);
        let ids = generator(l, worker, &clock);
        let issued = if batch {
            ids.next_ids(n).map_err(|e| TestCaseError::fail(e.to_string()))?
        } else {
            let mut issued = Vec::with_capacity(n);
            for _ in 0..n {
                issued.push(ids.next_id().map_err(|e| TestCaseError::fail(e.to_string()))?);
            }
            issued
        };
        prop_assert_eq!(issued.len(), n);
        for pair in issued.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        let reached = clock.peek();
        for &id in &issued {
            let parts = id.parts(&l);
            prop_assert_eq!(parts.worker, worker);
            prop_assert!(parts.timestamp >= start - EPOCH_MS);
            prop_assert!(parts.timestamp <= reached - EPOCH_MS, "borrowed from the future");
            prop_assert_eq!(l.compose(parts), Ok(id));
            prop_assert!(id.as_i64() >= 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn eight_threads_get_unique_increasing_ids() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    let ids = SnowflakeGenerator::new(9).unwrap_or_else(|e| panic!("{e}"));
    let per_thread: Vec<Vec<SnowflakeId>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    (0..PER_THREAD)
                        .map(|_| ids.next_id().unwrap_or_else(|e| panic!("{e}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a thread panicked")))
            .collect()
    });
    let mut all = HashSet::new();
    let mut per_ms = BTreeMap::<u64, u64>::new();
    for thread_ids in &per_thread {
        assert_eq!(thread_ids.len(), PER_THREAD);
        assert_strictly_increasing(thread_ids);
        for &id in thread_ids {
            assert!(all.insert(id), "{id} issued twice");
            *per_ms.entry(ids.parts(id).timestamp).or_default() += 1;
        }
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
    assert!(per_ms.values().all(|&n| n <= 4_096));
}

#[test]
fn batches_and_single_ids_from_many_threads_do_not_collide() {
    let ids = SnowflakeGenerator::new(3).unwrap_or_else(|e| panic!("{e}"));
    let per_thread: Vec<Vec<SnowflakeId>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let ids = &ids;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..50 {
                        if (t + round) % 2 == 0 {
                            mine.extend(ids.next_ids(700).unwrap_or_else(|e| panic!("{e}")));
                        } else {
                            for _ in 0..300 {
                                mine.push(ids.next_id().unwrap_or_else(|e| panic!("{e}")));
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a thread panicked")))
            .collect()
    });
    let mut all = HashSet::new();
    for mine in &per_thread {
        assert_strictly_increasing(mine);
        for &id in mine {
            assert!(all.insert(id), "{id} issued twice");
        }
    }
    assert_eq!(all.len(), 4 * 25 * (700 + 300));
}

// ---------------------------------------------------------------------------------------------
// Sequence exhaustion and the clock

mod clocks;

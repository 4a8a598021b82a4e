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

#[test]
fn a_used_up_millisecond_waits_for_the_next() {
    // 2 sequence bits: 4 ids per millisecond. Build reads 100; the ids read 100 five times; then
    // the clock stays at 100 for two more readings before it ticks.
    let l = layout(51, 10, 2);
    let t0 = EPOCH_MS + 100;
    let clock = ScriptedClock::new(&[t0, t0, t0, t0, t0, t0, t0, t0, t0 + 1]);
    let ids = generator(l, 5, &clock);
    for sequence in 0..4 {
        let id = ids.next_id().map(|id| id.parts(&l));
        assert_eq!(
            id,
            Ok(SnowflakeParts {
                timestamp: 100,
                worker: 5,
                sequence
            })
        );
    }
    let fifth = ids.next_id().map(|id| id.parts(&l));
    assert_eq!(
        fifth,
        Ok(SnowflakeParts {
            timestamp: 101,
            worker: 5,
            sequence: 0
        })
    );
    // It read the clock until it moved on, instead of borrowing millisecond 101 early.
    assert_eq!(clock.reads(), 9);
}

#[test]
fn ids_never_run_ahead_of_a_slow_clock() {
    // 16 ids per millisecond, a clock that ticks every 50 readings.
    let l = layout(49, 10, 4);
    let clock = TickingClock::new(EPOCH_MS + 1_000, 50);
    let ids = generator(l, 1, &clock);
    let mut issued = Vec::new();
    for _ in 0..200 {
        let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
        assert!(id.parts(&l).timestamp + EPOCH_MS <= clock.peek());
        issued.push(id);
    }
    assert_strictly_increasing(&issued);
    let mut per_ms = BTreeMap::<u64, u64>::new();
    for id in &issued {
        *per_ms.entry(id.parts(&l).timestamp).or_default() += 1;
    }
    assert!(per_ms.values().all(|&n| n <= 16));
    // Most milliseconds were used up, so the generator did wait.
    assert!(
        per_ms.values().filter(|&&n| n == 16).count() >= 10,
        "{per_ms:?}"
    );
}

#[test]
fn a_clock_moved_back_within_the_bound_is_waited_out() {
    for back in [1, 3, 5] {
        let t0 = EPOCH_MS + 1_000;
        // Build, first id, then the clock is `back` ms behind (for two readings, so the bound is
        // checked against it) and catches up one ms per reading.
        let mut script = vec![t0, t0, t0 - back];
        script.extend((0..=back).map(|i| t0 - back + i));
        let clock = ScriptedClock::new(&script);
        let ids = generator(SnowflakeLayout::TWITTER, 2, &clock);
        let first = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
        let second = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
        assert!(first < second);
        assert_eq!(
            ids.parts(second),
            SnowflakeParts {
                timestamp: 1_000,
                worker: 2,
                sequence: 1
            }
        );
        assert_eq!(clock.reads(), script.len() as u64, "back {back}");
    }
}

#[test]
fn a_clock_moved_back_just_beyond_the_bound_is_an_error() {
    let t0 = EPOCH_MS + 1_000;
    let clock = ScriptedClock::new(&[t0, t0, t0 - 6, t0 - 6, t0]);
    let ids = generator(SnowflakeLayout::TWITTER, 2, &clock);
    assert!(ids.next_id().is_ok());
    assert_eq!(
        ids.next_id(),
        Err(SnowflakeError::ClockMovedBackwards {
            by: ms(6),
            bound: ms(5)
        })
    );
    assert_eq!(clock.reads(), 4, "failed without waiting");
}

#[test]
fn a_clock_moved_back_beyond_the_bound_is_an_error() {
    let clock = ManualClock::new(EPOCH_MS + 1_000);
    let ids = generator(SnowflakeLayout::TWITTER, 2, clock.clone());
    assert_eq!(ids.max_backwards(), ms(5));
    let first = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    clock.rewind(ms(6));
    let err = ids.next_id();
    assert_eq!(
        err,
        Err(SnowflakeError::ClockMovedBackwards {
            by: ms(6),
            bound: ms(5)
        })
    );
    let text = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.starts_with(
            "the clock moved backwards by 6ms, more than the 5ms the generator waits out\n   help:"
        ),
        "{text}"
    );
    // A batch fails the same way and writes nothing.
    let mut batch = [zero(); 3];
    assert!(matches!(
        ids.fill(&mut batch),
        Err(SnowflakeError::ClockMovedBackwards { .. })
    ));
    assert_eq!(batch, [zero(); 3]);
    // Once the clock is back, ids go on above the last one.
    clock.set(EPOCH_MS + 1_000);
    let next = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    assert!(next > first);
}

#[test]
fn a_zero_bound_fails_at_once_and_counts_from_the_epoch_before_the_first_id() {
    let clock = ManualClock::new(EPOCH_MS + 2);
    let ids = SnowflakeGenerator::builder()
        .worker(0)
        .max_backwards(Duration::ZERO)
        .clock(clock.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    clock.rewind(ms(10));
    assert_eq!(
        ids.next_id(),
        Err(SnowflakeError::ClockMovedBackwards {
            by: ms(8),
            bound: Duration::ZERO
        })
    );
    clock.advance(ms(10));
    let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    clock.rewind(ms(1));
    assert_eq!(
        ids.next_id(),
        Err(SnowflakeError::ClockMovedBackwards {
            by: ms(1),
            bound: Duration::ZERO
        })
    );
    clock.advance(ms(1));
    assert!(ids.next_id().is_ok_and(|next| next > id));
}

/// Read 0 (the build's) and read 1 return `stale`; read 1 blocks until released. Later reads
/// return `fresh`.
struct GatedClock {
    stale: u64,
    fresh: u64,
    reads: AtomicU64,
    released: AtomicBool,
}

impl Clock for GatedClock {
    fn unix_millis(&self) -> u64 {
        match self.reads.fetch_add(1, Ordering::SeqCst) {
            0 => self.stale,
            1 => {
                while !self.released.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                self.stale
            }
            _ => self.fresh,
        }
    }
}

#[test]
fn a_reading_older_than_another_threads_id_is_not_the_clock_going_back() {
    // Thread A reads the clock (100 ms) and stalls; meanwhile this thread issues an id at 101 ms.
    // A's reading now predates the last id, but the clock did not go back: even with a zero
    // bound, A must get the next id at 101 ms, not an error.
    let clock = GatedClock {
        stale: EPOCH_MS + 100,
        fresh: EPOCH_MS + 101,
        reads: AtomicU64::new(0),
        released: AtomicBool::new(false),
    };
    let ids = SnowflakeGenerator::builder()
        .worker(6)
        .epoch(epoch())
        .max_backwards(Duration::ZERO)
        .clock(&clock)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::scope(|scope| {
        let stalled = scope.spawn(|| ids.next_id());
        while clock.reads.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        let first = ids.next_id().map(|id| ids.parts(id));
        assert_eq!(first.map(|p| (p.timestamp, p.sequence)), Ok((101, 0)));
        clock.released.store(true, Ordering::SeqCst);
        let second = stalled
            .join()
            .unwrap_or_else(|_| panic!("the caller panicked"));
        assert_eq!(
            second
                .map(|id| ids.parts(id))
                .map(|p| (p.timestamp, p.sequence)),
            Ok((101, 1))
        );
    });
}

#[test]
fn a_waiting_caller_resumes_when_the_clock_catches_up() {
    let clock = ManualClock::new(EPOCH_MS + 1_000);
    let ids = generator(SnowflakeLayout::TWITTER, 4, clock.clone());
    let first = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    clock.rewind(ms(3));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| ids.next_id());
        std::thread::sleep(ms(50));
        assert!(!waiting.is_finished(), "did not wait for the clock");
        clock.advance(ms(3));
        let second = waiting
            .join()
            .unwrap_or_else(|_| panic!("the caller panicked"));
        assert!(second.is_ok_and(|second| second > first));
    });
}

#[test]
fn the_last_millisecond_of_the_layout_ends_the_ids() {
    // 22 timestamp bits: about 70 minutes. Start at the last millisecond.
    let l = layout(22, 40, 1);
    let clock = ManualClock::new(EPOCH_MS + l.max_timestamp());
    let ids = generator(l, 0, clock.clone());
    let last = [ids.next_id(), ids.next_id()].map(|id| id.map(|id| id.parts(&l).sequence));
    assert_eq!(last, [Ok(0), Ok(1)]);
    clock.advance(ms(1));
    let exhausted = SnowflakeError::TimestampExhausted {
        timestamp_bits: 22,
        last: ms(l.max_timestamp()),
    };
    assert_eq!(ids.next_id(), Err(exhausted.clone()));
    assert_eq!(ids.next_ids(2), Err(exhausted));
}

// ---------------------------------------------------------------------------------------------
// Batches

#[test]
fn a_batch_equals_the_same_number_of_single_ids() {
    let clock = ManualClock::new(EPOCH_MS + 5_000);
    let batched = generator(SnowflakeLayout::TWITTER, 77, clock.clone());
    let single = generator(SnowflakeLayout::TWITTER, 77, clock.clone());
    let batch = batched.next_ids(3_000).unwrap_or_else(|e| panic!("{e}"));
    let singles: Vec<_> = (0..3_000)
        .map(|_| single.next_id().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(batch, singles);
    // Both go on from the same place.
    assert_eq!(batched.next_id(), single.next_id());
    assert_eq!(batched.next_ids(0), Ok(Vec::new()));
}

#[test]
fn a_batch_reads_the_clock_once_per_millisecond_of_sequence() {
    // The clock moves 1 ms per reading: 3 × 4,096 ids need exactly 3 readings (plus the build's).
    let clock = TickingClock::new(EPOCH_MS + 10, 1);
    let ids = generator(SnowflakeLayout::TWITTER, 1, &clock);
    let batch = ids.next_ids(3 * 4_096).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(clock.reads(), 1 + 3);
    assert_strictly_increasing(&batch);
    let timestamps: Vec<u64> = batch.iter().map(|&id| ids.parts(id).timestamp).collect();
    assert_eq!(timestamps[0], 11);
    assert_eq!(timestamps[4_095], 11);
    assert_eq!(timestamps[4_096], 12);
    assert_eq!(timestamps[3 * 4_096 - 1], 13);
}

#[test]
fn a_large_batch_on_the_wall_clock_is_unique_increasing_and_capped_per_millisecond() {
    let ids = SnowflakeGenerator::new(12).unwrap_or_else(|e| panic!("{e}"));
    let before = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    let batch = ids.next_ids(20_000).unwrap_or_else(|e| panic!("{e}"));
    let after = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
    assert_strictly_increasing(&batch);
    assert!(before < batch[0] && batch[batch.len() - 1] < after);
    let mut per_ms = BTreeMap::<u64, u64>::new();
    for &id in &batch {
        assert_eq!(ids.parts(id).worker, 12);
        *per_ms.entry(ids.parts(id).timestamp).or_default() += 1;
    }
    assert!(per_ms.len() >= 5, "20,000 ids need at least 5 milliseconds");
    assert!(per_ms.values().all(|&n| n <= 4_096));
    assert!(ids.time_of(after) <= SystemTime::now());
}

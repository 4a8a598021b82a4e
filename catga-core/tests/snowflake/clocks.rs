//! `snowflake` tests, continued: a used-up millisecond and clocks that move back (helpers live in
//! `main.rs`).

use super::*;

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

//! The generator: one atomic word, a clock, and what to do when the clock misbehaves.

use std::num::ParseIntError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::clock::{Clock, SystemClock, millis};
use super::layout::{SnowflakeId, SnowflakeLayout, SnowflakeParts};

/// The environment variable [`SnowflakeGenerator::from_env`] reads the worker id from.
pub const WORKER_ID_VAR: &str = "CATGA_WORKER_ID";

/// The default epoch, 2024-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const DEFAULT_EPOCH_UNIX_MILLIS: u64 = 1_704_067_200_000;

/// How far back the clock may move before [`next_id`](SnowflakeGenerator::next_id) gives up
/// waiting for it and fails, unless [`SnowflakeBuilder::max_backwards`] says otherwise.
pub const DEFAULT_MAX_BACKWARDS: Duration = Duration::from_millis(5);

/// Issues [`SnowflakeId`]s: unique and strictly increasing for this generator, from any number
/// of threads, without a lock.
///
/// The generator keeps the next free timestamp and sequence in one `AtomicU64` and advances it
/// with a compare-and-swap. Each id's timestamp is a clock reading taken during
/// the call that returned it, so ids never run ahead of the clock.
///
/// * **Sequence exhausted**: after [`ids_per_millisecond`](SnowflakeLayout::ids_per_millisecond)
///   ids in one millisecond, callers wait (yielding the thread) for the next one.
/// * **Clock moved backwards**: when the clock reads earlier than the last issued timestamp by at
///   most [`max_backwards`](SnowflakeBuilder::max_backwards) (5 ms by default), callers wait until
///   it catches up; further back, they get [`SnowflakeError::ClockMovedBackwards`]. Either way no
///   id is ever repeated or smaller than one issued before.
/// * **Uniqueness across processes** comes from the worker id: give every process that issues
///   ids at the same time its own, and do not restart a worker faster than its clock can step
///   back.
///
/// ```
/// use catga_core::id::SnowflakeGenerator;
///
/// let ids = SnowflakeGenerator::new(7)?;
/// let a = ids.next_id()?;
/// let b = ids.next_id()?;
/// assert!(a < b);
/// assert_eq!(ids.parts(b).worker, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SnowflakeGenerator<C = SystemClock> {
    /// The next free slot: `timestamp << sequence_bits | sequence`, timestamp counted from the
    /// epoch. One past the last issued id, so 0 means none issued yet; a full millisecond
    /// carries into the next one by itself.
    next: AtomicU64,
    clock: C,
    layout: SnowflakeLayout,
    worker: u64,
    epoch_millis: u64,
    /// `epoch_millis + layout.max_timestamp()`: the last millisecond the layout can express.
    last_millis: u64,
    max_backwards: Duration,
    max_backwards_millis: u64,
    sequence_bits: u32,
    sequence_mask: u64,
    worker_bits: u32,
    /// The worker id, already shifted into place.
    worker_field: u64,
}

impl SnowflakeGenerator {
    /// A generator for `worker` with the default layout, epoch, bound and the system clock.
    pub fn new(worker: u64) -> Result<Self, ConfigError> {
        SnowflakeGenerator::builder().worker(worker).build()
    }

    /// A generator whose worker id is read from [`CATGA_WORKER_ID`](WORKER_ID_VAR), with the
    /// default layout, epoch, bound and the system clock.
    pub fn from_env() -> Result<Self, ConfigError> {
        SnowflakeGenerator::builder().worker_from_env().build()
    }

    /// Configures a generator; it needs at least a worker id.
    pub fn builder() -> SnowflakeBuilder {
        SnowflakeBuilder {
            layout: SnowflakeLayout::TWITTER,
            epoch: None,
            worker: WorkerSource::Unset,
            max_backwards: DEFAULT_MAX_BACKWARDS,
            clock: SystemClock,
        }
    }
}

impl<C: Clock> SnowflakeGenerator<C> {
    /// The next id, greater than every id this generator issued before.
    ///
    /// Waits when this millisecond's sequence is used up, or when the clock has moved back by at
    /// most the bound. Fails when it moved back further, or when the layout's timestamp has run
    /// out.
    #[inline]
    pub fn next_id(&self) -> Result<SnowflakeId, SnowflakeError> {
        // `Relaxed` is enough: uniqueness and order come from every update being a read-modify-
        // write of this one word (its modification order), and no other memory is published
        // through it.
        let mut now = self.clock.unix_millis();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let next_at = self.epoch_millis + (next >> self.sequence_bits);
            if now >= next_at {
                if now > self.last_millis {
                    return Err(self.exhausted());
                }
                let slot = if now == next_at {
                    next
                } else {
                    self.first_slot(now)
                };
                match self.next.compare_exchange_weak(
                    next,
                    slot + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(self.id_at(slot)),
                    Err(actual) => next = actual,
                }
            } else {
                now = self.wait_for(next, next_at)?;
                next = self.next.load(Ordering::Relaxed);
            }
        }
    }

    /// Fills `ids` with new ids, in increasing order, all greater than every id issued before.
    ///
    /// Reads the clock once per millisecond's worth of sequence: up to
    /// [`ids_per_millisecond`](SnowflakeLayout::ids_per_millisecond) ids are taken with one clock
    /// reading and one compare-and-swap. Waits and fails as [`next_id`](Self::next_id) does; on
    /// failure the ids already written are valid and the rest of the slice is unchanged.
    pub fn fill(&self, ids: &mut [SnowflakeId]) -> Result<(), SnowflakeError> {
        let mut rest = ids;
        if rest.is_empty() {
            return Ok(());
        }
        let mut now = self.clock.unix_millis();
        let mut next = self.next.load(Ordering::Relaxed);
        while !rest.is_empty() {
            let next_at = self.epoch_millis + (next >> self.sequence_bits);
            if now < next_at {
                now = self.wait_for(next, next_at)?;
                next = self.next.load(Ordering::Relaxed);
                continue;
            }
            if now > self.last_millis {
                return Err(self.exhausted());
            }
            let slot = if now == next_at {
                next
            } else {
                self.first_slot(now)
            };
            let room = self.sequence_mask + 1 - (slot & self.sequence_mask);
            let take = room.min(u64::try_from(rest.len()).unwrap_or(u64::MAX));
            match self.next.compare_exchange_weak(
                next,
                slot + take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let first = self.id_at(slot).0;
                    // `take` fits in `rest.len()`, a `usize`.
                    let (chunk, tail) = rest.split_at_mut(take as usize);
                    // Within one millisecond only the sequence (the low bits) changes.
                    for (id, value) in chunk.iter_mut().zip(first..) {
                        *id = SnowflakeId(value);
                    }
                    rest = tail;
                    next = slot + take;
                }
                Err(actual) => next = actual,
            }
        }
        Ok(())
    }

    /// `n` new ids in increasing order; see [`fill`](Self::fill).
    pub fn next_ids(&self, n: usize) -> Result<Vec<SnowflakeId>, SnowflakeError> {
        let mut ids = vec![SnowflakeId(0); n];
        self.fill(&mut ids)?;
        Ok(ids)
    }

    /// The slot for the first id of millisecond `now` (Unix ms, from the epoch to the layout's
    /// last millisecond).
    #[inline]
    fn first_slot(&self, now: u64) -> u64 {
        (now - self.epoch_millis) << self.sequence_bits
    }

    /// The id for a slot whose millisecond is at most the layout's last.
    #[inline]
    fn id_at(&self, slot: u64) -> SnowflakeId {
        let timestamp = slot & !self.sequence_mask;
        SnowflakeId(
            (timestamp << self.worker_bits) | self.worker_field | (slot & self.sequence_mask),
        )
    }

    #[cold]
    fn exhausted(&self) -> SnowflakeError {
        SnowflakeError::TimestampExhausted {
            timestamp_bits: self.layout.timestamp_bits(),
            last: Duration::from_millis(self.layout.max_timestamp()),
        }
    }

    /// Waits until the clock reaches `next_at` (Unix ms), the millisecond of slot `next`, and
    /// returns that reading; fails if the clock is further behind the last issued id than the
    /// bound.
    ///
    /// Only readings taken here, after `next` was loaded, are compared with it: an older reading
    /// may predate an id another thread issued meanwhile, which is not the clock going back.
    #[cold]
    #[inline(never)]
    fn wait_for(&self, next: u64, next_at: u64) -> Result<u64, SnowflakeError> {
        // The millisecond of the last issued id; the epoch when none has been issued.
        let last_at = self.epoch_millis + (next.saturating_sub(1) >> self.sequence_bits);
        let mut warned = false;
        loop {
            let now = self.clock.unix_millis();
            if now >= next_at {
                return Ok(now);
            }
            if now < last_at {
                let by = last_at - now;
                if by > self.max_backwards_millis {
                    return Err(SnowflakeError::ClockMovedBackwards {
                        by: Duration::from_millis(by),
                        bound: self.max_backwards,
                    });
                }
                if !warned {
                    warned = true;
                    tracing::warn!(
                        by_ms = by,
                        bound_ms = self.max_backwards_millis,
                        worker = self.worker,
                        "clock moved backwards; waiting for it to catch up"
                    );
                }
            }
            // More than a millisecond to go (the clock went back): sleep a millisecond at a
            // time, reading the clock again after each. Otherwise the next millisecond is close:
            // give the core away and look again.
            if next_at - now > 1 {
                thread::sleep(Duration::from_millis(1));
            } else {
                thread::yield_now();
            }
        }
    }

    /// Takes an id of this generator apart.
    pub fn parts(&self, id: SnowflakeId) -> SnowflakeParts {
        self.layout.decompose(id)
    }

    /// The instant encoded in an id of this generator (to the millisecond).
    pub fn time_of(&self, id: SnowflakeId) -> SystemTime {
        let since_epoch = Duration::from_millis(self.parts(id).timestamp);
        // `build` checked that the layout's last instant is representable, so this adds.
        self.epoch()
            .checked_add(since_epoch)
            .unwrap_or(self.epoch())
    }

    /// The layout of this generator's ids.
    pub fn layout(&self) -> SnowflakeLayout {
        self.layout
    }

    /// This generator's worker id.
    pub fn worker(&self) -> u64 {
        self.worker
    }

    /// The instant timestamps are counted from.
    pub fn epoch(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.epoch_millis)
    }

    /// How far back the clock may move before `next_id` fails instead of waiting.
    pub fn max_backwards(&self) -> Duration {
        self.max_backwards
    }

    /// The clock this generator reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

/// Where the builder takes the worker id from.
#[derive(Clone, Copy, Debug)]
enum WorkerSource {
    Unset,
    Value(u64),
    Env,
}

/// Configures a [`SnowflakeGenerator`]: [`SnowflakeGenerator::builder`].
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use catga_core::id::{SnowflakeGenerator, SnowflakeLayout};
///
/// let ids = SnowflakeGenerator::builder()
///     .layout(SnowflakeLayout::new(42, 8, 13)?)
///     .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
///     .worker(200)
///     .max_backwards(Duration::from_millis(20))
///     .build()?;
/// assert_eq!(ids.worker(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SnowflakeBuilder<C = SystemClock> {
    layout: SnowflakeLayout,
    epoch: Option<SystemTime>,
    worker: WorkerSource,
    max_backwards: Duration,
    clock: C,
}

impl<C: Clock> SnowflakeBuilder<C> {
    /// The bit layout; [`SnowflakeLayout::TWITTER`] by default.
    pub fn layout(mut self, layout: SnowflakeLayout) -> Self {
        self.layout = layout;
        self
    }

    /// The instant timestamps count from; 2024-01-01T00:00:00Z by default. It must not be in the
    /// future, and the layout's timestamp must not have run out since.
    pub fn epoch(mut self, epoch: SystemTime) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// The worker id, from configuration; at most the layout's
    /// [`max_worker`](SnowflakeLayout::max_worker).
    pub fn worker(mut self, worker: u64) -> Self {
        self.worker = WorkerSource::Value(worker);
        self
    }

    /// Reads the worker id from [`CATGA_WORKER_ID`](WORKER_ID_VAR) when building.
    pub fn worker_from_env(mut self) -> Self {
        self.worker = WorkerSource::Env;
        self
    }

    /// How far back the clock may move before `next_id` fails instead of waiting for it to
    /// catch up, to the millisecond; 5 ms by default. Zero fails at once.
    pub fn max_backwards(mut self, bound: Duration) -> Self {
        self.max_backwards = bound;
        self
    }

    /// The clock to read; the system's wall clock by default.
    pub fn clock<D: Clock>(self, clock: D) -> SnowflakeBuilder<D> {
        SnowflakeBuilder {
            layout: self.layout,
            epoch: self.epoch,
            worker: self.worker,
            max_backwards: self.max_backwards,
            clock,
        }
    }

    /// Checks the configuration against the layout and the clock, and builds the generator.
    pub fn build(self) -> Result<SnowflakeGenerator<C>, ConfigError> {
        let layout = self.layout;
        let worker = match self.worker {
            WorkerSource::Unset => return Err(ConfigError::NoWorker),
            WorkerSource::Value(worker) => worker,
            WorkerSource::Env => worker_from_env()?,
        };
        if worker > layout.max_worker() {
            return Err(ConfigError::WorkerOutOfRange {
                worker,
                max: layout.max_worker(),
                worker_bits: layout.worker_bits(),
            });
        }
        let epoch = self
            .epoch
            .unwrap_or(UNIX_EPOCH + Duration::from_millis(DEFAULT_EPOCH_UNIX_MILLIS));
        let epoch_millis = epoch
            .duration_since(UNIX_EPOCH)
            .map(millis)
            .map_err(|_| ConfigError::EpochOutOfRange)?;
        // One past the last millisecond must fit too: a used-up last millisecond points there.
        let last_millis = epoch_millis
            .checked_add(layout.max_timestamp() + 1)
            .filter(|_| layout.last_time(epoch).is_some())
            .map(|end| end - 1)
            .ok_or(ConfigError::EpochOutOfRange)?;
        let now = self.clock.unix_millis();
        if epoch_millis > now {
            return Err(ConfigError::EpochInFuture {
                by: Duration::from_millis(epoch_millis - now),
            });
        }
        if now > last_millis {
            return Err(ConfigError::EpochExhausted {
                timestamp_bits: layout.timestamp_bits(),
                ago: Duration::from_millis(now - last_millis),
            });
        }
        let sequence_bits = u32::from(layout.sequence_bits());
        Ok(SnowflakeGenerator {
            next: AtomicU64::new(0),
            clock: self.clock,
            layout,
            worker,
            epoch_millis,
            last_millis,
            max_backwards: self.max_backwards,
            max_backwards_millis: millis(self.max_backwards),
            sequence_bits,
            sequence_mask: layout.max_sequence(),
            worker_bits: u32::from(layout.worker_bits()),
            worker_field: worker << sequence_bits,
        })
    }
}

/// Reads and parses [`WORKER_ID_VAR`].
fn worker_from_env() -> Result<u64, ConfigError> {
    let value =
        std::env::var_os(WORKER_ID_VAR).ok_or(ConfigError::WorkerMissing { var: WORKER_ID_VAR })?;
    let value = value.to_string_lossy();
    value
        .trim()
        .parse::<u64>()
        .map_err(|source| ConfigError::WorkerUnparsable {
            var: WORKER_ID_VAR,
            value: value.into_owned(),
            source,
        })
}

/// Why a [`SnowflakeGenerator`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No worker id was configured.
    #[error(
        "a snowflake generator needs a worker id\n   \
         help: call `.worker(n)`, or `.worker_from_env()` to read `{WORKER_ID_VAR}`"
    )]
    NoWorker,
    /// The worker id does not fit the layout.
    #[error(
        "worker id {worker} does not fit in {worker_bits} bits: the largest is {max}\n   \
         help: use a worker id from 0 to {max}, or a layout with more worker bits"
    )]
    WorkerOutOfRange {
        /// The worker id given.
        worker: u64,
        /// The largest worker id of the layout.
        max: u64,
        /// The layout's worker bits.
        worker_bits: u8,
    },
    /// The worker id environment variable is not set.
    #[error(
        "`{var}` is not set\n   \
         help: set it to this process's worker id, unique among the processes issuing ids"
    )]
    WorkerMissing {
        /// The variable read.
        var: &'static str,
    },
    /// The worker id environment variable is not a number.
    #[error("`{var}` is `{value}`, not a worker id: {source}")]
    WorkerUnparsable {
        /// The variable read.
        var: &'static str,
        /// Its value (lossily decoded when not UTF-8).
        value: String,
        /// Why it does not parse as an unsigned integer.
        #[source]
        source: ParseIntError,
    },
    /// The epoch is before 1970, or so late that the layout's last timestamp is not a
    /// representable instant.
    #[error(
        "the epoch is out of range: it must be after 1970 and leave the layout's timestamps \
         representable\n   \
         help: use a recent past instant, such as the date the service first issued ids"
    )]
    EpochOutOfRange,
    /// The epoch is after the clock's current time.
    #[error(
        "the epoch is {by:?} in the future\n   \
         help: use an epoch in the past, such as the date the service first issued ids"
    )]
    EpochInFuture {
        /// How far ahead of the clock the epoch is.
        by: Duration,
    },
    /// The layout's timestamp counted from the epoch has already run out.
    #[error(
        "the {timestamp_bits}-bit timestamp counted from this epoch ran out {ago:?} ago\n   \
         help: use a later epoch, or a layout with more timestamp bits"
    )]
    EpochExhausted {
        /// The layout's timestamp bits.
        timestamp_bits: u8,
        /// How long ago the last representable millisecond passed.
        ago: Duration,
    },
}

/// Why [`SnowflakeGenerator::next_id`] issued no id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnowflakeError {
    /// The clock is behind the last issued timestamp by more than the bound.
    #[error(
        "the clock moved backwards by {by:?}, more than the {bound:?} the generator waits out\n   \
         help: check the host's time synchronisation, or raise `max_backwards` if such steps are \
         expected"
    )]
    ClockMovedBackwards {
        /// How far behind the last issued timestamp the clock reads.
        by: Duration,
        /// The configured bound.
        bound: Duration,
    },
    /// The clock has passed the last timestamp the layout can express.
    #[error(
        "the {timestamp_bits}-bit timestamp ran out {last:?} after the epoch\n   \
         help: use a later epoch, or a layout with more timestamp bits"
    )]
    TimestampExhausted {
        /// The layout's timestamp bits.
        timestamp_bits: u8,
        /// The last representable timestamp, from the epoch.
        last: Duration,
    },
}

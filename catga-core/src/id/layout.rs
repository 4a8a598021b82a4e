//! How the 63 usable bits of an id are split between timestamp, worker and sequence, and the
//! id type itself.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Bits in an id: the sign bit of an `i64` stays 0, so every id is a positive `i64`.
const ID_BITS: u32 = 63;

/// The bit layout of a [`SnowflakeId`]: from the most significant bit down, the timestamp
/// (milliseconds since the generator's epoch), the worker id and the per-millisecond sequence.
///
/// The three parts add up to 63 bits, each at least one bit wide. [`SnowflakeLayout::TWITTER`]
/// (41 / 10 / 12, the [`Default`]) gives 69.7 years from the epoch, 1,024 workers and 4,096 ids
/// per millisecond per worker.
///
/// ```
/// use catga_core::id::SnowflakeLayout;
///
/// let layout = SnowflakeLayout::new(42, 8, 13)?;
/// assert_eq!(layout.max_worker(), 255);
/// assert_eq!(layout.ids_per_millisecond(), 8_192);
/// assert!(SnowflakeLayout::new(41, 10, 10).is_err()); // only 61 bits
/// # Ok::<(), catga_core::id::LayoutError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnowflakeLayout {
    timestamp_bits: u8,
    worker_bits: u8,
    sequence_bits: u8,
}

impl SnowflakeLayout {
    /// Twitter's layout: 41 timestamp bits, 10 worker bits, 12 sequence bits.
    pub const TWITTER: SnowflakeLayout = SnowflakeLayout {
        timestamp_bits: 41,
        worker_bits: 10,
        sequence_bits: 12,
    };

    /// A layout with these widths, in bits; they must add up to 63 and each be at least 1.
    pub const fn new(
        timestamp_bits: u8,
        worker_bits: u8,
        sequence_bits: u8,
    ) -> Result<Self, LayoutError> {
        if timestamp_bits == 0 {
            return Err(LayoutError::EmptyPart {
                part: Part::Timestamp,
            });
        }
        if worker_bits == 0 {
            return Err(LayoutError::EmptyPart { part: Part::Worker });
        }
        if sequence_bits == 0 {
            return Err(LayoutError::EmptyPart {
                part: Part::Sequence,
            });
        }
        let total = timestamp_bits as u32 + worker_bits as u32 + sequence_bits as u32;
        if total != ID_BITS {
            return Err(LayoutError::WrongTotal {
                timestamp_bits,
                worker_bits,
                sequence_bits,
            });
        }
        Ok(SnowflakeLayout {
            timestamp_bits,
            worker_bits,
            sequence_bits,
        })
    }

    /// Width of the timestamp, in bits.
    pub const fn timestamp_bits(&self) -> u8 {
        self.timestamp_bits
    }

    /// Width of the worker id, in bits.
    pub const fn worker_bits(&self) -> u8 {
        self.worker_bits
    }

    /// Width of the sequence, in bits.
    pub const fn sequence_bits(&self) -> u8 {
        self.sequence_bits
    }

    /// The largest worker id: `2^worker_bits - 1`.
    pub const fn max_worker(&self) -> u64 {
        mask(self.worker_bits)
    }

    /// The largest sequence number within one millisecond: `2^sequence_bits - 1`.
    pub const fn max_sequence(&self) -> u64 {
        mask(self.sequence_bits)
    }

    /// How many ids one worker can issue per millisecond: `2^sequence_bits`. A generator asked
    /// for more waits for the next millisecond.
    pub const fn ids_per_millisecond(&self) -> u64 {
        1 << self.sequence_bits
    }

    /// The last representable timestamp, in milliseconds since the epoch:
    /// `2^timestamp_bits - 1`.
    pub const fn max_timestamp(&self) -> u64 {
        mask(self.timestamp_bits)
    }

    /// The last representable instant for ids counted from `epoch`, or `None` when it is past
    /// what [`SystemTime`] can hold.
    pub fn last_time(&self, epoch: SystemTime) -> Option<SystemTime> {
        epoch.checked_add(Duration::from_millis(self.max_timestamp()))
    }

    /// Puts the parts together into an id, or says which part does not fit.
    ///
    /// ```
    /// use catga_core::id::{SnowflakeLayout, SnowflakeParts};
    ///
    /// let layout = SnowflakeLayout::TWITTER;
    /// let parts = SnowflakeParts { timestamp: 1_000, worker: 3, sequence: 7 };
    /// let id = layout.compose(parts)?;
    /// assert_eq!(id.as_u64(), (1_000 << 22) | (3 << 12) | 7);
    /// assert_eq!(layout.decompose(id), parts);
    /// # Ok::<(), catga_core::id::LayoutError>(())
    /// ```
    pub const fn compose(&self, parts: SnowflakeParts) -> Result<SnowflakeId, LayoutError> {
        let checks = [
            (Part::Timestamp, parts.timestamp, self.max_timestamp()),
            (Part::Worker, parts.worker, self.max_worker()),
            (Part::Sequence, parts.sequence, self.max_sequence()),
        ];
        let mut i = 0;
        while i < checks.len() {
            let (part, value, max) = checks[i];
            if value > max {
                return Err(LayoutError::PartOutOfRange { part, value, max });
            }
            i += 1;
        }
        let shift_ts = self.worker_bits as u32 + self.sequence_bits as u32;
        Ok(SnowflakeId(
            (parts.timestamp << shift_ts) | (parts.worker << self.sequence_bits) | parts.sequence,
        ))
    }

    /// Takes an id apart. Any id decomposes under any layout; the parts mean something only
    /// under the layout that generated it.
    pub const fn decompose(&self, id: SnowflakeId) -> SnowflakeParts {
        let shift_ts = self.worker_bits as u32 + self.sequence_bits as u32;
        SnowflakeParts {
            timestamp: id.0 >> shift_ts,
            worker: (id.0 >> self.sequence_bits) & self.max_worker(),
            sequence: id.0 & self.max_sequence(),
        }
    }
}

impl Default for SnowflakeLayout {
    /// [`SnowflakeLayout::TWITTER`].
    fn default() -> Self {
        SnowflakeLayout::TWITTER
    }
}

/// `2^bits - 1` for `bits <= 63`.
const fn mask(bits: u8) -> u64 {
    (1u64 << bits) - 1
}

/// One of the three parts of an id, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Milliseconds since the epoch.
    Timestamp,
    /// The worker id.
    Worker,
    /// The sequence within a millisecond.
    Sequence,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Timestamp => "timestamp",
            Part::Worker => "worker",
            Part::Sequence => "sequence",
        })
    }
}

/// What is wrong with a layout, or with a part that does not fit one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A part was given zero bits.
    #[error(
        "the {part} of a snowflake layout needs at least 1 bit, got 0\n   \
         help: take a bit from another part, e.g. `SnowflakeLayout::new(41, 10, 12)`"
    )]
    EmptyPart {
        /// The empty part.
        part: Part,
    },
    /// The parts do not add up to 63 bits.
    #[error(
        "a snowflake layout must use exactly 63 bits, got {timestamp_bits} + {worker_bits} + \
         {sequence_bits} = {}\n   \
         help: the sign bit stays 0; give the parts 63 bits in all, e.g. \
         `SnowflakeLayout::new(41, 10, 12)`",
        *timestamp_bits as u32 + *worker_bits as u32 + *sequence_bits as u32
    )]
    WrongTotal {
        /// The timestamp bits asked for.
        timestamp_bits: u8,
        /// The worker bits asked for.
        worker_bits: u8,
        /// The sequence bits asked for.
        sequence_bits: u8,
    },
    /// A part's value is wider than the layout's field for it.
    #[error("{part} {value} does not fit the layout: the largest {part} is {max}")]
    PartOutOfRange {
        /// The part that does not fit.
        part: Part,
        /// Its value.
        value: u64,
        /// The largest value the layout holds for it.
        max: u64,
    },
}

/// A Snowflake id: a timestamp, a worker id and a sequence packed into 63 bits, so it is both a
/// `u64` and a positive `i64`, and ids sort by time.
///
/// Made by a [`SnowflakeGenerator`](super::SnowflakeGenerator); read back with
/// [`parts`](SnowflakeId::parts). Displays and parses as a decimal number and serializes as one
/// (JavaScript numbers hold only 53 bits exactly: send it as a string to browsers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u64", try_from = "u64")]
pub struct SnowflakeId(pub(super) u64);

impl SnowflakeId {
    /// The id with this value, or an error when the sign bit is set.
    pub const fn from_u64(value: u64) -> Result<Self, ParseIdError> {
        if value >> ID_BITS != 0 {
            return Err(ParseIdError::Negative {
                value: value as i64,
            });
        }
        Ok(SnowflakeId(value))
    }

    /// The id with this value, or an error when it is negative.
    pub const fn from_i64(value: i64) -> Result<Self, ParseIdError> {
        if value < 0 {
            return Err(ParseIdError::Negative { value });
        }
        Ok(SnowflakeId(value as u64))
    }

    /// Parses a decimal id, as written by [`Display`](fmt::Display).
    pub fn parse(text: &str) -> Result<Self, ParseIdError> {
        let value = text
            .parse::<i64>()
            .map_err(|source| ParseIdError::Malformed {
                text: text.to_owned(),
                source,
            })?;
        SnowflakeId::from_i64(value)
    }

    /// The id as a `u64`.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The id as an `i64`; always positive or zero.
    pub const fn as_i64(self) -> i64 {
        // The sign bit is 0 by construction, so this does not wrap.
        self.0 as i64
    }

    /// Takes the id apart under `layout` (the one that generated it).
    pub const fn parts(self, layout: &SnowflakeLayout) -> SnowflakeParts {
        layout.decompose(self)
    }
}

impl fmt::Display for SnowflakeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for SnowflakeId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SnowflakeId::parse(text)
    }
}

impl From<SnowflakeId> for u64 {
    fn from(id: SnowflakeId) -> u64 {
        id.0
    }
}

impl From<SnowflakeId> for i64 {
    fn from(id: SnowflakeId) -> i64 {
        id.as_i64()
    }
}

impl TryFrom<u64> for SnowflakeId {
    type Error = ParseIdError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        SnowflakeId::from_u64(value)
    }
}

impl TryFrom<i64> for SnowflakeId {
    type Error = ParseIdError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        SnowflakeId::from_i64(value)
    }
}

/// Why a value is not a [`SnowflakeId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The text is not a decimal `i64`.
    #[error("`{text}` is not a snowflake id: {source}")]
    Malformed {
        /// The text given.
        text: String,
        /// Why it does not parse as an `i64`.
        #[source]
        source: ParseIntError,
    },
    /// The value is negative as an `i64` (its sign bit is set); no layout makes such ids.
    #[error("{value} is not a snowflake id: ids are never negative")]
    Negative {
        /// The value, as an `i64`.
        value: i64,
    },
}

/// The parts of a [`SnowflakeId`] under a [`SnowflakeLayout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnowflakeParts {
    /// Milliseconds since the generator's epoch.
    pub timestamp: u64,
    /// The worker that issued the id.
    pub worker: u64,
    /// The id's position among those the worker issued in that millisecond.
    pub sequence: u64,
}

impl SnowflakeParts {
    /// The instant of the timestamp, counted from `epoch` (the generator's), or `None` when it
    /// is past what [`SystemTime`] can hold.
    pub fn time(&self, epoch: SystemTime) -> Option<SystemTime> {
        epoch.checked_add(Duration::from_millis(self.timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twitter_layout_figures() {
        let l = SnowflakeLayout::TWITTER;
        assert_eq!(l.max_worker(), 1_023);
        assert_eq!(l.max_sequence(), 4_095);
        assert_eq!(l.ids_per_millisecond(), 4_096);
        assert_eq!(l.max_timestamp(), (1 << 41) - 1);
    }

    #[test]
    fn extreme_layouts_keep_the_sign_bit_clear() {
        for (t, w, s) in [(61, 1, 1), (1, 61, 1), (1, 1, 61)] {
            let l = SnowflakeLayout::new(t, w, s).ok();
            let l = l.as_ref();
            let max = l.map(|l| {
                l.compose(SnowflakeParts {
                    timestamp: l.max_timestamp(),
                    worker: l.max_worker(),
                    sequence: l.max_sequence(),
                })
            });
            assert_eq!(max, Some(Ok(SnowflakeId(i64::MAX as u64))));
        }
    }

    #[test]
    fn wide_parts_do_not_overflow_the_total() {
        assert_eq!(
            SnowflakeLayout::new(255, 255, 255),
            Err(LayoutError::WrongTotal {
                timestamp_bits: 255,
                worker_bits: 255,
                sequence_bits: 255
            })
        );
    }
}

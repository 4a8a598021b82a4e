//! Snowflake ids: unique, time-ordered 63-bit integers made without coordination.
//!
//! An id packs three numbers into the low 63 bits of a `u64`, so it is also a positive `i64`
//! (the sign bit stays 0) and ids sort by the time they were made:
//!
//! ```text
//!  63  62                       22 21          12 11            0   (default layout)
//! ┌───┬──────────────────────────┬──────────────┬──────────────┐
//! │ 0 │ timestamp (41 bits)      │ worker (10)  │ sequence (12)│
//! └───┴──────────────────────────┴──────────────┴──────────────┘
//! ```
//!
//! * **timestamp**: milliseconds since the generator's epoch (2024-01-01T00:00:00Z by
//!   default); 41 bits last 69.7 years.
//! * **worker**: which process made the id; each process issuing ids at the same time needs its
//!   own (from configuration, or from `CATGA_WORKER_ID`). 10 bits allow 1,024 workers.
//! * **sequence**: the id's rank within its millisecond on its worker; 12 bits allow 4,096 ids
//!   per millisecond per worker, after which the generator waits for the next millisecond.
//!
//! [`SnowflakeLayout`] changes the widths (they always add up to 63), [`SnowflakeGenerator`]
//! issues ids from any number of threads without a lock, and [`Clock`] lets tests move time by
//! hand ([`ManualClock`]). A clock that steps back a little (5 ms by default) is waited out; one
//! that steps back further is an error, never a repeated id.
//!
//! ```
//! use catga_core::id::{SnowflakeGenerator, SnowflakeId, SnowflakeLayout};
//!
//! let ids = SnowflakeGenerator::builder()
//!     .layout(SnowflakeLayout::new(41, 10, 12)?)
//!     .worker(42)
//!     .build()?;
//! let id = ids.next_id()?;
//! let parts = id.parts(&ids.layout());
//! assert_eq!(parts.worker, 42);
//! assert_eq!(ids.layout().compose(parts)?, id);
//! assert_eq!(id.to_string().parse::<SnowflakeId>()?, id);
//!
//! let batch = ids.next_ids(1_000)?; // one clock reading per 4,096 ids
//! assert!(batch.windows(2).all(|w| w[0] < w[1]) && batch[0] > id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clock;
mod layout;
mod snowflake;

pub use clock::{Clock, ManualClock, SystemClock};
pub use layout::{LayoutError, ParseIdError, Part, SnowflakeId, SnowflakeLayout, SnowflakeParts};
pub use snowflake::{
    ConfigError, DEFAULT_EPOCH_UNIX_MILLIS, DEFAULT_MAX_BACKWARDS, SnowflakeBuilder,
    SnowflakeError, SnowflakeGenerator, WORKER_ID_VAR,
};

//! What the NATS lease store reports, with the bucket, lease and key involved.

use std::time::Duration;

use async_nats::jetstream;

use crate::error::ConnectError;

/// A failure of [`NatsLeaseStore`](crate::NatsLeaseStore): setting it up, or one operation.
///
/// The [`LeaseStore`](catga_core::store::lease::LeaseStore) methods return it boxed
/// (`catga_core::error::BoxError`); `error.downcast_ref::<NatsLeaseError>()` gets it back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsLeaseError {
    /// Connecting to the server failed, or an option was refused before anything was sent
    /// ([`ConnectError::InvalidOption`]).
    #[error("could not set up the nats lease store")]
    Connect(#[source] ConnectError),
    /// The lease bucket could not be opened, nor created (JetStream disabled, no permission,
    /// a stream of that name that is not a key-value bucket).
    #[error("could not open or create the lease bucket `{bucket}`")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// A TTL the bucket cannot keep: its entries are removed `max_age` after their last
    /// write, so a grant running that long would vanish while it runs.
    #[error(
        "a lease ttl of {ttl:?} is not shorter than the lease bucket `{bucket}`'s max age of {max_age:?}\nhelp: use a shorter ttl, or a bucket with a longer `max_age`"
    )]
    TtlTooLong {
        /// The TTL asked for.
        ttl: Duration,
        /// The bucket.
        bucket: String,
        /// The bucket's `max_age`.
        max_age: Duration,
    },
    /// An acquire by the empty holder name, which the store's values use for "vacant".
    #[error(
        "the lease `{name}` cannot be acquired by an empty holder name\nhelp: name the holder, e.g. with a UUID per process"
    )]
    EmptyHolder {
        /// The lease.
        name: String,
    },
    /// Reading a lease's entry failed.
    #[error("could not read the lease `{name}` (key `{key}` in bucket `{bucket}`)")]
    Read {
        /// The lease.
        name: String,
        /// Its key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The client's error (boxed: JetStream's errors are large).
        #[source]
        source: Box<jetstream::stream::LastRawMessageError>,
    },
    /// Writing a lease's entry failed otherwise than by a conflict (a conflict is an answer:
    /// somebody else wrote first). Whether the write happened is unknown when the
    /// acknowledgement timed out or the connection was lost.
    #[error("could not write the lease `{name}` (key `{key}` in bucket `{bucket}`)")]
    Write {
        /// The lease.
        name: String,
        /// Its key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The client's error (boxed: JetStream's errors are large).
        #[source]
        source: Box<jetstream::kv::UpdateError>,
    },
    /// A lease's entry holds a value this store did not write (another program wrote the key).
    #[error(
        "the lease `{name}` holds a value this store did not write (key `{key}` in bucket `{bucket}`, revision {revision})"
    )]
    Malformed {
        /// The lease.
        name: String,
        /// Its key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The entry's revision.
        revision: u64,
        /// What is wrong with it.
        #[source]
        source: MalformedLeaseValue,
    },
}

/// What is wrong with a lease value (see [`NatsLeaseStore`](crate::NatsLeaseStore), "Bucket
/// and keys", for the format).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedLeaseValue {
    /// Not the JSON object of a lease value: not JSON, a field missing, one of another type,
    /// or one more.
    #[error("not a lease value")]
    Json(#[source] serde_json::Error),
    /// A version of the format this store cannot read.
    #[error("lease value version {found}; this store reads version 1")]
    Version {
        /// The version the value says.
        found: u32,
    },
    /// Fields that contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

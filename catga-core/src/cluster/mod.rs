//! Coordination between the instances of a service, on the engines it already runs: leader
//! election through a lease with fencing tokens ([`Leadership`]), so that work only one
//! instance may do (recovering an outbox, firing scheduled messages, sweeping old records)
//! runs on one, and stops there as soon as another may have taken over; and messages scheduled
//! for later ([`Scheduler`]), fired by the leader.
//!
//! catga builds no consensus of its own: the lease is granted by a
//! [`LeaseStore`](crate::store::lease::LeaseStore) (in memory here; Redis, PostgreSQL and NATS
//! key-value in the adapters), whose single server or replicated log does the agreeing.

mod leadership;
mod retention;
mod scheduler;
mod singleton;
mod timing;

pub use leadership::{Elected, Leader, LeaderGate, Leadership, Role};
pub use retention::{DEFAULT_RETENTION_INTERVAL, RETENTION_FAILURES, RETENTION_PURGED, Retention};
pub use scheduler::{
    DEFAULT_CLAIM_LEASE, DEFAULT_SCHEDULER_BATCH, DEFAULT_SCHEDULER_POLL, RunningScheduler,
    Scheduler,
};
pub use singleton::Singleton;
pub use timing::{InvalidTiming, MIN_LEASE_TTL};

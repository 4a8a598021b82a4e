//! The transport conformance suite and what server-backed tests share (feature `testkit`).
//!
//! Every transport promises the same things: a request reaches one instance of the service
//! that handles it and its reply, or its error read the same as where it happened, comes back;
//! an event reaches every service once and the instances of a service share it; a failure is
//! redelivered within a budget and then kept where a person can find it; a panic is a typed
//! failure, never silence; bytes that are not a message are kept, never dispatched; a stopped
//! instance takes nothing more. The suite checks those promises, scenario by scenario, on any
//! [`Transport`](crate::transport::Transport), the way `tracing-mock` lets every `tracing`
//! crate test against one set of expectations.
//!
//! A transport takes part by saying how to open an isolated corner of its broker for one test
//! ([`TransportUnderTest`], [`Corner`]), then expanding [`transport_conformance!`] in a test
//! binary of its own (`tests/conformance.rs`), which writes one `#[test]` per scenario:
//! `cargo test --test conformance` lists every scenario by name
//! (`requests::a_handler_error_comes_back_typed_not_as_a_timeout`, …). [`Memory`] is the
//! in-memory transport's side, run by catga-core itself; catga-nats and catga-redis run the
//! same suite against their servers.
//!
//! The scenarios declare messages and handlers, and `#[handler]` registers itself with the
//! whole program. Compiled into this library, they would join every application of every
//! binary that enables the feature; so they are written as macros, expanded into the test
//! binary that runs them (their text lives in `scenario/`, one file per family of promises),
//! and nothing in this module registers anything.
//!
//! The rest is what server-backed tests need, whatever the transport: waiting with a deadline
//! ([`eventually`], [`within`], [`dead_letters`]), unique names ([`unique`]), the rule for a
//! missing server ([`services`]), a server process of a test's own ([`ServerProcess`]), and the
//! log capture of the credential tests ([`logs`]).
//!
//! The store conformance suite, one per store trait, is in [`stores`].
//!
//! This module is test support: it panics to report a failure, with a message that says what
//! was expected.

mod conformance;
mod gauges;
pub mod logs;
mod memory;
mod names;
mod outage;
mod process;
mod runtime;
mod scenario;
pub mod services;
pub mod stores;
mod under_test;
mod wait;

pub use gauges::{fresh_gauges, install_gauge_recorder};
pub use memory::{Memory, MemoryCorner};
pub use names::unique;
pub use outage::BrokerOutage;
pub use process::{ServerProcess, free_port};
pub use runtime::runtime;
pub use under_test::{Capabilities, Corner, Settings, TransportUnderTest};
pub use wait::{PATIENCE, dead_letters, eventually, settled, within};

pub use crate::conformance_scenarios as scenarios;
pub use crate::transport_conformance;

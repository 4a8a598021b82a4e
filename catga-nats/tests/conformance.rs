//! The transport conformance suite (`catga_core::testkit`) against a real NATS server, each
//! scenario in a corner of its own: `cargo test -p catga-nats --test conformance` lists them.

mod common;

catga_core::testkit::transport_conformance!(common::Nats);

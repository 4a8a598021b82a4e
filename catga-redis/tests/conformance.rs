//! The transport conformance suite (`catga_core::testkit`) against a real Redis server, each
//! scenario under a key prefix of its own: `cargo test -p catga-redis --test conformance`
//! lists them.

mod common;

catga_core::testkit::transport_conformance!(common::Redis);

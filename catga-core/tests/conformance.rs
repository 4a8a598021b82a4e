//! The transport conformance suite (`catga_core::testkit`) on the in-memory transport, on
//! Tokio's paused clock: `cargo test -p catga-core --test conformance` lists every scenario.

catga_core::testkit::transport_conformance!(catga_core::testkit::Memory);

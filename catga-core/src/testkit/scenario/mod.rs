//! The scenarios, one family of promises per file.
//!
//! Each family is a macro (`__catga_scenarios_<family>!`) whose text declares the family's
//! messages, state, handlers and scenario functions (`pub async fn scenario<K:
//! TransportUnderTest>(kit: &K)`, each opening a corner of its own and panicking with what it
//! expected), and, given `tests`, one `#[test]` per scenario. It is a macro because the
//! handlers register themselves with the program they are compiled into: expanded in a
//! transport's test binary they serve only that binary. Wire names start with the family's
//! name and handler modules with `<family>_`, so the families share one binary without a clash.
//!
//! [`transport_conformance!`](crate::testkit::transport_conformance) expands every family;
//! [`scenarios!`](crate::testkit::scenarios) expands one without its tests.

mod broadcast;
mod delivery;
mod errors;
mod events;
mod lifecycle;
mod panics;
mod remote;
mod requests;
mod saga;
mod sides;
mod wire;

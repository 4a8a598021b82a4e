//! The macro that writes the suite into a transport's test binary.

/// Writes the transport conformance suite into this test binary: every scenario of the
/// [`testkit`](crate::testkit), run against the [`TransportUnderTest`] that `$kit` (an
/// expression) makes, one `#[test]` per scenario, named `family::scenario`.
///
/// Expand it once, at the root of a test binary of its own (`tests/conformance.rs`): the
/// scenarios' messages give every application of the binary their wire names. The binary's
/// crate needs `serde`, `serde_json`, `thiserror`, `tokio`, `futures` and `uuid` among its
/// (dev-)dependencies, as any crate declaring catga messages does.
///
/// ```ignore
/// mod common;
///
/// catga_core::testkit::transport_conformance!(common::Nats);
/// ```
///
/// The families, each a module of the binary: `requests` (request/reply, typed errors,
/// deadlines, no responders, sharing, trace context, draining), `events` (fan-out, sharing,
/// in-flight limit, draining, deadlines), `broadcast` (cache invalidation on every instance),
/// `delivery` (the delivery budget and the dead letters), `panics`, `wire` (what the route
/// says beats what the bytes claim; undecodable and oversized messages), `lifecycle`
/// (stopped means stopped), `remote` (follow-ups, timeouts and `idempotent`, a request sent
/// before its service runs, events outliving their publisher's deadline), `errors` (an error
/// reads the same here and there), `saga` (steps and compensations handled elsewhere) and
/// `sides` (a behaviour layered on both sides of a transport, with one store).
///
/// [`TransportUnderTest`]: crate::testkit::TransportUnderTest
#[macro_export]
macro_rules! transport_conformance {
    ($kit:expr $(,)?) => {
        /// The transport the scenarios run against.
        fn __catga_transport_under_test() -> impl $crate::testkit::TransportUnderTest {
            $kit
        }

        $crate::__catga_conformance_family!(requests, __catga_scenarios_requests);
        $crate::__catga_conformance_family!(events, __catga_scenarios_events);
        $crate::__catga_conformance_family!(broadcast, __catga_scenarios_broadcast);
        $crate::__catga_conformance_family!(delivery, __catga_scenarios_delivery);
        $crate::__catga_conformance_family!(panics, __catga_scenarios_panics);
        $crate::__catga_conformance_family!(wire, __catga_scenarios_wire);
        $crate::__catga_conformance_family!(lifecycle, __catga_scenarios_lifecycle);
        $crate::__catga_conformance_family!(remote, __catga_scenarios_remote);
        $crate::__catga_conformance_family!(errors, __catga_scenarios_errors);
        $crate::__catga_conformance_family!(saga, __catga_scenarios_saga);
        $crate::__catga_conformance_family!(sides, __catga_scenarios_sides);
    };
}

/// Declares one family of the suite in the calling module, without its tests: the family's
/// messages, state, handlers and scenario functions, to run one scenario by hand or to reuse
/// the family's fixtures (catga-core's in-process saga tests use the saga family's).
///
/// `$family` is one of `requests`, `events`, `broadcast`, `delivery`, `panics`, `wire`,
/// `lifecycle`, `remote`, `errors`, `saga`, `sides` (see [`transport_conformance!`]). Expand it in a
/// module of its own; expanding two families in one module clashes their names.
///
/// ```ignore
/// mod saga {
///     catga_core::testkit::scenarios!(saga);
/// }
/// use saga::{Ledger, checkout};
/// ```
///
/// [`transport_conformance!`]: crate::testkit::transport_conformance
#[macro_export]
macro_rules! conformance_scenarios {
    (requests) => {
        $crate::__catga_scenarios_requests!();
    };
    (events) => {
        $crate::__catga_scenarios_events!();
    };
    (broadcast) => {
        $crate::__catga_scenarios_broadcast!();
    };
    (delivery) => {
        $crate::__catga_scenarios_delivery!();
    };
    (panics) => {
        $crate::__catga_scenarios_panics!();
    };
    (wire) => {
        $crate::__catga_scenarios_wire!();
    };
    (lifecycle) => {
        $crate::__catga_scenarios_lifecycle!();
    };
    (remote) => {
        $crate::__catga_scenarios_remote!();
    };
    (errors) => {
        $crate::__catga_scenarios_errors!();
    };
    (saga) => {
        $crate::__catga_scenarios_saga!();
    };
    (sides) => {
        $crate::__catga_scenarios_sides!();
    };
}

/// One family of the suite: its scenarios in `$family::scenario`, its tests in `$family`.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_conformance_family {
    ($family:ident, $scenarios:ident) => {
        pub mod $family {
            pub mod scenario {
                $crate::$scenarios!();
            }

            $crate::$scenarios!(tests);
        }
    };
}

/// One `#[test]` per scenario of a family, each on the runtime the transport asks for.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_conformance_tests {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                let kit = super::__catga_transport_under_test();
                $crate::testkit::runtime(&kit).block_on(scenario::$scenario(&kit));
            }
        )*
    };
}

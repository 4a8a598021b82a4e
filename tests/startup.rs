//! Whole-program checks at `build()`: one error listing every problem with its `file:line`,
//! including a duplicate handler that only exists because two crates are linked together.
//!
//! This binary is deliberately misconfigured; every other test binary builds cleanly.

use std::convert::Infallible;
use std::path::Path;

use catga_core::prelude::*;
use catga_core::{BuildError, Location, MessageKind, Problem};

// Linking these two crates is the point: each registers a handler of `stock.reserve`.
extern crate catga_fixture_catalog;
extern crate catga_fixture_warehouse;

/// No handler anywhere.
#[query(output = u32)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Orphan;

/// Same wire name as the catalogue's `StockChanged` event.
#[command(name = "stock.changed")]
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeStock;

#[handler]
async fn change_stock(_cmd: ChangeStock) -> Result<(), Infallible> {
    Ok(())
}

/// Handled, but its handler needs state nobody registers.
#[command]
#[derive(Debug, Serialize, Deserialize)]
pub struct Audit;

pub struct Database;
pub struct Clock;

#[handler]
async fn audit(_cmd: Audit, _db: &Database, _clock: &Clock) -> Result<(), Infallible> {
    Ok(())
}

/// Handled elsewhere: declared so, and so not a problem.
#[command(name = "billing.charge")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Charge;

fn build_error() -> BuildError {
    Catga::builder()
        .state(Clock)
        .state(7u8)
        .state(8u8)
        .allow_unhandled::<Charge>()
        .build()
        .expect_err("the program is misconfigured")
}

/// The 1-based line of the first line of `file` (relative to the workspace root) containing
/// `needle`, so the test does not hard-code line numbers.
fn line_of(file: &str, needle: &str) -> u32 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let index = text.lines().position(|l| l.contains(needle)).unwrap();
    u32::try_from(index + 1).unwrap()
}

fn at(file: &'static str, needle: &str) -> Location {
    Location {
        file,
        line: line_of(file, needle),
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_location() {
    let err = build_error();
    let problems = err.problems();
    assert_eq!(problems.len(), 5, "{err}");

    assert_eq!(
        problems[0],
        Problem::NoHandler {
            message: "Orphan",
            kind: MessageKind::Query,
            declared_at: at("tests/startup.rs", "pub struct Orphan"),
        }
    );

    let Problem::DuplicateHandler { message, handlers } = &problems[1] else {
        panic!("expected a duplicate handler, got {}", problems[1]);
    };
    assert_eq!(*message, "stock.reserve");
    let mut found: Vec<(&str, Location)> = handlers.iter().map(|h| (h.name, h.location)).collect();
    found.sort_by_key(|(name, _)| *name);
    assert_eq!(
        found,
        vec![
            (
                "catga_fixture_catalog::reserve",
                at("tests/fixtures/catalog/src/lib.rs", "pub async fn reserve(")
            ),
            (
                "catga_fixture_warehouse::reserve_from_shelf",
                at(
                    "tests/fixtures/warehouse/src/lib.rs",
                    "pub async fn reserve_from_shelf("
                )
            ),
        ]
    );

    let Problem::MissingState { handler, types } = &problems[2] else {
        panic!("expected missing state, got {}", problems[2]);
    };
    assert_eq!(handler.name, "startup::audit");
    assert_eq!(handler.location, at("tests/startup.rs", "async fn audit("));
    assert_eq!(types, &vec!["startup::Database"], "`Clock` was registered");

    let Problem::WireNameClash { name, types } = &problems[3] else {
        panic!("expected a wire-name clash, got {}", problems[3]);
    };
    assert_eq!(*name, "stock.changed");
    let mut clashing: Vec<&str> = types.iter().map(|(ty, _)| *ty).collect();
    clashing.sort();
    assert_eq!(
        clashing,
        vec![
            "catga_fixture_catalog::StockChanged",
            "startup::ChangeStock"
        ]
    );

    assert_eq!(problems[4], Problem::DuplicateState { type_name: "u8" });
}

#[test]
fn the_message_lists_every_problem_readably() {
    let text = build_error().to_string();
    assert!(
        text.starts_with("catga: the application is misconfigured (5 problems):"),
        "{text}"
    );
    for expected in [
        "1. no handler for query `Orphan` (declared at tests/startup.rs:",
        "2. `stock.reserve` has 2 handlers; a request must have exactly one:",
        "- `catga_fixture_catalog::reserve` at tests/fixtures/catalog/src/lib.rs:",
        "- `catga_fixture_warehouse::reserve_from_shelf` at tests/fixtures/warehouse/src/lib.rs:",
        "3. handler `startup::audit` at tests/startup.rs:",
        "needs state that was not registered: `startup::Database`",
        "4. 2 message types share the wire name `stock.changed`:",
        "5. state `u8` was registered more than once",
        "help: add `.state(…)` with a value of each type to the builder",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // `Debug` (what `fn main() -> Result<…>` prints) is the same readable list.
    assert_eq!(format!("{:?}", build_error()), text);
}

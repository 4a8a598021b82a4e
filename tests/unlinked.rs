//! Handlers in a library crate the binary never names are not linked (the reproducer
//! `split/`): `catga-fixture-warehouse` is a dependency of this test, but nothing here names
//! it, so its handlers are missing, and `build()` says why and what to write.
//! `tests/startup.rs` names it (`extern crate`) and finds them.

use catga_core::prelude::*;
use catga_core::{MessageKind, Problem};
use catga_fixture_catalog::CountStock;

#[test]
fn a_handler_crate_the_binary_never_names_is_not_linked_and_build_says_so() {
    let Err(err) = Catga::builder().build() else {
        panic!("a missing handler");
    };
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert!(
        matches!(
            &problems[0],
            Problem::NoHandler {
                message: "stock.count",
                kind: MessageKind::Command,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("never names") && text.contains("`use my_handlers as _;`"),
        "the error names the likely cause and the fix: {text}"
    );
    // `CountStock` is named so its declaring crate is linked; its handler's crate is not.
    let _ = CountStock;
}

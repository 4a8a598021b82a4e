//! # catga-lints
//!
//! catga's diagnostics: the [catalogue](catalog) of rules (stable ids `CATGA001`…, levels,
//! messages, fixes and rationale), their syn-based implementations in [`rules`], and the
//! whole-program checks of `cargo catga lint` in [`program`].
//!
//! A rule has one implementation and up to three surfaces ([`catalog::Surface`]): the macros
//! call the same functions while `#[handler]` or `#[command]` expands (errors become
//! `compile_error!`, warnings `deprecated` warnings naming the rule), rustc reports the checks
//! that need types through `#[diagnostic::on_unimplemented]`, and `cargo catga lint` runs
//! every rule over all the sources of a workspace at once.
//!
//! ```
//! use catga_lints::catalog;
//!
//! let rule = catalog::find("unwrap_in_handler").expect("a rule");
//! assert_eq!(rule.id, "CATGA030");
//! assert_eq!(rule.docs(), "docs/lints.md#catga030");
//! ```
//!
//! `docs/lints.md` is [`docs::render`]ed from the catalogue; a test keeps them identical.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod catalog;
pub mod docs;
pub mod finding;
pub mod kind;
#[cfg(feature = "cli")]
pub mod program;
pub mod rules;

#[cfg(feature = "cli")]
pub mod cli;

pub use catalog::{Level, RULES, Rule};
pub use finding::Finding;
pub use kind::Kind;

//! The rules' implementations: each function here is called both by the macros (at expansion)
//! and by `cargo catga lint` (over whole crates), so a rule has one implementation.

pub mod body;
pub mod duration;
pub mod handler;
pub mod message;
pub mod naming;

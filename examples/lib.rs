//! Runnable examples of catga; see the `[[example]]` targets (`cargo run --example quickstart`).

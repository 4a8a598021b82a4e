//! Runnable examples of catga over a real transport; see the `[[example]]` targets
//! (`cargo run --example two_services -- nats`).

//! The error types users actually write are handler errors (the reproducers
//! `mistakes/m19_anyhow_error.rs`, `m20_box_dyn_error.rs`, `m25_string_error.rs`): `anyhow`,
//! `eyre`, a boxed error and a `String`. The error a handler wrapped is found with
//! `downcast_ref`, also under added context; a catga error inside keeps its code and
//! retryability.

use std::time::Duration;

use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("out of stock: {0}")]
pub struct OutOfStock(pub u32);

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaAnyhow(pub u32);

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaAnyhowContext(pub u32);

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaAnyhowCatga;

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaEyre(pub u32);

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaBox(pub u32);

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaString(pub u32);

#[handler]
async fn via_anyhow(cmd: ViaAnyhow) -> anyhow::Result<u32> {
    Err(OutOfStock(cmd.0).into())
}

#[handler]
async fn via_anyhow_context(cmd: ViaAnyhowContext) -> anyhow::Result<u32> {
    use anyhow::Context as _;
    Err(OutOfStock(cmd.0)).context("reserving stock")
}

#[handler]
async fn via_anyhow_catga(_cmd: ViaAnyhowCatga, ctx: &Context) -> anyhow::Result<u32> {
    // A dispatch of its own that times out, propagated with `?`.
    let inner = Context::new().with_timeout(Duration::from_millis(10));
    let _ = ctx;
    let timed_out: Error = ErrorKind::Timeout {
        message: "Slow",
        after: Some(inner.remaining().unwrap_or_default()),
    }
    .into();
    Err(timed_out)?
}

#[handler]
async fn via_eyre(cmd: ViaEyre) -> eyre::Result<u32> {
    Err(OutOfStock(cmd.0).into())
}

#[handler]
async fn via_box(cmd: ViaBox) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Err(Box::new(OutOfStock(cmd.0)))
}

#[handler]
async fn via_string(cmd: ViaString) -> Result<u32, String> {
    Err(format!("out of stock: {}", cmd.0))
}

fn app() -> Catga {
    Catga::builder().build().unwrap()
}

#[tokio::test]
async fn anyhow_errors_keep_the_error_they_wrap() {
    let err = app().send(ViaAnyhow(3)).await.unwrap_err();
    assert_eq!(err.code(), "handler");
    assert!(!err.is_retryable());
    assert_eq!(err.downcast_ref::<OutOfStock>().map(|e| e.0), Some(3));
    assert!(err.to_string().contains("out of stock: 3"), "{err}");

    let err = app().send(ViaAnyhowContext(4)).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<OutOfStock>().map(|e| e.0),
        Some(4),
        "under context"
    );
    assert!(err.to_string().contains("reserving stock"), "{err}");
}

#[tokio::test]
async fn a_catga_error_inside_anyhow_keeps_its_retryability_and_is_found() {
    let err = app().send(ViaAnyhowCatga).await.unwrap_err();
    // The handler failed (its code), for a reason that is worth retrying (the inner error's).
    assert_eq!(err.code(), "handler", "{err}");
    assert!(err.is_retryable());
    let inner = err
        .downcast_ref::<Error>()
        .expect("the dispatch error it propagated");
    assert_eq!(inner.code(), "timeout");
}

#[tokio::test]
async fn eyre_boxed_and_string_errors_are_handler_errors() {
    let err = app().send(ViaEyre(5)).await.unwrap_err();
    assert_eq!(err.code(), "handler");
    assert_eq!(err.downcast_ref::<OutOfStock>().map(|e| e.0), Some(5));

    let err = app().send(ViaBox(6)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<OutOfStock>().map(|e| e.0), Some(6));

    let err = app().send(ViaString(7)).await.unwrap_err();
    assert_eq!(err.code(), "handler");
    assert!(err.to_string().contains("out of stock: 7"), "{err}");
}

//! Handlers that exist are found, or the error says why not (the reproducer
//! `nc_r02_handlers_filter`): the documented filter selects the module's handlers, and a filter
//! that selects none cannot make a service that silently serves nothing.

use std::convert::Infallible;

use catga_core::prelude::*;
use catga_core::transport::{MemoryTransport, TransportError};

pub mod shipping {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Ship;

    #[handler]
    async fn ship(_cmd: Ship) -> Result<u32, Infallible> {
        Ok(1)
    }
}

pub mod shipping_rates {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Quote;

    #[handler]
    async fn quote(_cmd: Quote) -> Result<u32, Infallible> {
        Ok(2)
    }
}

#[tokio::test]
async fn the_documented_filter_selects_the_modules_handlers() {
    let app = Catga::builder()
        .transport(MemoryTransport::new())
        .service("shipping")
        .handlers(|h| h.is_in("shipping"))
        .build()
        .unwrap();
    assert_eq!(app.send(shipping::Ship).await.unwrap(), 1);
    // A module whose name only starts the same is not inside `shipping`.
    let err = app.send(shipping_rates::Quote).await.unwrap_err();
    assert_eq!(
        err.code(),
        "transport",
        "routed away, not handled here: {err}"
    );
    app.serve().await.unwrap().shutdown().await;
}

#[tokio::test]
async fn a_filter_that_selects_nothing_cannot_serve_silently() {
    // Written against names without their crate: selects nothing.
    let app = Catga::builder()
        .transport(MemoryTransport::new())
        .service("shipping")
        .handlers(|h| h.name.starts_with("shipping::"))
        .build()
        .unwrap();
    let Err(err) = app.serve().await else {
        panic!("nothing to serve");
    };
    assert!(
        matches!(&err, TransportError::NothingToServe { service } if service == "shipping"),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("h.is_in(") && text.contains("use my_handlers as _;"),
        "{text}"
    );
}

#[tokio::test]
async fn a_filter_may_capture_what_it_selects() {
    // As read from configuration at startup: a closure capturing it, not only a fn pointer.
    let modules: Vec<String> = vec!["shipping_rates".to_string()];
    let app = Catga::builder()
        .transport(MemoryTransport::new())
        .service("rates")
        .handlers(move |h| modules.iter().any(|m| h.is_in(m)))
        .build()
        .unwrap();
    assert_eq!(app.send(shipping_rates::Quote).await.unwrap(), 2);
    let err = app.send(shipping::Ship).await.unwrap_err();
    assert_eq!(err.code(), "transport", "routed away: {err}");
    app.serve().await.unwrap().shutdown().await;
}

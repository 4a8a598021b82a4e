//! An order service over HTTP: `cargo run -p catga-axum --example orders`, then
//!
//! ```text
//! curl -i -X POST localhost:3000/api/orders -H 'content-type: application/json' \
//!      -H 'idempotency-key: 7f0c' -d '{"customer":"ada","quantity":2}'
//! curl -i 'localhost:3000/api/orders/get?id=1'
//! curl -i -X POST localhost:3000/api/orders -H 'content-type: application/json' \
//!      -d '{"customer":"","quantity":0}'                      # 422, both fields
//! curl -i -X POST localhost:3000/api/orders -H 'content-type: application/json' \
//!      -d '{"customer":"ada","quantity":500}'                 # 409, orders.out_of_stock
//! curl -i localhost:3000/readyz
//! ```

use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use catga_axum::Routes;
use catga_core::prelude::*;

#[command(output = u64, name = "orders.place")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer: String,
    pub quantity: u32,
}

impl Validate for PlaceOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.customer.is_empty() {
            errors.add("customer", "must not be empty");
        }
        if self.quantity == 0 {
            errors.add("quantity", "must be at least 1");
        }
        errors.into_result()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    pub quantity: u32,
}

#[query(output = Order, name = "orders.get")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOrder {
    pub id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("only {available} left")]
    OutOfStock { available: u32 },
    #[error("no order {0}")]
    NotFound(u64),
    #[error("the order book is unavailable")]
    Unavailable,
}

impl ErrorCode for OrderError {
    fn code(&self) -> &'static str {
        match self {
            OrderError::OutOfStock { .. } => "orders.out_of_stock",
            OrderError::NotFound(_) => "orders.not_found",
            OrderError::Unavailable => "orders.unavailable",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            OrderError::OutOfStock { available } => {
                Some(serde_json::json!({ "available": available }))
            }
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Orders {
    book: Mutex<Vec<Order>>,
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder) -> Result<u64, OrderError> {
        if cmd.quantity > 100 {
            return Err(OrderError::OutOfStock { available: 100 });
        }
        let mut book = self.book.lock().map_err(|_| OrderError::Unavailable)?;
        let id = book.len() as u64 + 1;
        book.push(Order {
            id,
            customer: cmd.customer,
            quantity: cmd.quantity,
        });
        Ok(id)
    }

    async fn get(&self, query: GetOrder) -> Result<Order, OrderError> {
        let book = self.book.lock().map_err(|_| OrderError::Unavailable)?;
        let found = book.iter().find(|order| order.id == query.id);
        found.cloned().ok_or(OrderError::NotFound(query.id))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Catga::builder()
        .state(Orders::default())
        .layer(Idempotency::default())
        .layer(Validation)
        .build()?;

    let api = Routes::new(app.clone())
        .command::<PlaceOrder>("/orders")
        .query::<GetOrder>("/orders/get")
        .timeout(Duration::from_secs(5))
        .forward_header(HeaderName::from_static("x-tenant"))
        .map_code("orders.out_of_stock", StatusCode::CONFLICT)
        .map_code("orders.not_found", StatusCode::NOT_FOUND)
        .map_code("orders.unavailable", StatusCode::SERVICE_UNAVAILABLE);
    let ops = Routes::new(app).health();

    let router = Router::new()
        .nest("/api", api.into_router())
        .merge(ops)
        .fallback(catga_axum::not_found);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

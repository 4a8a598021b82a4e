//! The quickstart: a command, a query, an event with two handlers, behaviours, and a
//! validation failure. Runs in-process with no server:
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::prelude::*;

/// Place an order; replies with the new order's id.
#[command(output = u64, name = "shop.place_order")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer: String,
    pub quantity: u32,
}

/// Read an order back.
#[query(output = Option<Order>, name = "shop.get_order")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOrder {
    pub id: u64,
}

/// Announced after an order was placed.
#[event(name = "shop.order_placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
    pub customer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    pub quantity: u32,
}

impl Validate for PlaceOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.customer.trim().is_empty() {
            errors.add("customer", "must not be empty");
        }
        if !(1..=100).contains(&self.quantity) {
            errors.add("quantity", "must be between 1 and 100");
        }
        errors.into_result()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("the order store is unavailable")]
    Unavailable,
}

/// The order service: its state is registered once with the builder.
#[derive(Default)]
pub struct Orders {
    next_id: AtomicU64,
    orders: Mutex<HashMap<u64, Order>>,
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder, ctx: &Context) -> Result<u64, ShopError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let order = Order {
            id,
            customer: cmd.customer.clone(),
            quantity: cmd.quantity,
        };
        self.orders
            .lock()
            .map_err(|_| ShopError::Unavailable)?
            .insert(id, order);
        // Published only once this handler has returned Ok.
        ctx.publish(OrderPlaced {
            id,
            customer: cmd.customer,
        })
        .map_err(|_| ShopError::Unavailable)?;
        Ok(id)
    }

    async fn get(&self, query: GetOrder) -> Result<Option<Order>, ShopError> {
        let orders = self.orders.lock().map_err(|_| ShopError::Unavailable)?;
        Ok(orders.get(&query.id).cloned())
    }
}

/// Two independent reactions to the same event; they run concurrently.
#[handler]
async fn send_confirmation(event: &OrderPlaced, ctx: &Context) -> Result<(), ShopError> {
    println!(
        "  [mail]  confirmation for order {} to {} (caused by message {})",
        event.id,
        event.customer,
        ctx.causation_id()
            .map_or_else(|| "none".to_string(), |id| id.to_string())
    );
    Ok(())
}

#[handler]
async fn reserve_stock(event: &OrderPlaced) -> Result<(), ShopError> {
    println!("  [stock] reserving items for order {}", event.id);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Catga::builder()
        .state(Orders::default())
        .layer(Tracing)
        .layer(Timeout::new(Duration::from_secs(5)))
        .layer(Validation)
        .build()?;

    println!("place an order:");
    let id = app
        .send(PlaceOrder {
            customer: "ada".into(),
            quantity: 3,
        })
        .await?;
    println!("  -> order id {id}");

    println!("read it back:");
    let order = app.send(GetOrder { id }).await?;
    println!("  -> {order:?}");

    println!("an invalid order is rejected before its handler runs:");
    let err = app
        .send(PlaceOrder {
            customer: " ".into(),
            quantity: 0,
        })
        .await
        .unwrap_err();
    println!("  -> error code `{}`: {err}", err.code());
    if let Some(fields) = err.validation_errors() {
        for field in fields.errors() {
            println!("     - {}: {}", field.field, field.message);
        }
    }

    println!("the same dispatch from bytes (as a transport would do it):");
    let reply = app
        .dispatch_bytes("shop.get_order", br#"{"id":1}"#, Context::new())
        .await?
        .unwrap_or_default();
    println!("  -> {}", String::from_utf8_lossy(&reply));
    Ok(())
}

//! Send, publish, follow-up events and state, through the public API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use catga_core::prelude::*;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer: u64,
    pub total: u64,
}

#[query(output = Option<u64>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetTotal {
    pub id: u64,
}

#[event(name = "orders.placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("customer {0} is blocked")]
    Blocked(u64),
}

#[derive(Default)]
pub struct Orders {
    next: AtomicU32,
    totals: Mutex<Vec<(u64, u64)>>,
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder, ctx: &Context) -> Result<u64, OrderError> {
        if cmd.customer == 666 {
            ctx.publish(OrderPlaced { id: 0, total: 0 }).ok();
            return Err(OrderError::Blocked(cmd.customer));
        }
        let id = u64::from(self.next.fetch_add(1, Ordering::SeqCst)) + 1;
        self.totals.lock().unwrap().push((id, cmd.total));
        ctx.publish(OrderPlaced {
            id,
            total: cmd.total,
        })
        .expect("queue");
        Ok(id)
    }

    async fn total(&self, q: GetTotal) -> Result<Option<u64>, OrderError> {
        Ok(self
            .totals
            .lock()
            .unwrap()
            .iter()
            .find(|(id, _)| *id == q.id)
            .map(|(_, t)| *t))
    }
}

#[derive(Default)]
pub struct Ledger {
    seen: Mutex<Vec<u64>>,
}

#[handler]
async fn record(event: &OrderPlaced, ledger: &Ledger) -> Result<(), std::io::Error> {
    ledger.seen.lock().unwrap().push(event.id);
    Ok(())
}

#[handler]
async fn by_value(
    event: OrderPlaced,
    ledger: &Ledger,
    ctx: &Context,
) -> Result<(), std::io::Error> {
    assert!(ctx.causation_id().is_some());
    ledger.seen.lock().unwrap().push(event.id + 1000);
    Ok(())
}

fn app() -> Catga {
    Catga::builder()
        .state(Orders::default())
        .state(Ledger::default())
        .build()
        .unwrap()
}

#[tokio::test]
async fn send_returns_the_reply_and_publishes_follow_ups() {
    let app = Catga::builder()
        .state(Orders::default())
        .state_arc(std::sync::Arc::new(Ledger::default()))
        .build()
        .unwrap();
    let id = app
        .send(PlaceOrder {
            customer: 1,
            total: 30,
        })
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(app.send(GetTotal { id }).await.unwrap(), Some(30));
}

#[tokio::test]
async fn failed_handler_events_are_discarded_and_error_downcasts() {
    let app = app();
    let err = app
        .send(PlaceOrder {
            customer: 666,
            total: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    assert!(matches!(
        err.downcast_ref::<OrderError>(),
        Some(OrderError::Blocked(666))
    ));
}

#[tokio::test]
async fn publish_reaches_every_handler() {
    let app = app();
    app.publish(OrderPlaced { id: 5, total: 1 })
        .await
        .unwrap_err(); // by_value asserts causation
}

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

#[handler(allow(unwrap_in_handler, expect_in_handler))]
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

#[handler(allow(unwrap_in_handler, expect_in_handler))]
async fn record(event: &OrderPlaced, ledger: &Ledger) -> Result<(), std::io::Error> {
    ledger.seen.lock().unwrap().push(event.id);
    Ok(())
}

#[handler(allow(unwrap_in_handler, expect_in_handler))]
async fn by_value(
    event: OrderPlaced,
    ledger: &Ledger,
    ctx: &Context,
) -> Result<(), std::io::Error> {
    let from_handler = ctx.causation_id().is_some();
    let tag = if from_handler { 2000 } else { 1000 };
    ledger.seen.lock().unwrap().push(event.id + tag);
    Ok(())
}

fn app_with(ledger: &std::sync::Arc<Ledger>) -> Catga {
    Catga::builder()
        .state(Orders::default())
        .state_arc(ledger.clone())
        .build()
        .unwrap()
}

fn seen(ledger: &Ledger) -> Vec<u64> {
    let mut seen = ledger.seen.lock().unwrap().clone();
    seen.sort();
    seen
}

#[tokio::test]
async fn send_returns_the_reply_and_publishes_follow_ups() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let app = app_with(&ledger);
    let id = app
        .send(PlaceOrder {
            customer: 1,
            total: 30,
        })
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(app.send(GetTotal { id }).await.unwrap(), Some(30));
    // `record` saw id 1; `by_value` saw it with a causation id (it was published by a handler).
    assert_eq!(seen(&ledger), vec![1, 2001]);
}

#[tokio::test]
async fn failed_handler_events_are_discarded_and_error_downcasts() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let app = app_with(&ledger);
    let err = app
        .send(PlaceOrder {
            customer: 666,
            total: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    assert!(!err.is_retryable());
    assert!(matches!(
        err.downcast_ref::<OrderError>(),
        Some(OrderError::Blocked(666))
    ));
    assert!(
        seen(&ledger).is_empty(),
        "events queued by a failed handler are dropped"
    );
}

#[tokio::test]
async fn publish_reaches_every_handler() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let app = app_with(&ledger);
    app.publish(OrderPlaced { id: 5, total: 1 }).await.unwrap();
    assert_eq!(seen(&ledger), vec![5, 1005]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_futures_are_send_and_apps_are_shared_across_tasks() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let app = app_with(&ledger);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let id = app
                    .send(PlaceOrder {
                        customer: i,
                        total: i * 10,
                    })
                    .await?;
                app.publish(OrderPlaced {
                    id: 100 + i,
                    total: 0,
                })
                .await?;
                Ok::<u64, Error>(id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=16).collect::<Vec<_>>());
    // 16 sends × 2 follow-up deliveries + 16 publishes × 2 handlers.
    assert_eq!(ledger.seen.lock().unwrap().len(), 64);
}

/// Every dispatch future can be spawned on a multi-threaded runtime (checked at compile time:
/// auto-trait leaks through `impl Future` are easy to lose in a refactor).
#[test]
fn every_dispatch_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let ledger = std::sync::Arc::new(Ledger::default());
    let app = app_with(&ledger);
    assert_send(&app.send(GetTotal { id: 1 }));
    assert_send(&app.send_with(GetTotal { id: 1 }, Context::new()));
    assert_send(&app.publish(OrderPlaced { id: 1, total: 1 }));
    assert_send(&app.send_batch(vec![GetTotal { id: 1 }]));
    assert_send(&app.dispatch_bytes("GetTotal", b"{}", Context::new()));
}

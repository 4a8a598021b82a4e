//! Idempotency, caching and dead letters, through the public API. Timing on Tokio's paused
//! clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::behavior::{
    CacheKey, Caching, DeadLetter, Idempotency, IdempotencyKey, Retry, Validation,
};
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::store::idempotency::MemoryIdempotencyStore;
use uuid::Uuid;

/// Charges once per message id; takes 50 ms.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
    pub fail: bool,
}

/// Idempotent by a key it declares.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
}

impl IdempotencyKey for Refund {
    fn idempotency_key(&self) -> String {
        self.refund_id.clone()
    }
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charged {
    pub cents: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceChanged;

#[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
    pub trace: String,
}

impl CacheKey for GetPrice {
    fn cache_key(&self) -> String {
        self.sku.to_string()
    }
}

/// Not cached: no `cache_ttl`.
#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetStock;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub address: String,
}

impl Validate for Ship {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.address.is_empty() {
            errors.add("address", "required");
        }
        errors.into_result()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("bank unavailable")]
    Unavailable,
}

impl Retryable for BankError {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[derive(Default)]
pub struct Bank {
    charges: AtomicU32,
    refunds: AtomicU32,
    notified: AtomicU32,
    price_reads: AtomicU32,
    stock_reads: AtomicU32,
}

#[handler]
impl Bank {
    async fn charge(&self, cmd: Charge, ctx: &Context) -> Result<u64, BankError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if cmd.fail {
            return Err(BankError::Unavailable);
        }
        let n = self.charges.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.publish(Charged { cents: cmd.cents })
            .map_err(|_| BankError::Unavailable)?;
        Ok(u64::from(n) * 1000 + cmd.cents)
    }

    async fn refund(&self, _cmd: Refund) -> Result<u64, BankError> {
        Ok(u64::from(self.refunds.fetch_add(1, Ordering::SeqCst) + 1))
    }

    async fn notify(&self, _event: &Charged) -> Result<(), BankError> {
        self.notified.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn price(&self, q: GetPrice) -> Result<u64, BankError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.price_reads.fetch_add(1, Ordering::SeqCst);
        Ok(q.sku * 100)
    }

    async fn stock(&self, _q: GetStock) -> Result<u64, BankError> {
        Ok(u64::from(self.stock_reads.fetch_add(1, Ordering::SeqCst)))
    }

    async fn ship(&self, _cmd: Ship) -> Result<(), BankError> {
        Ok(())
    }
}

fn with_id(id: Uuid) -> Context {
    Context::new().with_message_id(id)
}

// ---- idempotency ----

#[tokio::test(start_paused = true)]
async fn a_repeated_message_id_gets_the_first_reply_without_running_again() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let first = app
        .send_with(
            Charge {
                cents: 5,
                fail: false,
            },
            with_id(id),
        )
        .await
        .unwrap();
    let again = app
        .send_with(
            Charge {
                cents: 5,
                fail: false,
            },
            with_id(id),
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
    // Its event was published once; the repeat of the command does not publish again.
    assert_eq!(bank.notified.load(Ordering::SeqCst), 1);
    // Another id is another charge.
    app.send_with(
        Charge {
            cents: 5,
            fail: false,
        },
        with_id(Uuid::now_v7()),
    )
    .await
    .unwrap();
    assert_eq!(bank.charges.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_duplicate_waits_for_the_first_and_shares_its_reply() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let (a, b, c) = tokio::join!(
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a == b && b == c);
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_releases_the_key_so_a_retry_runs() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let err = app
        .send_with(
            Charge {
                cents: 1,
                fail: true,
            },
            with_id(id),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    app.send_with(
        Charge {
            cents: 1,
            fail: false,
        },
        with_id(id),
    )
    .await
    .unwrap();
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_declared_key_deduplicates_across_message_ids_and_replies_expire() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::new(MemoryIdempotencyStore::new()).ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    let refund = || Refund {
        refund_id: "r-1".into(),
    };
    assert_eq!(app.send(refund()).await.unwrap(), 1);
    assert_eq!(
        app.send(refund()).await.unwrap(),
        1,
        "fresh message id, same key"
    );
    assert_eq!(bank.refunds.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(app.send(refund()).await.unwrap(), 2, "the record expired");
}

#[tokio::test(start_paused = true)]
async fn event_handlers_are_deduplicated_per_handler_and_queries_not_at_all() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    app.publish_with(Charged { cents: 1 }, with_id(id))
        .await
        .unwrap();
    app.publish_with(Charged { cents: 1 }, with_id(id))
        .await
        .unwrap();
    assert_eq!(
        bank.notified.load(Ordering::SeqCst),
        1,
        "a redelivered event is handled once"
    );
    app.send_with(GetStock, with_id(id)).await.unwrap();
    app.send_with(GetStock, with_id(id)).await.unwrap();
    assert_eq!(bank.stock_reads.load(Ordering::SeqCst), 2);
}

mod caching_and_dead_letters;

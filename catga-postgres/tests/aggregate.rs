//! An event-sourced aggregate saved through a `Repository` on the Postgres event store, inside
//! the `Outbox` behaviour: the aggregate's events and the outbox rows of the events the handler
//! published commit in one transaction, or neither does.
//!
//! A `Repository` only appends to the event store; it publishes nothing. A handler that wants
//! the world to hear of the change publishes the events itself (`ctx.publish`), and the outbox
//! stores them in the same transaction as the append.

mod common;

use catga_core::aggregate::{Aggregate, Repository};
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::store::event::EventStore;
use catga_postgres::{Outbox, PostgresEventStore};
use common::Db;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub account: String,
    pub amount: u64,
    /// Fail after the aggregate was saved and the event published.
    pub fail_after_save: bool,
    /// Save while a `Tx::lock` guard of the handler's own is still alive.
    pub hold_guard: bool,
}

/// The aggregate's event, and the message the handler publishes.
#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub account: String,
    pub amount: u64,
}

#[derive(Debug, Default)]
pub struct Account {
    balance: u64,
}

impl Aggregate for Account {
    type Event = Deposited;
    const TYPE: &'static str = "account";

    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the handler failed on purpose, after saving")]
pub struct Failed;

/// The handler's state: a repository on the Postgres event store.
pub struct Accounts {
    repo: Repository<Account, PostgresEventStore>,
}

pub mod accounts {
    use super::*;

    #[handler]
    impl Accounts {
        /// Loads the account, records a deposit, saves it (through the dispatch's
        /// transaction) and publishes the event (into the outbox, in that transaction).
        async fn deposit(&self, cmd: Deposit, ctx: &Context) -> Result<u64, BoxError> {
            let mut account = self.repo.load(&cmd.account).await?;
            let deposited = Deposited {
                account: cmd.account.clone(),
                amount: cmd.amount,
            };
            account.record(deposited.clone());
            account.caused_by(ctx);
            let tx = catga_postgres::Tx::current()?;
            let guard = if cmd.hold_guard {
                Some(tx.lock().await?)
            } else {
                None
            };
            let version = self.repo.save(&mut account).await?;
            drop(guard);
            ctx.publish(deposited)?;
            if cmd.fail_after_save {
                return Err(Failed.into());
            }
            Ok(version)
        }
    }
}

fn app(db: &Db) -> (Catga<impl Layer>, PostgresEventStore) {
    let store = PostgresEventStore::new(db.pool.clone(), &db.schema);
    let app = Catga::builder()
        .state(Accounts {
            repo: Repository::new(store.clone()),
        })
        .handlers(|h| h.is_in("accounts"))
        .layer(Outbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("the application builds");
    (app, store)
}

fn deposit(account: &str, amount: u64, fail_after_save: bool) -> Deposit {
    Deposit {
        account: account.to_owned(),
        amount,
        fail_after_save,
        hold_guard: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_aggregate_and_its_published_events_commit_together() {
    let Some(db) = Db::open("aggregate_commit").await else {
        return;
    };
    let (app, store) = app(&db);
    assert_eq!(app.send(deposit("7", 40, false)).await.expect("deposit"), 1);
    assert_eq!(app.send(deposit("7", 2, false)).await.expect("deposit"), 2);

    let stored = store.load("account-7", 0).await.expect("load");
    let amounts: Vec<&[u8]> = stored.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(
        amounts,
        [
            &br#"{"account":"7","amount":40}"#[..],
            &br#"{"account":"7","amount":2}"#[..]
        ]
    );
    assert!(
        stored.iter().all(|e| e.causation_id.is_some()),
        "the events name the command that caused them"
    );
    assert_eq!(
        db.outbox_rows().await,
        2,
        "one outbox row per published event"
    );
    assert_eq!(
        store.read_all(0, 10).await.expect("read all").len(),
        2,
        "committed events have global positions"
    );
    let loaded = Repository::<Account, _>::new(store)
        .load("7")
        .await
        .expect("load the aggregate");
    assert_eq!(loaded.state().balance, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_after_the_save_leaves_no_event_and_no_outbox_row() {
    let Some(db) = Db::open("aggregate_rollback").await else {
        return;
    };
    let (app, store) = app(&db);
    let error = app
        .send(deposit("9", 5, true))
        .await
        .expect_err("the handler fails after saving");
    assert!(
        error.downcast_ref::<Failed>().is_some(),
        "the handler's own error, got {error}"
    );
    assert_eq!(store.load("account-9", 0).await.expect("load"), []);
    assert_eq!(db.count("SELECT count(*) FROM {schema}.events").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM {schema}.event_streams")
            .await,
        0
    );
    assert_eq!(db.outbox_rows().await, 0);

    // The stream is still new: the next deposit saves version 1.
    assert_eq!(app.send(deposit("9", 5, false)).await.expect("deposit"), 1);
    assert_eq!(db.outbox_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_while_the_handler_holds_the_transactions_guard_is_an_error_not_a_hang() {
    let Some(db) = Db::open("aggregate_guard").await else {
        return;
    };
    let (app, store) = app(&db);
    let held = Deposit {
        hold_guard: true,
        ..deposit("3", 1, false)
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), app.send(held))
        .await
        .expect("the dispatch ends instead of waiting for its own guard");
    let error = outcome.expect_err("the save cannot use the locked transaction");
    assert!(
        error.to_string().contains("locked by a `Tx::lock` guard"),
        "says what to do: {error}"
    );
    assert_eq!(store.load("account-3", 0).await.expect("load"), []);
    assert_eq!(db.outbox_rows().await, 0);
}

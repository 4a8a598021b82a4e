//! An aggregate saved through a `Repository` on the Redis event store, from a handler, with
//! concurrent deposits retried on conflicts, and reloaded.

use std::convert::Infallible;
use std::sync::Arc;

use catga_core::aggregate::{Aggregate, Repository};
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::store::event::EventStore;
use catga_redis::store::RedisEventStore;

use crate::Slice;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub account: String,
    pub amount: u64,
}

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

pub struct Accounts {
    repo: Repository<Account, RedisEventStore>,
}

#[handler]
impl Accounts {
    /// Records a deposit and saves the account; a concurrent save makes it reload and decide
    /// again (`execute`).
    async fn deposit(&self, cmd: Deposit, ctx: &Context) -> Result<u64, BoxError> {
        let amount = cmd.amount;
        let account = cmd.account.clone();
        let saved = self
            .repo
            .execute_caused_by(&cmd.account, ctx, |_| {
                Ok::<_, Infallible>([Deposited {
                    account: account.clone(),
                    amount,
                }])
            })
            .await?;
        Ok(saved.version())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_saved_through_a_repository_reloads_with_every_deposit() {
    let Some(slice) = Slice::open("events_aggregate").await else {
        return;
    };
    let store = slice.events().await;
    let app = Arc::new(
        Catga::builder()
            .state(Accounts {
                repo: Repository::new(store.clone()).with_max_attempts(20),
            })
            .build()
            .expect("the application builds"),
    );
    let deposit = |amount| Deposit {
        account: "7".into(),
        amount,
    };
    assert_eq!(app.send(deposit(40)).await.unwrap(), 1);
    // Eight concurrent deposits on one account: conflicts are retried, none is lost.
    let concurrent: Vec<_> = (1..=8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.send(deposit(1)).await })
        })
        .collect();
    for deposit in concurrent {
        deposit.await.unwrap().expect("a deposit");
    }

    let loaded = Repository::<Account, _>::new(slice.events().await)
        .load("7")
        .await
        .expect("load the aggregate");
    assert_eq!((loaded.version(), loaded.state().balance), (9, 48));
    let stored = store.load("account-7", 0).await.unwrap();
    assert_eq!(stored[0].payload, br#"{"account":"7","amount":40}"#);
    assert!(
        stored
            .iter()
            .all(|e| e.causation_id.is_some() && e.correlation_id.is_some()),
        "the events name the command that caused them"
    );
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 9);
}

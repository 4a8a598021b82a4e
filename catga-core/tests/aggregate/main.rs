//! Event-sourced aggregates through the public API: replay, versions, optimistic concurrency,
//! retries on conflict, damaged streams, and the in-memory event store under contention.

use std::collections::HashSet;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use catga_core::Context;
use catga_core::aggregate::{Aggregate, ExecuteError, Loaded, Repository, RepositoryError};
use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use catga_core::store::memory_event::InMemoryEventStore;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

type TestResult = Result<(), Box<dyn Error>>;

// ---- the aggregate ----

#[derive(Debug, Default, Clone, PartialEq)]
struct Account {
    owner: Option<String>,
    balance: u64,
    closed: bool,
    /// Every event applied, to show replay applies the same events in the same order.
    history: Vec<AccountEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    Closed,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("account is not open")]
    NotOpen,
    #[error("account is already open")]
    AlreadyOpen,
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

impl Account {
    fn open(&self, owner: &str) -> Result<Vec<AccountEvent>, AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(vec![AccountEvent::Opened {
            owner: owner.to_owned(),
        }])
    }

    fn deposit(&self, amount: u64) -> Result<Vec<AccountEvent>, AccountError> {
        self.ensure_open()?;
        Ok(vec![AccountEvent::Deposited { amount }])
    }

    fn withdraw(&self, amount: u64) -> Result<Vec<AccountEvent>, AccountError> {
        self.ensure_open()?;
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                asked: amount,
            });
        }
        Ok(vec![AccountEvent::Withdrawn { amount }])
    }

    fn close(&self) -> Result<Vec<AccountEvent>, AccountError> {
        self.ensure_open()?;
        let mut events = Vec::new();
        if self.balance > 0 {
            events.push(AccountEvent::Withdrawn {
                amount: self.balance,
            });
        }
        events.push(AccountEvent::Closed);
        Ok(events)
    }

    fn ensure_open(&self) -> Result<(), AccountError> {
        if self.owner.is_none() || self.closed {
            return Err(AccountError::NotOpen);
        }
        Ok(())
    }
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const TYPE: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Closed => self.closed = true,
        }
        self.history.push(event.clone());
    }

    fn event_type(event: &AccountEvent) -> &'static str {
        match event {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
            AccountEvent::Closed => "Closed",
        }
    }
}

fn repository() -> Repository<Account, Arc<InMemoryEventStore>> {
    Repository::new(Arc::new(InMemoryEventStore::new()))
}

/// Opens account `id` for "ada" with `balance`, saved as two events.
async fn opened<S: EventStore>(
    accounts: &Repository<Account, S>,
    id: &str,
    balance: u64,
) -> Result<Loaded<Account>, Box<dyn Error>> {
    let mut account = accounts.load(id).await?;
    account.execute(|a| a.open("ada"))?;
    account.execute(|a| a.deposit(balance))?;
    accounts.save(&mut account).await?;
    Ok(account)
}

// ---- replay and versions ----

#[tokio::test]
async fn replay_gives_the_same_state_and_version() -> TestResult {
    let accounts = repository();
    let mut account = opened(&accounts, "1", 100).await?;
    account.execute(|a| a.withdraw(30))?;
    account.execute(|a| a.close())?;
    assert_eq!(account.balance, 0);
    accounts.save(&mut account).await?;

    let reloaded = accounts.load("1").await?;
    assert_eq!(reloaded.state(), account.state());
    assert_eq!(reloaded.version(), 5);
    assert_eq!(reloaded.stored_version(), 5);
    assert!(reloaded.closed);
    assert_eq!(reloaded.id(), "1");
    assert!(reloaded.uncommitted().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unknown_id_is_a_fresh_aggregate_at_version_zero() -> TestResult {
    let accounts = repository();
    let account = accounts.load("nobody").await?;
    assert_eq!(account.state(), &Account::default());
    assert_eq!((account.version(), account.stored_version()), (0, 0));
    // Loading did not create a stream.
    assert_eq!(accounts.store().version("account-nobody"), 0);
    Ok(())
}

#[tokio::test]
async fn versions_count_applied_events_and_stored_version_follows_saves() -> TestResult {
    let accounts = repository();
    let mut account = accounts.load("2").await?;
    account.record_all(account.open("ada")?);
    account.record(AccountEvent::Deposited { amount: 5 });
    assert_eq!((account.version(), account.stored_version()), (2, 0));
    assert_eq!(account.balance, 5, "record applies at once");
    assert_eq!(account.uncommitted().len(), 2);

    assert_eq!(accounts.save(&mut account).await?, 2);
    assert_eq!((account.version(), account.stored_version()), (2, 2));
    assert!(account.uncommitted().is_empty());

    account.execute(|a| a.deposit(1))?;
    assert_eq!((account.version(), account.stored_version()), (3, 2));
    assert_eq!(accounts.save(&mut account).await?, 3);
    assert_eq!(accounts.store().version("account-2"), 3);
    Ok(())
}

#[tokio::test]
async fn saving_nothing_does_not_touch_the_store() -> TestResult {
    let accounts = repository();
    let mut account = opened(&accounts, "3", 1).await?;
    // Another writer moves the stream on; a save with nothing recorded must not conflict,
    // because it must not even ask the store.
    let mut other = accounts.load("3").await?;
    other.execute(|a| a.deposit(1))?;
    accounts.save(&mut other).await?;
    assert_eq!(accounts.save(&mut account).await?, 2);
    assert_eq!(accounts.store().version("account-3"), 3);
    Ok(())
}

#[tokio::test]
async fn stored_events_carry_names_json_ids_time_and_causation() -> TestResult {
    let accounts = repository();
    let ctx = Context::new();
    let mut account = accounts.load("4").await?;
    account.execute(|a| a.open("ada"))?;
    account.execute(|a| a.deposit(7))?;
    account.caused_by(&ctx);
    let before = std::time::SystemTime::now();
    accounts.save(&mut account).await?;
    assert_eq!(account.causation(), (None, None), "causation is per save");

    let stored = accounts.store().load("account-4", 1).await?;
    assert_eq!(stored.len(), 2);
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Opened", "Deposited"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored[1].payload)?,
        serde_json::json!({ "Deposited": { "amount": 7 } })
    );
    for (event, version) in stored.iter().zip(1..) {
        assert_eq!(event.stream, "account-4");
        assert_eq!(event.version, version);
        assert_eq!(event.event_id.get_version_num(), 7);
        assert!(event.recorded_at >= before);
        assert_eq!(event.correlation_id, Some(ctx.correlation_id()));
        assert_eq!(event.causation_id, Some(ctx.message_id()));
    }
    assert_ne!(stored[0].event_id, stored[1].event_id);

    // The next save, without a context, stores no ids.
    account.execute(|a| a.deposit(1))?;
    accounts.save(&mut account).await?;
    let third = accounts.store().load("account-4", 3).await?;
    assert_eq!(
        (third[0].correlation_id, third[0].causation_id),
        (None, None)
    );
    Ok(())
}

// ---- optimistic concurrency ----

#[tokio::test]
async fn the_second_of_two_saves_from_the_same_version_conflicts() -> TestResult {
    let accounts = repository();
    opened(&accounts, "5", 100).await?;
    let mut first = accounts.load("5").await?;
    let mut second = accounts.load("5").await?;
    first.execute(|a| a.withdraw(80))?;
    second.execute(|a| a.withdraw(80))?;

    assert_eq!(accounts.save(&mut first).await?, 3);
    let err = accounts
        .save(&mut second)
        .await
        .err()
        .ok_or("the stale save succeeded")?;
    assert!(err.is_conflict());
    match &err {
        RepositoryError::Store(EventStoreError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!((stream.as_str(), *expected, *actual), ("account-5", 2, 3));
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    assert_eq!(
        err.to_string(),
        "stream `account-5` is at version 3, not the expected version 2"
    );
    // The loser is unchanged and nothing of it was written: no overdraft.
    assert_eq!(second.uncommitted().len(), 1);
    assert_eq!(second.stored_version(), 2);
    let reloaded = accounts.load("5").await?;
    assert_eq!((reloaded.balance, reloaded.version()), (20, 3));
    Ok(())
}

#[tokio::test]
async fn a_fresh_aggregate_conflicts_with_an_existing_stream() -> TestResult {
    let accounts = repository();
    opened(&accounts, "6", 1).await?;
    let mut duplicate = Loaded::<Account>::new("6");
    duplicate.execute(|a| a.open("eve"))?;
    let err = accounts
        .save(&mut duplicate)
        .await
        .err()
        .ok_or("a second open succeeded")?;
    assert!(matches!(
        err,
        RepositoryError::Store(EventStoreError::Conflict {
            expected: 0,
            actual: 2,
            ..
        })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_appends_at_one_version_exactly_one_wins() -> TestResult {
    const WRITERS: usize = 64;
    let store = Arc::new(InMemoryEventStore::new());
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let event = NewEvent::new("Written", format!("{writer}").into_bytes());
            store.append("race", 0, vec![event.clone(), event]).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await? {
            Ok(version) => {
                assert_eq!(version, 2);
                won += 1;
            }
            Err(EventStoreError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (0, 2)),
            Err(other) => return Err(other.into()),
        }
    }
    assert_eq!(won, 1);
    let stored = store.load("race", 1).await?;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].payload, stored[1].payload,
        "one writer's batch, whole"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_that_retry_all_land_with_gap_free_versions() -> TestResult {
    const WRITERS: u64 = 32;
    let store = Arc::new(InMemoryEventStore::new());
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut conflicts = 0u32;
            loop {
                let version = store.load("busy", 1).await?.len() as u64;
                let event = NewEvent::new("Written", writer.to_string().into_bytes());
                match store.append("busy", version, vec![event]).await {
                    Ok(_) => return Ok::<u32, EventStoreError>(conflicts),
                    Err(EventStoreError::Conflict { .. }) => {
                        conflicts += 1;
                        tokio::task::yield_now().await;
                    }
                    Err(other) => return Err(other),
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let stored = store.load("busy", 0).await?;
    let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>());
    let writers: HashSet<&[u8]> = stored.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(
        writers.len() as u64,
        WRITERS,
        "every writer landed exactly once"
    );
    assert_eq!(store.version("busy"), WRITERS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_executes_on_one_aggregate_lose_no_deposit() -> TestResult {
    const CLIENTS: u64 = 24;
    let accounts = Arc::new(repository().with_max_attempts(u32::MAX));
    opened(&accounts, "busy", 0).await?;
    let barrier = Arc::new(Barrier::new(CLIENTS as usize));
    let mut tasks = Vec::new();
    for client in 1..=CLIENTS {
        let accounts = accounts.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            accounts.execute("busy", |a| a.deposit(client)).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let account = accounts.load("busy").await?;
    assert_eq!(account.balance, CLIENTS * (CLIENTS + 1) / 2);
    assert_eq!(account.version(), 2 + CLIENTS);
    let versions: Vec<u64> = accounts
        .store()
        .load("account-busy", 1)
        .await?
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=2 + CLIENTS).collect::<Vec<_>>());
    Ok(())
}

// ---- execute ----

/// A store where another writer slips one deposit in just before each of the first `races`
/// appends: the deterministic version of losing a race.
struct Racing {
    inner: InMemoryEventStore,
    races: AtomicU32,
    appends: AtomicU32,
}

impl Racing {
    fn new(races: u32) -> Self {
        Racing {
            inner: InMemoryEventStore::new(),
            races: AtomicU32::new(races),
            appends: AtomicU32::new(0),
        }
    }
}

impl EventStore for Racing {
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let race = self
            .races
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if race {
            let payload = serde_json::to_vec(&AccountEvent::Deposited { amount: 1000 })
                .map_err(|e| EventStoreError::backend(stream, e))?;
            let actual = self.inner.version(stream);
            self.inner
                .append(stream, actual, vec![NewEvent::new("Deposited", payload)])
                .await?;
        }
        self.inner.append(stream, expected_version, events).await
    }

    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        self.inner.load(stream, from_version).await
    }
}

mod execute_and_store;

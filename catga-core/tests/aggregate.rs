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

#[tokio::test]
async fn execute_reloads_and_runs_the_command_again_after_a_conflict() -> TestResult {
    let accounts = Repository::<Account, _>::new(Racing::new(0));
    opened(&accounts, "7", 100).await?;
    accounts.store().races.store(1, Ordering::SeqCst);

    let mut seen = Vec::new();
    let account = accounts
        .execute("7", |a| {
            seen.push(a.balance);
            // Only affordable once the racing deposit is in: the rerun saw the new state.
            a.withdraw(500)
        })
        .await;
    // First run: balance 100, refused before any save; no retry on a refusal.
    assert!(matches!(
        account,
        Err(ExecuteError::Rejected(AccountError::InsufficientFunds {
            balance: 100,
            asked: 500
        }))
    ));
    assert_eq!(seen, [100]);

    seen.clear();
    let account = accounts
        .execute("7", |a| {
            seen.push(a.balance);
            a.withdraw(50)
        })
        .await?;
    // First run decided on 100 and lost to the racing deposit; the second saw 1100.
    assert_eq!(seen, [100, 1100]);
    assert_eq!((account.balance, account.version()), (1050, 4));
    assert!(account.uncommitted().is_empty());
    let reloaded = accounts.load("7").await?;
    assert_eq!(reloaded.state(), account.state());
    Ok(())
}

#[tokio::test]
async fn execute_gives_up_after_max_attempts_with_the_last_conflict() -> TestResult {
    let accounts = Repository::<Account, _>::new(Racing::new(0)).with_max_attempts(3);
    assert_eq!(accounts.max_attempts(), 3);
    opened(&accounts, "8", 10).await?;
    accounts.store().races.store(u32::MAX, Ordering::SeqCst);
    accounts.store().appends.store(0, Ordering::SeqCst);

    let runs = AtomicU32::new(0);
    let err = accounts
        .execute("8", |a| {
            runs.fetch_add(1, Ordering::SeqCst);
            a.withdraw(1)
        })
        .await
        .err()
        .ok_or("a contended execute succeeded")?;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(accounts.store().appends.load(Ordering::SeqCst), 3);
    match &err {
        ExecuteError::Contention {
            stream,
            attempts,
            source: EventStoreError::Conflict {
                expected, actual, ..
            },
        } => assert_eq!(
            (stream.as_str(), *attempts, *expected, *actual),
            ("account-8", 3, 4, 5)
        ),
        other => return Err(format!("expected contention, got {other:?}").into()),
    }
    assert!(
        err.to_string()
            .starts_with("gave up on stream `account-8` after 3 attempts")
    );
    // Only the racing writer's deposits were stored.
    let account = accounts.load("8").await?;
    assert_eq!((account.balance, account.version()), (3010, 5));
    Ok(())
}

#[tokio::test]
async fn execute_with_one_attempt_does_not_retry() -> TestResult {
    let accounts = Repository::<Account, _>::new(Racing::new(0)).with_max_attempts(0);
    assert_eq!(accounts.max_attempts(), 1, "0 attempts means 1");
    opened(&accounts, "9", 10).await?;
    accounts.store().races.store(1, Ordering::SeqCst);
    let err = accounts.execute("9", |a| a.deposit(1)).await.err();
    assert!(matches!(
        err,
        Some(ExecuteError::Contention { attempts: 1, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn execute_with_no_events_saves_nothing_and_stamps_causation() -> TestResult {
    let accounts = repository();
    opened(&accounts, "10", 10).await?;
    let account = accounts
        .execute("10", |_| Ok::<_, AccountError>(Vec::new()))
        .await?;
    assert_eq!(account.version(), 2);
    assert_eq!(accounts.store().version("account-10"), 2);

    let ctx = Context::new();
    accounts
        .execute_caused_by("10", &ctx, |a| a.deposit(1))
        .await?;
    let stored = accounts.store().load("account-10", 3).await?;
    assert_eq!(stored[0].correlation_id, Some(ctx.correlation_id()));
    assert_eq!(stored[0].causation_id, Some(ctx.message_id()));
    Ok(())
}

// ---- damaged streams ----

#[tokio::test]
async fn a_corrupted_payload_is_a_typed_error_naming_stream_and_version() -> TestResult {
    let accounts = repository();
    opened(&accounts, "11", 10).await?;
    accounts
        .store()
        .append(
            "account-11",
            2,
            vec![NewEvent::new("Deposited", &b"{\"Depos"[..])],
        )
        .await?;
    let err = accounts
        .load("11")
        .await
        .err()
        .ok_or("loaded a damaged stream")?;
    match &err {
        RepositoryError::Decode {
            stream,
            version,
            event_type,
            ..
        } => assert_eq!(
            (stream.as_str(), *version, event_type.as_str()),
            ("account-11", 3, "Deposited")
        ),
        other => return Err(format!("expected a decode error, got {other:?}").into()),
    }
    assert!(
        err.to_string()
            .starts_with("cannot decode event 3 of stream `account-11` (type `Deposited`)"),
        "{err}"
    );
    assert!(
        err.source().is_some(),
        "the codec error is kept as the source"
    );
    assert!(!err.is_conflict());

    // Valid JSON of the wrong shape is refused the same way, and `execute` passes it on.
    accounts
        .store()
        .append(
            "account-12",
            0,
            vec![NewEvent::new("Opened", &br#"{"Opened":{}}"#[..])],
        )
        .await?;
    let err = accounts.execute("12", |a| a.deposit(1)).await.err();
    assert!(matches!(
        err,
        Some(ExecuteError::Repository(RepositoryError::Decode {
            version: 1,
            ..
        }))
    ));
    Ok(())
}

/// A broken store that hands out the events it holds with their versions shifted.
struct Shifted(InMemoryEventStore);

impl EventStore for Shifted {
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        self.0.append(stream, expected_version, events).await
    }

    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        let mut events = self.0.load(stream, from_version).await?;
        for event in events.iter_mut().skip(1) {
            event.version += 1;
        }
        Ok(events)
    }
}

#[tokio::test]
async fn a_gap_in_the_stream_is_refused_not_replayed() -> TestResult {
    let accounts = Repository::<Account, _>::new(Shifted(InMemoryEventStore::new()));
    opened(&accounts, "13", 10).await?;
    let err = accounts.load("13").await.err();
    assert!(matches!(
        err,
        Some(RepositoryError::OutOfOrder {
            expected: 2,
            found: 3,
            ..
        })
    ));
    Ok(())
}

#[tokio::test]
async fn backend_errors_pass_through_with_their_source() -> TestResult {
    struct Down;
    impl EventStore for Down {
        async fn append(
            &self,
            stream: &str,
            _: u64,
            _: Vec<NewEvent>,
        ) -> Result<u64, EventStoreError> {
            Err(EventStoreError::backend(stream, "connection refused"))
        }
        async fn load(&self, stream: &str, _: u64) -> Result<Vec<StoredEvent>, EventStoreError> {
            Err(EventStoreError::backend(stream, "connection refused"))
        }
    }
    let accounts = Repository::<Account, _>::new(Down);
    let err = accounts
        .load("14")
        .await
        .err()
        .ok_or("a dead store loaded")?;
    assert_eq!(
        err.to_string(),
        "event store failed on stream `account-14`: connection refused"
    );
    let mut account = Loaded::<Account>::new("14");
    account.execute(|a| a.open("ada"))?;
    let err = accounts.save(&mut account).await.err();
    assert!(matches!(
        err,
        Some(RepositoryError::Store(EventStoreError::Backend { .. }))
    ));
    assert_eq!(
        account.uncommitted().len(),
        1,
        "a failed save keeps the events"
    );
    Ok(())
}

// ---- the store's reads ----

#[tokio::test]
async fn load_from_version_reads_the_tail_inclusively() -> TestResult {
    let store = InMemoryEventStore::new();
    let events = (1..=5)
        .map(|n| NewEvent::new("N", n.to_string().into_bytes()))
        .collect();
    assert_eq!(store.append("s", 0, events).await?, 5);

    let versions = |events: Vec<StoredEvent>| events.iter().map(|e| e.version).collect::<Vec<_>>();
    assert_eq!(versions(store.load("s", 0).await?), [1, 2, 3, 4, 5]);
    assert_eq!(versions(store.load("s", 1).await?), [1, 2, 3, 4, 5]);
    assert_eq!(versions(store.load("s", 3).await?), [3, 4, 5]);
    let tail = store.load("s", 5).await?;
    assert_eq!((tail.len(), tail[0].payload.as_slice()), (1, &b"5"[..]));
    assert!(store.load("s", 6).await?.is_empty());
    assert!(store.load("s", u64::MAX).await?.is_empty());
    assert!(store.load("unknown", 0).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn appending_nothing_checks_the_version_and_writes_nothing() -> TestResult {
    let store = InMemoryEventStore::new();
    assert_eq!(store.append("s", 0, Vec::new()).await?, 0);
    assert!(matches!(
        store.append("s", 1, Vec::new()).await,
        Err(EventStoreError::Conflict {
            expected: 1,
            actual: 0,
            ..
        })
    ));
    store
        .append("s", 0, vec![NewEvent::new("N", Vec::new())])
        .await?;
    assert_eq!(store.append("s", 1, Vec::new()).await?, 1);
    assert!(
        store
            .append("s", 0, Vec::new())
            .await
            .is_err_and(|e| e.is_conflict())
    );
    assert_eq!(store.version("s"), 1);
    Ok(())
}

#[tokio::test]
async fn a_stale_append_to_an_unknown_stream_conflicts_without_creating_it() -> TestResult {
    let store = InMemoryEventStore::new();
    let err = store
        .append("ghost", 3, vec![NewEvent::new("N", Vec::new())])
        .await
        .err();
    assert!(matches!(
        err,
        Some(EventStoreError::Conflict {
            expected: 3,
            actual: 0,
            ..
        })
    ));
    assert_eq!(format!("{store:?}"), "InMemoryEventStore { streams: 0 }");
    Ok(())
}

#[tokio::test]
async fn streams_are_independent() -> TestResult {
    let store = Arc::new(InMemoryEventStore::new());
    let accounts = Repository::<Account, _>::new(store.clone());
    opened(&accounts, "a", 1).await?;
    opened(&accounts, "b", 2).await?;
    assert_eq!(store.version("account-a"), 2);
    assert_eq!(store.version("account-b"), 2);
    assert_eq!(accounts.load("b").await?.balance, 2);
    assert_eq!(format!("{store:?}"), "InMemoryEventStore { streams: 2 }");
    Ok(())
}

// ---- property: record, save in chunks, reload ----

#[derive(Debug, Clone)]
enum Op {
    Deposit(u64),
    Withdraw(u64),
    Save,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..1000).prop_map(Op::Deposit),
        (0u64..1500).prop_map(Op::Withdraw),
        Just(Op::Save),
    ]
}

proptest! {
    #[test]
    fn saving_and_reloading_gives_the_same_state_and_version(ops in proptest::collection::vec(op(), 0..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome: Result<(Account, u64, Account, u64), Box<dyn Error>> = runtime.block_on(async {
            let accounts = repository();
            let mut account = accounts.load("p").await?;
            account.execute(|a| a.open("ada"))?;
            let mut expected = Account::default();
            expected.apply(&AccountEvent::Opened { owner: "ada".to_owned() });
            for op in &ops {
                let decided = match op {
                    Op::Deposit(n) => account.deposit(*n),
                    Op::Withdraw(n) => account.withdraw(*n),
                    Op::Save => {
                        accounts.save(&mut account).await?;
                        continue;
                    }
                };
                // Refused withdrawals record nothing; accepted events fold into `expected` too.
                for event in decided.unwrap_or_default() {
                    expected.apply(&event);
                    account.record(event);
                }
            }
            accounts.save(&mut account).await?;
            let reloaded = accounts.load("p").await?;
            Ok((reloaded.state().clone(), reloaded.version(), expected, account.version()))
        });
        let (reloaded, version, expected, saved_version) =
            outcome.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&reloaded, &expected);
        prop_assert_eq!(version, saved_version);
        prop_assert_eq!(version, expected.history.len() as u64);
    }
}

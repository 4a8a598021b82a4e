//! `aggregate` tests, continued: execute and store (helpers live in `main.rs`).

use super::*;

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

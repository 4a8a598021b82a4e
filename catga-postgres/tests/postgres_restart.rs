//! PostgreSQL crashes and comes back under load: a private server is stopped as
//! `pg_ctl stop -m immediate` does (every backend killed, nothing checkpointed) while 10,000
//! commands are being sent, then started again on the same port and data directory (crash
//! recovery). The application (`Inbox` + `Outbox`, a started relay, no transport: the event's
//! handler runs in this process and writes its effect through `Tx::current()`) is neither
//! rebuilt nor told.
//!
//! What must hold: every command that returned `Ok` had its event delivered and its effect
//! recorded exactly once (the inbox); a command sent while the server was down failed with a
//! typed `ErrorKind::Store` error, and no command failed any other way; the relay that was
//! started before the crash publishes again by itself; the outbox ends empty.
//!
//! Run with `--nocapture` for the figures.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use catga_core::error::{BoxError, ErrorKind};
use catga_core::prelude::*;
use catga_core::testkit::within;
use catga_postgres::{Inbox, Outbox, Tx};
use common::Db;
use common::private_postgres::{PrivatePostgres, binaries_or_skip};
use sqlx::postgres::PgPoolOptions;

const COMMANDS: usize = 10_000;
/// Commands in flight at once.
const SENDERS: usize = 16;
/// The server is stopped once this many commands succeeded: mid-load.
const STOP_AFTER_OK: u64 = 4_000;
/// The server stays down until this many commands were sent and failed entirely while it was
/// down.
const FAILED_WHILE_DOWN: u64 = 32;
/// Bounds against hanging, not measurements.
const LOAD_BOUND: Duration = Duration::from_secs(600);
const DRAIN_BOUND: Duration = Duration::from_secs(300);

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub parcel: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: i64,
}

/// Runs of the event's handler, failed ones and those rolled back included.
#[derive(Default)]
pub struct Effects {
    runs: AtomicU64,
}

pub mod shipping {
    use super::*;

    #[handler]
    pub async fn ship(cmd: Ship, ctx: &Context) -> Result<(), BoxError> {
        ctx.publish(Shipped { parcel: cmd.parcel })?;
        Ok(())
    }

    #[handler]
    impl Effects {
        /// The effect: one row, in the transaction the inbox opened for this delivery.
        async fn shipped(&self, event: &Shipped) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO effects (parcel) VALUES ($1)")
                .bind(event.parcel)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    }
}

/// Where the server is, as the senders see it.
const UP: u8 = 0;
/// The postmaster has exited; set only after it did.
const DOWN: u8 = 1;
/// Set before the server is started again.
const BACK: u8 = 2;

/// What became of a command.
const NOT_SENT: u8 = 0;
const OK: u8 = 1;
const STORE_ERROR: u8 = 2;
const OTHER_ERROR: u8 = 3;

struct Load {
    phase: AtomicU8,
    next: AtomicU64,
    outcome: Vec<AtomicU8>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Commands that started after the server stopped and ended before it was started again.
    failed_while_down: AtomicU64,
    /// Of those, any that did not fail with `ErrorKind::Store` (must stay 0).
    sent_while_down_not_store: AtomicU64,
    /// The first error of a kind other than `Store`, to show.
    other: std::sync::Mutex<Option<String>>,
}

impl Load {
    fn new() -> Load {
        Load {
            phase: AtomicU8::new(UP),
            next: AtomicU64::new(0),
            outcome: (0..COMMANDS).map(|_| AtomicU8::new(NOT_SENT)).collect(),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failed_while_down: AtomicU64::new(0),
            sent_while_down_not_store: AtomicU64::new(0),
            other: std::sync::Mutex::new(None),
        }
    }

    fn count(&self, outcome: u8) -> usize {
        self.outcome
            .iter()
            .filter(|o| o.load(Ordering::SeqCst) == outcome)
            .count()
    }
}

/// Sends commands until all are sent: each parcel once, whatever its outcome.
async fn sender(app: Catga<impl Layer>, load: Arc<Load>) {
    loop {
        let parcel = load.next.fetch_add(1, Ordering::SeqCst);
        let Ok(index) = usize::try_from(parcel) else {
            return;
        };
        if index >= COMMANDS {
            return;
        }
        let phase_before = load.phase.load(Ordering::SeqCst);
        let outcome = app
            .send(Ship {
                parcel: i64::try_from(parcel).expect("small"),
            })
            .await;
        let while_down = phase_before == DOWN && load.phase.load(Ordering::SeqCst) == DOWN;
        let code = match &outcome {
            Ok(()) => {
                load.ok.fetch_add(1, Ordering::SeqCst);
                OK
            }
            Err(error) => {
                load.failed.fetch_add(1, Ordering::SeqCst);
                if matches!(error.kind(), ErrorKind::Store { .. }) {
                    STORE_ERROR
                } else {
                    if let Ok(mut other) = load.other.lock() {
                        other.get_or_insert_with(|| format!("{} ({error})", error.code()));
                    }
                    OTHER_ERROR
                }
            }
        };
        if while_down {
            if code == STORE_ERROR {
                load.failed_while_down.fetch_add(1, Ordering::SeqCst);
            } else {
                load.sent_while_down_not_store
                    .fetch_add(1, Ordering::SeqCst);
            }
        }
        load.outcome[index].store(code, Ordering::SeqCst);
    }
}

/// The private server, and a schema on it through a pool whose dispatches give up on a
/// connection after 3 s (sqlx keeps retrying a refused connection until then; the default is
/// 30 s); `None` when the test is skipped.
async fn server_and_db(test: &str) -> Option<(PrivatePostgres, Db)> {
    let bin = binaries_or_skip(test)?;
    let server = PrivatePostgres::start(&bin, "catga-pg-restart-").await;
    let options = PgPoolOptions::new()
        .max_connections(48)
        .acquire_timeout(Duration::from_secs(3));
    let db = Db::open_on(test, &server.url(), options)
        .await
        .unwrap_or_else(|why| panic!("the private server: {why}"));
    db.execute("CREATE TABLE {schema}.effects (parcel bigint NOT NULL)")
        .await;
    Some((server, db))
}

/// The documented order: the inbox opens the transaction, the outbox joins it, and the relay
/// is woken by the commit's `NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_inbox_outside_every_acknowledged_command_has_its_effect_once_through_a_postgres_crash()
 {
    const TEST: &str = "pg_restart_inbox_outside";
    let Some((server, db)) = server_and_db(TEST).await else {
        return;
    };
    let mut server = server;
    let effects = Arc::new(Effects::default());
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox.relay();
    let app = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .layer(outbox)
        .build()
        .expect("builds");
    crash_and_restart_under_load(TEST, &mut server, &db, &effects, app, relay).await;
}

/// The outbox opens the transaction, the inbox joins it: each commit hands its rows to the
/// relay in memory (the fast round), which the crash interrupts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_outbox_outside_every_acknowledged_command_has_its_effect_once_through_a_postgres_crash()
 {
    const TEST: &str = "pg_restart_outbox_outside";
    let Some((server, db)) = server_and_db(TEST).await else {
        return;
    };
    let mut server = server;
    let effects = Arc::new(Effects::default());
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox.relay();
    let app = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(outbox)
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("builds");
    crash_and_restart_under_load(TEST, &mut server, &db, &effects, app, relay).await;
}

/// Sends the commands, crashes the server mid-load, starts it again, and checks what must
/// hold (see the module docs).
async fn crash_and_restart_under_load<L: Layer>(
    test: &str,
    server: &mut PrivatePostgres,
    db: &Db,
    effects: &Effects,
    app: Catga<L>,
    relay: catga_postgres::OutboxRelay,
) {
    // Started once, before the crash, with its defaults; never restarted or called by hand.
    let running = relay.start(app.clone()).await.expect("the relay starts");

    let load = Arc::new(Load::new());
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| tokio::spawn(sender(app.clone(), Arc::clone(&load))))
        .collect();

    within(LOAD_BOUND, "the commands before the crash", || async {
        load.ok.load(Ordering::SeqCst) >= STOP_AFTER_OK
    })
    .await;
    let effects_before_stop = db.count("SELECT count(*) FROM effects").await;
    let pid = server.pid();
    server.stop_immediate();
    load.phase.store(DOWN, Ordering::SeqCst);
    let sent_before_stop = load.next.load(Ordering::SeqCst);
    within(
        LOAD_BOUND,
        "commands failing while the server is down",
        || async { load.failed_while_down.load(Ordering::SeqCst) >= FAILED_WHILE_DOWN },
    )
    .await;
    load.phase.store(BACK, Ordering::SeqCst);
    server.restart().await;
    let sent_before_restart = load.next.load(Ordering::SeqCst);
    let effects_at_restart = db.count("SELECT count(*) FROM effects").await;
    for sender in senders {
        sender.await.expect("a sender did not panic");
    }
    let ok: Vec<i64> = (0..COMMANDS)
        .filter(|&i| load.outcome[i].load(Ordering::SeqCst) == OK)
        .map(|i| i64::try_from(i).expect("small"))
        .collect();
    let ok_after_restart = ok
        .iter()
        .filter(|&&p| u64::try_from(p).expect("positive") >= sent_before_restart)
        .count();

    // No step of the test's own from here: the relay started before the crash publishes the
    // rest by itself.
    let drained = tokio::time::timeout(DRAIN_BOUND, async {
        loop {
            let rows = db.outbox_rows().await;
            let missing: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM unnest($1::bigint[]) p \
                 WHERE NOT EXISTS (SELECT 1 FROM effects e WHERE e.parcel = p)",
            )
            .bind(&ok)
            .fetch_one(&db.pool)
            .await
            .expect("count the acknowledged commands without an effect");
            if rows == 0 && missing == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let rows_left = db.outbox_rows().await;
    assert!(
        drained.is_ok(),
        "gave up after {DRAIN_BOUND:?}: {rows_left} rows left in the outbox, {} effects for {} acknowledged commands; dead letters: {:?}",
        db.count("SELECT count(*) FROM effects").await,
        ok.len(),
        app.dead_letters().count_dyn().await
    );
    // Let anything still in flight land before counting duplicates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await;

    let effects_total = db.count("SELECT count(*) FROM effects").await;
    let doubled: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT parcel, count(*) FROM effects GROUP BY parcel HAVING count(*) > 1 ORDER BY parcel LIMIT 20",
    )
    .fetch_all(&db.pool)
    .await
    .expect("look for doubled effects");
    let by_parcel: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT parcel, count(*) FROM effects GROUP BY parcel")
            .fetch_all(&db.pool)
            .await
            .expect("effects by parcel")
            .into_iter()
            .collect();
    let failed: Vec<i64> = (0..COMMANDS)
        .filter(|&i| load.outcome[i].load(Ordering::SeqCst) != OK)
        .map(|i| i64::try_from(i).expect("small"))
        .collect();
    // A command whose commit reached the server just before the crash but whose answer did
    // not reach the client failed in doubt: its effect may exist (at most once).
    let failed_in_doubt = failed.iter().filter(|p| by_parcel.contains_key(p)).count();
    let inbox_records = db
        .count("SELECT count(*) FROM inbox WHERE handler LIKE '%shipped%'")
        .await;
    // Without a transport the relay's publication runs the handler here, and a delivery
    // that failed (the inbox could not reach the server) is kept as a dead letter; the
    // round that published it could not commit either, so the row was published again.
    let letters = app
        .dead_letters()
        .list_dyn(100_000)
        .await
        .expect("dead letters");
    let dead_letters = letters.len();
    let letters_without_effect: Vec<String> = letters
        .iter()
        .filter(|letter| {
            let parcel = letter
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_slice::<Shipped>(p).ok())
                .map(|event| event.parcel);
            !parcel.is_some_and(|p| by_parcel.contains_key(&p))
        })
        .take(5)
        .map(|letter| format!("{} {}: {}", letter.message, letter.code, letter.error))
        .collect();
    println!(
        "{test}: {COMMANDS} commands by {SENDERS} senders; stopped (SIGQUIT to pid {pid:?}) after {sent_before_stop} sent, \
         {effects_before_stop} effects; restarted after {sent_before_restart} sent, {effects_at_restart} effects"
    );
    println!(
        "{test}: {} ok ({ok_after_restart} sent after the restart), {} failed with ErrorKind::Store \
         ({} sent and failed entirely while the server was down, {failed_in_doubt} in doubt with an effect), {} failed otherwise",
        ok.len(),
        load.count(STORE_ERROR),
        load.failed_while_down.load(Ordering::SeqCst),
        load.count(OTHER_ERROR)
    );
    println!(
        "{test}: {effects_total} effects, {inbox_records} inbox records; the handler ran {} times \
         ({} runs failed or rolled back, or were redeliveries); {dead_letters} failed deliveries kept as dead letters (each published again)",
        effects.runs.load(Ordering::SeqCst),
        effects
            .runs
            .load(Ordering::SeqCst)
            .saturating_sub(u64::try_from(effects_total).unwrap_or(0)),
    );

    assert_eq!(load.count(NOT_SENT), 0, "every command was sent");
    assert_eq!(
        load.count(OTHER_ERROR),
        0,
        "a command failed with something other than ErrorKind::Store: {:?}",
        load.other.lock().map(|o| o.clone())
    );
    assert_eq!(
        load.sent_while_down_not_store.load(Ordering::SeqCst),
        0,
        "every command sent while the server was down failed with ErrorKind::Store"
    );
    assert!(
        load.failed_while_down.load(Ordering::SeqCst) >= FAILED_WHILE_DOWN,
        "commands were sent while the server was down"
    );
    assert!(
        u64::try_from(effects_before_stop).expect("positive") < COMMANDS as u64
            && sent_before_stop < COMMANDS as u64,
        "the server was stopped mid-load"
    );
    assert!(
        ok_after_restart > 0,
        "commands succeeded again after the restart, without a new pool or application"
    );
    assert_eq!(rows_left, 0, "the outbox ends empty");
    assert!(
        doubled.is_empty(),
        "exactly one effect per event (parcel, effects): {doubled:?}"
    );
    let missing: Vec<&i64> = ok
        .iter()
        .filter(|p| !by_parcel.contains_key(p))
        .take(20)
        .collect();
    assert!(
        missing.is_empty(),
        "every acknowledged command's event had its effect; missing: {missing:?}"
    );
    assert_eq!(
        effects_total,
        i64::try_from(ok.len() + failed_in_doubt).expect("small"),
        "effects are those of the acknowledged commands and of the commands in doubt, once each"
    );
    assert_eq!(
        inbox_records, effects_total,
        "each effect committed with its inbox record"
    );
    assert!(
        letters_without_effect.is_empty(),
        "no event was lost to the dead-letter store: each delivery kept there was published again and took effect; without: {letters_without_effect:?}"
    );
    assert!(
        effects_total > effects_at_restart,
        "the relay started before the crash published after it"
    );
}

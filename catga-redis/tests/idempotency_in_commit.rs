//! `Idempotency` around `RedisInbox` / `RedisOutbox` on one `RedisStores`: the unit of work's
//! commit script records the idempotent reply with the handler's effects, so a dispatch sends
//! no `complete` of its own (counted at the wire), a duplicate waiting for the key is woken by
//! the commit, and whatever the commit cannot record (another connection's store, a key the
//! store did not write) the behaviour records, or reports, as before.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::{Idempotency, IdempotencyKey};
use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::store::idempotency::{KeyId, ReplyKey};
use catga_redis::store::RedisStores;
use catga_redis::{RedisInbox, RedisOutbox, RedisWrites};
use common::round_trips::RoundTrips;
use common::slice::Slice;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposited {
    pub account: i64,
    pub cents: i64,
}

/// An event whose handler writes nothing: only the inbox record and the reply are committed.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noticed {
    pub account: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdrawn {
    pub account: i64,
    pub cents: i64,
}

#[command(output = i64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdraw {
    pub account: i64,
    pub cents: i64,
}

/// A command whose handler overwrites its own idempotency key with a value the store does not
/// write, as another program might.
#[command(output = i64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tampered {
    pub account: i64,
}

impl IdempotencyKey for Tampered {
    fn idempotency_key(&self) -> String {
        format!("tampered-{}", self.account)
    }
}

/// The handlers' state: how often they ran, and what `Tampered` overwrites.
pub struct Ledger {
    runs: AtomicU32,
    /// The raw connection and the key `Tampered` overwrites.
    tamper: Option<(redis::Client, String)>,
}

pub mod ledger {
    use super::*;

    // `tampered` writes to Redis behind the unit of work on purpose: it plays another program.
    #[handler(allow(external_call_in_command))]
    impl Ledger {
        async fn deposited(&self, event: &Deposited) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(
                &writes.key(&format!("balance:{}", event.account)),
                event.cents,
            )?;
            Ok(())
        }

        async fn noticed(&self, _event: &Noticed) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn withdraw(&self, cmd: Withdraw, ctx: &Context) -> Result<i64, BoxError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(&writes.key(&format!("balance:{}", cmd.account)), -cmd.cents)?;
            ctx.publish(Withdrawn {
                account: cmd.account,
                cents: cmd.cents,
            })?;
            // Long enough for a concurrent duplicate to find the key held and wait.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(1000 + i64::from(run))
        }

        async fn tampered(&self, cmd: Tampered) -> Result<i64, BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let writes = RedisWrites::current()?;
            writes.incr_by(&writes.key(&format!("balance:{}", cmd.account)), 1)?;
            if let Some((client, key)) = &self.tamper {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg("not ours")
                    .query_async(&mut conn)
                    .await?;
            }
            Ok(7)
        }
    }
}

fn ledger(tamper: Option<(redis::Client, String)>) -> Arc<Ledger> {
    Arc::new(Ledger {
        runs: AtomicU32::new(0),
        tamper,
    })
}

/// `Idempotency` (on `idempotency`'s store) around `RedisInbox` around `RedisOutbox` (on
/// `stores`): the order the docs recommend.
fn app(stores: &RedisStores, idempotency: &RedisStores, ledger: &Arc<Ledger>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(ledger))
        .handlers(|h| h.is_in("ledger"))
        .layer(Idempotency::new(idempotency.idempotency()))
        .layer(RedisInbox::new(stores))
        .layer(RedisOutbox::new(stores))
        .build()
        .expect("builds")
}

/// `Idempotency` around `RedisOutbox` alone.
fn outbox_only(stores: &RedisStores, ledger: &Arc<Ledger>) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(ledger))
        .handlers(|h| h.is_in("ledger"))
        .layer(Idempotency::new(stores.idempotency()))
        .layer(RedisOutbox::new(stores))
        .build()
        .expect("builds")
}

fn envelope<M: Message>(msg: &M) -> Envelope {
    Envelope::wrap(msg, &Context::new(), WireFormat::Json).expect("encodes")
}

async fn get(slice: &Slice, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut slice.raw().await)
        .await
        .expect("GET")
}

fn command_key(stores: &RedisStores, name: &'static str, id: KeyId) -> String {
    stores.idempotency().key_of(&ReplyKey {
        message: name,
        handler: None,
        id,
    })
}

/// Counted at the wire: the claim, the inbox look-up and the commit, nothing after it; the
/// record holds the reply, and a repeat is answered by the claim alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_records_the_reply_and_nothing_follows_it() {
    let Some(slice) = Slice::open("idem_in_commit").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let counted = slice.connect_at(proxy.url()).await;
    counted.idempotency().load_scripts().await.expect("scripts");
    let runs = ledger(None);
    let app = app(&counted, &counted, &runs);
    // Loads the commit script before counting.
    app.dispatch_envelope(&envelope(&Noticed { account: 0 }))
        .await
        .expect("handled");

    let cmd = envelope(&Withdraw {
        account: 1,
        cents: 20,
    });
    proxy.reset();
    let first = app.dispatch_envelope(&cmd).await.expect("handled");
    assert_eq!(first, Some(b"1001".to_vec()));
    assert_eq!(
        proxy.names(),
        vec!["EVALSHA", "GET", "EVALSHA"],
        "claim, inbox look-up, commit with the reply"
    );
    let key = command_key(&counted, Withdraw::NAME, KeyId::MessageId(cmd.id));
    assert_eq!(get(&slice, &key).await, Some(b"D1001".to_vec()));
    proxy.reset();
    let again = app.dispatch_envelope(&cmd).await.expect("answered");
    assert_eq!(again, first, "the first reply");
    assert_eq!(proxy.names(), vec!["EVALSHA"], "the claim finds the reply");

    for (what, event) in [
        (
            "an event with writes",
            envelope(&Deposited {
                account: 1,
                cents: 5,
            }),
        ),
        ("an event without writes", envelope(&Noticed { account: 1 })),
    ] {
        proxy.reset();
        app.dispatch_envelope(&event).await.expect("handled");
        assert_eq!(proxy.names(), vec!["EVALSHA", "GET", "EVALSHA"], "{what}");
    }
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:idempotency:*", slice.prefix))
        .query_async(&mut slice.raw().await)
        .await
        .expect("KEYS");
    let mut raw = slice.raw().await;
    for record in &records {
        let value: Vec<u8> = redis::cmd("GET")
            .arg(record)
            .query_async(&mut raw)
            .await
            .expect("GET");
        assert_eq!(value.first(), Some(&b'D'), "{record} is completed");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(record)
            .query_async(&mut raw)
            .await
            .expect("PTTL");
        assert!(
            ttl > 23 * 3600 * 1000,
            "{record}: the behaviour's TTL, {ttl} ms"
        );
    }
    assert_eq!(records.len(), 4, "{records:?}");

    // The outbox alone does the same for a command: the claim and the commit.
    let cmd = envelope(&Withdraw {
        account: 2,
        cents: 1,
    });
    let alone = outbox_only(&counted, &runs);
    proxy.reset();
    alone.dispatch_envelope(&cmd).await.expect("handled");
    assert_eq!(proxy.names(), vec!["EVALSHA", "EVALSHA"], "claim, commit");
    let key = command_key(&counted, Withdraw::NAME, KeyId::MessageId(cmd.id));
    assert!(get(&slice, &key).await.is_some_and(|v| v.starts_with(b"D")));
    assert_eq!(
        runs.runs.load(Ordering::SeqCst),
        5,
        "the repeat did not run"
    );
}

/// A duplicate that found the key held waits, and the commit that records the reply wakes it
/// (pub/sub): it gets the first reply, and the handler ran once. Its store polls every 60 s,
/// so only the wake-up can end the wait within the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_duplicate_is_woken_by_the_commit() {
    let Some(slice) = Slice::open("idem_in_commit_wait").await else {
        return;
    };
    let runs = ledger(None);
    let first = app(&slice.stores, &slice.stores, &runs);
    let other = slice.connect().await;
    let waiter = Catga::builder()
        .state_arc(Arc::clone(&runs))
        .handlers(|h| h.is_in("ledger"))
        .layer(Idempotency::new(
            other
                .idempotency()
                .poll_interval(Duration::from_secs(60))
                .expect("a valid interval"),
        ))
        .layer(RedisInbox::new(&other))
        .layer(RedisOutbox::new(&other))
        .build()
        .expect("builds");
    let cmd = envelope(&Withdraw {
        account: 3,
        cents: 9,
    });
    let duplicate = async {
        // After the first has claimed the key.
        tokio::time::sleep(Duration::from_millis(30)).await;
        waiter.dispatch_envelope(&cmd).await
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(first.dispatch_envelope(&cmd), duplicate)
    })
    .await
    .expect("the waiter was woken, not left to its 60 s poll");
    let (a, b) = (a.expect("first"), b.expect("duplicate"));
    assert_eq!(a, b, "the duplicate gets the first reply");
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
}

/// The idempotency store on another connection (other `RedisStores`) cannot be written by the
/// unit's commit: the behaviour completes the key itself, one more round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_another_connection_is_completed_by_the_behaviour() {
    let Some(slice) = Slice::open("idem_in_commit_other").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let counted = slice.connect_at(proxy.url()).await;
    let elsewhere = slice.connect_at(proxy.url()).await;
    elsewhere
        .idempotency()
        .load_scripts()
        .await
        .expect("scripts");
    let runs = ledger(None);
    let app = app(&counted, &elsewhere, &runs);
    app.dispatch_envelope(&envelope(&Noticed { account: 0 }))
        .await
        .expect("handled");
    let cmd = envelope(&Withdraw {
        account: 4,
        cents: 2,
    });
    proxy.reset();
    app.dispatch_envelope(&cmd).await.expect("handled");
    assert_eq!(
        proxy.names(),
        vec!["EVALSHA", "GET", "EVALSHA", "EVALSHA"],
        "claim, look-up, commit, then the behaviour's complete"
    );
    let key = command_key(&elsewhere, Withdraw::NAME, KeyId::MessageId(cmd.id));
    assert_eq!(get(&slice, &key).await, Some(b"D1001".to_vec()));
}

/// A key overwritten while the handler ran (a value the store does not write) is left as it
/// is by the commit, whose effects still apply; the behaviour's own complete then refuses it
/// too, so the reply is returned and the key is never clobbered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_store_did_not_write_is_left_alone() {
    let Some(slice) = Slice::open("idem_in_commit_tampered").await else {
        return;
    };
    let key = command_key(
        &slice.stores,
        Tampered::NAME,
        KeyId::Declared("tampered-5".into()),
    );
    let client = redis::Client::open(slice.url.as_str()).expect("a valid url");
    let runs = ledger(Some((client, key.clone())));
    let app = app(&slice.stores, &slice.stores, &runs);
    let reply = app
        .dispatch_envelope(&envelope(&Tampered { account: 5 }))
        .await
        .expect("the handler's reply");
    assert_eq!(reply, Some(b"7".to_vec()));
    assert_eq!(get(&slice, &key).await, Some(b"not ours".to_vec()));
    let balance = get(&slice, &RedisOutbox::new(&slice.stores).key("balance:5")).await;
    assert_eq!(balance, Some(b"1".to_vec()), "the effects were committed");
}

//! The outbox and the inbox end to end over a real broker: a producer application (`Outbox`, a
//! started relay, a transport) commits commands whose events the relay publishes to NATS
//! JetStream or Redis Streams; a consumer application (`Inbox`, the same transport, serving)
//! handles them and writes its effect through `Tx::current()`, on the same Postgres schema.
//!
//! What must hold: N commands give N effects, each exactly once (the inbox), and the events of
//! one conversation (correlation id, the outbox's default ordering key) take effect in the
//! order their commands committed. With a private `nats-server` killed while commands commit:
//! the commands keep succeeding, their rows wait in the outbox, and once the server is started
//! again (same port, same store) everything flows without a step of the test's own.
//!
//! The shared servers come from `CATGA_NATS_URL` / `CATGA_REDIS_URL` (each test uses a prefix
//! and a stream of its own, removed at the end); Postgres from `CATGA_POSTGRES_URL`. Run with
//! `--nocapture` for the figures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::{self, PATIENCE, services, within};
use catga_core::transport::Transport;
use catga_nats::NatsTransport;
use catga_postgres::{Inbox, Outbox, Tx};
use common::Db;
use common::private_nats::PrivateNats;
use common::redis_corner::RedisCorner;
use uuid::Uuid;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub conversation: i64,
    pub seq: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub conversation: i64,
    pub seq: i64,
}

/// The consumer's handler runs, duplicates the inbox skipped excluded.
#[derive(Default)]
pub struct Effects {
    runs: AtomicU64,
}

pub mod producer {
    use super::*;

    #[handler]
    pub async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<(), BoxError> {
        ctx.publish(OrderPlaced {
            conversation: cmd.conversation,
            seq: cmd.seq,
        })?;
        Ok(())
    }
}

pub mod consumer {
    use super::*;

    #[handler]
    impl Effects {
        /// The effect: one row, in the transaction the inbox opened for this delivery.
        async fn placed(&self, event: &OrderPlaced) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let tx = Tx::current()?;
            let mut conn = tx.lock().await?;
            sqlx::query("INSERT INTO effects (conversation, seq) VALUES ($1, $2)")
                .bind(event.conversation)
                .bind(event.seq)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    }
}

async fn db(test: &str) -> Option<Db> {
    let db = Db::open(test).await?;
    // `id` follows the order effects were written in.
    db.execute(
        "CREATE TABLE {schema}.effects (id bigserial PRIMARY KEY, conversation bigint NOT NULL, seq bigint NOT NULL)",
    )
    .await;
    Some(db)
}

/// The producer: commands commit with their events in the outbox, and its relay publishes
/// them through `transport`.
async fn producer(
    db: &Db,
    transport: impl Transport,
) -> (Catga<impl Layer>, catga_postgres::RunningRelay) {
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox.relay();
    let app = Catga::builder()
        .transport(transport)
        .service("producer")
        .handlers(|h| h.is_in("producer"))
        .layer(outbox)
        .build()
        .expect("the producer builds");
    let running = relay.start(app.clone()).await.expect("the relay starts");
    (app, running)
}

/// The consumer: handles the events one at a time (so the broker's order is the order of
/// the effects), each in a transaction with its inbox record.
fn consumer(db: &Db, effects: &Arc<Effects>, transport: impl Transport) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(Arc::clone(effects))
        .transport(transport)
        .service("consumer")
        .handlers(|h| h.is_in("consumer"))
        .serve_max_in_flight(1)
        .layer(Inbox::new(db.pool.clone(), &db.schema))
        .build()
        .expect("the consumer builds")
}

/// Sends `per` commands in each of `conversations` conversations: one after the other within
/// a conversation (its own correlation id), the conversations at once. `first` is the first
/// `seq` of each. Every command must succeed.
async fn send_all(app: &Catga<impl Layer>, conversations: &[Uuid], first: i64, per: i64) {
    let sends = conversations.iter().enumerate().map(|(c, id)| async move {
        for seq in first..first + per {
            let ctx = Context::new().with_correlation_id(*id);
            app.send_with(
                PlaceOrder {
                    conversation: i64::try_from(c).expect("small"),
                    seq,
                },
                ctx,
            )
            .await
            .unwrap_or_else(|e| panic!("conversation {c}, command {seq}: {e}"));
        }
    });
    futures::future::join_all(sends).await;
}

/// What the effects say: (effects, distinct events, conversations whose effects are out of
/// order, with their `seq`s in effect order).
async fn effects_seen(db: &Db) -> (i64, i64, Vec<(i64, Vec<i64>)>) {
    let total = db.count("SELECT count(*) FROM {schema}.effects").await;
    let distinct = db
        .count("SELECT count(*) FROM (SELECT DISTINCT conversation, seq FROM {schema}.effects) d")
        .await;
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT conversation, seq FROM effects ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .expect("the effects");
    let mut by_conversation: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (conversation, seq) in rows {
        by_conversation.entry(conversation).or_default().push(seq);
    }
    let out_of_order = by_conversation
        .into_iter()
        .filter(|(_, seqs)| seqs.windows(2).any(|w| w[0] >= w[1]))
        .collect();
    (total, distinct, out_of_order)
}

/// Waits until `n` effects are written and the outbox is empty.
async fn all_through(db: &Db, n: i64, what: &str) {
    within(PATIENCE * 4, what, || async {
        db.count("SELECT count(*) FROM {schema}.effects").await >= n && db.outbox_rows().await == 0
    })
    .await;
}

/// The scenario on any transport: `conversations` × `per` commands through the producer, all
/// handled once and in order per conversation by the consumer.
async fn flows_once_in_order<P: Transport, C: Transport>(
    name: &str,
    db: &Db,
    producer_transport: P,
    consumer_transport: C,
    conversations: usize,
    per: i64,
) {
    let effects = Arc::new(Effects::default());
    let consumer = consumer(db, &effects, consumer_transport);
    let serving = consumer.serve().await.expect("the consumer serves");
    let (producer, relay) = producer(db, producer_transport).await;
    let ids: Vec<Uuid> = (0..conversations).map(|_| Uuid::now_v7()).collect();
    send_all(&producer, &ids, 0, per).await;
    let n = i64::try_from(conversations).expect("small") * per;
    all_through(db, n, "every event's effect and an empty outbox").await;
    // Anything redelivered late would land now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.shutdown().await;
    serving.shutdown().await;
    let (total, distinct, out_of_order) = effects_seen(db).await;
    let runs = effects.runs.load(Ordering::SeqCst);
    println!(
        "{name}: {n} commands in {conversations} conversations -> {total} effects ({distinct} distinct), handler runs {runs}, \
         dead letters: producer {:?}, consumer {:?}",
        producer.dead_letters().count_dyn().await,
        consumer.dead_letters().count_dyn().await
    );
    assert_eq!(distinct, n, "every event had its effect");
    assert_eq!(total, n, "exactly one effect per event");
    assert!(
        out_of_order.is_empty(),
        "per conversation, effects in commit order: {out_of_order:?}"
    );
}

// ---- NATS JetStream ----------------------------------------------------------------------

fn nats_url() -> String {
    services::url("CATGA_NATS_URL", "nats://127.0.0.1:4222")
}

/// Whether NATS answers at `url`; if not, the test returns (having said why), or fails under
/// `CATGA_REQUIRE_SERVICES=1`.
async fn nats_reachable(test: &str, url: &str) -> bool {
    let probe = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await;
    if let Err(e) = probe {
        let shown = catga_core::secret::redact_url(url);
        services::unavailable(
            test,
            &format!("NATS is unreachable at {shown}: {e}"),
            "start `nats-server -js` or set CATGA_NATS_URL",
        );
        return false;
    }
    true
}

/// A prefix and stream of the test's own on a NATS server; the stream is deleted when
/// dropped, even when the test panicked.
struct NatsCorner {
    url: String,
    prefix: String,
    stream: String,
}

impl NatsCorner {
    fn new(url: String) -> NatsCorner {
        let prefix = testkit::unique("pgoutbox");
        let stream = format!("{prefix}-events");
        NatsCorner {
            url,
            prefix,
            stream,
        }
    }

    /// A transport on this corner; publishes wait `response_timeout` at most for JetStream's
    /// acknowledgement.
    async fn transport(&self, response_timeout: Duration) -> NatsTransport {
        NatsTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .stream(self.stream.clone())
            .fetch_wait(Duration::from_secs(1))
            .ack_wait(Duration::from_secs(5))
            .backoff([Duration::from_millis(50)])
            .response_timeout(response_timeout)
            .await
            .expect("connect to NATS")
    }
}

impl Drop for NatsCorner {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await and may run inside the test's runtime: a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(url.as_str());
                if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await
                {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_nats_every_event_takes_effect_once_and_in_order_per_conversation() {
    const TEST: &str = "end_to_end_nats";
    let url = nats_url();
    if !nats_reachable(TEST, &url).await {
        return;
    }
    let Some(db) = db(TEST).await else {
        return;
    };
    let corner = NatsCorner::new(url);
    let timeout = Duration::from_secs(5);
    flows_once_in_order(
        TEST,
        &db,
        corner.transport(timeout).await,
        corner.transport(timeout).await,
        20,
        25,
    )
    .await;
}

/// The events of `stream` in the order the server stored them, first copies only (a
/// republished copy the server did not drop as a duplicate shows again): per conversation,
/// the `seq`s in stored order, for the conversations where they are out of order; and how
/// many messages the stream holds.
async fn stored_out_of_order(url: &str, stream: &str) -> (u64, Vec<(i64, Vec<i64>)>) {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await
        .expect("the events stream");
    let last = stream
        .get_info()
        .await
        .expect("the stream's info")
        .state
        .last_sequence;
    let mut seen = std::collections::HashSet::new();
    let mut by_conversation: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    let mut stored = 0;
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        stored += 1;
        let event: OrderPlaced =
            serde_json::from_slice(&message.payload).expect("an OrderPlaced payload");
        if seen.insert((event.conversation, event.seq)) {
            by_conversation
                .entry(event.conversation)
                .or_default()
                .push(event.seq);
        }
    }
    let out_of_order = by_conversation
        .into_iter()
        .filter(|(_, seqs)| seqs.windows(2).any(|w| w[0] >= w[1]))
        .collect();
    (stored, out_of_order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nats_down_commands_commit_rows_wait_and_everything_flows_once_it_is_back() {
    const TEST: &str = "end_to_end_nats_down";
    let Some(binary) = PrivateNats::binary_or_skip(TEST) else {
        return;
    };
    let Some(db) = db(TEST).await else {
        return;
    };
    let mut server = PrivateNats::start(&binary).await;
    let corner = NatsCorner::new(server.url());
    let effects = Arc::new(Effects::default());
    let consumer = consumer(
        &db,
        &effects,
        corner.transport(Duration::from_secs(5)).await,
    );
    let serving = consumer.serve().await.expect("the consumer serves");
    // Publishes give up after a second without an acknowledgement, so the relay notes the
    // failure and tries again (it keeps the row either way).
    let (producer, relay) = producer(&db, corner.transport(Duration::from_secs(1)).await).await;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();

    // Commands commit while the server is killed under them, and after: none fails.
    let first = {
        let (producer, ids) = (producer.clone(), ids.clone());
        tokio::spawn(async move { send_all(&producer, &ids, 0, 40).await })
    };
    within(PATIENCE, "events flowing before the kill", || async {
        db.count("SELECT count(*) FROM {schema}.effects").await >= 30
    })
    .await;
    server.kill();
    let effects_at_kill = db.count("SELECT count(*) FROM {schema}.effects").await;
    first
        .await
        .expect("every command committed across the kill");
    send_all(&producer, &ids, 40, 20).await;
    let rows_while_down = db.outbox_rows().await;
    within(
        PATIENCE,
        "the relay to note a failed publication",
        || async {
            db.count(
            "SELECT count(*) FROM {schema}.outbox WHERE attempts > 0 AND last_error IS NOT NULL",
        )
        .await
            >= 1
        },
    )
    .await;
    let attempts = db
        .count("SELECT coalesce(sum(attempts), 0)::bigint FROM {schema}.outbox")
        .await;
    assert!(
        rows_while_down >= 100,
        "the rows of the commands committed while the server was down wait in the outbox: {rows_while_down}"
    );

    server.restart().await;
    // No step of the test's own: the relay and the consumer find the server again.
    all_through(&db, 300, "every event once the server is back").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.shutdown().await;
    serving.shutdown().await;
    let (total, distinct, effects_out_of_order) = effects_seen(&db).await;
    let (stored, stored_out_of_order) = stored_out_of_order(&server.url(), &corner.stream).await;
    println!(
        "{TEST}: 300 commands, nats-server killed with {effects_at_kill} effects; {rows_while_down} rows waited \
         ({attempts} failed publications noted on them); then {total} effects ({distinct} distinct), handler runs {}, \
         {stored} messages stored; conversations out of order: stored {}, in effect {}",
        effects.runs.load(Ordering::SeqCst),
        stored_out_of_order.len(),
        effects_out_of_order.len()
    );
    assert_eq!(distinct, 300, "every event had its effect");
    assert_eq!(total, 300, "exactly one effect per event");
    assert!(
        stored_out_of_order.is_empty(),
        "per conversation, the relay published in commit order: {stored_out_of_order:?}"
    );
}

// ---- Redis Streams -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_redis_every_event_takes_effect_once_and_in_order_per_conversation() {
    const TEST: &str = "end_to_end_redis";
    let Some(corner) = RedisCorner::open(TEST).await else {
        return;
    };
    let Some(db) = db(TEST).await else {
        return;
    };
    flows_once_in_order(
        TEST,
        &db,
        corner.transport().await,
        corner.transport().await,
        20,
        25,
    )
    .await;
}

//! Bytes from the wire the NATS client cannot read (rel_r1): a stored event whose header block
//! async-nats refuses (a value that is not UTF-8, a line without `:`) makes the client drop its
//! connection when the server delivers it. It must cost a bounded number of reconnections,
//! then be kept in the dead-letter store with its raw bytes and terminated, while good traffic
//! keeps flowing. A request (not stored) with such headers costs the responder one
//! reconnection and gets no reply: there is nothing to set aside.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::{PATIENCE, dead_letters, eventually, settled, unique};
use catga_nats::NatsTransport;
use common::{Corner, Options};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// The ticks handled, by number.
#[derive(Default)]
pub struct Handled(pub std::sync::Mutex<Vec<u64>>, pub AtomicU64);

pub mod service {
    use super::*;

    #[handler]
    impl Handled {
        async fn tick(&self, tick: &Tick) -> Result<(), Never> {
            self.0.lock().map_err(|_| Never)?.push(tick.n);
            Ok(())
        }

        async fn echo(&self, echo: Echo) -> Result<u64, Never> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(echo.n)
        }
    }
}

fn app(
    nats: &NatsTransport,
    service: &str,
    letters: &MemoryDeadLetterStore,
) -> (Catga, Arc<Handled>) {
    let handled = Arc::new(Handled::default());
    let app = Catga::builder()
        .state_arc(handled.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("poison::service::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, handled)
}

/// One poison event, published between good ones: `block` is its header block.
async fn a_poison_event_is_set_aside_after_one_reconnection(test: &str, block: &[u8]) {
    let Some(corner) = Corner::new(test).await else {
        return;
    };
    let ack_wait = Duration::from_secs(2);
    let nats = corner
        .connect_with(Options {
            ack_wait: Some(ack_wait),
            ..corner.options()
        })
        .await;
    let letters = MemoryDeadLetterStore::new();
    let service = unique("svc");
    let (app, handled) = app(&nats, &service, &letters);
    let serving = app.serve().await.unwrap();
    assert_eq!(common::connects(&nats), 1);

    app.publish(Tick { n: 1 }).await.unwrap();
    let body = br#"{"n":666}"#;
    common::raw_publish(&corner.url, &nats.event_subject("Tick"), block, body, true).await;
    // A good publish during the episode: the caller retries as its code should, under one
    // message id, since a publish whose acknowledgement was lost may have been stored (the
    // stream drops a repeat of an id it holds).
    let started = Instant::now();
    let mut failed_publishes = 0;
    let id = uuid::Uuid::now_v7();
    while app
        .publish_with(Tick { n: 2 }, Context::new().with_message_id(id))
        .await
        .is_err()
    {
        failed_publishes += 1;
        assert!(
            started.elapsed() < PATIENCE,
            "the good publish never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("both good events", || async {
        handled.0.lock().unwrap().len() >= 2
    })
    .await;
    let kept = dead_letters(&letters, 1, "the poison event kept").await;
    // Long enough for two more deliveries, had it not been terminated.
    tokio::time::sleep(ack_wait * 3).await;
    settled(
        &corner,
        &service,
        "Tick",
        "nothing pending or unacknowledged",
    )
    .await;

    let kept_after = letters.list(10).await.unwrap();
    assert_eq!(kept_after.len(), 1, "one record: {kept_after:?}");
    let record = &kept[0];
    assert_eq!(
        record.raw_headers.as_deref(),
        Some(block),
        "the raw header block as stored"
    );
    assert_eq!(
        record.payload.as_deref(),
        Some(&body[..]),
        "the body as stored"
    );
    assert_eq!(record.message, "Tick");
    assert_eq!(record.code, "envelope");
    let source = record.source.as_deref().unwrap_or_default();
    assert!(
        source.contains(nats.stream_name()) && source.contains("seq 2"),
        "names the stream and the sequence: {source}"
    );
    let mut ticks = handled.0.lock().unwrap().clone();
    ticks.sort_unstable();
    assert_eq!(ticks, vec![1, 2], "the poison event was never handled");
    let connects = common::connects(&nats);
    println!(
        "{test}: {connects} connections in all, {failed_publishes} good publishes retried during the episode"
    );
    assert!(
        connects <= 2,
        "one poison event costs at most one reconnection across its deliveries: {connects} connections"
    );
    // Good traffic after the episode.
    app.publish(Tick { n: 3 }).await.unwrap();
    eventually("a good event after the episode", || async {
        handled.0.lock().unwrap().contains(&3)
    })
    .await;
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_with_a_header_value_that_is_not_utf8_is_set_aside() {
    let block = format!(
        "NATS/1.0\r\nNats-Msg-Id: {}\r\nx-bin: ",
        uuid::Uuid::now_v7()
    );
    let mut block = block.into_bytes();
    block.extend_from_slice(b"\xc3\x28\r\n\r\n");
    a_poison_event_is_set_aside_after_one_reconnection("poison_not_utf8", &block).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_with_a_header_line_without_a_colon_is_set_aside() {
    let block = format!(
        "NATS/1.0\r\nNats-Msg-Id: {}\r\nthis line has no colon\r\n\r\n",
        uuid::Uuid::now_v7()
    );
    a_poison_event_is_set_aside_after_one_reconnection("poison_no_colon", block.as_bytes()).await;
}

/// A request with such headers is not stored: the responder's connection drops once, the
/// request gets no reply, and later requests are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_unreadable_headers_costs_one_reconnection_and_nothing_else() {
    let Some(corner) = Corner::new("poison_request").await else {
        return;
    };
    let nats = corner.connect().await;
    let letters = MemoryDeadLetterStore::new();
    let (app, handled) = app(&nats, &unique("svc"), &letters);
    let serving = app.serve().await.unwrap();
    let caller = Catga::builder()
        .transport(corner.connect().await)
        .handlers(|_| false)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(caller.send(Echo { n: 1 }).await.unwrap(), 1);

    let mut block = b"NATS/1.0\r\nx-bin: ".to_vec();
    block.extend_from_slice(b"\xff\xfe\r\n\r\n");
    let started = Instant::now();
    common::raw_publish(
        &corner.url,
        &nats.request_subject("Echo"),
        &block,
        br#"{"n":2}"#,
        false,
    )
    .await;
    eventually("the responder's reconnection", || async {
        common::connects(&nats) == 2
    })
    .await;
    let reconnected = started.elapsed();
    let answered = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(n) = caller.send(Echo { n: 3 }).await {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("requests are answered again");
    println!(
        "poison request: the responder reconnected {reconnected:?} after it, and answered again {:?} after it",
        started.elapsed()
    );
    assert_eq!(answered, 3);
    assert_eq!(
        handled.1.load(Ordering::SeqCst),
        2,
        "the unreadable request never ran"
    );
    assert_eq!(
        letters.count().await.unwrap(),
        0,
        "nothing to set aside: it is not stored"
    );
    assert_eq!(common::connects(&nats), 2, "one reconnection");
    serving.shutdown().await;
}

//! Where an entry arrived decides what it is: the stream it was read from names the message
//! and its kind, whatever the entry's own `catga-name`/`catga-kind` fields claim. An entry
//! that claims otherwise is never dispatched; it is kept once in the dead-letter store (code
//! `envelope`) and acknowledged for this service's group only. Nothing is ever deleted from an
//! event stream, which other services read too: `XDEL` happens only on the request streams
//! this service consumes, after answering.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use catga_core::envelope::header;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, FailureStage, MemoryDeadLetterStore};
use catga_core::testkit::eventually;
use catga_core::transport::RemoteFailure;
use catga_redis::RedisTransport;
use common::{Server, inject, pending, xlen};
use redis::aio::MultiplexedConnection;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub cents: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Viewed {
    pub page: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Purchased {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What the shop's handlers did.
#[derive(Default)]
pub struct Shop {
    refunded: AtomicU64,
    viewed: AtomicU64,
    purchased: AtomicU64,
}

pub mod shop {
    use super::*;

    #[handler]
    impl Shop {
        async fn refund(&self, cmd: Refund) -> Result<u64, Never> {
            Ok(self.refunded.fetch_add(cmd.cents, Ordering::SeqCst))
        }

        async fn viewed(&self, _event: &Viewed) -> Result<(), Never> {
            self.viewed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn purchased(&self, _event: &Purchased) -> Result<(), Never> {
            self.purchased.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn shop(redis: &RedisTransport) -> (Catga, Arc<Shop>, MemoryDeadLetterStore) {
    let state = Arc::new(Shop::default());
    let letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state_arc(state.clone())
        .transport(redis.clone())
        .service("shop")
        .handlers(|h| h.name.starts_with("routing::shop::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, state, letters)
}

/// Another service's group on `stream`, created before anything is added, as a service that
/// also handles the event would have.
async fn other_group(raw: &mut MultiplexedConnection, stream: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("other")
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .unwrap();
}

/// The entries group `other` reads from `stream` (consuming them as that service would).
async fn read_as_other(raw: &mut MultiplexedConnection, stream: &str) -> usize {
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("other")
        .arg("o1")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(raw)
        .await
        .unwrap();
    let redis::Value::Array(streams) = reply else {
        return 0;
    };
    streams
        .into_iter()
        .filter_map(|s| match s {
            redis::Value::Array(mut parts) if parts.len() == 2 => match parts.pop() {
                Some(redis::Value::Array(entries)) => Some(entries.len()),
                _ => None,
            },
            _ => None,
        })
        .sum()
}

#[tokio::test]
async fn a_command_smuggled_onto_an_event_stream_is_kept_aside_and_never_run() {
    let Some(server) = Server::get("smuggled").await else {
        return;
    };
    let redis = server.transport().await;
    let stream = redis.event_stream("Viewed");
    let mut raw = server.raw().await;
    other_group(&mut raw, &stream).await;
    let (app, state, letters) = shop(&redis);
    let serving = app.serve().await.unwrap();

    let id = uuid::Uuid::now_v7().to_string();
    let reply_key = format!("{}:replies:smuggled", server.prefix);
    inject(
        &mut raw,
        &stream,
        &[
            (header::ID, &id),
            (header::NAME, "Refund"),
            (header::KIND, "command"),
            ("catga-reply-to", &reply_key),
            ("catga-payload", r#"{"cents":500}"#),
        ],
    )
    .await;
    eventually("the entry is kept", || async {
        letters.count().await.unwrap() >= 1
    })
    .await;
    eventually("and acknowledged for the shop's group", || async {
        pending(&mut raw.clone(), &stream, "shop").await == 0
    })
    .await;
    serving.shutdown().await;

    assert_eq!(state.refunded.load(Ordering::SeqCst), 0, "refunded 0");
    assert_eq!(
        state.viewed.load(Ordering::SeqCst),
        0,
        "nor handled as the event"
    );
    assert_eq!(
        xlen(&mut raw, &stream).await,
        1,
        "the entry is still on the shared stream"
    );
    assert_eq!(
        read_as_other(&mut raw, &stream).await,
        1,
        "and another service's group still gets it"
    );
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 1, "one record: {kept:?}");
    assert_eq!(kept[0].code, "envelope");
    assert_eq!(kept[0].stage, FailureStage::Delivery);
    assert_eq!(kept[0].message, "Refund");
    assert_eq!(kept[0].payload.as_deref(), Some(&br#"{"cents":500}"#[..]));
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&reply_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "an event stream's entry is never answered");
}

#[tokio::test]
async fn an_entry_naming_another_event_or_kind_on_an_event_stream_is_not_dispatched() {
    let Some(server) = Server::get("misnamed").await else {
        return;
    };
    let redis = server.transport().await;
    let stream = redis.event_stream("Viewed");
    let mut raw = server.raw().await;
    let (app, state, letters) = shop(&redis);
    let serving = app.serve().await.unwrap();

    for (name, kind) in [
        ("Purchased", "event"),
        ("Viewed", "command"),
        ("Viewed", "query"),
    ] {
        let id = uuid::Uuid::now_v7().to_string();
        inject(
            &mut raw,
            &stream,
            &[
                (header::ID, &id),
                (header::NAME, name),
                (header::KIND, kind),
                ("catga-payload", r#"{"page":1,"order":1}"#),
            ],
        )
        .await;
    }
    // And a good one, which must still be handled.
    app.publish(Viewed { page: 2 }).await.unwrap();
    eventually("the three impostors are kept", || async {
        letters.count().await.unwrap() >= 3
    })
    .await;
    eventually("the real event is handled", || async {
        state.viewed.load(Ordering::SeqCst) >= 1
    })
    .await;
    eventually("everything is acknowledged", || async {
        pending(&mut raw.clone(), &stream, "shop").await == 0
    })
    .await;
    serving.shutdown().await;

    assert_eq!(state.purchased.load(Ordering::SeqCst), 0);
    assert_eq!(state.viewed.load(Ordering::SeqCst), 1, "only the real one");
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.iter().all(|r| r.code == "envelope"), "{kept:?}");
    assert_eq!(xlen(&mut raw, &stream).await, 4, "nothing was deleted");
}

#[tokio::test]
async fn an_event_smuggled_onto_a_request_stream_is_refused_and_answered() {
    let Some(server) = Server::get("reverse").await else {
        return;
    };
    let redis = server.transport().await;
    let stream = redis.request_stream("Refund");
    let mut raw = server.raw().await;
    let (app, state, letters) = shop(&redis);
    let serving = app.serve().await.unwrap();

    let mut replies = Vec::new();
    for (n, (name, kind)) in [("Viewed", "event"), ("Refund", "event")]
        .into_iter()
        .enumerate()
    {
        let id = uuid::Uuid::now_v7().to_string();
        let reply_key = format!("{}:replies:reverse-{n}", server.prefix);
        inject(
            &mut raw,
            &stream,
            &[
                (header::ID, &id),
                (header::NAME, name),
                (header::KIND, kind),
                ("catga-reply-to", &reply_key),
                ("catga-payload", r#"{"cents":700,"page":3}"#),
            ],
        )
        .await;
        replies.push(reply_key);
    }
    for key in &replies {
        let (_, reply): (String, Vec<u8>) = redis::cmd("BLPOP")
            .arg(key)
            .arg(30)
            .query_async(&mut raw)
            .await
            .unwrap();
        let failure = reply
            .strip_prefix(b"E")
            .and_then(|document| RemoteFailure::decode(document).ok())
            .unwrap_or_else(|| panic!("not a failure: {}", String::from_utf8_lossy(&reply)));
        assert_eq!(failure.code, "envelope", "a typed refusal: {failure:?}");
        assert!(!failure.retryable && !failure.in_doubt, "{failure:?}");
    }
    eventually("both are kept", || async {
        letters.count().await.unwrap() >= 2
    })
    .await;
    serving.shutdown().await;

    assert_eq!(state.refunded.load(Ordering::SeqCst), 0);
    assert_eq!(state.viewed.load(Ordering::SeqCst), 0);
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|r| r.code == "envelope"), "{kept:?}");
    assert_eq!(
        xlen(&mut raw, &stream).await,
        0,
        "this service's own request stream: answered entries are deleted"
    );
}

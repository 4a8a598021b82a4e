//! Where a message arrived decides what it is (rel_r6 on NATS): headers naming another
//! message or kind than the subject carries are never dispatched. The envelope's
//! `catga-name`/`catga-kind` headers reach the application as sent, which sees the mismatch
//! with the subject, keeps the message in the dead-letter store (code `envelope`) and, for an
//! event, terminates it for this service only: other services' consumers still have it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::{dead_letters, eventually, settled, unique};
use catga_core::{MessageKind, WireFormat};
use catga_nats::{ERROR_CODE, NatsTransport};
use common::Corner;

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
pub struct Clicked {
    pub page: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Default)]
pub struct Shop {
    refunded: AtomicU64,
    viewed: AtomicU64,
    clicked: AtomicU64,
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

        async fn clicked(&self, _event: &Clicked) -> Result<(), Never> {
            self.clicked.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn shop(
    nats: &NatsTransport,
    service: &str,
    letters: &MemoryDeadLetterStore,
) -> (Catga, Arc<Shop>) {
    let state = Arc::new(Shop::default());
    let app = Catga::builder()
        .state_arc(state.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("routing::shop::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, state)
}

/// Headers any NATS client could write: an envelope naming `name` of `kind`.
fn claiming(name: &'static str, kind: MessageKind, payload: &[u8]) -> HeaderMap {
    let envelope = Envelope::with_payload(
        name,
        kind,
        &Context::new(),
        WireFormat::Json,
        payload.to_vec(),
    );
    let mut map = HeaderMap::new();
    for (header, value) in envelope.to_headers() {
        map.append(header, value.as_str());
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_subject_carrying_another_message_is_never_dispatched() {
    let Some(corner) = Corner::new("an_event_subject_carrying_another").await else {
        return;
    };
    let nats = corner.connect().await;
    let letters = MemoryDeadLetterStore::new();
    let service = unique("shop");
    // Another service consuming the same event: what it has must stay its own.
    let other = unique("analytics");
    let (other_app, _) = shop(&nats, &other, &MemoryDeadLetterStore::new());
    other_app.serve().await.unwrap().shutdown().await;
    let (app, state) = shop(&nats, &service, &letters);
    let serving = app.serve().await.unwrap();
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let viewed = nats.event_subject("Viewed");
    let payload = br#"{"cents":500}"#;
    let smuggled = [
        // A command on an event's subject (rel_r6).
        claiming("Refund", MessageKind::Command, payload),
        // Another event's name.
        claiming("Clicked", MessageKind::Event, br#"{"page":1}"#),
        // The right name, the wrong kind.
        claiming("Viewed", MessageKind::Command, br#"{"page":1}"#),
    ];
    for headers in smuggled {
        jetstream
            .publish_with_headers(viewed.clone(), headers, payload.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    app.publish(Viewed { page: 2 }).await.unwrap();

    eventually("the real event", || async {
        state.viewed.load(Ordering::SeqCst) == 1
    })
    .await;
    let kept = dead_letters(&letters, 3, "the three smuggled messages").await;
    settled(&corner, &service, "Viewed", "all four settled").await;
    assert!(kept.iter().all(|r| r.code == "envelope"), "{kept:?}");
    let mut named: Vec<&str> = kept.iter().map(|r| r.message.as_str()).collect();
    named.sort_unstable();
    assert_eq!(
        named,
        ["Clicked", "Refund", "Viewed"],
        "kept as they claimed to be"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        state.refunded.load(Ordering::SeqCst),
        0,
        "the command never ran"
    );
    assert_eq!(state.clicked.load(Ordering::SeqCst), 0);
    assert_eq!(
        state.viewed.load(Ordering::SeqCst),
        1,
        "only the real event ran"
    );
    // Nothing else is touched: the other service still has all four, and the stream too.
    let (pending, _) = common::backlog(&nats, &other, "Viewed").await.unwrap();
    assert_eq!(pending, 4, "another service's consumer still holds them");
    let mut stream = jetstream.get_stream(nats.stream_name()).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_subject_carrying_an_event_is_refused_not_dispatched() {
    let Some(corner) = Corner::new("a_request_subject_carrying_an_event").await else {
        return;
    };
    let nats = corner.connect().await;
    let letters = MemoryDeadLetterStore::new();
    let (app, state) = shop(&nats, &unique("shop"), &letters);
    let serving = app.serve().await.unwrap();
    let subject = nats.request_subject("Refund");
    let payload = br#"{"cents":500,"page":1}"#;
    for headers in [
        claiming("Viewed", MessageKind::Event, payload),
        claiming("Refund", MessageKind::Event, payload),
    ] {
        let reply = nats
            .client()
            .request_with_headers(subject.clone(), headers, payload.to_vec().into())
            .await
            .unwrap();
        let code = reply.headers.as_ref().and_then(|h| h.get(ERROR_CODE));
        assert_eq!(
            code.map(|c| c.as_str()),
            Some("envelope"),
            "refused at once"
        );
    }
    let kept = dead_letters(&letters, 2, "both kept").await;
    assert!(kept.iter().all(|r| r.code == "envelope"), "{kept:?}");
    assert_eq!(
        state.refunded.load(Ordering::SeqCst),
        0,
        "the command never ran"
    );
    assert_eq!(
        state.viewed.load(Ordering::SeqCst),
        0,
        "nor an event handler"
    );
    assert_eq!(letters.count().await.unwrap(), 2);
    // A real request still works.
    let caller = Catga::builder()
        .transport(corner.connect().await)
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(caller.send(Refund { cents: 5 }).await.unwrap(), 0);
    assert_eq!(state.refunded.load(Ordering::SeqCst), 5);
    serving.shutdown().await;
}

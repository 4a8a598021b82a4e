//! Bytes that are not a catga message, injected with plain async-nats: kept in the reject
//! store with why, acknowledged, and the consumer goes on; a request gets an error reply, not
//! silence. And the server's `max_payload` counts the headers too. (Undecodable and oversized
//! messages sent through the `Transport` API are the conformance suite's `wire` family.)

mod common;

use std::sync::{Arc, Mutex};

use async_nats::HeaderMap;
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::{PATIENCE, eventually, unique};
use catga_core::transport::{Transport, TransportError};
use catga_core::{MessageKind, WireFormat};
use catga_nats::{ERROR_CODE, NatsTransport};
use common::Corner;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("poisoned")]
pub struct Poisoned;

#[derive(Default)]
pub struct Seen {
    placed: Mutex<Vec<u64>>,
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn placed(&self, event: &OrderPlaced) -> Result<(), Poisoned> {
            self.placed.lock().map_err(|_| Poisoned)?.push(event.order);
            Ok(())
        }

        async fn ship(&self, cmd: Ship) -> Result<u64, Poisoned> {
            Ok(cmd.order)
        }
    }
}

fn shipping(nats: &NatsTransport, rejects: &MemoryDeadLetterStore) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(nats.clone())
        .service(unique("shipping"))
        .handlers(|h| h.name.starts_with("malformed::shipping::"))
        .dead_letters(rejects.clone())
        .build()
        .unwrap();
    (app, seen)
}

/// An envelope's headers as NATS headers, the way any NATS client could write them.
fn nats_headers(envelope: &Envelope) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in envelope.to_headers() {
        map.append(name, value.as_str());
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_events_are_kept_and_the_consumer_goes_on() {
    let Some(corner) = Corner::new("unreadable_events_are_kept").await else {
        return;
    };
    let nats = corner.connect().await;
    let rejects = MemoryDeadLetterStore::new();
    let (app, seen) = shipping(&nats, &rejects);
    let serving = app.serve().await.unwrap();
    let subject = nats.event_subject("OrderPlaced");
    let jetstream = async_nats::jetstream::new(nats.client().clone());

    // No headers at all.
    jetstream
        .publish(subject.clone(), "no headers".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // catga headers, but a message id that is not a UUID.
    let mut bad_id = HeaderMap::new();
    bad_id.insert("catga-id", "not-a-uuid");
    bad_id.insert("catga-name", "OrderPlaced");
    bad_id.insert("catga-kind", "event");
    jetstream
        .publish_with_headers(subject.clone(), bad_id, "bad id".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Good headers, a payload that does not decode.
    let garbage = Envelope::with_payload(
        "OrderPlaced",
        MessageKind::Event,
        &Context::new(),
        WireFormat::Json,
        b"{not json".to_vec(),
    );
    jetstream
        .publish_with_headers(subject.clone(), nats_headers(&garbage), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Then a real event.
    app.publish(OrderPlaced { order: 7 }).await.unwrap();

    eventually("the good event after the bad ones", || async {
        !seen.placed.lock().unwrap().is_empty()
    })
    .await;
    let store = rejects.clone();
    let mut kept = Vec::new();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            kept = store.list(10).await.unwrap();
            if kept.len() >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "three rejects kept, got {kept:?}");
    assert_eq!(*seen.placed.lock().unwrap(), vec![7]);
    let mut codes: Vec<&str> = kept.iter().map(|r| r.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["codec", "envelope", "envelope"]);
    let payloads: Vec<&[u8]> = kept.iter().filter_map(|r| r.payload.as_deref()).collect();
    for body in [&b"no headers"[..], b"bad id", b"{not json"] {
        assert!(payloads.contains(&body), "{body:?} kept whole");
    }
    let bad_envelope = kept
        .iter()
        .find(|r| r.payload.as_deref() == Some(&b"bad id"[..]))
        .unwrap();
    assert!(
        bad_envelope.error.contains("catga-id"),
        "says why: {}",
        bad_envelope.error
    );
    assert_eq!(bad_envelope.message, "OrderPlaced", "names the event");
    assert!(
        bad_envelope
            .source
            .as_deref()
            .is_some_and(|source| source.contains(&subject)),
        "says where it was found: {:?}",
        bad_envelope.source
    );
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_request_gets_an_error_reply_not_silence() {
    let Some(corner) = Corner::new("an_unreadable_request_gets_an_error_reply").await else {
        return;
    };
    let nats = corner.connect().await;
    let rejects = MemoryDeadLetterStore::new();
    let (app, _) = shipping(&nats, &rejects);
    let serving = app.serve().await.unwrap();
    let reply = nats
        .client()
        .request(nats.request_subject("Ship"), "raw bytes".into())
        .await
        .unwrap();
    let code = reply.headers.as_ref().and_then(|h| h.get(ERROR_CODE));
    assert_eq!(code.map(|c| c.as_str()), Some("envelope"));
    let kept = rejects.list(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].payload.as_deref(), Some(&b"raw bytes"[..]));
    // A real request still works.
    let ok = Catga::builder()
        .transport(nats.clone())
        .handlers(|_| false)
        .build()
        .unwrap()
        .send(Ship { order: 5 })
        .await
        .unwrap();
    assert_eq!(ok, 5);
    serving.shutdown().await;
}

/// The headers count toward the server's `max_payload`: a request whose payload alone is the
/// limit is refused before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headers_count_toward_the_servers_max_payload() {
    let Some(corner) = Corner::new("headers_count_toward_max_payload").await else {
        return;
    };
    let nats = corner.connect().await;
    let max = nats.client().server_info().max_payload;
    let envelope = Envelope::with_payload(
        "Ship",
        MessageKind::Command,
        &Context::new(),
        WireFormat::Json,
        vec![b' '; max],
    );
    let refused = nats
        .request(envelope, std::time::Duration::from_secs(5))
        .await;
    assert!(
        matches!(refused, Err(TransportError::TooLarge { size, limit }) if limit == max && size > max),
        "the headers count too: {refused:?}"
    );
}

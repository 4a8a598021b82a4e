//! What travels: a payload that does not decode is kept whole (code `codec`) and the consumer
//! goes on; a message larger than the transport carries is refused before it is sent.
//!
//! Bytes no catga client would write (no headers, a bad id, a name or kind other than the
//! route carries: rel_r6) reach each broker its own way, so each transport injects them in
//! tests of its own; these scenarios use the `Transport` API, which every transport has.

/// The `wire` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_wire {
    (tests) => {
        $crate::__catga_conformance_tests!(
            an_undecodable_payload_is_kept_and_the_consumer_goes_on,
            an_oversized_message_is_refused_before_it_is_sent,
        );
    };
    () => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::Duration;

        use $crate::envelope::Envelope;
        use $crate::prelude::*;
        use $crate::store::dead_letter::MemoryDeadLetterStore;
        use $crate::testkit::{
            Corner as _, Settings, TransportUnderTest, dead_letters, eventually, settled,
        };
        use $crate::transport::{Transport, TransportError};
        use $crate::{MessageKind, WireFormat};

        #[event(name = "wire.viewed")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Viewed {
            pub page: u64,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        pub struct Never;

        #[derive(Default)]
        pub struct Shop {
            viewed: AtomicU64,
            pages: std::sync::Mutex<Vec<u64>>,
        }

        pub mod wire_shop {
            use super::*;

            #[handler]
            impl Shop {
                async fn viewed(&self, event: &Viewed) -> Result<(), Never> {
                    self.viewed.fetch_add(1, Ordering::SeqCst);
                    self.pages.lock().map_err(|_| Never)?.push(event.page);
                    Ok(())
                }
            }
        }

        /// The shop service on `transport`, keeping what it rejects in `letters`.
        fn shop(
            transport: impl Transport,
            service: &str,
            letters: &MemoryDeadLetterStore,
        ) -> (Catga, Arc<Shop>) {
            let state = Arc::new(Shop::default());
            let app = Catga::builder()
                .state_arc(state.clone())
                .transport(transport)
                .service(service)
                .handlers(|h| h.name.contains("::wire_shop::"))
                .dead_letters(letters.clone())
                .build()
                .expect("build the application");
            (app, state)
        }

        /// An envelope any client could send: `name` of `kind`, carrying `payload`.
        fn envelope(name: &'static str, kind: MessageKind, payload: &[u8]) -> Envelope {
            Envelope::with_payload(name, kind, &Context::new(), WireFormat::Json, payload.to_vec())
        }

        pub async fn an_undecodable_payload_is_kept_and_the_consumer_goes_on<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("undecodable", &Settings::default()).await else {
                return;
            };
            let transport = corner.connect().await;
            let rejects = MemoryDeadLetterStore::new();
            let (app, state) = shop(transport.clone(), "shop", &rejects);
            let serving = app.serve().await.expect("serve");
            let garbage = envelope("wire.viewed", MessageKind::Event, b"{not json");
            transport.publish(garbage).await.expect("publish");
            app.publish(Viewed { page: 7 }).await.expect("publish");
            eventually("the good event after the bad one", || async {
                state.viewed.load(Ordering::SeqCst) == 1
            })
            .await;
            let kept = dead_letters(&rejects, 1, "the undecodable event kept").await;
            settled(&corner, "shop", "wire.viewed", "both settled, none redelivered").await;
            assert_eq!(*state.pages.lock().unwrap(), vec![7]);
            assert_eq!(kept.len(), 1, "{kept:?}");
            assert_eq!(kept[0].code, "codec");
            assert_eq!(kept[0].message, "wire.viewed");
            assert_eq!(kept[0].payload.as_deref(), Some(&b"{not json"[..]), "kept whole");
            serving.shutdown().await;
        }

        pub async fn an_oversized_message_is_refused_before_it_is_sent<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("too_large", &Settings::default()).await else {
                return;
            };
            let transport = corner.connect().await;
            let max = corner.capabilities().max_payload;
            let sized = |name, kind, size: usize| {
                Envelope::with_payload(name, kind, &Context::new(), WireFormat::Json, vec![b' '; size])
            };
            let refused = transport
                .publish(sized("wire.viewed", MessageKind::Event, max + 1))
                .await;
            assert!(
                matches!(refused, Err(TransportError::TooLarge { limit, .. }) if limit == max),
                "{refused:?}"
            );
            let refused = transport
                .request(sized("wire.ship", MessageKind::Command, 2 * max), Duration::from_secs(5))
                .await;
            assert!(
                matches!(refused, Err(TransportError::TooLarge { .. })),
                "{refused:?}"
            );
            // Well under the limit, a request is sent (and finds nobody).
            let sent = transport
                .request(sized("wire.ship", MessageKind::Command, max / 2), Duration::from_secs(5))
                .await;
            assert!(
                matches!(sent, Err(TransportError::NoResponders(_))),
                "{sent:?}"
            );
        }
    };
}

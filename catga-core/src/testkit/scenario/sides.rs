//! A behaviour layered on both sides of a transport, as an application that both sends and
//! serves a command is built: the calling side passes a request it sends elsewhere through
//! what belongs with the handler, so the two sides never wait for each other.
//!
//! - `Idempotency` with one store shared by caller and server (one Redis or database for the
//!   whole service): the caller does not claim the key the server is about to claim, so the
//!   request is answered at once (it used to wait until the caller's deadline, the server's
//!   claim waiting for the caller's); a repeat with the same message id is answered by the
//!   server's record without running the handler again.

/// The `sides` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_sides {
    (tests) => {
        $crate::__catga_conformance_tests!(
            idempotency_on_both_sides_with_one_store_answers_at_once_and_once,
        );
    };
    () => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use $crate::behavior::Idempotency;
        use $crate::prelude::*;
        use $crate::testkit::{Corner as _, Settings, TransportUnderTest};
        use $crate::uuid::Uuid;

        /// How often the handler ran.
        #[derive(Default)]
        pub struct Till {
            pub deposits: AtomicU32,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        pub struct Never;

        #[command(output = u32, name = "sides.deposit")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Deposit {
            pub cents: u32,
        }

        pub mod sides_till {
            use super::*;

            #[handler]
            async fn deposit(cmd: Deposit, till: &Till) -> Result<u32, Never> {
                till.deposits.fetch_add(1, Ordering::SeqCst);
                Ok(cmd.cents)
            }
        }

        /// Longer than any transport here needs, far shorter than a caller's default wait:
        /// a caller that waits for the server's claim fails with a timeout, not a hang.
        const DEADLINE: Duration = Duration::from_secs(5);

        pub async fn idempotency_on_both_sides_with_one_store_answers_at_once_and_once<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("sides_idempotency", &Settings::default()).await else {
                return;
            };
            // One behaviour, one store, layered into both applications.
            let idempotency = Arc::new(Idempotency::default());
            let till = Arc::new(Till::default());
            let server = Catga::builder()
                .state_arc(till.clone())
                .transport(corner.connect().await)
                .service("till")
                .handlers(|h| h.name.contains("::sides_till::"))
                .layer(Arc::clone(&idempotency))
                .build()
                .expect("build the application");
            let serving = server.serve().await.expect("serve");
            let front = Catga::builder()
                .transport(corner.connect().await)
                .service("front")
                .handlers(|_| false)
                .layer(Arc::clone(&idempotency))
                .build()
                .expect("build the application");

            let id = Uuid::now_v7();
            let send = || {
                let ctx = Context::new().with_message_id(id).with_timeout(DEADLINE);
                front.send_with(Deposit { cents: 25 }, ctx)
            };
            assert_eq!(send().await.expect("answered, not left waiting"), 25);
            assert_eq!(till.deposits.load(Ordering::SeqCst), 1);
            assert_eq!(send().await.expect("the repeat is answered"), 25);
            assert_eq!(
                till.deposits.load(Ordering::SeqCst),
                1,
                "the repeat was answered from the server's record"
            );
            serving.shutdown().await;
        }
    };
}

//! An error means the same here and in another process (the reproducers
//! `nc_r04_remote_error_typed` and `nc_r05_remote_validation`): each request is sent once to
//! an application that handles it in this process and once, through the transport, to a
//! service that handles it in another, and the two errors must agree on
//!
//! - `code()`, a domain error's own code (`ErrorCode`) included, and its details;
//! - `is_retryable()` and `is_in_doubt()`;
//! - the validation field errors (every one, in order), even when the caller has no
//!   `Validation` layer of its own; a list too large for one reply arrives cut, and says so;
//! - a timeout's text: one limit reads the same whichever side noticed it, on any transport;
//!
//! while the remote one still says where it failed (`Error::remote`), and a panic over there
//! is `panic`, not retryable, in doubt, and the service goes on serving.

/// The `errors` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_errors {
    (tests) => {
        $crate::__catga_conformance_tests!(
            handler_errors_read_the_same_here_and_elsewhere,
            validation_fails_with_the_same_fields_here_and_elsewhere,
            a_panic_elsewhere_is_a_panic,
            timeouts_read_the_same_here_and_elsewhere,
        );
    };
    () => {
        use std::time::Duration;

        use $crate::prelude::*;
        use $crate::testkit::{Corner as _, Settings, TransportUnderTest};
        use $crate::transport::{Serving, Transport};

        /// The serving side's service name.
        pub const SERVICE: &str = "shop";

        /// Not retryable, with a code and details of its own.
        #[derive(Debug, thiserror::Error)]
        #[error("no courier for order {0}")]
        pub struct NoCourier(pub u64);

        impl ErrorCode for NoCourier {
            fn code(&self) -> &'static str {
                "shipping.no_courier"
            }

            fn details(&self) -> Option<serde_json::Value> {
                Some(serde_json::json!({ "order": self.0, "couriers": ["ada", "bob"] }))
            }
        }

        /// Retryable, with a code of its own and no details.
        #[derive(Debug, thiserror::Error)]
        #[error("the warehouse is busy")]
        pub struct Busy;

        impl Retryable for Busy {
            fn is_retryable(&self) -> bool {
                true
            }
        }

        impl ErrorCode for Busy {
            fn code(&self) -> &'static str {
                "warehouse.busy"
            }
        }

        /// A plain error type: code `handler`.
        #[derive(Debug, thiserror::Error)]
        #[error("the order is already cancelled")]
        pub struct AlreadyCancelled;

        #[command(output = u64, name = "errors.ship")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Ship {
            pub order: u64,
        }

        #[command(output = u64, name = "errors.reserve")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Reserve {
            pub item: u64,
        }

        #[command(output = u64, name = "errors.cancel")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Cancel {
            pub order: u64,
        }

        /// `nc_r05`'s message: two fields, each checked.
        #[command(output = u64, name = "errors.place")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct PlaceOrder {
            pub customer: String,
            pub qty: u32,
        }

        impl Validate for PlaceOrder {
            fn validate(&self) -> Result<(), ValidationErrors> {
                let mut e = ValidationErrors::new();
                if self.customer.is_empty() {
                    e.add("customer", "must not be empty");
                }
                if self.qty == 0 {
                    e.add("qty", "must be at least 1");
                }
                e.into_result()
            }
        }

        /// Every row is invalid: more field errors than one failure reply carries.
        #[command(output = u64, name = "errors.import")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Import {
            pub rows: u32,
        }

        impl Validate for Import {
            fn validate(&self) -> Result<(), ValidationErrors> {
                let mut e = ValidationErrors::new();
                for row in 0..self.rows {
                    e.add(format!("rows[{row}].sku"), "must name a known product");
                }
                e.into_result()
            }
        }

        #[query(output = u64, name = "errors.divide")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Divide {
            pub by: u64,
        }

        #[query(output = u64, name = "errors.slow")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Slow {
            pub millis: u64,
        }

        pub mod errors_shop {
            use super::*;

            #[handler]
            async fn ship(cmd: Ship) -> Result<u64, NoCourier> {
                if cmd.order == 13 {
                    return Err(NoCourier(cmd.order));
                }
                Ok(cmd.order)
            }

            #[handler]
            async fn reserve(_cmd: Reserve) -> Result<u64, Busy> {
                Err(Busy)
            }

            #[handler]
            async fn cancel(_cmd: Cancel) -> Result<u64, AlreadyCancelled> {
                Err(AlreadyCancelled)
            }

            #[handler]
            async fn place(cmd: PlaceOrder) -> Result<u64, AlreadyCancelled> {
                Ok(u64::from(cmd.qty))
            }

            #[handler]
            async fn import(cmd: Import) -> Result<u64, AlreadyCancelled> {
                Ok(u64::from(cmd.rows))
            }

            #[handler(allow(panic_in_handler))]
            async fn divide(q: Divide) -> Result<u64, AlreadyCancelled> {
                if q.by == 0 {
                    panic!("division by zero");
                }
                Ok(100 / q.by)
            }

            #[handler]
            async fn slow(q: Slow) -> Result<u64, AlreadyCancelled> {
                tokio::time::sleep(Duration::from_millis(q.millis)).await;
                Ok(q.millis)
            }
        }

        fn is_shop(h: &HandlerMeta) -> bool {
            h.name.contains("::errors_shop::")
        }

        /// How long the timeout scenario's callers wait, here and there.
        pub const WAIT: Duration = Duration::from_millis(300);

        /// The handlers in this process, behind the layers the service has (and a `Timeout`,
        /// the caller's in the remote case). It has a transport only so that the requests of
        /// the other scenarios linked into the binary may be handled elsewhere; it handles
        /// these itself.
        fn here(transport: impl Transport) -> Catga<impl Layer> {
            Catga::builder()
                .transport(transport)
                .handlers(is_shop)
                .layer(Timeout::new(WAIT))
                .layer(Validation)
                .build()
                .expect("build the application")
        }

        /// The same handlers in a service on `transport`, as another process would run them.
        async fn there(transport: impl Transport) -> Serving {
            Catga::builder()
                .transport(transport)
                .service(SERVICE)
                .handlers(is_shop)
                .layer(Validation)
                .build()
                .expect("build the application")
                .serve()
                .await
                .expect("serve")
        }

        /// A caller with no handlers and no `Validation` of its own (a gateway), only a
        /// `Timeout`.
        fn caller(transport: impl Transport) -> Catga<impl Layer> {
            Catga::builder()
                .transport(transport)
                .service("gateway")
                .handlers(|_| false)
                .layer(Timeout::new(WAIT))
                .build()
                .expect("build the application")
        }

        /// The two errors read the same; the remote one says it failed in the shop service.
        fn assert_same(what: &str, message: &str, here: &Error, there: &Error) {
            assert_eq!(there.code(), here.code(), "{what}: code; {there:?}");
            assert_eq!(
                there.is_retryable(),
                here.is_retryable(),
                "{what}: retryable"
            );
            assert_eq!(there.is_in_doubt(), here.is_in_doubt(), "{what}: in doubt");
            assert_eq!(
                there.validation_errors(),
                here.validation_errors(),
                "{what}: field errors"
            );
            assert_eq!(there.details(), here.details(), "{what}: details");
            assert!(here.remote().is_none(), "{what}: {here:?}");
            let failure = there
                .remote()
                .expect("the remote error says it came from elsewhere");
            assert_eq!(failure.service.as_deref(), Some(SERVICE), "{what}");
            assert_eq!(
                there.to_string(),
                format!(
                    "`{message}` failed in service `{SERVICE}` ({}): {here}",
                    here.code()
                ),
                "{what}: text"
            );
        }

        /// `nc_r04`: handler errors, with and without a code of their own, read the same here
        /// and in another process; only the error's type stays where the handler ran.
        pub async fn handler_errors_read_the_same_here_and_elsewhere<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("errors_handler", &Settings::default()).await else {
                return;
            };
            let serving = there(corner.connect().await).await;
            let (local, front) = (here(corner.connect().await), caller(corner.connect().await));

            assert_eq!(front.send(Ship { order: 7 }).await.unwrap(), 7);
            let (a, b) = (
                local.send(Ship { order: 13 }).await.unwrap_err(),
                front.send(Ship { order: 13 }).await.unwrap_err(),
            );
            assert_same("a coded error", "errors.ship", &a, &b);
            assert_eq!(b.code(), "shipping.no_courier");
            assert!(!b.is_retryable() && !b.is_in_doubt());
            assert_eq!(
                b.details(),
                Some(&serde_json::json!({ "order": 13, "couriers": ["ada", "bob"] }))
            );
            assert!(a.downcast_ref::<NoCourier>().is_some());
            assert!(b.downcast_ref::<NoCourier>().is_none(), "a type stays home");

            let (a, b) = (
                local.send(Reserve { item: 1 }).await.unwrap_err(),
                front.send(Reserve { item: 1 }).await.unwrap_err(),
            );
            assert_same("a retryable coded error", "errors.reserve", &a, &b);
            assert_eq!(b.code(), "warehouse.busy");
            assert!(b.is_retryable() && !b.is_in_doubt());
            assert_eq!(b.details(), None);

            let (a, b) = (
                local.send(Cancel { order: 1 }).await.unwrap_err(),
                front.send(Cancel { order: 1 }).await.unwrap_err(),
            );
            assert_same("a plain error", "errors.cancel", &a, &b);
            assert_eq!(b.code(), "handler");
            assert!(!b.is_retryable());
            serving.shutdown().await;
        }

        /// `nc_r05`: a caller without a `Validation` layer gets the serving side's field
        /// errors, every one, as if it had validated itself; one too large for a reply arrives
        /// cut to fit.
        pub async fn validation_fails_with_the_same_fields_here_and_elsewhere<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("errors_validation", &Settings::default()).await else {
                return;
            };
            let serving = there(corner.connect().await).await;
            let (local, front) = (here(corner.connect().await), caller(corner.connect().await));
            let invalid = PlaceOrder {
                customer: String::new(),
                qty: 0,
            };
            let (a, b) = (
                local.send(invalid.clone()).await.unwrap_err(),
                front.send(invalid).await.unwrap_err(),
            );
            assert_same("a validation failure", "errors.place", &a, &b);
            assert_eq!(b.code(), "validation");
            assert!(!b.is_retryable() && !b.is_in_doubt());
            let fields = b.validation_errors().expect("the field errors crossed");
            let pairs: Vec<_> = fields
                .errors()
                .iter()
                .map(|e| (&*e.field, &*e.message))
                .collect();
            assert_eq!(
                pairs,
                [
                    ("customer", "must not be empty"),
                    ("qty", "must be at least 1")
                ]
            );

            let rows = 5_000;
            let (a, b) = (
                local.send(Import { rows }).await.unwrap_err(),
                front.send(Import { rows }).await.unwrap_err(),
            );
            assert_eq!(
                a.validation_errors().map(ValidationErrors::len),
                Some(5_000)
            );
            assert_eq!(b.code(), "validation");
            let kept = b.validation_errors().map_or(0, ValidationErrors::len);
            assert!((100..5_000).contains(&kept), "{kept} field errors arrived");
            assert_eq!(
                b.validation_errors().map(|v| &v.errors()[..kept]),
                a.validation_errors().map(|v| &v.errors()[..kept]),
                "the first ones, in order"
            );
            let text = b.to_string();
            assert!(
                text.contains(&format!("({} more field errors not sent)", 5_000 - kept)),
                "{}",
                &text[text.len().saturating_sub(200)..]
            );
            serving.shutdown().await;
        }

        /// A handler that panics over there fails its one request at once with `panic`, not
        /// retryable and in doubt (as a contained panic is here), and the service goes on.
        pub async fn a_panic_elsewhere_is_a_panic<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("errors_panic", &Settings::default()).await else {
                return;
            };
            let serving = there(corner.connect().await).await;
            let front = caller(corner.connect().await);
            let err = front.send(Divide { by: 0 }).await.unwrap_err();
            assert_eq!(err.code(), "panic", "{err:?}");
            assert!(!err.is_retryable(), "a panic is a bug: {err}");
            assert!(err.is_in_doubt(), "{err}");
            assert_eq!(
                err.remote().and_then(|f| f.service.as_deref()),
                Some(SERVICE)
            );
            assert!(err.to_string().contains("division by zero"), "{err}");
            assert_eq!(front.send(Divide { by: 5 }).await.unwrap(), 20);
            serving.shutdown().await;
        }

        /// A timeout reads the same here and over any transport, whichever side noticed it
        /// first: `timeout`, retryable, in doubt, and the limit in whole milliseconds (the time
        /// left when the request left may be a few microseconds short of the limit; a loaded
        /// machine may spend up to a millisecond before it goes).
        pub async fn timeouts_read_the_same_here_and_elsewhere<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("errors_timeout", &Settings::default()).await else {
                return;
            };
            let serving = there(corner.connect().await).await;
            let (local, front) = (here(corner.connect().await), caller(corner.connect().await));
            let slow = Slow { millis: 1_000 };
            let (a, b) = (
                local.send(slow.clone()).await.unwrap_err(),
                front.send(slow).await.unwrap_err(),
            );
            for err in [&a, &b] {
                assert_eq!(err.code(), "timeout", "{err:?}");
                assert!(err.is_retryable() && err.is_in_doubt(), "{err}");
                assert!(
                    err.remote().is_none(),
                    "a timeout is the call's own: {err:?}"
                );
            }
            let limit = WAIT.as_millis();
            assert_eq!(
                a.to_string(),
                format!("`errors.slow` timed out after {limit} ms")
            );
            let text = b.to_string();
            assert!(
                text == format!("`errors.slow` timed out after {limit} ms")
                    || text == format!("`errors.slow` timed out after {} ms", limit - 1),
                "{text}"
            );
            serving.shutdown().await;
        }
    };
}

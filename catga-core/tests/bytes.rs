//! The bytes path (`dispatch_bytes`): what a transport calls with a wire name and a payload.
//! Good input dispatches exactly like a local message; bad input gets a typed error, never a
//! panic, and nothing is dispatched.

use std::sync::Mutex;

use catga_core::prelude::*;
use catga_core::{CodecError, ErrorKind};
use proptest::prelude::*;

#[command(output = Receipt, name = "shop.place_order")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: u64,
    pub quantity: u32,
}

#[event(name = "shop.order_placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

/// Never leaves the process: it has no wire form.
#[command(local)]
pub struct Rebuild;

/// Handled by another process; this one only declares it.
#[command(name = "billing.charge")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("rejected")]
pub struct Rejected;

#[derive(Default)]
pub struct Shop {
    placed: Mutex<Vec<String>>,
    announced: Mutex<Vec<u64>>,
}

#[handler(allow(unwrap_in_handler))]
impl Shop {
    async fn place(&self, cmd: PlaceOrder, ctx: &Context) -> Result<Receipt, Rejected> {
        if cmd.quantity == 0 {
            return Err(Rejected);
        }
        self.placed.lock().unwrap().push(cmd.customer);
        ctx.publish(OrderPlaced { id: 9 }).map_err(|_| Rejected)?;
        Ok(Receipt {
            id: 9,
            quantity: cmd.quantity,
        })
    }

    async fn rebuild(&self, _cmd: Rebuild) -> Result<(), Rejected> {
        Ok(())
    }

    async fn placed(&self, event: &OrderPlaced) -> Result<(), Rejected> {
        self.announced.lock().unwrap().push(event.id);
        Ok(())
    }
}

fn app(shop: &std::sync::Arc<Shop>) -> Catga {
    Catga::builder()
        .state_arc(shop.clone())
        .allow_unhandled::<Charge>()
        .max_payload_bytes(1024)
        .build()
        .unwrap()
}

fn nothing_dispatched(shop: &Shop) -> bool {
    shop.placed.lock().unwrap().is_empty() && shop.announced.lock().unwrap().is_empty()
}

#[tokio::test]
async fn a_request_dispatches_and_its_reply_is_encoded() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let reply = app
        .dispatch_bytes(
            "shop.place_order",
            br#"{"customer":"ada","quantity":3}"#,
            Context::new(),
        )
        .await
        .unwrap()
        .expect("a request has a reply");
    let receipt: Receipt = serde_json::from_slice(&reply).unwrap();
    assert_eq!(receipt, Receipt { id: 9, quantity: 3 });
    assert_eq!(*shop.placed.lock().unwrap(), vec!["ada".to_string()]);
    assert_eq!(*shop.announced.lock().unwrap(), vec![9], "follow-ups ran");
}

#[tokio::test]
async fn an_event_dispatches_to_its_handlers_with_no_reply() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let reply = app
        .dispatch_bytes("shop.order_placed", br#"{"id":4}"#, Context::new())
        .await
        .unwrap();
    assert!(reply.is_none());
    assert_eq!(*shop.announced.lock().unwrap(), vec![4]);
}

#[tokio::test]
async fn unknown_fields_from_a_newer_sender_are_accepted() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let payload = br#"{"customer":"bob","quantity":1,"coupon":"SPRING","v":2}"#;
    app.dispatch_bytes("shop.place_order", payload, Context::new())
        .await
        .unwrap();
    assert_eq!(*shop.placed.lock().unwrap(), vec!["bob".to_string()]);
}

#[tokio::test]
async fn an_unknown_name_is_a_typed_error() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let err = app
        .dispatch_bytes("shop.refund", b"{}", Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_message");
    assert!(matches!(err.kind(), ErrorKind::UnknownMessage { name } if name == "shop.refund"));
    // Rust type names are not wire names.
    let err = app
        .dispatch_bytes("PlaceOrder", b"{}", Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_message");
    assert!(nothing_dispatched(&shop));
}

#[tokio::test]
async fn a_hostile_name_is_truncated_in_the_error() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let name = "é".repeat(10_000);
    let err = app
        .dispatch_bytes(&name, b"{}", Context::new())
        .await
        .unwrap_err();
    let ErrorKind::UnknownMessage { name: echoed } = err.kind() else {
        panic!("unexpected {err:?}");
    };
    assert!(echoed.len() <= 256, "{} bytes echoed", echoed.len());
    assert!(name.starts_with(echoed.as_str()), "cut on a char boundary");
}

#[tokio::test]
async fn malformed_payloads_are_codec_errors_and_nothing_runs() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let cases: [&[u8]; 7] = [
        b"",
        b"not json",
        br#"{"customer":"ada","quantity":3"#,   // truncated
        br#"{"customer":"ada"}"#,               // missing field
        br#"{"customer":"ada","quantity":-1}"#, // out of range
        br#"{"customer":7,"quantity":1}"#,      // wrong type
        b"\xff\xfe\x00garbage",
    ];
    for payload in cases {
        let err = app
            .dispatch_bytes("shop.place_order", payload, Context::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "codec", "{payload:?}");
        assert!(!err.is_retryable());
        let ErrorKind::Codec { message, source } = err.kind() else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(message, "shop.place_order");
        assert!(
            matches!(source, CodecError::Malformed { codec: "json", .. }),
            "{source}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the codec's error is kept as the source"
        );
    }
    assert!(nothing_dispatched(&shop));
}

#[tokio::test]
async fn an_oversized_payload_is_refused_before_decoding() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let payload = format!(r#"{{"customer":"{}","quantity":1}}"#, "a".repeat(2048));
    let err = app
        .dispatch_bytes("shop.place_order", payload.as_bytes(), Context::new())
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::Codec {
            source: CodecError::TooLarge { limit: 1024, size },
            ..
        } if *size == payload.len()
    ));
    // The limit applies whatever the name, so a flood of unknown names is cheap too.
    let err = app
        .dispatch_bytes("nope", &vec![b' '; 4096], Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "codec");
    assert!(nothing_dispatched(&shop));
}

#[tokio::test]
async fn a_local_message_has_no_wire_form() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let err = app
        .dispatch_bytes("Rebuild", b"null", Context::new())
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::Codec {
            source: CodecError::NotWire { name: "Rebuild" },
            ..
        }
    ));
}

#[tokio::test]
async fn a_request_handled_elsewhere_is_no_handler_here() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let err = app
        .dispatch_bytes("billing.charge", br#"{"cents":100}"#, Context::new())
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::NoHandler {
            message: "billing.charge"
        }
    ));
    let err = app.send(Charge { cents: 1 }).await.unwrap_err();
    assert_eq!(err.code(), "no_handler");
}

#[tokio::test]
async fn a_handler_error_comes_back_typed() {
    let shop = std::sync::Arc::new(Shop::default());
    let app = app(&shop);
    let err = app
        .dispatch_bytes(
            "shop.place_order",
            br#"{"customer":"ada","quantity":0}"#,
            Context::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    assert!(err.downcast_ref::<Rejected>().is_some());
    assert!(
        nothing_dispatched(&shop),
        "no follow-up from a failed handler"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives, the bytes path returns (a reply or a typed error); it never panics.
    #[test]
    fn arbitrary_input_never_panics(
        name in prop_oneof![
            Just("shop.place_order".to_string()),
            Just("shop.order_placed".to_string()),
            Just("Rebuild".to_string()),
            ".{0,40}",
        ],
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            "[{}\\[\\]\":,a-z0-9 -]{0,64}".prop_map(String::into_bytes),
        ],
    ) {
        let shop = std::sync::Arc::new(Shop::default());
        let app = app(&shop);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = rt.block_on(app.dispatch_bytes(&name, &payload, Context::new()));
        if let Err(err) = result {
            prop_assert!(
                ["unknown_message", "codec", "handler"].contains(&err.code()),
                "unexpected error {err}"
            );
        }
    }
}

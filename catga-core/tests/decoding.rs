//! Bytes from the wire cannot hurt the process: decoding is depth- and size-bounded, in the
//! default debug test build as in release (issue 11, class 5; repro `rel_r7_deep_msgpack`).
//!
//! Every dispatch here runs where a transport's consumer runs one: in a task on a Tokio
//! worker thread, whose stack is 2 MiB. A payload that made the decoder overflow it would
//! abort the whole test binary, so "the test finished" is part of what each test shows.

use std::time::Duration;

use catga_core::codec::MAX_DEPTH;
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::transport::{MemoryTransport, Transport};
use catga_core::{CodecError, ErrorKind, MessageKind, WireFormat};
use serde_json::Value;

/// Any JSON value: what a deep payload is decoded into in the repro.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct R7Blob {
    pub data: Value,
}

#[handler]
async fn r7_blob(_blob: &R7Blob) -> Result<(), std::io::Error> {
    Ok(())
}

/// The same, as a request.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeepCommand {
    pub data: Value,
}

#[handler]
async fn deep_command(_cmd: DeepCommand) -> Result<u32, std::io::Error> {
    Ok(7)
}

/// A rule language: `Not` nests as a one-entry map in MessagePack, which `rmp-serde`'s own
/// depth limit does not count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Expr {
    Not(Box<Expr>),
    All(Vec<Expr>),
    Lit(bool),
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleChanged {
    pub rule: Expr,
}

#[handler]
async fn rule_changed(_event: &RuleChanged) -> Result<(), std::io::Error> {
    Ok(())
}

/// A realistic recursive message: a category tree, two containers per level (the node's
/// map and its `children` array).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub note: Option<String>,
    pub children: Vec<Category>,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogImported {
    pub root: Category,
}

#[handler]
async fn catalog_imported(_event: &CatalogImported) -> Result<(), std::io::Error> {
    Ok(())
}

/// `{"data": …}` holding `levels` nested arrays around a null, written without recursion.
fn nested_data(format: WireFormat, levels: usize) -> Vec<u8> {
    match format {
        WireFormat::Json => {
            let mut body = b"{\"data\":".to_vec();
            body.extend(std::iter::repeat_n(b'[', levels));
            body.extend(b"null");
            body.extend(std::iter::repeat_n(b']', levels));
            body.push(b'}');
            body
        }
        WireFormat::MessagePack => {
            let mut body = vec![0x81, 0xa4, b'd', b'a', b't', b'a'];
            body.extend(std::iter::repeat_n(0x91u8, levels));
            body.push(0xc0);
            body
        }
    }
}

/// `{"rule": {"Not": {"Not": … {"Lit": true}}}}` with `levels` `Not`s, without recursion.
fn not_chain(format: WireFormat, levels: usize) -> Vec<u8> {
    match format {
        WireFormat::Json => {
            let mut body = b"{\"rule\":".to_vec();
            for _ in 0..levels {
                body.extend(b"{\"Not\":");
            }
            body.extend(b"{\"Lit\":true}");
            body.extend(std::iter::repeat_n(b'}', levels + 1));
            body
        }
        WireFormat::MessagePack => {
            let mut body = vec![0x81, 0xa4, b'r', b'u', b'l', b'e'];
            for _ in 0..levels {
                body.extend([0x81, 0xa3, b'N', b'o', b't']);
            }
            body.extend([0x81, 0xa3, b'L', b'i', b't', 0xc3]);
            body
        }
    }
}

/// A category tree `levels` nodes deep, encoded: `{"root": node}` nests `2 · levels + 1`.
fn category_tree(format: WireFormat, levels: usize) -> Vec<u8> {
    let mut node = Category {
        id: 0,
        name: "leaf".into(),
        tags: vec!["t".into()],
        note: None,
        children: Vec::new(),
    };
    for id in 1..levels as u64 {
        node = Category {
            id,
            name: format!("level {id}"),
            tags: Vec::new(),
            note: Some("n".into()),
            children: vec![node],
        };
    }
    let event = CatalogImported { root: node };
    match format {
        WireFormat::Json => serde_json::to_vec(&event).unwrap(),
        WireFormat::MessagePack => rmp_serde::to_vec_named(&event).unwrap(),
    }
}

/// Dispatches on a Tokio worker, as a transport consumer does; the error's code, or `ok`.
async fn dispatch_on_a_worker(
    format: WireFormat,
    name: &'static str,
    body: Vec<u8>,
) -> Result<(), Error> {
    let app = Catga::builder().build().unwrap();
    tokio::spawn(async move {
        app.dispatch_wire(format, name, &body, Context::new())
            .await
            .map(|_| ())
    })
    .await
    .expect("the dispatch task ended without a result")
}

/// The error a payload nesting too deep must produce: a codec error naming the limit, not
/// retryable (the same bytes never decode).
fn assert_too_deep(result: &Result<(), Error>, format: WireFormat) {
    let error = result
        .as_ref()
        .expect_err("a too-deep payload must be refused");
    assert_eq!(error.code(), "codec", "{format:?}: {error}");
    assert!(!error.is_retryable());
    match error.kind() {
        ErrorKind::Codec {
            source: CodecError::TooDeep { limit, codec, .. },
            ..
        } => {
            assert_eq!(*limit, MAX_DEPTH);
            let expected = match format {
                WireFormat::Json => "json",
                WireFormat::MessagePack => "msgpack",
            };
            assert_eq!(*codec, expected);
        }
        other => panic!("{format:?}: expected a `TooDeep` codec error, got {other:?}"),
    }
}

const FORMATS: [WireFormat; 2] = [WireFormat::Json, WireFormat::MessagePack];

/// The repro: 1 KB of MessagePack holding 1,000 nested arrays aborted a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repro_is_a_codec_error_on_a_worker_thread() {
    let body = nested_data(WireFormat::MessagePack, 1000);
    assert_eq!(body.len(), 1007);
    let result = dispatch_on_a_worker(WireFormat::MessagePack, "R7Blob", body).await;
    assert_too_deep(&result, WireFormat::MessagePack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_in_json_is_a_codec_error_too() {
    let result = dispatch_on_a_worker(
        WireFormat::Json,
        "R7Blob",
        nested_data(WireFormat::Json, 1000),
    )
    .await;
    assert_too_deep(&result, WireFormat::Json);
}

/// The limit counts the message's own map: `data` may hold `MAX_DEPTH - 1` levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_exactly_the_limit_decodes_and_one_level_deeper_is_refused() {
    for format in FORMATS {
        let at_limit = nested_data(format, MAX_DEPTH - 1);
        let decoded = dispatch_on_a_worker(format, "R7Blob", at_limit).await;
        assert!(decoded.is_ok(), "{format:?}: {decoded:?}");
        let deeper = nested_data(format, MAX_DEPTH);
        assert_too_deep(
            &dispatch_on_a_worker(format, "R7Blob", deeper).await,
            format,
        );
    }
}

/// An enum nesting as one-entry maps: 100,000 levels in half a megabyte. `rmp-serde` does
/// not count these levels at all, so without the pre-scan this overflows release builds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_enum_chain_is_refused_before_the_decoder_recurses() {
    for format in FORMATS {
        let body = not_chain(format, 100_000);
        assert!(body.len() < 1 << 20, "under the default payload limit");
        let result = dispatch_on_a_worker(format, "RuleChanged", body).await;
        assert_too_deep(&result, format);
        // At the limit: the outer map, MAX_DEPTH - 2 `Not`s, the `Lit` map.
        let at_limit = not_chain(format, MAX_DEPTH - 2);
        let decoded = dispatch_on_a_worker(format, "RuleChanged", at_limit).await;
        assert!(decoded.is_ok(), "{format:?}: {decoded:?}");
    }
}

/// A realistic recursive message as deep as the limit allows decodes on a 2 MiB worker in a
/// debug build, in both codecs (measured: under 700 KB of stack); one level more is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_message_at_the_limit_decodes_on_a_worker_thread() {
    let levels = (MAX_DEPTH - 1) / 2;
    for format in FORMATS {
        let at_limit = category_tree(format, levels);
        let decoded = dispatch_on_a_worker(format, "CatalogImported", at_limit).await;
        assert!(decoded.is_ok(), "{format:?}: {decoded:?}");
        let deeper = category_tree(format, levels + 1);
        assert_too_deep(
            &dispatch_on_a_worker(format, "CatalogImported", deeper).await,
            format,
        );
    }
}

/// Requests are decoded the same way: the caller gets a codec error, nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_request_is_refused() {
    for format in FORMATS {
        let body = nested_data(format, 1000);
        let result = dispatch_on_a_worker(format, "DeepCommand", body).await;
        assert_too_deep(&result, format);
    }
}

/// The size bound comes first: a payload over `max_payload_bytes` is refused before it is
/// read at all, whatever its codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_refused_before_decoding() {
    let app = Catga::builder().max_payload_bytes(512).build().unwrap();
    for format in FORMATS {
        let body = nested_data(format, 600);
        let result = app
            .dispatch_wire(format, "R7Blob", &body, Context::new())
            .await;
        match result.as_ref().map_err(Error::kind) {
            Err(ErrorKind::Codec {
                source: CodecError::TooLarge { limit: 512, size },
                ..
            }) => assert_eq!(*size, body.len()),
            other => panic!("{format:?}: expected `TooLarge`, got {other:?}"),
        }
    }
}

pub mod serving {
    use super::*;

    /// Good traffic, after the poison.
    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Heartbeat {
        pub n: u32,
    }

    pub static BEATS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    #[handler]
    async fn heartbeat(beat: &Heartbeat) -> Result<(), std::io::Error> {
        BEATS.fetch_add(beat.n, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    #[handler]
    async fn deep_blob(_blob: &R7Blob) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// Through a transport: a deep event is set aside once with its bytes, and the consumer
/// goes on with the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_event_from_the_transport_is_set_aside_and_the_consumer_goes_on() {
    let bus = MemoryTransport::new();
    let kept = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .transport(bus.clone())
        .service("decoding")
        .handlers(|h| h.name.starts_with("decoding::serving::"))
        .dead_letters(kept.clone())
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    for format in FORMATS {
        let poison = nested_data(format, 1000);
        let envelope = Envelope::with_payload(
            "R7Blob",
            MessageKind::Event,
            &Context::new(),
            format,
            poison.clone(),
        );
        bus.publish(envelope).await.unwrap();
    }
    app.publish(serving::Heartbeat { n: 1 }).await.unwrap();
    for _ in 0..400 {
        if serving::BEATS.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(serving::BEATS.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Each message name has a consumer of its own: the heartbeat may be handled before the
    // poison is set aside.
    catga_core::testkit::dead_letters(&kept, 2, "both poisons set aside").await;
    let letters = kept.list(10).await.unwrap();
    assert_eq!(letters.len(), 2, "each poison kept once: {letters:?}");
    for letter in &letters {
        assert_eq!(letter.code, "codec");
        assert_eq!(letter.message, "R7Blob");
        assert!(letter.error.contains("nests more than"), "{}", letter.error);
        let payload = letter.payload.as_deref().unwrap_or_default();
        assert!(payload.len() > 1000, "the raw bytes are kept");
    }
    serving.shutdown().await;
}

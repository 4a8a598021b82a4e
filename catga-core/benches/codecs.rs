//! The binary codec candidates measured against JSON on a representative message: encode and
//! decode time, and encoded size (printed once). Chosen: MessagePack (see docs/transports.md).
//!
//! ```text
//! cargo bench -p catga-core --bench codecs
//! ```

use std::hint::black_box;

use catga_core::{Codec, Json, MessagePack};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PlaceOrder {
    order_id: u64,
    customer: String,
    email: String,
    lines: Vec<Line>,
    coupon: Option<String>,
    express: bool,
}

fn order() -> PlaceOrder {
    PlaceOrder {
        order_id: 1_234_567_890,
        customer: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        lines: (0..5)
            .map(|i| Line {
                sku: format!("SKU-{i:05}"),
                quantity: i + 1,
                unit_cents: 1999 + u64::from(i) * 100,
            })
            .collect(),
        coupon: Some("SPRING".into()),
        express: true,
    }
}

fn codecs(c: &mut Criterion) {
    let msg = order();
    let json = Json.encode(&msg).unwrap();
    let msgpack = MessagePack.encode(&msg).unwrap();
    let postcard = postcard::to_allocvec(&msg).unwrap();
    eprintln!(
        "encoded size: json {} B, msgpack (named) {} B, postcard {} B",
        json.len(),
        msgpack.len(),
        postcard.len()
    );
    let mut group = c.benchmark_group("codecs");
    group.bench_function("encode/json", |b| {
        b.iter(|| Json.encode(black_box(&msg)).unwrap())
    });
    group.bench_function("encode/msgpack", |b| {
        b.iter(|| MessagePack.encode(black_box(&msg)).unwrap())
    });
    group.bench_function("encode/postcard", |b| {
        b.iter(|| postcard::to_allocvec(black_box(&msg)).unwrap())
    });
    group.bench_function("decode/json", |b| {
        b.iter(|| Json.decode::<PlaceOrder>(black_box(&json)).unwrap())
    });
    group.bench_function("decode/msgpack", |b| {
        b.iter(|| {
            MessagePack
                .decode::<PlaceOrder>(black_box(&msgpack))
                .unwrap()
        })
    });
    group.bench_function("decode/postcard", |b| {
        b.iter(|| postcard::from_bytes::<PlaceOrder>(black_box(&postcard)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);

//! What travels: unreadable entries, trace context, MessagePack, size limits.

use super::*;

#[tokio::test]
async fn unreadable_entries_are_kept_and_the_consumer_goes_on() {
    let Some(server) = Server::get("malformed").await else {
        return;
    };
    let redis = server.transport().await;
    let rejects = MemoryDeadLetterStore::new();
    let seen = Arc::new(Seen::default());
    let shipping = Catga::builder()
        .state_arc(seen.clone())
        .transport(redis.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("scenarios::shipping::"))
        .dead_letters(rejects.clone())
        .build()
        .unwrap();
    let serving = shipping.serve().await.unwrap();

    // Injected by hand, as a foreign producer (or a bug) might.
    let stream = redis.event_stream("OrderPlaced");
    let mut raw = server.raw().await;
    let id = uuid::Uuid::now_v7().to_string();
    let bad_fields: &[(&[u8], &[u8])] = &[
        (b"catga-id", b"not-a-uuid"),
        (b"catga-name", b"OrderPlaced"),
        (b"catga-kind", b"event"),
        (b"catga-payload", b"{\"order\":1}"),
    ];
    let binary_name: &[(&[u8], &[u8])] = &[(b"\xff\xfe", b"x"), (b"catga-payload", b"{}")];
    let bad_payload: &[(&[u8], &[u8])] = &[
        (b"catga-id", id.as_bytes()),
        (b"catga-name", b"OrderPlaced"),
        (b"catga-kind", b"event"),
        (b"content-type", b"application/json"),
        (b"catga-payload", b"{not json"),
    ];
    for fields in [bad_fields, binary_name, bad_payload] {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&stream).arg("*");
        for (k, v) in fields {
            xadd.arg(*k).arg(*v);
        }
        xadd.query_async::<String>(&mut raw).await.unwrap();
    }
    orders(&redis)
        .0
        .publish(OrderPlaced { order: 7 })
        .await
        .unwrap();

    eventually("the good event after the bad ones is handled", || async {
        !seen.placed().is_empty()
    })
    .await;
    eventually("all three bad entries are kept", || async {
        rejects.list(10).await.unwrap().len() >= 3
    })
    .await;
    serving.shutdown().await;

    assert_eq!(seen.placed(), vec![7]);
    let kept = rejects.list(10).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let mut codes: Vec<&str> = kept.iter().map(|r| r.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["codec", "envelope", "envelope"]);
    let undecodable = kept.iter().find(|r| r.code == "codec").unwrap();
    assert_eq!(undecodable.payload.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(
        pending(&mut raw, &stream, "shipping").await,
        0,
        "every bad entry was acknowledged, none is redelivered"
    );
}

#[tokio::test]
async fn the_trace_context_travels_with_requests_and_events() {
    let Some(server) = Server::get("trace").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ctx = || Context::new().with_header("traceparent", traceparent);
    let seen_by_handler = orders.send_with(TraceOf, ctx()).await.unwrap();
    assert_eq!(seen_by_handler.as_deref(), Some(traceparent));

    orders
        .publish_with(OrderPlaced { order: 1 }, ctx())
        .await
        .unwrap();
    eventually("the event arrives", || async { !seen.placed().is_empty() }).await;
    serving.shutdown().await;
    assert_eq!(
        *seen.placed_traces.lock().unwrap(),
        vec![Some(traceparent.to_string())]
    );
}

#[tokio::test]
async fn messagepack_envelopes_round_trip() {
    let Some(server) = Server::get("msgpack").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let orders = Catga::builder()
        .transport(redis.clone())
        .wire_format(WireFormat::MessagePack)
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(orders.send(WhoAmI).await.unwrap(), "s1");
    serving.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_it_is_sent() {
    let Some(server) = Server::get("toolarge").await else {
        return;
    };
    let redis = server.transport().await;
    let big = Envelope::with_payload(
        "OrderPlaced",
        MessageKind::Event,
        &Context::new(),
        WireFormat::Json,
        vec![b' '; 2 << 20],
    );
    assert!(matches!(
        redis.publish(big.clone()).await,
        Err(TransportError::TooLarge { limit, .. }) if limit == 1 << 20
    ));
    let request = Envelope {
        kind: MessageKind::Command,
        name: "Ship".into(),
        ..big
    };
    assert!(matches!(
        redis.request(request, Duration::from_secs(1)).await,
        Err(TransportError::TooLarge { .. })
    ));
    let mut raw = server.raw().await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(redis.event_stream("OrderPlaced"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "nothing reached the server");
}

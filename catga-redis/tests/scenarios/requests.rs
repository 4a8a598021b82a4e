//! Requests over Redis: routing, typed errors, deadlines, nobody serving.

use super::*;

#[tokio::test]
async fn a_request_without_a_local_handler_goes_to_the_service_that_has_one() {
    let Some(server) = Server::get("request").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&server.transport().await);
    assert_eq!(orders.send(ship(4)).await.unwrap(), 40);
    assert_eq!(orders.send(ship(5)).await.unwrap(), 50);
    assert_eq!(seen.shipped(), vec![4, 5]);
    serving.shutdown().await;

    let mut raw = server.raw().await;
    let left: u64 = redis::cmd("XLEN")
        .arg(redis.request_stream("Ship"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(left, 0, "an answered request is deleted from its stream");
}

#[tokio::test]
async fn a_handler_error_comes_back_typed_not_as_a_timeout() {
    let Some(server) = Server::get("error").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let err = orders(&redis)
        .0
        .send(Ship {
            order: 9,
            fail: true,
            millis: 0,
        })
        .await
        .unwrap_err();
    let ErrorKind::Remote { failure, .. } = err.kind() else {
        panic!("unexpected {err:?}");
    };
    assert!(
        failure.message.contains("no courier for order 9"),
        "{failure:?}"
    );
    assert_eq!(err.code(), "handler", "the code it had where it failed");
    assert!(!err.is_retryable());
    serving.shutdown().await;
}

#[tokio::test]
async fn the_callers_deadline_travels_and_an_expired_request_is_not_handled() {
    let Some(server) = Server::get("deadline").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);

    // The handler would outlive the caller's deadline: the caller gets a timeout.
    let ctx = Context::new().with_timeout(Duration::from_millis(200));
    let slow = Ship {
        order: 1,
        fail: false,
        millis: 1_000,
    };
    let err = orders.send_with(slow, ctx).await.unwrap_err();
    assert_eq!(err.code(), "timeout", "{err:?}");

    // A request whose deadline passed before any instance took it is not handled.
    let ctx = Context::new().with_timeout(Duration::from_millis(1));
    let payload = serde_json::to_vec(&ship(2)).unwrap();
    let stale = Envelope::with_payload(
        "Ship",
        MessageKind::Command,
        &ctx,
        WireFormat::Json,
        payload,
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(stale.expired());
    let late = redis.request(stale, Duration::from_millis(300)).await;
    assert!(matches!(late, Err(TransportError::Timeout(_))), "{late:?}");
    assert_eq!(orders.send(ship(3)).await.unwrap(), 30);
    serving.shutdown().await;
    assert_eq!(
        seen.shipped(),
        vec![3],
        "the slow one was cut off at the caller's deadline (it travelled with the request), \
         and the expired one never ran"
    );
}

#[tokio::test]
async fn with_nobody_serving_a_request_fails_fast() {
    let Some(server) = Server::get("noresponders").await else {
        return;
    };
    let redis = server.transport().await;
    let (orders, _) = orders(&redis);
    let no_responders = |err: &Error| {
        matches!(
            err.kind(),
            ErrorKind::Transport { source: TransportError::NoResponders(name), .. } if name == "Ship"
        )
    };
    let err = orders.send(ship(1)).await.unwrap_err();
    assert!(no_responders(&err), "{err:?}");
    assert!(err.is_retryable(), "a service may come up");

    // Once the last instance has shut down, nobody serves it again.
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    assert_eq!(orders.send(ship(2)).await.unwrap(), 20);
    serving.shutdown().await;
    let err = orders.send(ship(3)).await.unwrap_err();
    assert!(no_responders(&err), "{err:?}");
}

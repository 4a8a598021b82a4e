//! Events over Redis: every service once, shared load, claiming, redelivery, draining.

use super::*;

#[tokio::test]
async fn an_event_reaches_every_service_once_and_instances_share_the_load() {
    let Some(server) = Server::get("sharing").await else {
        return;
    };
    let redis = server.transport().await;
    let instances: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| shipping_instance(&redis, n))
        .collect();
    let mut serving = Vec::new();
    for (app, _) in &instances {
        serving.push(app.serve().await.unwrap());
    }
    let (orders, billing) = orders(&redis);
    serving.push(orders.serve().await.unwrap());

    for order in 0..30 {
        orders.publish(OrderPlaced { order }).await.unwrap();
    }
    for order in 0..30 {
        orders
            .send(Ship {
                order,
                fail: false,
                millis: 1,
            })
            .await
            .unwrap();
    }
    let placed_total = || {
        instances
            .iter()
            .map(|(_, s)| s.placed().len())
            .sum::<usize>()
    };
    eventually("every event reached both services", || async {
        placed_total() >= 30 && billing.billed.load(Ordering::SeqCst) >= 30
    })
    .await;
    for s in serving {
        s.shutdown().await;
    }

    let mut placed: Vec<u64> = instances.iter().flat_map(|(_, s)| s.placed()).collect();
    placed.sort_unstable();
    assert_eq!(
        placed,
        (0..30).collect::<Vec<_>>(),
        "shipping handled each event once"
    );
    assert_eq!(
        billing.billed.load(Ordering::SeqCst),
        30,
        "and billing, another service, too"
    );
    let event_shares: Vec<usize> = instances.iter().map(|(_, s)| s.placed().len()).collect();
    assert!(
        event_shares.iter().all(|&n| n > 0),
        "every instance took a share of the events: {event_shares:?}"
    );

    let shares: Vec<usize> = instances.iter().map(|(_, s)| s.shipped().len()).collect();
    assert!(
        shares.iter().all(|&n| n > 0),
        "every instance took a share of the requests: {shares:?}"
    );
    let mut shipped: Vec<u64> = instances.iter().flat_map(|(_, s)| s.shipped()).collect();
    shipped.sort_unstable();
    assert_eq!(
        shipped,
        (0..30).collect::<Vec<_>>(),
        "each once, none twice"
    );
}

#[tokio::test]
async fn entries_a_dead_instance_read_are_claimed_and_handled_by_another() {
    let Some(server) = Server::get("claim").await else {
        return;
    };
    let redis = server
        .builder()
        .ack_wait(Duration::from_millis(200))
        .await
        .unwrap();
    let stream = redis.event_stream("OrderPlaced");
    let mut raw = server.raw().await;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("shipping")
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let (orders, _) = orders(&redis);
    for order in 0..5 {
        orders.publish(OrderPlaced { order }).await.unwrap();
    }
    // An instance of `shipping` reads them, then dies without acknowledging any.
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("shipping")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!matches!(read, redis::Value::Nil));
    assert_eq!(pending(&mut raw, &stream, "shipping").await, 5);

    let (shipping, seen) = shipping_instance(&redis, "survivor");
    let serving = shipping.serve().await.unwrap();
    eventually("the survivor claims and handles all five", || async {
        seen.placed().len() >= 5
    })
    .await;
    eventually("and acknowledges them", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;
    serving.shutdown().await;
    let mut placed = seen.placed();
    placed.sort_unstable();
    assert_eq!(placed, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_retryable_failure_is_delivered_again_at_most_max_deliveries_times() {
    let Some(server) = Server::get("redeliver").await else {
        return;
    };
    let redis = server.builder().max_deliveries(3).await.unwrap();
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);

    // Succeeds on its second delivery.
    orders.publish(Flaky { succeed_on: 2 }).await.unwrap();
    eventually("the second delivery succeeds", || async {
        seen.flaky_attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    let raw = server.raw().await;
    let stream = redis.event_stream("Flaky");
    eventually("and it is acknowledged", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;

    // Never succeeds: three deliveries, then it is acknowledged and left to the dead letters.
    seen.flaky_attempts.store(0, Ordering::SeqCst);
    orders.publish(Flaky { succeed_on: 100 }).await.unwrap();
    eventually("three deliveries", || async {
        seen.flaky_attempts.load(Ordering::SeqCst) >= 3
    })
    .await;
    eventually("then it is acknowledged", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(seen.flaky_attempts.load(Ordering::SeqCst), 3, "no fourth");
}

#[tokio::test]
async fn shutdown_waits_for_messages_in_flight() {
    let Some(server) = Server::get("drain").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);
    let call = tokio::spawn(async move {
        orders
            .send(Ship {
                order: 3,
                fail: false,
                millis: 300,
            })
            .await
    });
    eventually("the request is being handled", || async {
        let mut raw = server.raw().await;
        pending(&mut raw, &redis.request_stream("Ship"), "shipping").await == 1
    })
    .await;
    serving.shutdown().await; // returns only once the in-flight `Ship` finished and was answered
    assert_eq!(seen.shipped(), vec![3]);
    assert_eq!(call.await.unwrap().unwrap(), 30);
}

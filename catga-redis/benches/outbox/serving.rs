//! Round trips per served event: `serve()` under load against each step its own call.

use super::consume::*;
use super::*;

/// The serving path of `SERVED` events, each step its own call on a connection through a
/// proxy: read one entry (`XREADGROUP … COUNT 1`), handle it ([`handling_steps`], with the
/// commit as one script if `commit`), acknowledge it. Commands and round trips per event.
async fn one_by_one_served(url: &str, prefix: &str, commit: bool) -> (f64, f64) {
    let tag = format!("{{{prefix}:steps}}");
    let stream = format!("{tag}:served:{}", if commit { "script" } else { "steps" });
    let mut direct = raw(url).await;
    let sha = if commit {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(COMMIT_STEPS)
            .query_async(&mut direct)
            .await
            .expect("SCRIPT LOAD");
        Some(sha)
    } else {
        None
    };
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("served")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut direct)
        .await
        .expect("XGROUP CREATE");
    // One more than counted: the first warms the connection up.
    let mut ids: Vec<String> = Vec::new();
    let numbers: Vec<u64> = (0..=SERVED).collect();
    for chunk in numbers.chunks(500) {
        let mut pipe = redis::pipe();
        for n in chunk {
            pipe.cmd("XADD").arg(&stream).arg("*").arg("n").arg(*n);
        }
        let added: Vec<String> = pipe.query_async(&mut direct).await.expect("XADD");
        ids.extend(added);
    }
    let proxy = RoundTrips::start(url).await;
    let mut conn = raw(proxy.url()).await;
    for (n, id) in (0..).zip(&ids) {
        if n == 1 {
            proxy.reset();
        }
        let mut calls = vec![
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("served")
                .arg("one")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .clone(),
        ];
        calls.extend(handling_steps(prefix, n, sha.as_deref()));
        calls.push(
            redis::cmd("XACK")
                .arg(&stream)
                .arg("served")
                .arg(id)
                .clone(),
        );
        for call in calls {
            let _: redis::Value = call.query_async(&mut conn).await.expect("a step");
        }
    }
    (
        proxy.commands() as f64 / SERVED as f64,
        proxy.round_trips() as f64 / SERVED as f64,
    )
}

/// Publishes `Ordered` events `from..from + n`, `PRODUCING` at a time.
async fn publish_all<L: Layer>(app: &Catga<L>, from: u64, n: u64) {
    futures::stream::iter(from..from + n)
        .map(|n| app.publish(Ordered { n }))
        .buffer_unordered(PRODUCING)
        .for_each(|published| async move {
            published.expect("published");
        })
        .await;
}

/// Waits until `handled` runs of `ordered` are over and `stream` has nothing left
/// unacknowledged in group `served`, asking on `conn` (not through the proxy).
async fn drained(conn: &mut MultiplexedConnection, stream: &str, handled: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ORDERED.load(Ordering::SeqCst) < handled {
        assert!(
            Instant::now() < deadline,
            "the served events were not all handled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(stream)
            .arg("served")
            .query_async(conn)
            .await
            .expect("XPENDING");
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the served events were not all acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How `serve()` was set up for one measurement.
struct Serve {
    /// `Idempotency` around `RedisInbox` + `RedisOutbox`, else those two alone.
    idempotency: bool,
    /// The transport's read batch (`RedisConnect::batch`).
    batch: usize,
    /// The most events handled at once (`serve_max_in_flight`).
    in_flight: usize,
}

/// What the proxy counted while a serving app drained `SERVED` events.
struct Drained {
    /// Per event, what idle polling costs over as long subtracted.
    commands: f64,
    round_trips: f64,
    /// The proxy's count over as long with nothing to consume: commands, round trips.
    idle: (usize, usize),
    /// Commands per event by name (idle polling not subtracted).
    by_name: BTreeMap<String, f64>,
    took: Duration,
}

/// Serves `Ordered` as `how` says, the consumer's connections through a counting proxy, while
/// a producer publishes `SERVED` events; see the module docs.
async fn serve_counted(url: &str, prefix: &str, label: &str, how: &Serve) -> Drained {
    const WARM: u64 = 20;
    let prefix = format!("{prefix}:served-{label}");
    let proxy = RoundTrips::start(url).await;
    let transport = RedisTransport::connect(proxy.url())
        .prefix(prefix.as_str())
        .batch(how.batch)
        .await
        .expect("the transport connects");
    let stream = transport.event_stream(Ordered::NAME);
    let counted = stores(proxy.url(), &prefix).await;
    let consumer = Catga::builder()
        .transport(transport)
        .service("served")
        .serve_max_in_flight(how.in_flight)
        .handlers(|h| h.is_in("served"));
    let serving = if how.idempotency {
        let app = consumer
            .layer(Idempotency::new(counted.idempotency()))
            .layer(RedisInbox::new(&counted))
            .layer(RedisOutbox::new(&counted))
            .build()
            .expect("builds");
        app.serve().await
    } else {
        let app = consumer
            .layer(RedisInbox::new(&counted))
            .layer(RedisOutbox::new(&counted))
            .build()
            .expect("builds");
        app.serve().await
    }
    .expect("serves");
    let producer = Catga::builder()
        .transport(
            RedisTransport::connect(url)
                .prefix(prefix.as_str())
                .await
                .expect("the transport connects"),
        )
        .handlers(|_| false)
        .build()
        .expect("builds");
    let mut direct = raw(url).await;

    // Connections made and scripts loaded before counting.
    ORDERED.store(0, Ordering::SeqCst);
    publish_all(&producer, 0, WARM).await;
    drained(&mut direct, &stream, WARM).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    proxy.reset();
    let started = Instant::now();
    publish_all(&producer, WARM, SERVED).await;
    drained(&mut direct, &stream, WARM + SERVED).await;
    let took = started.elapsed();
    let (commands, round_trips, names) = (proxy.commands(), proxy.round_trips(), proxy.names());

    proxy.reset();
    tokio::time::sleep(took).await;
    let idle = (proxy.commands(), proxy.round_trips());
    serving.shutdown().await;

    let mut by_name = BTreeMap::new();
    for name in names {
        *by_name.entry(name).or_insert(0.0) += 1.0 / SERVED as f64;
    }
    let per_event =
        |counted: usize, idle: usize| counted.saturating_sub(idle) as f64 / SERVED as f64;
    Drained {
        commands: per_event(commands, idle.0),
        round_trips: per_event(round_trips, idle.1),
        idle,
        by_name,
        took,
    }
}

pub(super) async fn serving_round_trips(url: &str, prefix: &str) {
    let steps = one_by_one_served(url, prefix, false).await;
    let script = one_by_one_served(url, prefix, true).await;
    println!(
        "serving path per event (2 writes, 1 event, the ack), {SERVED} events published {PRODUCING} in flight, \
         counted at the wire: each step its own call (XREADGROUP COUNT 1, claim, inbox GET, HSET, INCRBY, XADD, \
         inbox SET, completion, XACK) {:.2} commands / {:.2} round trips; the commit one script (XREADGROUP COUNT 1, \
         claim, inbox GET, commit, completion, XACK) {:.2} / {:.2}",
        steps.0, steps.1, script.0, script.1
    );
    let runs = [
        (
            "b64",
            "Idempotency + RedisInbox + RedisOutbox, batch 64, 64 in flight (the defaults)",
            Serve {
                idempotency: true,
                batch: 64,
                in_flight: 64,
            },
        ),
        (
            "b1",
            "Idempotency + RedisInbox + RedisOutbox, batch 1, 64 in flight",
            Serve {
                idempotency: true,
                batch: 1,
                in_flight: 64,
            },
        ),
        (
            "one",
            "Idempotency + RedisInbox + RedisOutbox, batch 1, 1 in flight",
            Serve {
                idempotency: true,
                batch: 1,
                in_flight: 1,
            },
        ),
        (
            "b256",
            "Idempotency + RedisInbox + RedisOutbox, batch 256, 256 in flight",
            Serve {
                idempotency: true,
                batch: 256,
                in_flight: 256,
            },
        ),
        (
            "inbox",
            "RedisInbox + RedisOutbox, batch 64, 64 in flight",
            Serve {
                idempotency: false,
                batch: 64,
                in_flight: 64,
            },
        ),
    ];
    for (label, what, how) in &runs {
        let d = serve_counted(url, prefix, label, how).await;
        let share = |name: &str| d.by_name.get(name).copied().unwrap_or(0.0);
        let shown: Vec<String> = d
            .by_name
            .iter()
            .map(|(name, per)| format!("{name} {per:.3}"))
            .collect();
        println!(
            "  serve(), {what}: {:.2} commands / {:.2} round trips per event ({:+.0} % / {:+.0} % against each step \
             its own call; {:+.0} % / {:+.0} % against the commit one script); {}; {:.1} entries per XREADGROUP, \
             {:.1} per XACK; drained in {} ms; idle over as long: {} commands / {} round trips",
            d.commands,
            d.round_trips,
            (d.commands / steps.0 - 1.0) * 100.0,
            (d.round_trips / steps.1 - 1.0) * 100.0,
            (d.commands / script.0 - 1.0) * 100.0,
            (d.round_trips / script.1 - 1.0) * 100.0,
            shown.join(" + "),
            1.0 / share("XREADGROUP"),
            1.0 / share("XACK"),
            d.took.as_millis(),
            d.idle.0,
            d.idle.1,
        );
    }
}

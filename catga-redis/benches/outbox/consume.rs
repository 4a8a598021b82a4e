//! Round trips per consumed command, each step its own call against catga's unit of work.

use super::*;

/// The writes, the event and the inbox record of [`handling_steps`] as one script: a commit.
pub(super) const COMMIT_STEPS: &str = r"
redis.call('HSET', KEYS[1], 'n', ARGV[1])
redis.call('INCRBY', KEYS[2], 1)
redis.call('XADD', KEYS[3], '*', 'n', ARGV[1])
redis.call('SET', KEYS[4], ARGV[1], 'PX', 60000)
return 1
";

/// Handling one message, each step its own call, as written without a unit of work (the
/// ack apart): the idempotency claim, the inbox look-up, each write, the event, the inbox
/// record, the idempotency completion. With `commit` (the SHA of [`COMMIT_STEPS`], loaded),
/// the writes, the event and the record are one call.
pub(super) fn handling_steps(prefix: &str, n: u64, commit: Option<&str>) -> Vec<redis::Cmd> {
    let tag = format!("{{{prefix}:steps}}");
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (order, orders, outbox, inbox) = (
        format!("{tag}:order:{n}"),
        format!("{tag}:orders"),
        format!("{tag}:outbox"),
        format!("{tag}:inbox:{id}"),
    );
    let mut calls = vec![
        redis::cmd("SET")
            .arg(format!("{tag}:idem:{id}"))
            .arg("claimed")
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .clone(),
        redis::cmd("GET").arg(&inbox).clone(),
    ];
    match commit {
        None => calls.extend([
            redis::cmd("HSET").arg(&order).arg("n").arg(n).clone(),
            redis::cmd("INCRBY").arg(&orders).arg(1).clone(),
            redis::cmd("XADD")
                .arg(&outbox)
                .arg("*")
                .arg("n")
                .arg(n)
                .clone(),
            redis::cmd("SET")
                .arg(&inbox)
                .arg(n)
                .arg("PX")
                .arg(60_000)
                .clone(),
        ]),
        Some(sha) => calls.push(
            redis::cmd("EVALSHA")
                .arg(sha)
                .arg(4)
                .arg(&order)
                .arg(&orders)
                .arg(&outbox)
                .arg(&inbox)
                .arg(n)
                .clone(),
        ),
    }
    calls.push(
        redis::cmd("SET")
            .arg(format!("{tag}:idem:{id}"))
            .arg(n)
            .arg("PX")
            .arg(60_000)
            .clone(),
    );
    calls
}

/// The consume path of one command, each step its own call, as written without a unit of
/// work: what the figure compares against.
pub(super) async fn each_step_its_own_call(conn: &mut MultiplexedConnection, prefix: &str, n: u64) {
    let tag = format!("{{{prefix}:steps}}");
    let mut calls = handling_steps(prefix, n, None);
    calls.push(
        redis::cmd("XACK")
            .arg(format!("{tag}:requests"))
            .arg("group")
            .arg("0-1")
            .clone(),
    );
    for call in calls {
        let _: redis::Value = call.query_async(conn).await.expect("a step");
    }
}

pub(super) async fn consume_round_trips(url: &str, prefix: &str) {
    const MESSAGES: u64 = 50;
    let proxy = RoundTrips::start(url).await;
    let mut counted_raw = raw(proxy.url()).await;
    let counted = stores(proxy.url(), prefix).await;
    let ack = |conn: MultiplexedConnection| async move {
        let mut conn = conn;
        let _: redis::Value = redis::cmd("XACK")
            .arg(format!("{prefix}:requests:Place"))
            .arg("group")
            .arg("0-1")
            .query_async(&mut conn)
            .await
            .expect("XACK");
    };
    let command =
        |n: u64| Envelope::wrap(&Place { n }, &Context::new(), WireFormat::Json).expect("encodes");
    let per_message = |proxy: &RoundTrips| {
        (
            proxy.commands() as f64 / MESSAGES as f64,
            proxy.round_trips() as f64 / MESSAGES as f64,
        )
    };

    each_step_its_own_call(&mut counted_raw, prefix, 0).await;
    proxy.reset();
    for n in 0..MESSAGES {
        each_step_its_own_call(&mut counted_raw, prefix, n).await;
    }
    let before = per_message(&proxy);

    let with_idempotency = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(Idempotency::new(counted.idempotency()))
        .layer(RedisInbox::new(&counted))
        .layer(RedisOutbox::new(&counted))
        .build()
        .expect("builds");
    with_idempotency
        .dispatch_envelope(&command(1_000_000))
        .await
        .expect("warm");
    proxy.reset();
    for n in 0..MESSAGES {
        with_idempotency
            .dispatch_envelope(&command(n))
            .await
            .expect("handled");
        ack(counted_raw.clone()).await;
    }
    let kept = per_message(&proxy);

    let inbox_only = Catga::builder()
        .handlers(|h| h.is_in("bench"))
        .layer(RedisInbox::new(&counted))
        .layer(RedisOutbox::new(&counted))
        .build()
        .expect("builds");
    proxy.reset();
    for n in 0..MESSAGES {
        inbox_only
            .dispatch_envelope(&command(n))
            .await
            .expect("handled");
        ack(counted_raw.clone()).await;
    }
    let folded = per_message(&proxy);
    let names = proxy.names();
    println!(
        "consume path per command (2 writes, 1 event, a reply, the ack), counted at the wire over {MESSAGES} messages: \
         each step its own call {:.1} commands / {:.1} round trips; \
         Idempotency + RedisInbox + RedisOutbox {:.1} / {:.1} ({:+.0} %); \
         RedisInbox + RedisOutbox {:.1} / {:.1} ({:+.0} %; {})",
        before.0,
        before.1,
        kept.0,
        kept.1,
        (kept.1 / before.1 - 1.0) * 100.0,
        folded.0,
        folded.1,
        (folded.1 / before.1 - 1.0) * 100.0,
        names
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" + "),
    );
}

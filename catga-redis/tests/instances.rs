//! Instances over time: one restarted under the same `instance` name resumes the entries it had
//! read and not acknowledged, at once; the consumers of instances that died are forgotten once
//! nothing is pending for them, so a request nobody serves any more fails fast again. Dead
//! instances are simulated with raw commands (`XREADGROUP` without acknowledging,
//! `XGROUP CREATECONSUMER`). Each test has its own key prefix, so they run in parallel.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::testkit::{eventually, within};
use catga_core::transport::TransportError;
use catga_redis::RedisTransport;
use common::{Options, Server, consumer_names, consumers, pending};
use redis::aio::MultiplexedConnection;

/// The service the tests run instances of; each consumer group is named after it.
const SERVICE: &str = "shipping";

/// Long enough that claiming cannot be what hands a dead instance's entries on in a test.
const NEVER: Duration = Duration::from_secs(3600);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parcel {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the test's bookkeeping is poisoned")]
pub struct Poisoned;

/// What one instance handled.
#[derive(Default)]
pub struct Seen {
    parcels: Mutex<Vec<u64>>,
}

impl Seen {
    fn parcels(&self) -> Vec<u64> {
        let mut parcels = self.parcels.lock().unwrap().clone();
        parcels.sort_unstable();
        parcels
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn on_parcel(&self, event: &Parcel) -> Result<(), Poisoned> {
            self.parcels.lock().map_err(|_| Poisoned)?.push(event.n);
            Ok(())
        }

        async fn ship(&self, cmd: Ship) -> Result<u64, Poisoned> {
            Ok(cmd.order * 10)
        }
    }
}

/// An instance of the shipping service on `redis`.
fn shipping(redis: &RedisTransport) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(redis.clone())
        .service(SERVICE)
        .handlers(|h| h.name.starts_with("instances::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

/// A service that handles nothing: its events and requests all go over Redis.
fn sender(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("orders")
        .handlers(|_| false)
        .build()
        .unwrap()
}

/// Creates the service's consumer group on `stream`, as an earlier run would have.
async fn create_group(raw: &mut MultiplexedConnection, stream: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(SERVICE)
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .unwrap();
}

/// Registers a consumer that then never does anything, as an instance that died idle.
async fn ghost(raw: &mut MultiplexedConnection, stream: &str, name: &str) {
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(stream)
        .arg(SERVICE)
        .arg(name)
        .query_async::<()>(raw)
        .await
        .unwrap();
}

/// Reads everything new on `stream` as consumer `name` and acknowledges nothing, as an
/// instance that crashed mid-work.
async fn read_and_crash(raw: &mut MultiplexedConnection, stream: &str, name: &str) {
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(SERVICE)
        .arg(name)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(raw)
        .await
        .unwrap();
    assert!(
        !matches!(read, redis::Value::Nil),
        "there was something to read"
    );
}

/// Publishes parcels `0..n`, which instance `crashed` reads and never acknowledges; returns
/// their stream.
async fn parcels_left_by(server: &Server, redis: &RedisTransport, crashed: &str, n: u64) -> String {
    let stream = redis.event_stream("Parcel");
    let mut raw = server.raw().await;
    create_group(&mut raw, &stream).await;
    let sender = sender(redis);
    for n in 0..n {
        sender.publish(Parcel { n }).await.unwrap();
    }
    read_and_crash(&mut raw, &stream, crashed).await;
    assert_eq!(pending(&mut raw, &stream, SERVICE).await, n);
    stream
}

#[tokio::test]
async fn a_restarted_instance_with_the_same_name_handles_its_pending_entries_at_once() {
    let Some(server) = Server::get("instance-resume").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            instance: Some("i1".to_string()),
            ack_wait: Some(NEVER),
            ..server.options()
        })
        .await;
    let stream = parcels_left_by(&server, &redis, "i1", 5).await;

    let (app, seen) = shipping(&redis);
    let serving = app.serve().await.unwrap();
    // Claiming would take an hour: only re-reading its own pending entries can do this.
    within(
        Duration::from_secs(10),
        "the restarted `i1` handles the five entries it had left",
        || async { seen.parcels().len() >= 5 },
    )
    .await;
    let raw = server.raw().await;
    eventually("and acknowledges them", || async {
        pending(&mut raw.clone(), &stream, SERVICE).await == 0
    })
    .await;
    assert_eq!(
        consumer_names(&mut raw.clone(), &stream, SERVICE).await,
        ["i1"],
        "the instance serves under its name, and no other consumer appeared"
    );
    serving.shutdown().await;
    assert_eq!(seen.parcels(), [0, 1, 2, 3, 4], "each once");
}

#[tokio::test]
async fn an_instance_under_another_name_leaves_them_to_claiming() {
    let Some(server) = Server::get("instance-other").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            instance: Some("i2".to_string()),
            ack_wait: Some(NEVER),
            ..server.options()
        })
        .await;
    let stream = parcels_left_by(&server, &redis, "i1", 5).await;

    let (app, seen) = shipping(&redis);
    let serving = app.serve().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    serving.shutdown().await;
    assert!(
        seen.parcels().is_empty(),
        "`i2` does not read `i1`'s pending entries: {:?}",
        seen.parcels()
    );
    let mut raw = server.raw().await;
    assert_eq!(pending(&mut raw, &stream, SERVICE).await, 5, "still `i1`'s");
}

#[tokio::test]
async fn dead_consumers_are_forgotten_once_nothing_is_pending_and_the_serving_one_never() {
    let Some(server) = Server::get("instance-forget").await else {
        return;
    };
    // Reads block for nearly `forget_idle` (the longest a valid configuration allows), so
    // this instance is idle for about that long itself between reads, longer on a busy
    // machine (Redis 7.0 renews the idle time when a read starts, not while it waits): were
    // it not spared, it could vanish between reads. Claiming never happens in this first
    // part, so the ghost with an entry pending keeps it.
    let first = server
        .transport_with(Options {
            instance: Some("live".to_string()),
            fetch_wait: Some(ms(290)),
            ack_wait: Some(NEVER),
            forget_idle: Some(ms(300)),
            ..server.options()
        })
        .await;
    let events = first.event_stream("Parcel");
    let requests = first.request_stream("Ship");
    let mut raw = server.raw().await;
    create_group(&mut raw, &events).await;
    create_group(&mut raw, &requests).await;
    sender(&first).publish(Parcel { n: 7 }).await.unwrap();
    read_and_crash(&mut raw, &events, "busy").await;
    // Registered after `busy` last did anything, so never idle for longer than `busy`: when
    // `idle` is forgotten, the same step (the check and delete are one script per stream)
    // saw `busy` idle for long enough too, and kept it only for its pending entry.
    ghost(&mut raw, &events, "idle").await;
    ghost(&mut raw, &requests, "idle").await;

    let (app, _) = shipping(&first);
    let serving = app.serve().await.unwrap();
    let watched = tokio::time::Instant::now();
    eventually("the idle ghost is forgotten on both streams", || {
        let mut raw = raw.clone();
        let (events, requests) = (&events, &requests);
        async move {
            let mut gone = true;
            for stream in [events, requests] {
                let listed = consumer_names(&mut raw, stream, SERVICE).await;
                assert!(
                    listed.iter().any(|name| name == "live"),
                    "the serving instance was forgotten from `{stream}`: {listed:?}"
                );
                gone &= !listed.iter().any(|name| name == "idle");
            }
            // Watch long enough for the serving instance to sit through several cycles idle
            // for longer than `forget_idle`.
            gone && watched.elapsed() >= ms(2_500)
        }
    })
    .await;
    let busy: Vec<_> = consumers(&mut raw, &events, SERVICE)
        .await
        .into_iter()
        .filter(|c| c.name == "busy")
        .collect();
    assert!(
        busy.first().is_some_and(|b| b.pending == 1 && b.idle > 300),
        "a ghost with an entry pending is kept, however idle: {busy:?}"
    );
    serving.shutdown().await;

    // Restarted with claiming on: the entry is claimed away from `busy`, which then goes too.
    let second = server
        .transport_with(Options {
            instance: Some("live".to_string()),
            fetch_wait: Some(ms(100)),
            ack_wait: Some(ms(200)),
            forget_idle: Some(ms(300)),
            ..server.options()
        })
        .await;
    let (app, seen) = shipping(&second);
    let serving = app.serve().await.unwrap();
    eventually("`busy`'s entry is claimed and handled", || async {
        seen.parcels() == [7]
    })
    .await;
    eventually("then `busy` is forgotten", || async {
        consumer_names(&mut raw.clone(), &events, SERVICE).await == ["live"]
    })
    .await;
    eventually("and nothing is left pending", || async {
        pending(&mut raw.clone(), &events, SERVICE).await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(seen.parcels(), [7], "the entry was not lost with `busy`");
}

#[tokio::test]
async fn once_dead_consumers_are_forgotten_a_request_nobody_serves_fails_fast() {
    let Some(server) = Server::get("instance-noresponders").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            instance: Some("live".to_string()),
            fetch_wait: Some(ms(100)),
            ack_wait: Some(ms(200)),
            forget_idle: Some(ms(300)),
            ..server.options()
        })
        .await;
    let requests = redis.request_stream("Ship");
    let mut raw = server.raw().await;
    create_group(&mut raw, &requests).await;
    ghost(&mut raw, &requests, "dead").await;
    let sender = sender(&redis);

    // While the dead instance is listed, the request is taken for served and times out.
    let short = Context::new().with_timeout(ms(300));
    let err = sender
        .send_with(Ship { order: 1 }, short)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "{err:?}");

    let (app, _) = shipping(&redis);
    let serving = app.serve().await.unwrap();
    eventually("the dead instance is forgotten", || async {
        consumer_names(&mut raw.clone(), &requests, SERVICE).await == ["live"]
    })
    .await;
    assert_eq!(sender.send(Ship { order: 2 }).await.unwrap(), 20);
    serving.shutdown().await;
    assert!(
        consumer_names(&mut raw, &requests, SERVICE)
            .await
            .is_empty()
    );

    let err = sender.send(Ship { order: 3 }).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Transport { source: TransportError::NoResponders(name), .. } if name == "Ship"
        ),
        "{err:?}"
    );
}

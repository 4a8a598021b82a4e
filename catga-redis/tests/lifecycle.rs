//! Stopped means stopped, on Redis's side: while it serves, an instance is a consumer of its
//! service's groups with a reader and an observer connection named for the operator; once
//! `Serving::shutdown()` returns, those connections are gone and its consumer is removed from
//! the groups where it has nothing pending. (That it takes nothing more, and the other
//! instance handles everything after exactly once, is the conformance suite's `lifecycle`
//! family.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_redis::RedisTransport;
use common::{Options, Server, consumer_names, pending};
use redis::aio::MultiplexedConnection;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Do {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed;

/// Cached, so each instance also observes `Changed` (a broadcast reader to stop too).
#[query(output = u64, cache_ttl = "30s", invalidated_by(Changed))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count;

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What one instance did.
#[derive(Default)]
pub struct Seen {
    work: Mutex<HashMap<u64, u32>>,
    done: AtomicU32,
}

impl Seen {
    fn work(&self) -> HashMap<u64, u32> {
        self.work.lock().unwrap().clone()
    }

    fn total(&self) -> u32 {
        self.work().values().sum()
    }
}

pub mod workers {
    use super::*;

    #[handler]
    impl Seen {
        async fn on_work(&self, event: &Work) -> Result<(), Never> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            *self
                .work
                .lock()
                .map_err(|_| Never)?
                .entry(event.n)
                .or_default() += 1;
            Ok(())
        }

        async fn run(&self, cmd: Do) -> Result<u64, Never> {
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(cmd.n)
        }

        async fn count(&self, _q: Count) -> Result<u64, Never> {
            Ok(0)
        }
    }
}

/// An instance of `workers` named `name`.
async fn instance(server: &Server, name: &str) -> (Catga<impl catga_core::Layer>, Arc<Seen>) {
    let redis = server
        .transport_with(Options {
            instance: Some(name.to_string()),
            ..server.options()
        })
        .await;
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .layer(Caching::new())
        .state_arc(seen.clone())
        .transport(redis)
        .service("workers")
        .handlers(|h| h.name.starts_with("lifecycle::workers::"))
        .build()
        .unwrap();
    (app, seen)
}

fn sender(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("sender")
        .handlers(|_| false)
        .build()
        .unwrap()
}

/// The names of the server's connections whose name mentions `consumer`.
async fn connections_of(raw: &mut MultiplexedConnection, consumer: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(raw)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("name="))
                .filter(|name| name.contains(consumer))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_leaves_its_groups_and_closes_its_connections() {
    let Some(server) = Server::get("stopped").await else {
        return;
    };
    let (a_name, b_name) = (
        format!("a-{}", uuid::Uuid::now_v7().simple()),
        format!("b-{}", uuid::Uuid::now_v7().simple()),
    );
    let (a, a_seen) = instance(&server, &a_name).await;
    let (b, b_seen) = instance(&server, &b_name).await;
    let redis = server.transport().await;
    let sender = Arc::new(sender(&redis));
    let a_serving = a.serve().await.unwrap();
    let b_serving = b.serve().await.unwrap();
    let mut raw = server.raw().await;
    let mut names = connections_of(&mut raw, &a_name).await;
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "a reader and an observer, named for the operator: {names:?}"
    );

    // Events flow while A stops.
    const N: u64 = 400;
    let publishing = {
        let sender = sender.clone();
        tokio::spawn(async move {
            for n in 0..N {
                sender.publish(Work { n }).await.unwrap();
            }
        })
    };
    let stream = redis.event_stream("Work");
    eventually(
        "both instances are consumers of the service's group",
        || async {
            consumer_names(&mut raw.clone(), &stream, "workers")
                .await
                .len()
                == 2
        },
    )
    .await;
    eventually("A has taken a share", || async { a_seen.total() > 20 }).await;
    a_serving.shutdown().await;
    publishing.await.unwrap();
    for n in 0..10 {
        assert_eq!(sender.send(Do { n }).await.unwrap(), n);
    }
    eventually("every event is handled", || async {
        (0..N).all(|n| a_seen.work().contains_key(&n) || b_seen.work().contains_key(&n))
    })
    .await;
    eventually("and acknowledged", || async {
        pending(&mut raw.clone(), &stream, "workers").await == 0
    })
    .await;
    for stream in [redis.event_stream("Work"), redis.request_stream("Do")] {
        assert_eq!(
            consumer_names(&mut raw, &stream, "workers").await,
            vec![b_name.clone()],
            "A's consumer left {stream}: it had nothing pending"
        );
    }
    eventually("A's connections are closed", || async {
        connections_of(&mut raw.clone(), &a_name).await.is_empty()
    })
    .await;
    b_serving.shutdown().await;
}

//! A server that lost its data (restarted without persistence) is recovered from: each
//! instance creates its vanished groups again after the last entry it saw, so every event
//! accepted after the restart is handled; requests work again; and what each instance cached
//! is dropped, since an invalidation may have been missed while it was cut off.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_core::testkit::{eventually, within};
use catga_redis::RedisTransport;
use common::Options;
use common::private_redis::{Persistence, PrivateRedis};

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateChanged;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[query(output = u64, cache_ttl = "30s", invalidated_by(RateChanged))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rate;

#[derive(Default)]
pub struct Ledger {
    ticks: Mutex<HashSet<u64>>,
    /// When the first tick published after the restart was handled.
    first_after: Mutex<Option<Instant>>,
    rate_loads: AtomicU32,
}

/// Ticks numbered from this on are published after the restart.
const AFTER: u64 = 1_000;
const N_AFTER: u64 = 50;

pub mod ledger {
    use super::*;

    #[handler]
    impl Ledger {
        async fn tick(&self, event: &Tick) -> Result<(), Never> {
            if event.n >= AFTER
                && let Ok(mut first) = self.first_after.lock()
            {
                first.get_or_insert_with(Instant::now);
            }
            if let Ok(mut ticks) = self.ticks.lock() {
                ticks.insert(event.n);
            }
            Ok(())
        }

        async fn ping(&self, cmd: Ping) -> Result<u64, Never> {
            Ok(cmd.n + 1)
        }

        async fn rate(&self, _q: Rate) -> Result<u64, Never> {
            self.rate_loads.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        }
    }
}

impl Ledger {
    fn ticks(&self) -> HashSet<u64> {
        self.ticks.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_without_data_every_event_accepted_is_handled_and_requests_work() {
    if !common::private_redis::available("state-loss") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::None).await;
    let state = Arc::new(Ledger::default());
    let ledger = Catga::builder()
        .layer(Caching::new())
        .state_arc(state.clone())
        .transport(private_transport(&server).await)
        .service("ledger")
        .handlers(|h| h.name.starts_with("recovery::ledger::"))
        .build()
        .unwrap();
    let serving = ledger.serve().await.unwrap();
    let publisher = Catga::builder()
        .transport(private_transport(&server).await)
        .service("publisher")
        .handlers(|_| false)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for n in 0..5 {
        publisher.publish(Tick { n }).await.unwrap();
    }
    assert_eq!(publisher.send(Ping { n: 1 }).await.unwrap(), 2);
    assert_eq!(ledger.send(Rate).await.unwrap(), 7);
    assert_eq!(ledger.send(Rate).await.unwrap(), 7);
    assert_eq!(state.rate_loads.load(Ordering::SeqCst), 1, "cached");
    eventually("the ticks before the restart are handled", || async {
        state.ticks().len() == 5
    })
    .await;

    server.kill();
    // Long enough for every connection to notice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let restarted = Instant::now();
    for n in AFTER..AFTER + N_AFTER {
        // Accepted once `publish` says so; the publisher's own connection reconnects first.
        within(Duration::from_secs(30), "a publish is accepted", || async {
            publisher.publish(Tick { n }).await.is_ok()
        })
        .await;
    }
    let published = restarted.elapsed();
    eventually(
        "every tick accepted after the restart is handled",
        || async { (AFTER..AFTER + N_AFTER).all(|n| state.ticks().contains(&n)) },
    )
    .await;
    let all_handled = restarted.elapsed();
    let first = state
        .first_after
        .lock()
        .unwrap()
        .expect("a tick after the restart was handled")
        .duration_since(restarted);

    let mut refusals = 0;
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match publisher.send(Ping { n: 41 }).await {
                Ok(reply) => return reply,
                Err(_) => refusals += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a request is answered again");
    assert_eq!(answered, 42);
    // The observer reconnected and reported every observed event: the cache was dropped.
    eventually(
        "the cached reply is dropped after the reconnection",
        || async {
            ledger.send(Rate).await.is_ok() && state.rate_loads.load(Ordering::SeqCst) >= 2
        },
    )
    .await;
    let mut raw = server.raw().await;
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("recovery:events:Tick")
        .query_async(&mut raw)
        .await
        .unwrap();
    serving.shutdown().await;

    println!(
        "state loss: restart -> first event handled {} ms; {N_AFTER} events published within \
         {} ms of the restart, all handled after {} ms; {refusals} requests refused before \
         the request group was back",
        first.as_millis(),
        published.as_millis(),
        all_handled.as_millis(),
    );
    assert_eq!(groups.len(), 1, "the ledger's group was created again");
    assert_eq!(
        state.ticks().len(),
        usize::try_from(5 + N_AFTER).unwrap(),
        "nothing lost after the restart"
    );
}

async fn private_transport(server: &PrivateRedis) -> RedisTransport {
    let options = Options {
        prefix: Some("recovery".to_string()),
        ack_wait: Some(Duration::from_secs(2)),
        ..Options::for_tests()
    };
    common::transport::connect(server.url(), &options)
        .await
        .expect("the private server is up")
}

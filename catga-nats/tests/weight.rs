//! An instance's weight in its service's queue group, read from the server's side: a private
//! `nats-server` with its monitoring port on, whose `/connz?subs=detail` lists every
//! connection's subscriptions with their queue group. Instances with 1, 3 and 300 in-flight
//! slots (`serve_max_in_flight`) hold 1, 3 and `MAX_QUEUE_WEIGHT` subscriptions to each
//! request subject in the group (the server picks one subscription of the group per request,
//! so these counts are the instances' shares), and one stopped holds none: every subscription
//! of the group was drained.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::testkit::free_port;
use catga_nats::MAX_QUEUE_WEIGHT;
use common::Options;
use common::server::{PrivateServer, binary_or_skip};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Weigh {
    pub n: u64,
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measure {
    pub n: u64,
}

pub mod scales {
    use super::*;

    #[handler]
    async fn weigh(cmd: Weigh) -> Result<u64, Infallible> {
        Ok(cmd.n)
    }

    #[handler]
    async fn measure(query: Measure) -> Result<u64, Infallible> {
        Ok(query.n)
    }
}

/// The queue subscriptions in group `scales` the server holds, by connection id and subject.
type Held = BTreeMap<u64, BTreeMap<String, usize>>;

/// The body of `GET path` on the monitoring port (HTTP/1.0: the server closes when done).
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// What the server holds now (waits for its monitoring port to answer).
async fn held(port: u16) -> Held {
    let mut tries = 0;
    let body = loop {
        let answer =
            tokio::task::spawn_blocking(move || get(port, "/connz?subs=detail&limit=1024"))
                .await
                .expect("the monitoring request ran");
        match answer {
            Ok(body) if !body.is_empty() => break body,
            other => {
                tries += 1;
                assert!(tries < 100, "the monitoring port never answered: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let connz: serde_json::Value = serde_json::from_str(&body).expect("connz is JSON");
    let mut held = Held::new();
    for connection in connz["connections"]
        .as_array()
        .expect("a list of connections")
    {
        let cid = connection["cid"].as_u64().expect("a connection id");
        let subs = connection["subscriptions_list_detail"].as_array();
        for sub in subs.into_iter().flatten() {
            if sub["qgroup"].as_str() == Some("scales") {
                let subject = sub["subject"].as_str().expect("a subject").to_string();
                *held.entry(cid).or_default().entry(subject).or_default() += 1;
            }
        }
    }
    held
}

fn instance(transport: catga_nats::NatsTransport, slots: usize) -> Catga {
    Catga::builder()
        .transport(transport)
        .service("scales")
        .serve_max_in_flight(slots)
        .handlers(|h| h.is_in("scales"))
        .build()
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_holds_one_queue_subscription_per_slot_up_to_the_cap_and_drains_them_all() {
    let Some(binary) = binary_or_skip("weight") else {
        return;
    };
    let monitor = free_port();
    let monitor_arg = monitor.to_string();
    let server =
        PrivateServer::start_with(&binary, "catga-nats-weight-", &["-m", &monitor_arg]).await;
    let connect = || async {
        common::transport::connect(server.url(), &Options::for_tests())
            .await
            .expect("the private server is up")
    };
    let probe = connect().await;
    let mut subjects = vec![
        probe.request_subject("Weigh"),
        probe.request_subject("Measure"),
    ];
    subjects.sort();

    let mut serving = Vec::new();
    for slots in [1, 3, 300] {
        let app = instance(connect().await, slots);
        serving.push(app.serve().await.expect("serves"));
    }
    // `serve` returned after a round trip: the server has every subscription.
    let now = held(monitor).await;
    let mut weights: Vec<usize> = Vec::new();
    for (cid, by_subject) in &now {
        let subjects_held: Vec<String> = by_subject.keys().cloned().collect();
        assert_eq!(
            subjects_held, subjects,
            "connection {cid} subscribes to both requests"
        );
        let counts: Vec<usize> = by_subject.values().copied().collect();
        assert!(
            counts.iter().all(|c| *c == counts[0]),
            "connection {cid}: one weight for every request subject: {by_subject:?}"
        );
        weights.push(counts[0]);
    }
    weights.sort_unstable();
    assert_eq!(weights, [1, 3, MAX_QUEUE_WEIGHT], "{now:?}");

    // Each stopped instance leaves the group entirely; the others keep theirs.
    let mut left = weights.len();
    for stopping in serving {
        stopping.shutdown().await;
        left -= 1;
        let now = held(monitor).await;
        assert_eq!(now.len(), left, "connections still in the group: {now:?}");
    }
}

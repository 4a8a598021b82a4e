//! The stores on a cluster beyond the conformance suites: each family on one node and the
//! families spread, idempotency batches over many slots, pub/sub wake-ups, options a cluster
//! refuses.

use std::time::{Duration, Instant};

use std::time::SystemTime;

use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};
use catga_core::store::event::{EventStore, NewEvent};
use catga_core::store::idempotency::{Claim, IdempotencyStore, KeyId, ReplyKey};
use catga_redis::ConnectError;
use catga_redis::store::{ReadFrom, RedisStores};
use uuid::Uuid;

use super::common::private_cluster::PrivateCluster;

/// The nodes holding a key that matches `pattern`.
fn nodes_holding(cluster: &PrivateCluster, pattern: &str) -> Vec<u16> {
    cluster
        .ports()
        .into_iter()
        .filter(|&port| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut cluster.node(port))
                .unwrap_or_default();
            !keys.is_empty()
        })
        .collect()
}

/// Each family's keys share one hash tag, so each family of a prefix is on exactly one node,
/// the one `CLUSTER KEYSLOT` of its tag names; different families land on different nodes.
#[tokio::test]
async fn each_family_is_on_one_node_and_the_families_spread() {
    let Some((cluster, stores)) = super::stores("families").await else {
        return;
    };
    let prefix = stores.prefix().to_string();
    let events = stores.events();
    for stream in ["order-1", "order-2", "order-3"] {
        events
            .append(stream, 0, vec![NewEvent::new("Placed", b"{}".to_vec())])
            .await
            .expect("append");
    }
    let dead_letters = stores.dead_letters();
    for _ in 0..3 {
        dead_letters.put(record()).await.expect("put");
    }
    let mut owners = Vec::new();
    for family in ["events", "dead_letters"] {
        let tag = format!("{{{prefix}:{family}}}");
        let owner = cluster.owner_of(&tag);
        assert_eq!(
            nodes_holding(cluster, &format!("{tag}*")),
            vec![owner],
            "every key of {tag} is on the node that owns its slot"
        );
        owners.push(owner);
    }
    // Over many prefixes, the four families of a prefix are on more than one node.
    let families = ["events", "sagas", "dead_letters", "outbox"];
    let spread = (0..20).any(|i| {
        let mut at: Vec<u16> = families
            .iter()
            .map(|f| cluster.owner_of(&format!("{{shop{i}:{f}}}")))
            .collect();
        at.sort_unstable();
        at.dedup();
        at.len() >= 2
    });
    assert!(spread, "the families of a prefix spread over the nodes");
}

fn record() -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: "orders.place".to_string(),
        handler: None,
        payload: Some(b"{}".to_vec()),
        code: "handler".into(),
        error: "declined".into(),
        attempts: 1,
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        headers: Vec::new(),
        failed_at: SystemTime::now(),
        stage: FailureStage::Handler,
        source: None,
        raw_headers: None,
    }
}

fn key(id: Uuid) -> ReplyKey {
    ReplyKey {
        message: "orders.place",
        handler: None,
        id: KeyId::MessageId(id),
    }
}

/// A batch of keys in many slots (so on every node) is claimed and completed in one call:
/// one pipeline per slot, sent at once; scripts are loaded into every node.
#[tokio::test]
async fn idempotency_batches_span_slots_and_nodes() {
    let Some((cluster, stores)) = super::stores("batches").await else {
        return;
    };
    let store = stores.idempotency();
    store.load_scripts().await.expect("loaded into every node");
    let keys: Vec<ReplyKey> = (0..40).map(|_| key(Uuid::now_v7())).collect();
    let owners: std::collections::HashSet<u16> = keys
        .iter()
        .map(|k| cluster.owner_of(&store.key_of(k)))
        .collect();
    assert_eq!(owners.len(), 3, "the keys are on every node");
    let claims = store
        .claim_many(&keys, Duration::from_secs(30))
        .await
        .expect("claimed");
    assert!(claims.iter().all(|c| *c == Claim::Claimed), "{claims:?}");
    let completions: Vec<(&ReplyKey, &[u8])> = keys.iter().map(|k| (k, &b"\"done\""[..])).collect();
    store
        .complete_many(&completions, Duration::from_secs(60))
        .await
        .expect("completed");
    let again = store
        .claim_many(&keys, Duration::from_secs(30))
        .await
        .expect("claimed again");
    assert!(
        again
            .iter()
            .all(|c| matches!(c, Claim::Completed(reply) if &reply[..] == b"\"done\"")),
        "{again:?}"
    );
}

/// A waiter hears a completion published on another node's slot through its subscriber on
/// one node (Redis Cluster passes `PUBLISH` to every node), long before its poll would see it.
#[tokio::test]
async fn a_waiter_is_woken_through_pub_sub() {
    let Some((_, stores)) = super::stores("wakeup").await else {
        return;
    };
    let store = stores
        .idempotency()
        .poll_interval(Duration::from_secs(30))
        .expect("a valid interval");
    let mut keys = Vec::new();
    for _ in 0..6 {
        let k = key(Uuid::now_v7());
        assert_eq!(
            store
                .claim(&k, Duration::from_secs(30))
                .await
                .expect("claim"),
            Claim::Claimed
        );
        keys.push(k);
    }
    for k in &keys {
        let waiter = {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                store
                    .wait(&k, Duration::from_secs(20))
                    .await
                    .expect("woken");
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        store
            .complete(k, b"1", Duration::from_secs(60))
            .await
            .expect("complete");
        let waited = waiter.await.expect("the waiter ran");
        assert!(
            waited < Duration::from_secs(5),
            "woken by the completion, not the 30 s poll: {waited:?}"
        );
    }
}

/// What a cluster cannot do is refused before anything connects, typed.
#[tokio::test]
async fn replica_reads_and_no_nodes_are_refused() {
    let Some(cluster) = PrivateCluster::shared("refused") else {
        return;
    };
    let refused = RedisStores::connect_cluster(cluster.urls())
        .read_from(ReadFrom::PreferReplica)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            refused,
            ConnectError::InvalidOption {
                option: "read_from",
                ..
            }
        ),
        "{refused:?}"
    );
    let refused = RedisStores::connect_cluster(Vec::<String>::new())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            refused,
            ConnectError::InvalidOption {
                option: "connect_cluster",
                ..
            }
        ),
        "{refused:?}"
    );
    // A server that is not in cluster mode cannot serve as a node.
    let plain = crate::common::url();
    if crate::common::reachable(&plain).await.is_ok() {
        let refused = RedisStores::connect_cluster([plain])
            .await
            .expect_err("refused");
        assert!(
            matches!(refused, ConnectError::Unreachable { .. }),
            "{refused:?}"
        );
    }
}

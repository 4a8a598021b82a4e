//! The Redis lease store: the lease store conformance suite (`catga_core::testkit::stores`),
//! each scenario on a key prefix of its own; one round trip per operation, counted at the wire;
//! the key layout; values the store did not write, reported as typed errors and left as they
//! were; a server that goes away, and what its restart keeps of the tokens with and without
//! data; and catga-core's `Leadership` electing one of three instances on it.

mod common;

use std::time::Duration;

use catga_core::cluster::{Elected, Leadership, Role};
use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use catga_core::testkit::{PATIENCE, eventually};
use catga_redis::store::{RedisLeaseStore, RedisStoreError, RedisStores};
use common::outage::{self, RESPONSE_TIMEOUT};
use common::private_redis::Persistence;
use common::round_trips::RoundTrips;
use common::scoped::{Scoped, scoped};
use common::slice::Slice;
use common::store_error::{assert_invalid_option, redis_error};
use redis::aio::MultiplexedConnection;

/// A TTL no test outlives.
const LONG: Duration = Duration::from_secs(120);

catga_core::testkit::stores::lease_store_conformance!(|scenario| async move {
    scoped(&format!("lease:{scenario}"), RedisStores::leases).await
});

// `Scoped` is its store: each method passes straight through.
impl<S: LeaseStore> LeaseStore for Scoped<S> {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        self.store.acquire(name, holder, ttl).await
    }
    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        self.store.renew(grant, ttl).await
    }
    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        self.store.release(grant).await
    }
    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        self.store.observe(name).await
    }
}

/// What one operation cost at the wire: (round trips, commands).
fn cost(proxy: &RoundTrips) -> (usize, usize) {
    (proxy.round_trips(), proxy.commands())
}

async fn granted(store: &RedisLeaseStore, name: &str, holder: &str) -> Grant {
    store
        .acquire(name, holder, LONG)
        .await
        .expect("acquire")
        .unwrap_or_else(|| panic!("`{name}` is vacant, yet not granted"))
}

/// Every operation, granted or refused, is one `EVALSHA`; a TTL the store cannot keep is
/// refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(slice) = Slice::open_within("lease_round_trips", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.leases();
    store.load_scripts().await.expect("load scripts");
    let name = "scheduler";

    proxy.reset();
    let grant = granted(&store, name, "node-a").await;
    assert_eq!(grant.token, FencingToken::new(1), "a new name starts at 1");
    assert_eq!(cost(&proxy), (1, 1), "a granted acquire");
    assert_eq!(proxy.names(), ["EVALSHA"]);

    proxy.reset();
    assert_eq!(
        store.acquire(name, "node-b", LONG).await.expect("acquire"),
        None
    );
    assert_eq!(cost(&proxy), (1, 1), "a refused acquire");
    proxy.reset();
    assert!(store.renew(&grant, LONG).await.expect("renew"));
    assert_eq!(cost(&proxy), (1, 1), "a renewal");
    proxy.reset();
    assert!(matches!(
        store.observe(name).await.expect("observe"),
        LeaseState::Held { token, .. } if token == grant.token
    ));
    assert_eq!(cost(&proxy), (1, 1), "observing a held lease");
    proxy.reset();
    assert!(store.release(&grant).await.expect("release"));
    assert_eq!(cost(&proxy), (1, 1), "a release");
    proxy.reset();
    assert!(!store.renew(&grant, LONG).await.expect("renew"));
    assert_eq!(cost(&proxy), (1, 1), "renewing a lost grant");
    proxy.reset();
    assert!(!store.release(&grant).await.expect("release"));
    assert_eq!(cost(&proxy), (1, 1), "releasing a lost grant");
    proxy.reset();
    assert_eq!(
        store.observe(name).await.expect("observe"),
        LeaseState::Vacant
    );
    assert_eq!(cost(&proxy), (1, 1), "observing a vacant lease");
    assert_eq!(proxy.names(), ["EVALSHA"]);

    proxy.reset();
    for (what, error) in [
        (
            "a zero TTL",
            store
                .acquire(name, "node-a", Duration::ZERO)
                .await
                .expect_err("acquire"),
        ),
        (
            "a TTL beyond 100 years",
            store.renew(&grant, Duration::MAX).await.expect_err("renew"),
        ),
    ] {
        let error = redis_error(&error);
        assert_invalid_option(error, "ttl");
        assert!(!error.is_retryable(), "{what}: {error}");
    }
    assert_eq!(cost(&proxy), (0, 0), "refused before anything is sent");
}

/// Both keys of a lease start with the hash tag `{<prefix>:leases}`, the name escaped; the
/// holder key holds the holder and the token and expires with the TTL; the counter holds the
/// last token, never expires, and stays after a release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_share_the_hash_tag_and_the_counter_outlives_the_grant() {
    let Some(slice) = Slice::open("lease_keys").await else {
        return;
    };
    let store = slice.stores.leases();
    let tag = format!("{{{}:leases}}", slice.prefix);
    let name = "jobs:{nightly} é";
    assert_eq!(
        store.held_key(name),
        format!("{tag}:held:jobs%3A%7Bnightly%7D%20é")
    );
    assert_eq!(
        store.epoch_key(name),
        format!("{tag}:epoch:jobs%3A%7Bnightly%7D%20é")
    );
    assert_eq!(slice.keys().await, Vec::<String>::new());

    let grant = granted(&store, name, "node-a").await;
    let mut keys = vec![store.epoch_key(name), store.held_key(name)];
    keys.sort();
    assert_eq!(
        slice.keys().await,
        keys,
        "the lease's two keys, and no other"
    );
    assert!(keys.iter().all(|key| key.starts_with(&tag)), "{keys:?}");

    let mut raw = slice.raw().await;
    let held: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(store.held_key(name))
        .query_async(&mut raw)
        .await
        .expect("HGETALL");
    let mut held = held;
    held.sort();
    assert_eq!(
        held,
        [
            ("holder".to_owned(), "node-a".to_owned()),
            ("token".to_owned(), grant.token.to_string())
        ]
    );
    let left = pttl(&mut raw, &store.held_key(name)).await;
    assert!(
        left > 0 && left <= 120_000,
        "the holder key expires with the TTL: {left} ms"
    );
    assert_eq!(
        get(&mut raw, &store.epoch_key(name)).await,
        Some("1".to_owned())
    );
    assert_eq!(
        pttl(&mut raw, &store.epoch_key(name)).await,
        -1,
        "the counter never expires"
    );

    assert!(store.release(&grant).await.expect("release"));
    assert_eq!(
        slice.keys().await,
        [store.epoch_key(name)],
        "the counter stays"
    );
    let next = granted(&store, name, "node-b").await;
    assert_eq!(next.token, FencingToken::new(2));
    assert_eq!(
        get(&mut raw, &store.epoch_key(name)).await,
        Some("2".to_owned())
    );
}

async fn pttl(raw: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(raw)
        .await
        .expect("PTTL")
}

async fn get(raw: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(raw)
        .await
        .expect("GET")
}

/// The serialized value of `key` (`DUMP`: its type and content, not its expiry).
async fn dump(raw: &mut MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP")
        .arg(key)
        .query_async(raw)
        .await
        .expect("DUMP")
}

/// Runs `command` (its name, then its arguments after the key) on `key`.
async fn write(raw: &mut MultiplexedConnection, command: &[&str], key: &str) {
    let mut cmd = redis::cmd(command[0]);
    cmd.arg(key).arg(&command[1..]);
    let _: redis::Value = cmd.query_async(raw).await.expect("write garbage");
}

/// `Malformed`, naming `key`, and not worth trying again.
fn assert_malformed(what: &str, error: &BoxError, key: &str) {
    let error = redis_error(error);
    assert!(
        matches!(error, RedisStoreError::Malformed { key: k, .. } if k == key),
        "{what}: expected Malformed at `{key}`, got {error:?}"
    );
    assert!(!error.is_retryable(), "{what}: {error} is not retryable");
}

/// A holder key or a counter the store did not write: every operation that reads it fails
/// with `Malformed`, and nothing is overwritten (nor a counter created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_store_did_not_write_give_typed_errors_and_are_left_as_they_were() {
    let Some(slice) = Slice::open("lease_garbage").await else {
        return;
    };
    let store = slice.stores.leases();
    let mut raw = slice.raw().await;
    let expiring = ["PEXPIRE", "60000"];
    let held_garbage: [(&str, &[&str], bool); 7] = [
        ("a string", &["SET", "node-a"], true),
        ("a list", &["RPUSH", "node-a"], true),
        (
            "a hash without a token",
            &["HSET", "holder", "node-a"],
            true,
        ),
        (
            "a token that is no number",
            &["HSET", "holder", "node-a", "token", "x"],
            true,
        ),
        ("token 0", &["HSET", "holder", "node-a", "token", "0"], true),
        (
            "another field",
            &["HSET", "holder", "node-a", "token", "3", "by", "me"],
            true,
        ),
        (
            "a lease without an expiry",
            &["HSET", "holder", "node-a", "token", "3"],
            false,
        ),
    ];
    for (i, (what, command, expires)) in held_garbage.into_iter().enumerate() {
        let name = format!("held-{i}");
        let held = store.held_key(&name);
        write(&mut raw, command, &held).await;
        if expires {
            write(&mut raw, &expiring, &held).await;
        }
        let before = dump(&mut raw, &held).await;
        // A grant the key would match, were it a lease.
        let grant = Grant {
            name: name.clone(),
            holder: "node-a".to_owned(),
            token: FencingToken::new(3),
            ttl: LONG,
        };
        let acquire = store
            .acquire(&name, "node-b", LONG)
            .await
            .expect_err("acquire");
        assert_malformed(&format!("acquire over {what}"), &acquire, &held);
        let renew = store.renew(&grant, LONG).await.expect_err("renew");
        assert_malformed(&format!("renew of {what}"), &renew, &held);
        let release = store.release(&grant).await.expect_err("release");
        assert_malformed(&format!("release of {what}"), &release, &held);
        let observe = store.observe(&name).await.expect_err("observe");
        assert_malformed(&format!("observe of {what}"), &observe, &held);
        assert_eq!(
            dump(&mut raw, &held).await,
            before,
            "{what} is left as it was"
        );
        assert_eq!(
            pttl(&mut raw, &held).await > 0,
            expires,
            "{what} keeps its expiry"
        );
        assert_eq!(
            get(&mut raw, &store.epoch_key(&name)).await,
            None,
            "no token counted"
        );
    }

    let counter_garbage: [(&str, &[&str]); 6] = [
        ("text", &["SET", "garbage"]),
        ("a negative count", &["SET", "-3"]),
        ("leading zeros", &["SET", "007"]),
        ("a list", &["RPUSH", "7"]),
        ("the last token there is", &["SET", "9223372036854775807"]),
        ("a count that expires", &["SET", "5", "PX", "60000"]),
    ];
    for (i, (what, command)) in counter_garbage.into_iter().enumerate() {
        let name = format!("epoch-{i}");
        let epoch = store.epoch_key(&name);
        write(&mut raw, command, &epoch).await;
        let before = dump(&mut raw, &epoch).await;
        let acquire = store
            .acquire(&name, "node-a", LONG)
            .await
            .expect_err("acquire");
        assert_malformed(&format!("acquire over {what}"), &acquire, &epoch);
        assert_eq!(
            dump(&mut raw, &epoch).await,
            before,
            "{what} is left as it was"
        );
        assert_eq!(
            store.observe(&name).await.expect("observe"),
            LeaseState::Vacant,
            "nothing granted over {what}"
        );
    }
}

/// Tries `attempt` until the server answers again (every failure meanwhile retryable).
async fn until_up<T>(attempt: impl AsyncFnMut() -> Result<T, BoxError>) {
    outage::until_up(attempt, |e| redis_error(e).is_retryable()).await;
}

/// While the server is down, every operation fails within its response timeout with an error
/// worth trying again; once it is back (with its append-only file), the store works again by
/// itself, the grant from before still runs, and the next grant's token is greater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably_and_tokens_survive_a_restart() {
    let Some((mut server, slice)) =
        outage::private("leases_server_down", Persistence::AppendOnly).await
    else {
        return;
    };
    let store = slice.stores.leases();
    let grant = granted(&store, "scheduler", "node-a").await;

    server.kill();
    for round in 0..3 {
        // Each fails within its response timeout; the bound only fails the test instead of
        // letting it hang.
        let errors = tokio::time::timeout(PATIENCE, async {
            [
                store
                    .acquire("scheduler", "node-b", LONG)
                    .await
                    .expect_err("acquire"),
                store.renew(&grant, LONG).await.expect_err("renew"),
                store.release(&grant).await.expect_err("release"),
                store.observe("scheduler").await.expect_err("observe"),
            ]
        })
        .await
        .expect("operations on a server that is down fail, they do not hang");
        for error in &errors {
            let error = redis_error(error);
            assert!(
                matches!(error, RedisStoreError::Command { .. }) && error.is_retryable(),
                "round {round}: a server that is down is worth trying again: {error:?}"
            );
        }
    }

    server.restart().await;
    until_up(async || store.observe("scheduler").await).await;
    assert!(
        store.renew(&grant, LONG).await.expect("renew"),
        "kept by the append-only file"
    );
    assert!(store.release(&grant).await.expect("release"));
    let next = granted(&store, "scheduler", "node-b").await;
    assert!(
        next.token > grant.token,
        "{next:?} after {grant:?}: the counter survived"
    );
}

/// What the documentation says of a server without data: a restart forgets the counters, so
/// tokens start again from 1, and the grant from before is lost, so it cannot renew or release
/// the new grant that carries its token (the holder's name is checked too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_starts_tokens_again_from_one() {
    let Some((mut server, slice)) =
        outage::private("leases_restart_without_data", Persistence::None).await
    else {
        return;
    };
    let store = slice.stores.leases();
    let first = granted(&store, "scheduler", "node-a").await;
    assert!(store.release(&first).await.expect("release"));
    let before = granted(&store, "scheduler", "node-a").await;
    assert_eq!(before.token, FencingToken::new(2));

    server.kill();
    server.restart().await;
    until_up(async || store.observe("scheduler").await).await;
    assert_eq!(
        store.observe("scheduler").await.expect("observe"),
        LeaseState::Vacant,
        "the running grant is gone"
    );
    let after = granted(&store, "scheduler", "node-b").await;
    assert_eq!(
        after.token,
        FencingToken::new(1),
        "tokens start again from 1"
    );
    assert!(store.release(&after).await.expect("release"));
    let again = granted(&store, "scheduler", "node-b").await;
    assert_eq!(
        again.token, before.token,
        "a token granted before the restart, granted again"
    );
    assert!(
        !store.renew(&before, LONG).await.expect("renew"),
        "another holder's grant"
    );
    assert!(!store.release(&before).await.expect("release"));
    assert!(store.renew(&again, LONG).await.expect("renew"));
}

/// The one of `elections` that leads, once exactly one does (and it is not `not`), with its
/// token.
async fn leader_among(elections: &[Elected], not: Option<usize>) -> (usize, FencingToken) {
    let leading = || {
        let leaders: Vec<_> = elections
            .iter()
            .enumerate()
            .filter_map(|(i, election)| election.leader().map(|leader| (i, leader.token())))
            .collect();
        match leaders[..] {
            [(i, token)] if Some(i) != not => Some((i, token)),
            _ => None,
        }
    };
    eventually("exactly one election leads", || async {
        leading().is_some()
    })
    .await;
    leading().expect("a leader (it just led)")
}

/// The holder and token `store` observes on `name`, failing if it is vacant.
async fn held_by(store: &RedisLeaseStore, name: &str) -> (String, FencingToken) {
    match store.observe(name).await.expect("observe") {
        LeaseState::Held { holder, token, .. } => (holder, token),
        LeaseState::Vacant => panic!("`{name}` has a leader, yet is observed vacant"),
    }
}

/// Three instances (three connections, as three processes) elect one leader through the Redis
/// store with a 1 s TTL; the store names it with its token, and the other two follow, having
/// seen it. When the leader stops, it releases the lease and one of the others leads with a
/// greater token; when all stop, the lease is vacant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_elects_one_of_three_instances_and_hands_over_on_stop() {
    let Some(slice) = Slice::open("lease_leadership").await else {
        return;
    };
    let mut elections = Vec::new();
    for i in 0..3 {
        let store = slice.connect().await.leases();
        elections.push(
            Leadership::new(store, "scheduler")
                .holder(format!("node-{i}"))
                .ttl(Duration::from_secs(1))
                .start(),
        );
    }
    let observer = slice.stores.leases();

    let (first, first_token) = leader_among(&elections, None).await;
    assert_eq!(
        held_by(&observer, "scheduler").await,
        (elections[first].holder().to_owned(), first_token)
    );
    eventually("the other two follow the leader they saw", || async {
        elections.iter().enumerate().all(|(i, election)| {
            i == first || election.role() == Role::Follower { leader_seen: true }
        })
    })
    .await;

    elections[first].stop().await;
    assert_eq!(elections[first].role(), Role::Stopped);
    assert!(elections[first].leader().is_none());
    let (second, second_token) = leader_among(&elections, Some(first)).await;
    assert!(
        second_token > first_token,
        "the next leader's token {second_token} is greater than {first_token}"
    );
    assert_eq!(
        held_by(&observer, "scheduler").await,
        (elections[second].holder().to_owned(), second_token)
    );

    for election in &elections {
        election.stop().await;
    }
    assert_eq!(
        observer.observe("scheduler").await.expect("observe"),
        LeaseState::Vacant,
        "the last leader released the lease as it stopped"
    );
}

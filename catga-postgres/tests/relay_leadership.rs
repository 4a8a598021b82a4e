//! An outbox relay that recovers only while it leads (`recover_while_leading`): it publishes
//! its own process's commits whether it leads or not, leaves the rows another process left
//! to the leader, and claims them as soon as it becomes the leader. Its own commits are
//! published while another process leads however they were committed: right after the
//! relay started, or by an outer transaction (an `Inbox` outside the `Outbox`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::cluster::Leadership;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::store::lease::LeaseStore;
use catga_core::store::memory_lease::MemoryLeaseStore;
use catga_core::testkit::eventually;
use catga_postgres::{Inbox, Outbox};
use common::Db;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub parcel: i64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: i64,
}

#[derive(Default)]
pub struct Effects {
    runs: AtomicU32,
}

pub mod shipping {
    use super::*;

    #[handler]
    pub async fn ship(cmd: Ship, ctx: &Context) -> Result<(), BoxError> {
        ctx.publish(Shipped { parcel: cmd.parcel })?;
        Ok(())
    }

    #[handler]
    impl Effects {
        async fn shipped(&self, _event: &Shipped) -> Result<(), BoxError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_claims_what_others_left_and_every_relay_publishes_its_own() {
    let Some(db) = Db::open("relay_leadership").await else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox
        .relay()
        .poll_interval(Duration::from_millis(50))
        .expect("valid");
    let app = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"))
        .layer(outbox)
        .build()
        .expect("builds");
    let leases = Arc::new(MemoryLeaseStore::new());
    // Another instance leads.
    let other = leases
        .acquire("outbox", "other", Duration::from_secs(60))
        .await
        .expect("memory")
        .expect("vacant");
    let election = Leadership::sharing(Arc::clone(&leases), "outbox")
        .ttl(Duration::from_secs(1))
        .start();
    let running = relay
        .recover_while_leading(&election)
        .start(app.clone())
        .await
        .expect("starts");

    app.send(Ship { parcel: 1 }).await.expect("shipped");
    eventually("this process's own row is published", || async {
        effects.runs.load(Ordering::SeqCst) == 1
    })
    .await;

    // A row another process committed and never published.
    db.execute(
        "INSERT INTO {schema}.outbox (message_id, ordering_key, name, kind, correlation_id, timestamp_ms, format, payload, headers) VALUES \
         (gen_random_uuid(), 'x', 'Shipped', 'event', gen_random_uuid(), 0, 'application/json', '{\"parcel\": 2}'::bytea, '[]')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        effects.runs.load(Ordering::SeqCst),
        1,
        "ten polls later, a follower has not claimed it"
    );
    assert_eq!(db.outbox_rows().await, 1);

    assert!(leases.release(&other).await.expect("memory"));
    eventually("the new leader claims the row left behind", || async {
        effects.runs.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(election.leader().is_some());
    // The relay removes the row in the round's commit, after publishing it.
    eventually("its row is removed", || async {
        db.outbox_rows().await == 0
    })
    .await;
    running.shutdown().await;
    election.stop().await;
}

/// Another instance holds the outbox lease for a minute; this one's election follows.
async fn another_leads() -> (Arc<MemoryLeaseStore>, catga_core::cluster::Elected) {
    let leases = Arc::new(MemoryLeaseStore::new());
    leases
        .acquire("outbox", "other", Duration::from_secs(60))
        .await
        .expect("memory")
        .expect("vacant");
    let election = Leadership::sharing(Arc::clone(&leases), "outbox")
        .ttl(Duration::from_secs(1))
        .start();
    (leases, election)
}

/// Sends `n` commands right after the relay started while another instance leads, and waits
/// for this process's relay to publish them. With `inbox_outside`, an inbox outside the outbox
/// owns the transaction: the rows are not handed over from memory, the commit's notification
/// names this process.
async fn own_commits_are_published(db: &Db, inbox_outside: bool, n: i64) {
    let effects = Arc::new(Effects::default());
    let outbox = Outbox::new(db.pool.clone(), &db.schema);
    let relay = outbox
        .relay()
        .poll_interval(Duration::from_millis(50))
        .expect("valid");
    let builder = Catga::builder()
        .state_arc(Arc::clone(&effects))
        .handlers(|h| h.is_in("shipping"));
    let (_leases, election) = another_leads().await;
    let running = if inbox_outside {
        let app = builder
            .layer(Inbox::new(db.pool.clone(), &db.schema))
            .layer(outbox)
            .build()
            .expect("builds");
        let running = relay.recover_while_leading(&election).start(app.clone());
        let running = running.await.expect("starts");
        for parcel in 1..=n {
            app.send(Ship { parcel }).await.expect("shipped");
        }
        running
    } else {
        let app = builder.layer(outbox).build().expect("builds");
        let running = relay.recover_while_leading(&election).start(app.clone());
        let running = running.await.expect("starts");
        for parcel in 1..=n {
            app.send(Ship { parcel }).await.expect("shipped");
        }
        running
    };
    eventually("this process's commits are published", || async {
        i64::from(effects.runs.load(Ordering::SeqCst)) == n
    })
    .await;
    // The relay removes the rows in the round's commit, after publishing them.
    eventually("their rows are removed", || async {
        db.outbox_rows().await == 0
    })
    .await;
    assert!(election.leader().is_none(), "another instance still leads");
    running.shutdown().await;
    election.stop().await;
}

// One thread: the relay's task cannot run between `start` returning and the send, so the
// send sees whatever `start` itself set up (a relay that took its hand-over queue only once
// its task ran left this row to the leader).
#[tokio::test(flavor = "current_thread")]
async fn a_send_right_after_start_is_published_by_its_own_relay_while_another_leads() {
    let Some(db) = Db::open("relay_leadership_start").await else {
        return;
    };
    own_commits_are_published(&db, false, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_an_outer_transaction_is_published_by_its_own_relay_while_another_leads() {
    let Some(db) = Db::open("relay_leadership_outer").await else {
        return;
    };
    own_commits_are_published(&db, true, 3).await;
}

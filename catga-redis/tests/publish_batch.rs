//! `Catga::publish_batch` through the Redis transport: the events in flight share the
//! transport's multiplexed connection, so a batch of 64 costs 64 `XADD`s in a few round trips,
//! where 64 publishes awaited one by one cost 64. Counted at the wire by a proxy.
//!
//! On one thread: the batch's 64 publishes are all queued on the connection before its
//! writer runs, so how many writes they take does not depend on how busy the machine is (on
//! several threads the writer may run between them and send them in more, smaller bursts: 3
//! round trips on a quiet machine, 25 once under CI load).

mod common;

use catga_core::prelude::*;
use common::Options;
use common::round_trips::RoundTrips;
use common::slice::Slice;

const BATCH: usize = 64;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restocked {
    pub sku: u64,
}

#[tokio::test]
async fn a_batch_of_64_events_is_64_xadds_in_a_few_round_trips() {
    let Some(slice) = Slice::open("publish_batch").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let options = Options {
        prefix: Some(slice.prefix.clone()),
        ..Options::for_tests()
    };
    let transport = common::transport::connect(proxy.url(), &options)
        .await
        .expect("connects through the proxy");
    let app = Catga::builder()
        .transport(transport)
        .service("stock")
        .batch_concurrency(BATCH)
        .handlers(|_| false)
        .build()
        .expect("builds");
    // The first publish of a name may do more than its `XADD` (nothing today); keep it out.
    app.publish(Restocked { sku: 0 }).await.expect("published");

    proxy.reset();
    let results = app
        .publish_batch((1..=BATCH as u64).map(|sku| Restocked { sku }))
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (batched_commands, batched) = (proxy.commands(), proxy.round_trips());
    let names = proxy.names();
    assert!(names.iter().all(|n| n == "XADD"), "{names:?}");

    proxy.reset();
    for sku in 1..=BATCH as u64 {
        app.publish(Restocked { sku }).await.expect("published");
    }
    let one_by_one = proxy.round_trips();
    eprintln!(
        "{BATCH} events: publish_batch {batched_commands} commands in {batched} round trips; \
         one by one {one_by_one} round trips"
    );
    assert_eq!(batched_commands, BATCH, "one XADD per event");
    assert_eq!(one_by_one, BATCH, "one round trip per event awaited alone");
    assert!(
        batched * 4 <= BATCH,
        "a batch of {BATCH} should take at most {} round trips, took {batched}",
        BATCH / 4
    );

    let mut raw = slice.raw().await;
    let stream = format!("{}:events:Restocked", slice.prefix);
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut raw)
        .await
        .expect("XLEN");
    assert_eq!(len, 1 + 2 * BATCH, "every event is on the stream");
}

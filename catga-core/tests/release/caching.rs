//! `Caching`: the single-flight loading slot goes however the load ends, and whoever waits
//! on it goes on.

use std::sync::Arc;
use std::time::Duration;

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use tokio::time::Instant;

use crate::common::{Act, ENDINGS, HELD, Lookup, Shared, end_as, runs};

fn lookup(key: &str, act: Act) -> Lookup {
    Lookup {
        key: key.to_string(),
        act,
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_go_on_when_the_loader_ends() {
    let caching = Arc::new(Caching::new());
    let app = Catga::builder()
        .layer(Shared(caching.clone()))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("caching-waiter-{ending:?}");
        let started = Instant::now();
        let loader = end_as(ending, |act, ctx| app.send_with(lookup(&key, act), ctx));
        let waiter = async {
            tokio::time::sleep(HELD / 2).await;
            let reply = app.send(lookup(&key, Act::Ok)).await;
            (reply, started.elapsed())
        };
        let ((), (reply, waited)) = tokio::join!(loader, waiter);
        assert_eq!(reply.unwrap(), 2, "{ending:?}: the waiter loaded it itself");
        assert_eq!(
            waited, HELD,
            "{ending:?}: the waiter went on when the loader ended"
        );
        // Its reply is cached: the next lookup does not run the handler.
        assert_eq!(app.send(lookup(&key, Act::Fail)).await.unwrap(), 2);
        assert_eq!(runs(&key), 2, "{ending:?}");
    }
    assert_eq!(caching.cached::<Lookup>(), ENDINGS.len());
}

#[tokio::test(start_paused = true)]
async fn a_load_cut_short_leaves_nothing_behind() {
    let caching = Arc::new(Caching::new());
    let app = Catga::builder()
        .layer(Shared(caching.clone()))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("caching-alone-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(lookup(&key, act), ctx)).await;
        let asked = Instant::now();
        assert_eq!(app.send(lookup(&key, Act::Ok)).await.unwrap(), 2);
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "{ending:?}: nothing to wait for"
        );
    }
    assert_eq!(caching.cached::<Lookup>(), ENDINGS.len());
}

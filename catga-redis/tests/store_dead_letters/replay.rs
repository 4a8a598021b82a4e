//! Replaying a dead letter kept in Redis through the application.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use catga_core::behavior::DeadLetter;
use catga_core::prelude::*;
use catga_core::store::dead_letter::DeadLetterStore;

use super::{RESPONSE_TIMEOUT, Slice, ids};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub cents: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the payment provider is down")]
pub struct ProviderDown;

/// Whether refunds fail (the provider is down).
#[derive(Default)]
pub struct Provider {
    down: AtomicBool,
}

#[handler]
impl Provider {
    async fn refund(&self, cmd: Refund) -> Result<u64, ProviderDown> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderDown);
        }
        Ok(cmd.cents + 1000)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_through_the_application() {
    let Some(slice) = Slice::open_within("dlq_replay", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let provider = Arc::new(Provider::default());
    provider.down.store(true, Ordering::SeqCst);
    let app = Catga::builder()
        .state_arc(provider.clone())
        .dead_letters(store.clone())
        .layer(DeadLetter::new(store.clone()))
        .build()
        .expect("the app builds");
    let ctx = Context::new().with_header("tenant", "acme");
    app.send_with(Refund { cents: 5 }, ctx)
        .await
        .expect_err("the provider is down");
    let letters = store.by_message("Refund", 10).await.expect("by_message");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.headers, [("tenant".to_string(), "acme".to_string())]);

    // Replayed while still failing: the letter is put back, one attempt more.
    app.replay_dead_letter(&store, letter.id)
        .await
        .expect_err("still down");
    let again = store.list(10).await.expect("list");
    assert_eq!(ids(&again), [letter.id]);
    assert_eq!(again[0].attempts, letter.attempts + 1);

    provider.down.store(false, Ordering::SeqCst);
    let reply = app
        .replay_dead_letter(&store, letter.id)
        .await
        .expect("replayed")
        .expect("a command's reply");
    assert_eq!(serde_json::from_slice::<u64>(&reply).expect("JSON"), 1005);
    assert_eq!(
        store.count().await.expect("count"),
        0,
        "replayed and removed"
    );
}

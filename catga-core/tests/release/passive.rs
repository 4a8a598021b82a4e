//! Behaviours that hold nothing across the handler, checked anyway: `Validation` (a check
//! before the call) and `Tracing` (a span entered only while the dispatch is polled, closed
//! when it ends, however it ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use catga_core::behavior::{Tracing, Validation};
use catga_core::prelude::*;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::common::{Act, ENDINGS, Job, code, end_as};

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

#[tokio::test(start_paused = true)]
async fn validation_holds_nothing_across_any_ending() {
    let app = Catga::builder().layer(Validation).build().unwrap();
    for ending in ENDINGS {
        let key = format!("validation-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        assert_eq!(
            code(&app.send(job(&key, Act::Ok)).await),
            "ok",
            "{ending:?}"
        );
    }
}

/// Counts spans opened and closed.
#[derive(Clone, Default)]
struct SpanCount {
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl<S> tracing_subscriber::Layer<S> for SpanCount
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: LayerContext<'_, S>) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn on_close(&self, _: Id, _: LayerContext<'_, S>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn tracing_spans_close_and_leave_the_thread_however_the_dispatch_ends() {
    let count = SpanCount::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(count.clone()));
    // Another test's thread may have cached a span's callsite as never enabled (it hit it
    // with no subscriber of its own): decide every callsite's interest again.
    tracing::callsite::rebuild_interest_cache();
    let app = Catga::builder().layer(Tracing).build().unwrap();
    for (n, ending) in (1..).zip(ENDINGS) {
        let key = format!("tracing-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        assert!(
            tracing::Span::current().is_none(),
            "{ending:?}: the dispatch span was left entered"
        );
        assert_eq!(
            count.opened.load(Ordering::SeqCst),
            n,
            "{ending:?}: one span each"
        );
        assert_eq!(
            count.closed.load(Ordering::SeqCst),
            n,
            "{ending:?}: the span closed"
        );
    }
}

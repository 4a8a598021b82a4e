//! Publishing: every handler runs, concurrently, every failure is reported, follow-up events
//! carry their cause; and `send_batch` and `publish_batch`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::prelude::*;
use uuid::Uuid;

/// Three handlers; the `fail` set says which of them fail.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub fail: Vec<String>,
}

/// Queued by the `Shipped` handlers before they decide to fail or not.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noted {
    pub by: String,
}

/// Six handlers: more than the four joined in place.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crowded;

/// Starts a chain: its handler publishes `Step { depth: 1 }`, whose handler publishes depth 2.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Begin;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub depth: u32,
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Square {
    pub n: u64,
}

/// An event with no handler at all.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ignored;

#[derive(Debug, thiserror::Error)]
#[error("{0} failed")]
pub struct Failed(String);

/// A `Step` handler's view: (depth, message id, correlation id, causation id).
type StepSeen = (u32, Uuid, Uuid, Option<Uuid>);

#[derive(Default)]
pub struct Log {
    noted: Mutex<Vec<String>>,
    crowd: Mutex<Vec<u32>>,
    steps: Mutex<Vec<StepSeen>>,
    begin: Mutex<Option<(Uuid, Uuid)>>,
    in_flight: Mutex<(u32, u32)>,
}

async fn ship(who: &str, event: &Shipped, ctx: &Context) -> Result<(), Failed> {
    ctx.publish(Noted { by: who.into() })
        .map_err(|_| Failed(who.into()))?;
    // Yield so the three handlers interleave in one task: the per-handler scope must still
    // attribute each queued event to the right one.
    tokio::task::yield_now().await;
    if event.fail.iter().any(|f| f == who) {
        return Err(Failed(who.into()));
    }
    Ok(())
}

#[handler]
async fn ship_a(event: &Shipped, ctx: &Context) -> Result<(), Failed> {
    ship("a", event, ctx).await
}
#[handler]
async fn ship_b(event: &Shipped, ctx: &Context) -> Result<(), Failed> {
    ship("b", event, ctx).await
}
#[handler]
async fn ship_c(event: Shipped, ctx: &Context) -> Result<(), Failed> {
    ship("c", &event, ctx).await
}

#[handler(allow(unwrap_in_handler))]
impl Log {
    async fn noted(&self, event: &Noted) -> Result<(), Failed> {
        self.noted.lock().unwrap().push(event.by.clone());
        Ok(())
    }

    async fn begin(&self, _cmd: Begin, ctx: &Context) -> Result<(), Failed> {
        *self.begin.lock().unwrap() = Some((ctx.message_id(), ctx.correlation_id()));
        ctx.publish(Step { depth: 1 })
            .map_err(|_| Failed("begin".into()))
    }

    async fn step(&self, event: &Step, ctx: &Context) -> Result<(), Failed> {
        self.steps.lock().unwrap().push((
            event.depth,
            ctx.message_id(),
            ctx.correlation_id(),
            ctx.causation_id(),
        ));
        if event.depth < 2 {
            ctx.publish(Step {
                depth: event.depth + 1,
            })
            .map_err(|_| Failed("step".into()))?;
        }
        Ok(())
    }

    async fn square(&self, q: Square) -> Result<u64, Failed> {
        {
            let mut n = self.in_flight.lock().unwrap();
            n.0 += 1;
            n.1 = n.1.max(n.0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.in_flight.lock().unwrap().0 -= 1;
        if q.n == 13 {
            return Err(Failed("13".into()));
        }
        Ok(q.n * q.n)
    }
}

macro_rules! crowd_handlers {
    ($($name:ident = $n:expr),*) => {$(
        #[handler(allow(unwrap_in_handler))]
        async fn $name(_event: &Crowded, log: &Log) -> Result<(), Failed> {
            tokio::task::yield_now().await;
            log.crowd.lock().unwrap().push($n);
            Ok(())
        }
    )*};
}
crowd_handlers!(
    crowd_1 = 1,
    crowd_2 = 2,
    crowd_3 = 3,
    crowd_4 = 4,
    crowd_5 = 5,
    crowd_6 = 6
);

fn app(log: &std::sync::Arc<Log>) -> Catga {
    Catga::builder()
        .state_arc(log.clone())
        .batch_concurrency(3)
        .build()
        .unwrap()
}

fn noted(log: &Log) -> Vec<String> {
    let mut seen = log.noted.lock().unwrap().clone();
    seen.sort();
    seen
}

#[tokio::test]
async fn every_failed_handler_is_reported_and_the_rest_are_kept() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    let err = app
        .publish(Shipped {
            fail: vec!["a".into(), "c".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish");
    let ErrorKind::Publish { event, failures } = err.kind() else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*event, "Shipped");
    let failed: HashSet<&str> = failures.iter().map(|f| f.handler).collect();
    assert_eq!(
        failed,
        HashSet::from(["publish::ship_a", "publish::ship_c"])
    );
    for failure in failures {
        assert!(failure.error.downcast_ref::<Failed>().is_some());
    }
    // Only the handler that succeeded has its queued event published.
    assert_eq!(noted(&log), vec!["b".to_string()]);
}

#[tokio::test]
async fn all_handlers_succeeding_publish_all_follow_ups() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    app.publish(Shipped { fail: vec![] }).await.unwrap();
    assert_eq!(noted(&log), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn more_than_four_handlers_all_run() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    app.publish(Crowded).await.unwrap();
    let mut crowd = log.crowd.lock().unwrap().clone();
    crowd.sort();
    assert_eq!(crowd, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn an_event_without_handlers_is_not_an_error() {
    let log = std::sync::Arc::new(Log::default());
    app(&log).publish(Ignored).await.unwrap();
}

#[tokio::test]
async fn follow_up_events_carry_correlation_and_causation() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    let conversation = Uuid::now_v7();
    app.send_with(Begin, Context::new().with_correlation_id(conversation))
        .await
        .unwrap();
    let (begin_id, begin_correlation) = log.begin.lock().unwrap().unwrap();
    assert_eq!(begin_correlation, conversation);
    let steps = log.steps.lock().unwrap().clone();
    assert_eq!(steps.len(), 2);
    let (depth1, id1, corr1, cause1) = steps[0];
    let (depth2, id2, corr2, cause2) = steps[1];
    assert_eq!((depth1, depth2), (1, 2));
    assert_eq!((corr1, corr2), (conversation, conversation));
    assert_eq!(cause1, Some(begin_id), "step 1 was caused by the command");
    assert_eq!(cause2, Some(id1), "step 2 was caused by step 1");
    assert!(id1 != begin_id && id2 != id1 && id2 != begin_id);
    assert_eq!(id1.get_version_num(), 7);
}

#[tokio::test(start_paused = true)]
async fn send_batch_keeps_input_order_and_bounds_concurrency() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    let results = app.send_batch((10..=16).map(|n| Square { n })).await;
    let squares: Vec<Result<u64, &str>> = results
        .iter()
        .map(|r| r.as_ref().map(|v| *v).map_err(|e| e.code()))
        .collect();
    assert_eq!(
        squares,
        vec![
            Ok(100),
            Ok(121),
            Ok(144),
            Err("handler"),
            Ok(196),
            Ok(225),
            Ok(256)
        ]
    );
    assert_eq!(log.in_flight.lock().unwrap().1, 3, "batch_concurrency(3)");
}

#[tokio::test]
async fn publish_batch_returns_each_events_outcome_in_input_order() {
    let log = std::sync::Arc::new(Log::default());
    let app = app(&log);
    let fail = |who: &[&str]| Shipped {
        fail: who.iter().map(|w| (*w).to_string()).collect(),
    };
    let results = app
        .publish_batch([fail(&[]), fail(&["b"]), fail(&[]), fail(&["a", "c"])])
        .await;
    let failed: Vec<Option<Vec<String>>> = results
        .iter()
        .map(|r| {
            r.as_ref().err().map(|e| match e.kind() {
                ErrorKind::Publish { failures, .. } => {
                    let mut who: Vec<String> =
                        failures.iter().map(|f| f.handler.to_string()).collect();
                    who.sort();
                    who
                }
                other => panic!("a publish error, got {other:?}"),
            })
        })
        .collect();
    assert_eq!(failed.len(), 4);
    assert!(failed[0].is_none() && failed[2].is_none());
    assert_eq!(failed[1].as_ref().map(Vec::len), Some(1), "{failed:?}");
    assert_eq!(failed[3].as_ref().map(Vec::len), Some(2), "{failed:?}");
    // Every handler of every event ran; what a failing one queued was dropped with it:
    // 3 + 2 + 3 + 1 follow-up events.
    assert_eq!(log.noted.lock().unwrap().len(), 9);
}

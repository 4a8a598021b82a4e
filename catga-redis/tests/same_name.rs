//! Two live instances given one `instance` name would share a consumer and take each other's
//! pending entries: the second to serve logs a warning naming the connection it found.

mod common;

use std::convert::Infallible;

use catga_core::prelude::*;
use catga_core::testkit::logs;
use common::Options;
use common::slice::Slice;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counted;

pub mod counting {
    use super::*;

    #[handler]
    async fn on_counted(_event: &Counted) -> Result<(), Infallible> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_name_is_warned_about() {
    let logs = logs::capture();
    let Some(slice) = Slice::open("same_name").await else {
        return;
    };
    let options = Options {
        prefix: Some(slice.prefix.clone()),
        instance: Some("same".to_string()),
        ..Options::for_tests()
    };
    let app = || async {
        Catga::builder()
            .transport(
                common::transport::connect(slice.url.clone(), &options)
                    .await
                    .expect("connects"),
            )
            .service("counting")
            .handlers(|h| h.is_in("counting"))
            .build()
            .expect("builds")
    };
    let (first, second) = (app().await, app().await);
    let serving = first.serve().await.expect("serves");
    let warning = format!("catga:{}:counting:same:reader", slice.prefix);
    catga_core::testkit::eventually("the first instance's reader is connected", || async {
        let mut raw = slice.raw().await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw)
            .await
            .expect("CLIENT LIST");
        list.contains(&warning)
    })
    .await;
    let warned = |text: &str| {
        text.lines()
            .any(|line| line.contains("WARN") && line.contains(&warning))
    };
    assert!(!warned(&logs.text()), "the first instance is alone");

    let again = second.serve().await.expect("serves");
    assert!(
        warned(&logs.text()),
        "the second instance warns:\n{}",
        logs.text()
    );
    again.shutdown().await;
    serving.shutdown().await;
}

//! Running any work on the leader only: a retention sweep, dead-consumer clean-up, saga
//! time-outs, the recovery of an outbox.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::leadership::{Elected, Leader};

impl Elected {
    /// Runs `work` each time this instance becomes the leader, handing it the leadership (its
    /// [`token`](Leader::token) for fenced writes), and drops the running `work` as soon as
    /// the leadership ends ([`Leader::lost`]) or the returned handle is stopped. `work` is
    /// started again at the next leadership. Work that writes should check
    /// [`Leader::is_held`] before each write and pass the token along: dropping the future is
    /// prompt, but a write already sent is not taken back, which is what the token is for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use catga_core::cluster::Leadership;
    /// use catga_core::store::memory_lease::MemoryLeaseStore;
    ///
    /// # async fn demo() {
    /// let election = Leadership::new(MemoryLeaseStore::new(), "retention").start();
    /// let sweeping = election.run_while_leading(|leader| async move {
    ///     while leader.is_held() {
    ///         // purge what is older than 30 days, passing leader.token() to the store
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///     }
    /// });
    /// # sweeping.stop().await;
    /// # }
    /// ```
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn run_while_leading<F, Fut>(&self, work: F) -> Singleton
    where
        F: Fn(Leader) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let mut leaders = self.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let leader = leaders.borrow_and_update().clone();
                if let Some(leader) = leader.filter(Leader::is_held) {
                    let lost = leader.clone();
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        () = lost.lost() => {}
                        () = work(leader) => {}
                    }
                }
                tokio::select! {
                    () = stopped.cancelled() => return,
                    changed = leaders.changed() => if changed.is_err() { return },
                }
            }
        });
        Singleton { stop, task }
    }
}

/// Work running on the leader (see [`Elected::run_while_leading`]). Dropping it stops it too.
#[derive(Debug)]
#[must_use = "dropping a `Singleton` stops its work; keep it while the instance runs"]
pub struct Singleton {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Singleton {
    /// Stops the work (dropping it where it is) and returns once its task ended.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Singleton {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

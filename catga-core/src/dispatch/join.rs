//! Joining a publish's handler futures where they are pinned.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Polls every future where it is pinned until all are done, handing each output to `done`
/// (with the future's index) as it arrives. Unlike `futures::join!`, nothing is moved: `join!`
/// keeps each future in a `MaybeDone` and moves the whole value out to take its output.
pub(crate) async fn join_in_place<F: Future>(
    futures: &mut [Pin<&mut F>],
    mut done: impl FnMut(usize, F::Output),
) {
    // Callers pass at most four futures; the set of pending ones is a bitmask.
    debug_assert!(futures.len() < 64);
    let mut pending: u64 = (1u64 << futures.len()) - 1;
    std::future::poll_fn(|cx| {
        for (i, future) in futures.iter_mut().enumerate() {
            if pending & (1 << i) != 0
                && let Poll::Ready(output) = future.as_mut().poll(cx)
            {
                pending &= !(1 << i);
                done(i, output);
            }
        }
        if pending == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The scope tag of a publish's `index`-th handler (0 means "no handler"): what the handler
/// queues with `ctx.publish` is tagged with it, so a failed handler's events are dropped
/// without touching its siblings'.
pub(crate) fn scope_of(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

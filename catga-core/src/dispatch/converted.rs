//! A handler's future with its result converted: what `#[handler]`'s generated `call`
//! returns.

use std::pin::Pin;
use std::task::{Context, Poll};

/// The user's handler future `F`, its output converted by `C` (the reply is kept, the error
/// becomes a catga [`Error`](crate::Error)).
///
/// Hand-written rather than an `async` block around the handler's call: a block would be a
/// second state machine per handler, with its own poll function, drop glue and debug info to
/// compile, for nothing but one conversion at the end. `C` is the generated non-capturing
/// closure, so it takes no space.
pub struct Converted<F, C> {
    future: F,
    convert: C,
}

impl<F: Future, C> Converted<F, C> {
    /// `future`, whose output `convert` turns into the handler's result.
    ///
    /// `F: Send` here, on the handler's own future, so a handler that holds a non-`Send` value
    /// across an `.await` is told so about its future, not about this wrapper.
    #[inline(always)]
    pub fn new<T>(future: F, convert: C) -> Self
    where
        F: Send,
        C: Fn(F::Output) -> T,
    {
        Converted { future, convert }
    }
}

impl<F: Future, C: Fn(F::Output) -> T, T> Future for Converted<F, C> {
    type Output = T;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: `future` is structurally pinned: reached only through this projection, never
        // moved, and `Converted` has no `Drop` impl; `convert` is never pinned. `Converted` is
        // `Unpin` exactly when both fields are (auto trait).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: the pinned projection of `future`, as above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        // A `match`, not `Poll::map`: `map` and the closure's `FnOnce` shim would be two more
        // functions to compile per handler.
        match future.poll(cx) {
            Poll::Ready(output) => Poll::Ready((this.convert)(output)),
            Poll::Pending => Poll::Pending,
        }
    }
}

//! Inline storage for handler futures.
//!
//! The default dispatch path erases the handler's type (handlers are found at run time through
//! `inventory`), but the future an `async fn` handler returns is usually small. It is moved
//! into a fixed buffer inside the `send` future instead of a `Box`, so a dispatch allocates
//! nothing. A future larger than [`INLINE_FUTURE_BYTES`] (or aligned to more than 8 bytes) is
//! boxed instead: it still works, at the cost of one allocation per call, and a `debug` event
//! names the handler the first time it happens.

/// How many bytes of handler future are stored without allocating.
pub const INLINE_FUTURE_BYTES: usize = 512;

/// A type-erased future stored inline when it fits.
pub(crate) type InlineFuture<'a, T> = stackfuture::StackFuture<'a, T, INLINE_FUTURE_BYTES>;

/// Whether a future of type `F` fits the inline buffer.
pub(crate) const fn fits<F>() -> bool {
    size_of::<F>() <= INLINE_FUTURE_BYTES && align_of::<F>() <= align_of::<InlineFuture<'_, ()>>()
}

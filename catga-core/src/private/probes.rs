//! The autoref-specialisation probes generated code calls with concrete types: each picks a
//! capability's impl when the type has it and a fallback otherwise (`(&&Probe(&v)).catga_*()`),
//! and the boxing of a handler's error the best way its type allows. Generated code brings them
//! all into scope with one `use __catga::probes::in_scope::*;`.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;

use crate::error::{BoxError, Error};
use crate::validate::ValidationErrors;

/// Every probe trait, imported anonymously: generated code's `use __catga::probes::in_scope::*;`
/// brings their methods into scope without a name that could shadow one of the user's types.
pub mod in_scope {
    pub use super::{
        NoCacheKey as _, NoClone as _, NoErrorCode as _, NoIdempotencyKey as _, NoRetryable as _,
        NoValidate as _, ViaCacheKey as _, ViaClone as _, ViaErrorCode as _,
        ViaIdempotencyKey as _, ViaInto as _, ViaNothing as _, ViaRetryable as _, ViaStdError as _,
        ViaValidate as _, ViaWrapper as _,
    };
}

// ---- autoref specialisation probes, used with concrete types in generated code ----

/// `(&&Probe(&value)).catga_*()` picks the capability's impl when the type has it and the
/// fallback otherwise. Only meaningful where the type is concrete (generated code).
pub struct Probe<'a, T>(pub &'a T);

pub trait ViaClone<T> {
    fn catga_clone(&self) -> Option<T>;
}
impl<T: Clone> ViaClone<T> for &Probe<'_, T> {
    #[inline]
    fn catga_clone(&self) -> Option<T> {
        Some(self.0.clone())
    }
}
pub trait NoClone<T> {
    fn catga_clone(&self) -> Option<T>;
}
impl<T> NoClone<T> for Probe<'_, T> {
    #[inline]
    fn catga_clone(&self) -> Option<T> {
        None
    }
}

pub trait ViaValidate {
    fn catga_validate(&self) -> Result<(), ValidationErrors>;
}
impl<T: crate::validate::Validate> ViaValidate for &Probe<'_, T> {
    #[inline]
    fn catga_validate(&self) -> Result<(), ValidationErrors> {
        self.0.validate()
    }
}
pub trait NoValidate {
    fn catga_validate(&self) -> Result<(), ValidationErrors>;
}
impl<T> NoValidate for Probe<'_, T> {
    #[inline]
    fn catga_validate(&self) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

pub trait ViaRetryable {
    fn catga_retryable(&self) -> bool;
}
impl<T: crate::error::Retryable> ViaRetryable for &Probe<'_, T> {
    #[inline]
    fn catga_retryable(&self) -> bool {
        self.0.is_retryable()
    }
}
pub trait NoRetryable {
    fn catga_retryable(&self) -> bool;
}
impl<T> NoRetryable for Probe<'_, T> {
    #[inline]
    fn catga_retryable(&self) -> bool {
        false
    }
}

pub trait ViaErrorCode {
    fn catga_error_code(&self) -> Option<(&'static str, Option<serde_json::Value>)>;
}
impl<T: crate::error::ErrorCode> ViaErrorCode for &Probe<'_, T> {
    #[inline]
    fn catga_error_code(&self) -> Option<(&'static str, Option<serde_json::Value>)> {
        Some((self.0.code(), self.0.details()))
    }
}
pub trait NoErrorCode {
    fn catga_error_code(&self) -> Option<(&'static str, Option<serde_json::Value>)>;
}
impl<T> NoErrorCode for Probe<'_, T> {
    #[inline]
    fn catga_error_code(&self) -> Option<(&'static str, Option<serde_json::Value>)> {
        None
    }
}

pub trait ViaIdempotencyKey {
    fn catga_idempotency_key(&self) -> Option<String>;
}
impl<T: crate::behavior::IdempotencyKey> ViaIdempotencyKey for &Probe<'_, T> {
    #[inline]
    fn catga_idempotency_key(&self) -> Option<String> {
        Some(self.0.idempotency_key())
    }
}
pub trait NoIdempotencyKey {
    fn catga_idempotency_key(&self) -> Option<String>;
}
impl<T> NoIdempotencyKey for Probe<'_, T> {
    #[inline]
    fn catga_idempotency_key(&self) -> Option<String> {
        None
    }
}

pub trait ViaCacheKey {
    fn catga_cache_key(&self) -> Option<String>;
}
impl<T: crate::behavior::CacheKey> ViaCacheKey for &Probe<'_, T> {
    #[inline]
    fn catga_cache_key(&self) -> Option<String> {
        Some(self.0.cache_key())
    }
}
pub trait NoCacheKey {
    fn catga_cache_key(&self) -> Option<String>;
}
impl<T> NoCacheKey for Probe<'_, T> {
    #[inline]
    fn catga_cache_key(&self) -> Option<String> {
        None
    }
}

// ---- a handler's error, boxed the best way its type allows ----

/// A handler's error, owned, for `(&&&ErrorSlot::new(e)).catga_box_error()`: the first impl
/// that applies to the concrete type wins (generated code only).
pub struct ErrorSlot<T>(Cell<Option<T>>);

impl<T> ErrorSlot<T> {
    #[inline]
    pub fn new(error: T) -> Self {
        ErrorSlot(Cell::new(Some(error)))
    }
}

/// What a slot held: each is taken once, by the one conversion method resolution picked.
fn taken<T>(slot: &ErrorSlot<T>, box_it: impl FnOnce(T) -> BoxError) -> BoxError {
    match slot.0.take() {
        Some(error) => box_it(error),
        None => Box::new(AlreadyTaken),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the handler's error was already taken")]
struct AlreadyTaken;

/// A `std::error::Error`: boxed as it is, so `Error::downcast_ref` finds it.
pub trait ViaStdError {
    fn catga_box_error(&self) -> BoxError;
}
impl<T: std::error::Error + Send + Sync + 'static> ViaStdError for &&&ErrorSlot<T> {
    #[inline]
    fn catga_box_error(&self) -> BoxError {
        taken(self, |e| Box::new(e))
    }
}

/// A type that dereferences to the error it wraps (`anyhow::Error`, `eyre::Report`,
/// `Box<dyn Error + Send + Sync>`): kept whole, with the wrapped error as its source, so
/// `Error::downcast_ref` finds that error (and anything under it) along the source chain.
pub trait ViaWrapper {
    fn catga_box_error(&self) -> BoxError;
}
impl<T> ViaWrapper for &&ErrorSlot<T>
where
    T: Deref<Target = dyn std::error::Error + Send + Sync + 'static>
        + fmt::Display
        + fmt::Debug
        + Send
        + Sync
        + 'static,
{
    #[inline]
    fn catga_box_error(&self) -> BoxError {
        taken(self, |e| Box::new(Wrapper(e)))
    }
}

/// Anything else that converts into a boxed error (`String`, `&str`).
pub trait ViaInto {
    fn catga_box_error(&self) -> BoxError;
}
impl<T: Into<BoxError>> ViaInto for &ErrorSlot<T> {
    #[inline]
    fn catga_box_error(&self) -> BoxError {
        taken(self, Into::into)
    }
}

/// Any other type: only in a program that does not compile (the handler's return type is
/// already reported, CATGA004); this keeps that the only error.
pub trait ViaNothing {
    fn catga_box_error(&self) -> BoxError;
}
impl<T> ViaNothing for ErrorSlot<T> {
    #[inline]
    fn catga_box_error(&self) -> BoxError {
        taken(self, |_| Box::new(AlreadyTaken))
    }
}

/// See [`ViaWrapper`]: shows as the wrapper does, and offers what it wraps as the source.
struct Wrapper<T>(T);

impl<T: fmt::Display> fmt::Display for Wrapper<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` on anyhow/eyre prints the whole context chain on one line.
        write!(f, "{:#}", self.0)
    }
}

impl<T: fmt::Debug> fmt::Debug for Wrapper<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> std::error::Error for Wrapper<T>
where
    T: Deref<Target = dyn std::error::Error + Send + Sync + 'static> + fmt::Display + fmt::Debug,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whether a boxed handler error carries a catga [`Error`] somewhere along its source chain
/// that is retryable (a dispatch the handler propagated with `?` through `anyhow`).
pub fn inner_retryable(error: &BoxError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = current {
        if let Some(own) = e.downcast_ref::<Error>() {
            return own.is_retryable();
        }
        current = e.source();
    }
    false
}

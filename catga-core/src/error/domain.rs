//! What a handler's own error type can say about itself: whether trying again may help
//! ([`Retryable`]) and which stable code it has ([`ErrorCode`]). `#[handler]` picks both up
//! from the error type, when it implements them, as it wraps the error in [`Error`](super::Error).

/// Marks a handler error type as transient, so [`Retry`](crate::behavior::Retry) tries again.
///
/// Handler errors are not retryable unless their type implements this trait and returns
/// `true`; the handler attribute picks the implementation up automatically.
///
/// ```
/// use catga_core::Retryable;
///
/// #[derive(Debug, thiserror::Error)]
/// enum DbError {
///     #[error("connection lost")]
///     ConnectionLost,
///     #[error("constraint violated")]
///     Constraint,
/// }
///
/// impl Retryable for DbError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, DbError::ConnectionLost)
///     }
/// }
/// ```
pub trait Retryable {
    /// Whether the same message may succeed if handled again.
    fn is_retryable(&self) -> bool;
}

/// Gives a handler error type a stable code, and optionally structured details, that read
/// the same in the caller's process whether the handler ran there or in another process.
///
/// Without it a handler's error has the code `handler`; with it, [`Error::code`] is the
/// type's own code, and [`Error::details`] its details, here and across every transport.
/// The handler attribute picks the implementation up automatically, like [`Retryable`]. The
/// error itself (its type, for [`Error::downcast_ref`]) does not cross a transport: its code,
/// its text, its details and whether it is retryable do.
///
/// A code is an identifier of your domain: 1 to 64 ASCII letters, digits, `_`, `.`, `-`,
/// `:` or `/`, such as `orders.out_of_stock`. catga's own codes (the table on
/// [`Error::code`], and `remote`, `envelope`, `exhausted`) are reserved: a code that is
/// reserved or not of that form is reported as `handler` (and logged), so a domain error can
/// never pass for a timeout or a validation failure.
///
/// ```
/// use catga_core::{Error, ErrorCode};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("only {available} left of item {item}")]
/// struct OutOfStock { item: u64, available: u32 }
///
/// impl ErrorCode for OutOfStock {
///     fn code(&self) -> &'static str {
///         "orders.out_of_stock"
///     }
///     fn details(&self) -> Option<serde_json::Value> {
///         Some(serde_json::json!({ "item": self.item, "available": self.available }))
///     }
/// }
///
/// let err = Error::from_handler_coded("PlaceOrder", "orders::place", OutOfStock { item: 7, available: 2 });
/// assert_eq!(err.code(), "orders.out_of_stock");
/// assert_eq!(err.details().unwrap()["available"], 2);
/// ```
///
/// [`Error::code`]: super::Error::code
/// [`Error::details`]: super::Error::details
/// [`Error::downcast_ref`]: super::Error::downcast_ref
pub trait ErrorCode {
    /// The error's stable code, e.g. `orders.out_of_stock`.
    fn code(&self) -> &'static str;

    /// Structured details a caller can act on (the item out of stock, the quantity left).
    /// They are encoded as JSON when the error crosses a transport; `None` by default.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The codes catga gives its own errors and failures: a domain code may not be one of them.
const RESERVED: &[&str] = &[
    "no_handler",
    "unknown_message",
    "wrong_kind",
    "internal",
    "validation",
    "timeout",
    "cancelled",
    "codec",
    "handler",
    "publish",
    "too_many_events",
    "circuit_open",
    "rate_limited",
    "overloaded",
    "store",
    "transport",
    "remote",
    "panic",
    "in_doubt",
    "envelope",
    "exhausted",
];

/// Whether `code` is one catga gives its own errors (see [`Error::code`](crate::Error::code)).
pub(crate) fn is_reserved(code: &str) -> bool {
    RESERVED.contains(&code)
}

/// The longest code, in bytes.
pub(crate) const MAX_CODE: usize = 64;

/// Whether `code` has the form of a code (domain or catga's own).
pub(crate) fn well_formed(code: &str) -> bool {
    (1..=MAX_CODE).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'/'))
}

/// The code a handler error declared, if it may be used as one; `handler` otherwise.
pub(crate) fn domain_code(declared: &'static str, handler: &str) -> &'static str {
    if well_formed(declared) && !RESERVED.contains(&declared) || declared == "handler" {
        return declared;
    }
    tracing::warn!(target: "catga", handler, code = %declared.escape_debug(),
        "a handler error declared a code that is reserved or not of the form `[A-Za-z0-9_.:/-]{{1,64}}`; it is reported as `handler`");
    "handler"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_code_is_an_identifier_that_is_not_catgas() {
        assert_eq!(
            domain_code("orders.out_of_stock", "h"),
            "orders.out_of_stock"
        );
        assert_eq!(
            domain_code("billing/card-declined:2", "h"),
            "billing/card-declined:2"
        );
        for bad in [
            "timeout",
            "validation",
            "panic",
            "",
            "out of stock",
            "a\nb",
            "é",
        ] {
            assert_eq!(domain_code(bad, "h"), "handler", "{bad:?}");
        }
        let long: &'static str = Box::leak("x".repeat(MAX_CODE + 1).into_boxed_str());
        assert_eq!(domain_code(long, "h"), "handler");
        assert_eq!(domain_code(&long[1..], "h").len(), MAX_CODE);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("out of stock")]
    struct OutOfStock;

    impl ErrorCode for OutOfStock {
        fn code(&self) -> &'static str {
            "out_of_stock"
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("plain")]
    struct Plain;

    #[test]
    fn only_a_code_of_the_handlers_own_is_a_domain_error() {
        use crate::error::{Error, ErrorKind};
        assert!(Error::from_handler_coded("M", "h", OutOfStock).is_domain());
        assert!(!Error::from_handler("M", "h", Plain).is_domain());
        let timeout: Error = ErrorKind::Timeout {
            message: "M",
            after: None,
        }
        .into();
        assert!(!timeout.is_domain());
    }
}

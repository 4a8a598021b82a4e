//! A failed request's reply: the handling side's [`Error`] as it crosses a transport.
//!
//! A [`RemoteFailure`] carries what the caller needs to read the error as if the handler had
//! run in its own process: the code ([`Error::code`], a domain error's own code included),
//! whether retrying may help and whether it may have taken effect, the validation field
//! errors, a domain error's details, the error's text and the service that failed. Every
//! transport carries it as one JSON document ([`RemoteFailure::encode`]) and reads it back
//! with [`RemoteFailure::decode`], which bounds what it reads: a reply is bytes off the wire,
//! and a malformed or oversized one is a typed [`ReplyError`], never a panic.

use serde::{Deserialize, Serialize};

use super::{Error, MAX_CODE, well_formed};
use crate::validate::ValidationErrors;

/// The most bytes of a failure document read back ([`RemoteFailure::decode`]); what
/// [`RemoteFailure::encode`] writes always fits.
pub const MAX_FAILURE_BYTES: usize = 64 * 1024;

/// The longest error text sent; a longer one is cut (at a character boundary) and marked.
const MAX_MESSAGE: usize = 4 * 1024;

/// A failure as it crosses a transport. Build one with [`RemoteFailure::of`] (from an
/// [`Error`]) or [`RemoteFailure::new`] (a transport's own refusal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteFailure {
    /// The error's stable code ([`Error::code`]): catga's, or a domain error's own.
    pub code: String,
    /// The error, as displayed where it happened.
    pub message: String,
    /// Whether retrying may help ([`Error::is_retryable`]).
    pub retryable: bool,
    /// Whether the request may have taken effect ([`Error::is_in_doubt`]).
    #[serde(default)]
    pub in_doubt: bool,
    /// The service whose handler (or pipeline) failed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Every field error, for a validation failure ([`Error::validation_errors`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationErrors>,
    /// A domain error's structured details ([`Error::details`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Why a failure reply could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The document is larger than [`MAX_FAILURE_BYTES`]; it was not decoded.
    #[error("a failure reply of {size} bytes is larger than the {limit} bytes read")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a failure document.
    #[error("a failure reply is not a catga failure document")]
    Malformed(#[source] serde_json::Error),
    /// The code is not of the form of a code (see [`ErrorCode`](crate::ErrorCode)).
    #[error("a failure reply's code `{0}` is not a code")]
    Code(String),
}

impl RemoteFailure {
    /// The failure of `error`, to send back: everything [`Error`]'s accessors read. A failure
    /// that itself came from another process is passed on as it came (its code, its service).
    pub fn of(error: &Error) -> Self {
        if let Some(remote) = error.remote() {
            return remote.clone();
        }
        RemoteFailure {
            code: error.code().to_string(),
            message: cut(error.to_string(), MAX_MESSAGE),
            retryable: error.is_retryable(),
            in_doubt: error.is_in_doubt(),
            service: None,
            validation: error.validation_errors().cloned(),
            details: error.details().cloned(),
        }
    }

    /// A failure with `code` and `message`, neither retryable nor in doubt: what a transport
    /// answers for a request it refused without running it.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteFailure {
            code: code.into(),
            message: cut(message.into(), MAX_MESSAGE),
            retryable: false,
            in_doubt: false,
            service: None,
            validation: None,
            details: None,
        }
    }

    /// Says whether the request may have taken effect (it ran, but its reply was lost).
    pub fn with_in_doubt(mut self, in_doubt: bool) -> Self {
        self.in_doubt = in_doubt;
        self
    }

    /// Names the service that failed, unless the failure already names one (it came from
    /// further away).
    pub fn with_service(mut self, service: &str) -> Self {
        if self.service.is_none() {
            self.service = Some(service.to_string());
        }
        self
    }

    /// The failure as one JSON document of at most [`MAX_FAILURE_BYTES`]. What does not fit
    /// is left out, least needed first: the details, then the last field errors, then the
    /// text beyond a few hundred bytes; the text says so.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = to_json(self);
        if bytes.len() <= MAX_FAILURE_BYTES {
            return bytes;
        }
        let mut slim = self.clone();
        let mut notes = String::new();
        if slim.details.take().is_some() {
            notes.push_str(" (details too large to send)");
            slim.message = format!("{}{notes}", self.message);
            bytes = to_json(&slim);
            if bytes.len() <= MAX_FAILURE_BYTES {
                return bytes;
            }
        }
        // Then as many field errors as fit, each cut to a sensible length, fewer and fewer
        // until the document fits (text that must be escaped takes up to six times its size).
        let fields = slim.validation.take();
        let all = fields.as_ref().map_or(0, ValidationErrors::len);
        // Each entry takes at least 30 bytes: more than this many cannot fit.
        let mut n = all.min(MAX_FAILURE_BYTES / 32);
        while bytes.len() > MAX_FAILURE_BYTES {
            slim.validation = fields.as_ref().map(|fields| {
                let mut kept = ValidationErrors::new();
                for e in fields.errors().iter().take(n) {
                    kept.add(
                        cut(e.field.to_string(), 256),
                        cut(e.message.to_string(), 512),
                    );
                }
                kept
            });
            let left = if n < all {
                format!(" ({} more field errors not sent)", all - n)
            } else {
                String::new()
            };
            slim.message = format!("{}{notes}{left}", cut(self.message.clone(), 512));
            slim.service = slim.service.map(|s| cut(s, 256));
            bytes = to_json(&slim);
            if n == 0 {
                break;
            }
            n /= 2;
        }
        bytes
    }

    /// Reads a failure document written by [`RemoteFailure::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ReplyError> {
        if bytes.len() > MAX_FAILURE_BYTES {
            return Err(ReplyError::TooLarge {
                size: bytes.len(),
                limit: MAX_FAILURE_BYTES,
            });
        }
        // `serde_json` refuses more than 127 nested containers (see `codec::MAX_DEPTH`).
        let failure: RemoteFailure =
            serde_json::from_slice(bytes).map_err(ReplyError::Malformed)?;
        if !well_formed(&failure.code) {
            return Err(ReplyError::Code(
                cut(failure.code, MAX_CODE).escape_debug().to_string(),
            ));
        }
        Ok(failure)
    }
}

/// `text`, cut to at most `limit` bytes (and marked) if longer.
fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

fn to_json(failure: &RemoteFailure) -> Vec<u8> {
    // Strings, booleans and a `serde_json::Value` cannot fail to serialise; should it ever,
    // the caller still gets the code.
    serde_json::to_vec(failure).unwrap_or_else(|_| {
        format!(
            r#"{{"code":"{}","message":"the failure could not be encoded","retryable":false,"in_doubt":{}}}"#,
            if well_formed(&failure.code) { failure.code.as_str() } else { "handler" },
            failure.in_doubt
        )
        .into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    fn validation(n: usize, len: usize) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        for i in 0..n {
            errors.add(format!("field{i}"), "x".repeat(len));
        }
        errors
    }

    #[test]
    fn a_validation_failure_round_trips_with_every_field() {
        let error = Error::from(ErrorKind::Validation {
            message: "PlaceOrder",
            errors: validation(3, 10),
        });
        let failure = RemoteFailure::of(&error).with_service("orders");
        let back = RemoteFailure::decode(&failure.encode()).unwrap();
        assert_eq!(back, failure);
        assert_eq!(back.validation.as_ref().map(ValidationErrors::len), Some(3));
        assert_eq!(back.code, "validation");
        assert!(!back.retryable && !back.in_doubt);
    }

    #[test]
    fn what_is_not_a_failure_is_a_typed_error() {
        for bytes in [
            &b""[..],
            b"null",
            b"{}",
            b"{\"code\":\"handler\"}",
            b"{\"code\":\"a b\",\"message\":\"\",\"retryable\":false}",
            b"{\"code\":\"\",\"message\":\"\",\"retryable\":false}",
            b"\xff\xfe",
        ] {
            assert!(RemoteFailure::decode(bytes).is_err(), "{bytes:?}");
        }
        let deep = format!(
            r#"{{"code":"x","message":"","retryable":false,"details":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(
            RemoteFailure::decode(deep.as_bytes()),
            Err(ReplyError::Malformed(_))
        ));
        let large = vec![b' '; MAX_FAILURE_BYTES + 1];
        assert!(matches!(
            RemoteFailure::decode(&large),
            Err(ReplyError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_oversized_failure_is_cut_to_fit_and_says_so() {
        let mut failure = RemoteFailure::new("validation", "y".repeat(100_000));
        failure.validation = Some(validation(2_000, 200));
        failure.details = Some(serde_json::Value::String("z".repeat(100_000)));
        let bytes = failure.encode();
        assert!(bytes.len() <= MAX_FAILURE_BYTES, "{}", bytes.len());
        let back = RemoteFailure::decode(&bytes).unwrap();
        assert_eq!(back.details, None);
        let kept = back.validation.as_ref().map_or(0, ValidationErrors::len);
        assert!(kept > 10 && kept < 2_000, "{kept}");
        assert!(
            back.message.contains("more field errors not sent"),
            "{}",
            back.message
        );
        assert!(
            back.message.contains("details too large"),
            "{}",
            back.message
        );
    }

    #[test]
    fn field_errors_that_escape_to_many_bytes_still_fit() {
        let mut failure = RemoteFailure::new("validation", "invalid");
        let mut errors = ValidationErrors::new();
        for i in 0..3_000 {
            errors.add(format!("f{i}"), "\u{1}".repeat(400));
        }
        failure.validation = Some(errors);
        let bytes = failure.encode();
        assert!(bytes.len() <= MAX_FAILURE_BYTES, "{}", bytes.len());
        let back = RemoteFailure::decode(&bytes).unwrap();
        assert!(back.validation.is_some_and(|v| !v.is_empty()));
        assert!(back.message.contains("more field errors not sent"));
    }

    #[test]
    fn details_that_do_not_fit_are_left_out_first() {
        let mut failure = RemoteFailure::new("orders.full", "full");
        failure.validation = Some(validation(3, 10));
        failure.details = Some(serde_json::Value::String("z".repeat(100_000)));
        let back = RemoteFailure::decode(&failure.encode()).unwrap();
        assert_eq!(back.details, None);
        assert_eq!(
            back.validation, failure.validation,
            "every field error kept"
        );
        assert_eq!(back.message, "full (details too large to send)");
    }

    proptest! {
        #[test]
        fn any_failure_round_trips(
            code in "[a-z_.]{1,40}",
            message in ".{0,200}",
            retryable: bool,
            in_doubt: bool,
            fields in proptest::collection::vec((".{0,20}", ".{0,40}"), 0..8),
            detail in proptest::option::of(".{0,50}"),
        ) {
            let mut failure = RemoteFailure::new(code, message).with_in_doubt(in_doubt);
            failure.retryable = retryable;
            if !fields.is_empty() {
                let mut errors = ValidationErrors::new();
                for (f, m) in fields {
                    errors.add(f, m);
                }
                failure.validation = Some(errors);
            }
            failure.details = detail.map(|d| serde_json::json!({ "note": d }));
            prop_assert_eq!(RemoteFailure::decode(&failure.encode()).unwrap(), failure);
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RemoteFailure::decode(&bytes);
        }
    }
}

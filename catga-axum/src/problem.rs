//! RFC 9457 problem details: how every failure of this crate reads on the wire.
//!
//! A [`Problem`] is the `application/problem+json` document RFC 9457 defines: the standard
//! members `type`, `title`, `status`, `detail` and `instance`, and extension members beside
//! them (`code`, `errors`, …). It implements [`IntoResponse`], so a handler can return
//! `Result<T, Problem>`; a catga [`Error`](catga_core::Error) converts into one with `?`
//! (see [`ErrorMap`](crate::ErrorMap) for the mapping).
//!
//! The `type` is `about:blank` unless set, and then, as RFC 9457 asks, the `title` is the
//! status code's reason phrase: clients tell problems apart by the `code` extension, a stable
//! machine-readable string (catga's [`Error::code`](catga_core::Error::code), or this
//! crate's own for what goes wrong before a message exists, such as `invalid_json`).

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The members RFC 9457 defines; an extension may not take their names.
const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An RFC 9457 problem: a status, a title, an optional detail and instance, and extension
/// members. See the [module docs](self).
///
/// ```
/// use axum::http::StatusCode;
/// use catga_axum::Problem;
///
/// let problem = Problem::new(StatusCode::CONFLICT)
///     .with_code("orders.out_of_stock")
///     .with_detail("only 2 left")
///     .with_extension("available", 2);
/// assert_eq!(problem.status(), StatusCode::CONFLICT);
/// assert_eq!(problem.title(), "Conflict");
/// assert_eq!(problem.code(), Some("orders.out_of_stock"));
///
/// let json = serde_json::to_value(&problem).unwrap();
/// assert_eq!(json["type"], "about:blank");
/// assert_eq!(json["status"], 409);
/// assert_eq!(json["available"], 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    status: StatusCode,
    type_uri: Option<String>,
    title: String,
    detail: Option<String>,
    instance: Option<String>,
    extensions: Map<String, Value>,
    retry_after: Option<Duration>,
}

impl Problem {
    /// A problem with `status`, type `about:blank` and the status's reason phrase as title.
    pub fn new(status: StatusCode) -> Self {
        Problem {
            status,
            type_uri: None,
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            detail: None,
            instance: None,
            extensions: Map::new(),
            retry_after: None,
        }
    }

    /// Sets `type`: a URI reference naming the problem type (documentation for people, at
    /// best). Without one the type is `about:blank`.
    pub fn with_type(mut self, uri: impl Into<String>) -> Self {
        self.type_uri = Some(uri.into());
        self
    }

    /// Sets `title`: a short summary of the problem type, the same for every occurrence.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets `detail`: an explanation of this occurrence, for a person.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets `instance`: a URI reference naming this occurrence (this crate uses
    /// `urn:uuid:<message id>`, the id the logs carry).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Sets the `code` extension: a stable, machine-readable name for the problem.
    pub fn with_code(self, code: impl Into<String>) -> Self {
        self.with_extension("code", code.into())
    }

    /// Adds (or replaces) the extension member `name`. A name of a standard member (`type`,
    /// `title`, `status`, `detail`, `instance`) is ignored: set those with their own methods.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !STANDARD_MEMBERS.contains(&name.as_str()) {
            self.extensions.insert(name, value.into());
        }
        self
    }

    /// Sends a `Retry-After` header: `after` in whole seconds, rounded up, at least 1.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `title`.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `detail`, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The `instance`, if any.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// The `code` extension, if it is set to a string.
    pub fn code(&self) -> Option<&str> {
        self.extensions.get("code").and_then(Value::as_str)
    }

    /// The extension member `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extensions.get(name)
    }

    /// The `Retry-After` delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// A problem response's `code`, kept in the response's extensions for the middleware that
/// measures the route (`error_type`).
#[derive(Clone, Debug)]
pub(crate) struct ProblemCode(pub(crate) String);

/// `Retry-After` in whole seconds: rounded up (a client retrying early is refused again),
/// at least 1.
pub(crate) fn retry_after_seconds(after: Duration) -> u64 {
    let whole = after.as_secs();
    let seconds = if after.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    seconds.max(1)
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let optional = usize::from(self.detail.is_some()) + usize::from(self.instance.is_some());
        let mut map = serializer.serialize_map(Some(3 + optional + self.extensions.len()))?;
        map.serialize_entry("type", self.type_uri.as_deref().unwrap_or("about:blank"))?;
        map.serialize_entry("title", &self.title)?;
        map.serialize_entry("status", &self.status.as_u16())?;
        if let Some(detail) = &self.detail {
            map.serialize_entry("detail", detail)?;
        }
        if let Some(instance) = &self.instance {
            map.serialize_entry("instance", instance)?;
        }
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // Strings, numbers and JSON values only: serialising cannot fail, but a response is
        // never a panic, so a failure still answers with the status and a minimal document.
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"about:blank","status":{}}}"#,
                self.status.as_u16()
            )
            .into_bytes()
        });
        let mut response = (self.status, body).into_response();
        if let Some(code) = self.code() {
            response
                .extensions_mut()
                .insert(ProblemCode(code.to_string()));
        }
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(after)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn an_extension_cannot_take_a_standard_members_name() {
        let problem = Problem::new(StatusCode::BAD_REQUEST)
            .with_extension("status", 200)
            .with_extension("title", "ok");
        let json = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(json["status"], 400);
        assert_eq!(json["title"], "Bad Request");
        assert_eq!(json.as_object().map(|o| o.len()), Some(3));
    }
}

//! The application's health report (see [`health`](crate::health)).

use std::borrow::Cow;
use std::sync::Arc;

use super::Catga;
use crate::health::{CheckReport, HealthCheck, HealthReport};

impl<L> Catga<L> {
    /// The largest payload, in bytes, this application reads off the wire or accepts as
    /// bytes (its builder's [`max_payload_bytes`](super::CatgaBuilder::max_payload_bytes);
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`](super::DEFAULT_MAX_PAYLOAD_BYTES) unless set). An edge
    /// that reads request bodies limits them to the same.
    pub fn max_payload_bytes(&self) -> usize {
        self.inner.settings.max_payload_bytes
    }

    /// Liveness and readiness, from what the application's parts last knew: the transport's
    /// connection (`transport`, if its transport reports one), the consumers
    /// [`serve`](Catga::serve) started (`consumers`), and every check added with
    /// [`add_health_check`](Self::add_health_check). No I/O and no lock held by anything
    /// slow: it answers while a broker or a database is unreachable.
    pub fn health(&self) -> HealthReport {
        let transport = self
            .inner
            .settings
            .transport
            .as_deref()
            .and_then(|transport| transport.health())
            .map(|status| CheckReport {
                name: Cow::Borrowed("transport"),
                status,
            });
        self.inner.health.report(transport)
    }

    /// Adds `check` to the readiness report as `name`, replacing a check of that name: a
    /// leader election ([`Elected::health_check`](crate::cluster::Elected::health_check)), a
    /// relay, a store, or a closure of the application's own (`|| CheckStatus::Up`). Shared
    /// by every clone of the application.
    pub fn add_health_check(&self, name: impl Into<Cow<'static, str>>, check: impl HealthCheck) {
        self.inner.health.add(name.into(), Arc::new(check));
    }
}

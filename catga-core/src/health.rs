//! Whether an instance is alive and ready, answered from what its parts last knew.
//!
//! [`Catga::health`](crate::Catga::health) returns a [`HealthReport`]: **liveness** (the
//! process runs and answers: no check, no I/O) and **readiness**, the conjunction of named
//! [`HealthCheck`]s. Each check reads state its part keeps up to date anyway (a connection's
//! state, whether a consumer runs, whether a leader is known), so a report is built from
//! memory in microseconds and never waits on a broker or a database that is slow or gone:
//! that is what an orchestrator's probe needs (Kubernetes kills a container whose liveness
//! probe times out, and stops routing to one whose readiness probe fails).
//!
//! Checks come from the application's parts: the transport's connection (`transport`, when
//! the transport reports one), the consumers [`Catga::serve`](crate::Catga::serve) started
//! (`consumers`), and whatever is added with
//! [`Catga::add_health_check`](crate::Catga::add_health_check): a leader election
//! ([`Elected`](crate::cluster::Elected) is a check: ready while a leader is known), an
//! outbox relay, a store, a check of the application's own.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// What a check says about its part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// Ready.
    Up,
    /// Not ready, and why (for a person reading the report).
    Down(Cow<'static, str>),
}

impl CheckStatus {
    /// Not ready because `why`.
    pub fn down(why: impl Into<Cow<'static, str>>) -> CheckStatus {
        CheckStatus::Down(why.into())
    }

    /// Whether it is [`Up`](CheckStatus::Up).
    pub fn is_up(&self) -> bool {
        matches!(self, CheckStatus::Up)
    }
}

/// One part's readiness, from state the part keeps: **must not block or do I/O** (it is
/// called on every probe, possibly while the part's server is unreachable).
pub trait HealthCheck: Send + Sync + 'static {
    /// The part's status now, as last known.
    fn check(&self) -> CheckStatus;
}

impl<F: Fn() -> CheckStatus + Send + Sync + 'static> HealthCheck for F {
    fn check(&self) -> CheckStatus {
        self()
    }
}

impl<C: HealthCheck + ?Sized> HealthCheck for Arc<C> {
    fn check(&self) -> CheckStatus {
        (**self).check()
    }
}

/// One named check's result in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The check's name (`transport`, `consumers`, `leader:scheduler`, …).
    pub name: Cow<'static, str>,
    /// What it said.
    pub status: CheckStatus,
}

/// An instance's health, as [`Catga::health`](crate::Catga::health) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The process runs and answers. Always `true` in a report (a process that cannot answer
    /// produces none); kept so a report serialises to what a liveness endpoint returns.
    pub live: bool,
    /// Every check is up (and true with no checks).
    pub ready: bool,
    /// Each check's result, in the order the checks were added.
    pub checks: Vec<CheckReport>,
}

impl HealthReport {
    /// The checks that are down.
    pub fn failing(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| !c.status.is_up())
    }
}

impl fmt::Display for HealthReport {
    /// `ready` or `not ready: consumers (stopped), transport (disconnected)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ready {
            return f.write_str("ready");
        }
        f.write_str("not ready:")?;
        for (i, check) in self.failing().enumerate() {
            let why = match &check.status {
                CheckStatus::Down(why) => why.as_ref(),
                CheckStatus::Up => "",
            };
            write!(
                f,
                "{} {} ({why})",
                if i == 0 { "" } else { "," },
                check.name
            )?;
        }
        Ok(())
    }
}

/// A named check.
type Named = (Cow<'static, str>, Arc<dyn HealthCheck>);

/// The application's checks, by name.
#[derive(Default)]
pub(crate) struct HealthChecks {
    checks: RwLock<Vec<Named>>,
}

impl HealthChecks {
    /// Adds `check` as `name`, replacing a check of that name.
    pub(crate) fn add(&self, name: Cow<'static, str>, check: Arc<dyn HealthCheck>) {
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        match checks.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = check,
            None => checks.push((name, check)),
        }
    }

    /// Every check's result; `first` (the transport's own, if any) before the added ones.
    pub(crate) fn report(&self, first: Option<CheckReport>) -> HealthReport {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        let checks: Vec<CheckReport> = first
            .into_iter()
            .chain(checks.iter().map(|(name, check)| CheckReport {
                name: name.clone(),
                status: check.check(),
            }))
            .collect();
        HealthReport {
            live: true,
            ready: checks.iter().all(|c| c.status.is_up()),
            checks,
        }
    }
}

/// A check whose state its owner sets: up, or down with a fixed reason. What a part that
/// learns its state by events (a consumer started or stopped) keeps; cloned, it is shared.
#[derive(Clone, Debug)]
pub struct Flag {
    state: Arc<AtomicU8>,
    down: &'static str,
}

impl Flag {
    /// A flag reading `down` until it is [`set_up`](Self::set_up).
    pub fn new(down: &'static str) -> Flag {
        Flag {
            state: Arc::new(AtomicU8::new(0)),
            down,
        }
    }

    /// Up from now on.
    pub fn set_up(&self) {
        self.state.store(1, Ordering::Release);
    }

    /// Down from now on.
    pub fn set_down(&self) {
        self.state.store(0, Ordering::Release);
    }
}

impl HealthCheck for Flag {
    fn check(&self) -> CheckStatus {
        if self.state.load(Ordering::Acquire) == 1 {
            CheckStatus::Up
        } else {
            CheckStatus::down(self.down)
        }
    }
}

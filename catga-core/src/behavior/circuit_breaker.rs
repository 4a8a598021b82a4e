//! A circuit breaker per message type: stop calling what keeps failing, probe, recover.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::monotonic::{duration_nanos, now_nanos};
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;

/// When a closed circuit trips.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trip {
    /// After this many failures in a row.
    ConsecutiveFailures(u32),
    /// When, over a window of `window` calls (and at least `min_calls`), at least `ratio` of
    /// them failed.
    FailureRatio {
        /// Failed calls / calls, in `0.0..=1.0`.
        ratio: f64,
        /// Calls per evaluation window.
        window: u32,
        /// Fewer calls than this in a window never trip it.
        min_calls: u32,
    },
}

/// A circuit's state, as reported by [`CircuitBreaker::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused with [`ErrorKind::CircuitOpen`] until the cool-down ends.
    Open,
    /// A few probe calls go through; their outcome closes or re-opens the circuit.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

impl CircuitState {
    fn from_u8(state: u8) -> Self {
        match state {
            OPEN => CircuitState::Open,
            HALF_OPEN => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Refuses dispatches of a message whose recent dispatches failed, so a struggling dependency
/// gets room to recover and callers fail fast instead of waiting on it.
///
/// Each message type has its own circuit: **closed** (calls pass, failures are counted),
/// **open** (calls fail at once with the non-retryable [`ErrorKind::CircuitOpen`] until the
/// cool-down ends), **half-open** (up to `probes` calls pass; if all succeed the circuit
/// closes, the first failure re-opens it). A failure is an error for which the predicate holds
/// ([`Error::is_retryable`] by default: timeouts, store failures and handler errors that say
/// they are transient; a business rejection does not trip it). The happy path is two atomic
/// loads and one atomic add; there is no lock.
///
/// A call whose future is dropped before it finished (the dispatch's deadline or cancellation,
/// a caller that stopped waiting, a panic) counts as the timeout, cancellation or panic it
/// was, when the failure predicate counts those, and as nothing otherwise; a half-open probe's
/// slot is given back either way, so the next call probes again.
///
/// `#[command(skip(circuit_breaker))]` exempts a message.
///
/// ```
/// use std::time::Duration;
/// use catga_core::behavior::{CircuitBreaker, Trip};
///
/// let breaker = CircuitBreaker::new(Trip::ConsecutiveFailures(5))
///     .cool_down(Duration::from_secs(10))
///     .probes(2);
/// # let _ = breaker;
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    trip: Trip,
    cool_down: Duration,
    probes: u32,
    is_failure: fn(&Error) -> bool,
    circuits: PerMessage<Circuit>,
}

impl CircuitBreaker {
    /// A breaker that trips as `trip` says, with a 30 s cool-down and one probe.
    pub fn new(trip: Trip) -> Self {
        CircuitBreaker {
            trip,
            cool_down: Duration::from_secs(30),
            probes: 1,
            is_failure: Error::is_retryable,
            circuits: PerMessage::default(),
        }
    }

    /// How long an open circuit refuses calls before it lets probes through.
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// How many probe calls a half-open circuit lets through (and needs to succeed) before it
    /// closes (at least 1).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes.max(1);
        self
    }

    /// Which errors count as failures (default: [`Error::is_retryable`]).
    pub fn failure_if(mut self, is_failure: fn(&Error) -> bool) -> Self {
        self.is_failure = is_failure;
        self
    }

    /// The state of `M`'s circuit (closed if it never saw a call).
    pub fn state<M: crate::Message>(&self) -> CircuitState {
        self.circuits
            .get(M::info())
            .map_or(CircuitState::Closed, |c| {
                CircuitState::from_u8(c.state.load(Ordering::Acquire))
            })
    }
}

/// One message type's circuit.
#[derive(Debug, Default)]
struct Circuit {
    state: AtomicU8,
    /// When it last opened (clock nanos).
    opened_at: AtomicU64,
    /// Closed state: calls in the current window (high half) and failures (low half; for
    /// `ConsecutiveFailures`, the current run of failures).
    window: AtomicU64,
    /// Half-open state: probes running and probes that succeeded.
    probes_running: AtomicU32,
    probes_passed: AtomicU32,
}

const ONE_CALL: u64 = 1 << 32;
const FAILURES: u64 = u32::MAX as u64;

/// The right to make one call, and what kind of call it is.
enum Permit<'a> {
    Closed,
    /// A half-open probe; released if the call is dropped before it finishes.
    Probe(&'a Circuit),
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Permit::Probe(circuit) = self {
            circuit.probes_running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Circuit {
    fn transition(&self, from: u8, to: u8, message: &'static str) -> bool {
        let moved = self
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if moved {
            let to_state = CircuitState::from_u8(to);
            tracing::info!(target: "catga", message, state = to_state.as_str(), "circuit breaker transition");
            metrics::counter!("catga_circuit_breaker_transitions_total", "message" => message, "to" => to_state.as_str())
                .increment(1);
            metrics::gauge!("catga_circuit_breaker_state", "message" => message).set(f64::from(to));
        }
        moved
    }

    fn open(&self, from: u8, now: u64, message: &'static str) {
        // Record the time first, so whoever sees OPEN sees when.
        self.opened_at.store(now, Ordering::Release);
        self.transition(from, OPEN, message);
    }

    fn admit(&self, breaker: &CircuitBreaker, message: &'static str) -> Result<Permit<'_>, Error> {
        let mut state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return Ok(Permit::Closed);
        }
        if state == OPEN {
            let now = now_nanos();
            let reopens = self
                .opened_at
                .load(Ordering::Acquire)
                .saturating_add(duration_nanos(breaker.cool_down));
            if now < reopens {
                return Err(refuse(message, Duration::from_nanos(reopens - now)));
            }
            if self.transition(OPEN, HALF_OPEN, message) {
                self.probes_passed.store(0, Ordering::Release);
            }
            state = self.state.load(Ordering::Acquire);
            if state == CLOSED {
                return Ok(Permit::Closed);
            }
        }
        if state == HALF_OPEN {
            if self.probes_running.fetch_add(1, Ordering::AcqRel) < breaker.probes {
                return Ok(Permit::Probe(self));
            }
            self.probes_running.fetch_sub(1, Ordering::AcqRel);
        }
        // Half-open with every probe slot taken, or re-opened meanwhile.
        Err(refuse(message, Duration::ZERO))
    }

    fn record(
        &self,
        permit: Permit<'_>,
        failed: bool,
        breaker: &CircuitBreaker,
        message: &'static str,
    ) {
        match permit {
            Permit::Closed => {
                if self.state.load(Ordering::Acquire) != CLOSED {
                    return; // An outcome from before the circuit opened.
                }
                self.record_closed(failed, breaker, message);
            }
            Permit::Probe(_) => {
                if failed {
                    self.open(HALF_OPEN, now_nanos(), message);
                } else if self.probes_passed.fetch_add(1, Ordering::AcqRel) + 1 >= breaker.probes
                    && self.transition(HALF_OPEN, CLOSED, message)
                {
                    self.window.store(0, Ordering::Release);
                }
                // `permit` drops here and releases the probe slot.
            }
        }
    }

    fn record_closed(&self, failed: bool, breaker: &CircuitBreaker, message: &'static str) {
        match breaker.trip {
            Trip::ConsecutiveFailures(limit) => {
                if failed {
                    let run = (self.window.fetch_add(1, Ordering::AcqRel) & FAILURES) + 1;
                    if run >= u64::from(limit) {
                        self.open(CLOSED, now_nanos(), message);
                        self.window.store(0, Ordering::Release);
                    }
                } else if self.window.load(Ordering::Relaxed) != 0 {
                    // Only write when there is a run to break: the common success is a load.
                    self.window.store(0, Ordering::Release);
                }
            }
            Trip::FailureRatio {
                ratio,
                window,
                min_calls,
            } => {
                let add = if failed { ONE_CALL + 1 } else { ONE_CALL };
                let seen = self.window.fetch_add(add, Ordering::AcqRel) + add;
                let (calls, failures) = (seen >> 32, seen & FAILURES);
                if calls >= u64::from(window.max(1)) {
                    // The window is full: evaluate it and start the next one.
                    self.window.store(0, Ordering::Release);
                    #[allow(clippy::cast_precision_loss)]
                    let observed = failures as f64 / calls as f64;
                    if calls >= u64::from(min_calls) && observed >= ratio {
                        self.open(CLOSED, now_nanos(), message);
                    }
                }
            }
        }
    }
}

fn refuse(message: &'static str, retry_after: Duration) -> Error {
    metrics::counter!("catga_circuit_breaker_rejections_total", "message" => message).increment(1);
    ErrorKind::CircuitOpen {
        message,
        retry_after,
    }
    .into()
}

impl Behavior for CircuitBreaker {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        if info.policy().skip.contains(Skip::CIRCUIT_BREAKER) {
            return next.run(msg).await;
        }
        let message = info.name();
        let circuit = self.circuits.get_or_init(info, Circuit::default);
        let mut attempt = Attempt {
            breaker: self,
            circuit,
            ctx,
            message,
            permit: Some(circuit.admit(self, message)?),
        };
        let result = next.run(msg).await;
        let failed = result.as_ref().err().is_some_and(self.is_failure);
        if let Some(permit) = attempt.permit.take() {
            circuit.record(permit, failed, self, message);
        }
        result
    }
}

/// A call let through whose outcome is not recorded yet. If the call's future goes away
/// first, the drop records what can be told of why: a panic unwinding through it, or the
/// dispatch's deadline or cancellation (enforced outside this layer) count as that error
/// would, if the failure predicate counts it; otherwise (the caller stopped waiting) the call
/// counts neither way. A half-open probe's slot is given back in every case, so a probe that
/// never finishes cannot leave the circuit refusing every call.
struct Attempt<'a> {
    breaker: &'a CircuitBreaker,
    circuit: &'a Circuit,
    ctx: &'a Context,
    message: &'static str,
    permit: Option<Permit<'a>>,
}

impl Attempt<'_> {
    /// Why the call ended without an outcome, as the error it stands for, if it can be told.
    fn abandoned_because(&self) -> Option<Error> {
        let message = self.message;
        if std::thread::panicking() {
            return Some(
                ErrorKind::Panicked {
                    message: message.to_string(),
                    detail: "a panic unwound through the circuit breaker".to_string(),
                }
                .into(),
            );
        }
        if self.ctx.remaining().is_some_and(|left| left.is_zero()) {
            return Some(
                ErrorKind::Timeout {
                    message,
                    after: None,
                }
                .into(),
            );
        }
        self.ctx
            .is_cancelled()
            .then(|| ErrorKind::Cancelled { message }.into())
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let failed = self
            .abandoned_because()
            .is_some_and(|error| (self.breaker.is_failure)(&error));
        if failed {
            self.circuit
                .record(permit, true, self.breaker, self.message);
        }
        // Otherwise `permit` drops here: a probe's slot is given back, nothing is counted.
    }
}

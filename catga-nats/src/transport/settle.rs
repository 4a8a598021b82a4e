//! What becomes of an event once its handlers ran: acknowledged, or redelivered later.
//!
//! The same rule as the in-memory transport: success is acknowledged; a retryable failure is
//! negatively acknowledged with a delay from the backoff, so the server delivers it again,
//! until the last allowed delivery; a failure that is final (not retryable, or the last
//! delivery) is acknowledged, and the application's `DeadLetter` layer is where it is kept.

use std::time::Duration;

use catga_core::Error;

use crate::settings::Settings;

/// The outcome for one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Done: the server forgets it for this service.
    Ack,
    /// Deliver it again after this delay.
    Redeliver(Duration),
}

/// The outcome of delivery number `attempt` (from 1) that ended with `result`.
pub(crate) fn settle<T>(result: &Result<T, Error>, attempt: u32, settings: &Settings) -> Settle {
    match result {
        Err(error) if error.is_retryable() && attempt < settings.max_deliver => {
            Settle::Redeliver(settings.redelivery_delay(attempt))
        }
        _ => Settle::Ack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catga_core::ErrorKind;

    fn settings() -> Settings {
        Settings {
            max_deliver: 3,
            backoff: vec![Duration::from_millis(10), Duration::from_millis(40)],
            ..Settings::default()
        }
    }

    fn retryable() -> Error {
        ErrorKind::Timeout {
            message: "Ship",
            after: None,
        }
        .into()
    }

    fn permanent() -> Error {
        ErrorKind::NoHandler { message: "Ship" }.into()
    }

    #[test]
    fn success_is_acknowledged() {
        assert_eq!(settle(&Ok(()), 1, &settings()), Settle::Ack);
    }

    #[test]
    fn a_retryable_failure_is_redelivered_with_backoff_until_the_last_delivery() {
        let s = settings();
        let failed: Result<(), Error> = Err(retryable());
        assert_eq!(
            settle(&failed, 1, &s),
            Settle::Redeliver(Duration::from_millis(10))
        );
        assert_eq!(
            settle(&failed, 2, &s),
            Settle::Redeliver(Duration::from_millis(40))
        );
        assert_eq!(settle(&failed, 3, &s), Settle::Ack, "the last delivery");
    }

    #[test]
    fn a_final_failure_is_acknowledged_at_once() {
        let failed: Result<(), Error> = Err(permanent());
        assert_eq!(settle(&failed, 1, &settings()), Settle::Ack);
    }
}

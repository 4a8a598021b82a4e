//! What becomes of an event once the application is done with it.
//!
//! The application decides ([`Disposition`]); this maps it onto JetStream's acknowledgements:
//! handled is `+ACK`; kept in the dead-letter store is `+TERM` (the server stops delivering it
//! and publishes a termination advisory); not settled is `-NAK` with the next delay of the
//! backoff, so the server delivers it again.

use async_nats::jetstream::AckKind;
use catga_core::transport::Disposition;

use crate::config::Config;

/// The acknowledgement for delivery number `attempt` (from 1) that ended with `disposition`.
pub(crate) fn settle(disposition: Disposition, attempt: u32, config: &Config) -> AckKind {
    match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Terminate => AckKind::Term,
        Disposition::Retry => AckKind::Nak(Some(config.redelivery_delay(attempt))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            max_deliveries: 3,
            backoff: vec![Duration::from_millis(10), Duration::from_millis(40)],
            ..Config::default()
        }
    }

    /// `AckKind` is not `PartialEq`; its debug form is exact enough.
    fn same(a: AckKind, b: AckKind) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn each_disposition_has_its_acknowledgement() {
        let s = config();
        same(settle(Disposition::Ack, 1, &s), AckKind::Ack);
        same(settle(Disposition::Terminate, 3, &s), AckKind::Term);
        same(
            settle(Disposition::Retry, 1, &s),
            AckKind::Nak(Some(Duration::from_millis(10))),
        );
        same(
            settle(Disposition::Retry, 2, &s),
            AckKind::Nak(Some(Duration::from_millis(40))),
        );
        same(
            settle(Disposition::Retry, 7, &s),
            AckKind::Nak(Some(Duration::from_millis(40))),
        );
    }
}

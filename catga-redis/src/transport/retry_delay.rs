//! Waiting between attempts while the server is away: doubling from 50 ms up to 1 s, so a
//! restart is noticed within about a second and a long outage costs one connection attempt
//! a second per reading task. (Not the redelivery of a failed event, whose delays are the
//! `backoff` option's.)

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(50);
const MAX: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct RetryDelay {
    next: Duration,
}

impl Default for RetryDelay {
    fn default() -> Self {
        RetryDelay { next: FIRST }
    }
}

impl RetryDelay {
    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }

    /// An attempt succeeded: the next failure waits briefly again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut retry = RetryDelay::default();
        let delays: Vec<u64> = (0..8)
            .map(|_| u64::try_from(retry.next_delay().as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        retry.reset();
        assert_eq!(retry.next_delay(), FIRST);
    }
}

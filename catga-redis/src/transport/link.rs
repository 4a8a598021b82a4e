//! What the transport last saw of its connection, for readiness (`Transport::health`): kept
//! as the reader and publishers run, read without I/O.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use catga_core::health::CheckStatus;

/// Up until a command fails for want of a connection; up again at the next that succeeds.
#[derive(Debug)]
pub(crate) struct Link {
    down: AtomicBool,
    why: Mutex<String>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            down: AtomicBool::new(false),
            why: Mutex::new(String::new()),
        }
    }
}

impl Link {
    /// A command got an answer.
    pub(crate) fn up(&self) {
        // A load first: the hot path (every read and publish) then writes nothing.
        if self.down.load(Ordering::Relaxed) {
            self.down.store(false, Ordering::Release);
        }
    }

    /// A command failed for want of a connection (`why`).
    pub(crate) fn down(&self, why: impl std::fmt::Display) {
        *self.why.lock().unwrap_or_else(PoisonError::into_inner) = why.to_string();
        self.down.store(true, Ordering::Release);
    }

    /// Records `result`'s outcome if it says something about the connection: an answer, or an
    /// I/O error, a dropped connection or a timeout (a server's error reply says the
    /// connection works).
    pub(crate) fn saw<T>(&self, result: &redis::RedisResult<T>) {
        match result {
            Ok(_) => self.up(),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.down(e);
            }
            Err(_) => self.up(),
        }
    }

    pub(crate) fn status(&self) -> CheckStatus {
        if !self.down.load(Ordering::Acquire) {
            return CheckStatus::Up;
        }
        let why = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        CheckStatus::down(format!(
            "the last command found no connection to Redis: {why}"
        ))
    }
}

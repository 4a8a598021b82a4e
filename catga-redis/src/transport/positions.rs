//! How far this instance has seen each stream: the id of the last entry it read or claimed.
//!
//! A server restarted without persistence comes back without its streams and consumer
//! groups. Publishers re-create a stream with their next `XADD`, and the reader re-creates
//! the group when it finds it gone (`NOGROUP`); where it starts decides what is handled.
//! `$` would skip every entry added between the restart and that moment; the last entry this
//! instance saw does not: entry ids are the server's clock, so every entry added after the
//! restart comes after it, and so does every entry it had not seen yet when only the group
//! was lost (deleted by hand) and the stream kept its history. With nothing seen, the group
//! starts at the beginning of the stream (`0`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A stream entry id, `{milliseconds}-{sequence}`, ordered as the server orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct StreamId {
    millis: u64,
    seq: u64,
}

impl StreamId {
    /// Parses `1712345678901-0`; `None` for anything else.
    pub fn parse(id: &str) -> Option<StreamId> {
        let (millis, seq) = id.split_once('-')?;
        Some(StreamId {
            millis: millis.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl Ord for StreamId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.millis, self.seq).cmp(&(other.millis, other.seq))
    }
}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.millis, self.seq)
    }
}

/// The last entry id seen per stream.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    seen: Mutex<HashMap<String, StreamId>>,
}

impl Positions {
    fn seen(&self) -> MutexGuard<'_, HashMap<String, StreamId>> {
        // A panic while holding the lock cannot leave a map of ids inconsistent.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that entry `id` of `stream` was seen (ids that do not parse are ignored; older
    /// ids than the last seen change nothing).
    pub fn saw(&self, stream: &str, id: &str) {
        let Some(id) = StreamId::parse(id) else {
            return;
        };
        let mut seen = self.seen();
        match seen.get_mut(stream) {
            Some(last) if *last >= id => {}
            Some(last) => *last = id,
            None => {
                seen.insert(stream.to_string(), id);
            }
        }
    }

    /// Where a re-created group on `stream` starts: after the last entry seen there, or at
    /// the beginning when none was.
    pub fn restart_id(&self, stream: &str) -> String {
        self.seen()
            .get(stream)
            .map_or_else(|| "0".to_string(), StreamId::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_the_server_orders_them() {
        let parse = |s| StreamId::parse(s).unwrap();
        assert!(parse("9-0") < parse("10-0"), "numerically, not as text");
        assert!(parse("10-2") < parse("10-10"));
        assert_eq!(parse("1712345678901-7").to_string(), "1712345678901-7");
        for bad in ["", "1", "-1", "a-1", "1-b", "1-2-3"] {
            assert_eq!(StreamId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_group_restarts_after_the_last_entry_seen_or_at_the_beginning() {
        let positions = Positions::default();
        assert_eq!(positions.restart_id("s"), "0");
        positions.saw("s", "10-2");
        positions.saw("s", "9-5"); // claimed late: older than what was read
        positions.saw("s", "garbage");
        assert_eq!(positions.restart_id("s"), "10-2");
        positions.saw("s", "10-10");
        assert_eq!(positions.restart_id("s"), "10-10");
        assert_eq!(positions.restart_id("t"), "0", "streams are apart");
    }
}

//! State a behaviour keeps per message type (a circuit per message, a rate limiter per
//! message …), found by the message's dense slot without hashing or locking.
//!
//! The table grows in chunks of doubling size (64, 128, 256, … entries); a chunk, once
//! created, never moves, so a reference into it stays valid for the table's life. Finding a
//! message's state is two acquire loads; creating it is one compare-and-swap per chunk and one
//! per entry.

use std::sync::OnceLock;

use crate::message::MessageInfo;

const FIRST_CHUNK: usize = 64;
/// 64 · (2^40 − 1) entries: more message types than any program has.
const CHUNKS: usize = 40;

/// A lazily filled table of `T` per message type. See the [module docs](self).
pub(crate) struct PerMessage<T> {
    chunks: [OnceLock<Box<[OnceLock<T>]>>; CHUNKS],
}

impl<T> Default for PerMessage<T> {
    fn default() -> Self {
        PerMessage {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl<T> std::fmt::Debug for PerMessage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled: usize = self
            .chunks
            .iter()
            .filter_map(OnceLock::get)
            .map(|c| c.iter().filter(|e| e.get().is_some()).count())
            .sum();
        f.debug_struct("PerMessage")
            .field("messages", &filled)
            .finish()
    }
}

/// The chunk and offset of `slot`: chunk `k` holds slots `64·(2^k − 1) .. 64·(2^(k+1) − 1)`.
fn locate(slot: usize) -> (usize, usize) {
    let scaled = slot / FIRST_CHUNK + 1;
    let chunk = (usize::BITS - 1 - scaled.leading_zeros()) as usize;
    let start = FIRST_CHUNK * ((1 << chunk) - 1);
    (chunk, slot - start)
}

impl<T> PerMessage<T> {
    /// The state of `info`'s message type, created with `init` on first use.
    #[inline]
    pub(crate) fn get_or_init(&self, info: &MessageInfo, init: impl FnOnce() -> T) -> &T {
        let (chunk, offset) = locate(info.slot());
        let entries = self.chunks[chunk.min(CHUNKS - 1)].get_or_init(|| {
            let len = FIRST_CHUNK << chunk;
            (0..len).map(|_| OnceLock::new()).collect()
        });
        entries[offset].get_or_init(init)
    }

    /// The state of `info`'s message type, if it was ever created.
    #[inline]
    pub(crate) fn get(&self, info: &MessageInfo) -> Option<&T> {
        let (chunk, offset) = locate(info.slot());
        self.chunks.get(chunk)?.get()?.get(offset)?.get()
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn slots_map_to_distinct_places() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(191), (1, 127));
        assert_eq!(locate(192), (2, 0));
        let mut seen = std::collections::HashSet::new();
        for slot in 0..100_000 {
            let (chunk, offset) = locate(slot);
            assert!(offset < 64 << chunk, "slot {slot}");
            assert!(seen.insert((chunk, offset)));
        }
    }
}

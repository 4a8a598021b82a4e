//! 64-bit FNV-1a (Fowler–Noll–Vo, as published at isthe.com/chongo/tech/comp/fnv): stable
//! across processes, builds and Rust versions, unlike `std`'s hashers, so two instances of a
//! service name the same channel and compute the same notification payload.

pub(crate) struct Fnv(pub(crate) u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

//! The hash of the tables udstrace looks up for every record (`Recent`, the packetizer's,
//! the address and container names): keys are kernel identities (socket addresses, inode
//! numbers, cgroup ids, pids) and short names, none chosen by a remote party, so a keyed
//! hash's resistance to chosen collisions buys nothing here, and std's SipHash cost about a
//! tenth of udstrace's CPU in a 4 KiB bulk capture.
//!
//! Each word is folded in with a rotate, an xor and a multiply; `finish` mixes the state so
//! that every bit of it reaches the low bits the table indexes with (socket addresses are
//! multiples of their slab size: without the final mix, their low bits would all be equal).

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// The hasher (see the module).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

/// An odd constant with its bits evenly spread (2^64 divided by the golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length too: "ab" and "ab\0" must differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// The state, mixed (the finaliser of MurmurHash3's 64-bit variant): each output bit
    /// depends on every input bit.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::{FastHasher, FastMap};

    fn hash<T: std::hash::Hash>(v: T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(v)
    }

    /// Socket addresses 1 KiB apart spread over the low bits a table of 4096 buckets uses.
    #[test]
    fn aligned_keys_spread_over_the_low_bits() {
        let base = 0xffff_8881_0000_0000u64;
        let mut buckets = std::collections::HashSet::new();
        for i in 0..4096u64 {
            buckets.insert(hash(base + i * 1024) & 4095);
        }
        assert!(buckets.len() > 2500, "{} buckets of 4096", buckets.len());
    }

    #[test]
    fn byte_strings_of_different_lengths_differ() {
        assert_ne!(hash(b"ab".as_slice()), hash(b"ab\0".as_slice()));
        assert_ne!(hash(&b"abcdefgh"[..]), hash(&b"abcdefgh\0"[..]));
        assert_eq!(hash(17u64), hash(17u64));
    }

    #[test]
    fn a_map_works() {
        let mut m: FastMap<u64, u32> = FastMap::default();
        for i in 0..10_000u64 {
            m.insert(i << 12, i as u32);
        }
        assert!((0..10_000u64).all(|i| m.get(&(i << 12)) == Some(&(i as u32))));
    }
}

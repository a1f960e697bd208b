//! A multiplicative hasher for maps keyed by internal slot numbers (never by client bytes, so
//! hash flooding is not a concern there): SipHash showed up in REC.GET profiles.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type SlotMap<V> = HashMap<u32, V, BuildHasherDefault<SlotHasher>>;
pub type SlotSet = HashSet<u32, BuildHasherDefault<SlotHasher>>;

//! The hasher of every per-event map keyed by TID or TGID: the analysis'
//! threads and processes, the capture's switch counts.

use std::collections::{HashMap, HashSet};

/// Hashes the keys of the per-event maps (TIDs, TGIDs, and small tuples of
/// integers and enums): one multiply per integer instead of SipHash (keys
/// come from the kernel or a trace file; a crafted file with colliding keys
/// can only slow the analysis down).
#[derive(Default, Clone, Copy)]
pub(crate) struct TidHasher(u64);

impl TidHasher {
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl std::hash::Hasher for TidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(b.into());
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`TidHasher`]s: the hasher of every per-event map.
pub(crate) type TidBuild = std::hash::BuildHasherDefault<TidHasher>;
/// A map keyed by TID or TGID.
pub(crate) type TidMap<V> = HashMap<u32, V, TidBuild>;
/// A set of TIDs or TGIDs.
pub(crate) type TidSet = HashSet<u32, TidBuild>;

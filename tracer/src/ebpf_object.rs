//! The eBPF object `build.rs` built from the `schedtrace-ebpf` crate,
//! embedded in the binary: the programs the loader loads, and the
//! fingerprint that tells two builds apart.

/// The object's bytes (an ELF file for `bpfel-unknown-none`).
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/schedtrace"));

/// FNV-1a of the object.
pub(crate) fn fnv1a() -> u64 {
    EBPF_OBJECT.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

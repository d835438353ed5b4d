//! Version strings, with the build info of the embedded eBPF object.

/// FNV-1a of the embedded eBPF object: tells two builds apart.
fn object_hash() -> u64 {
    crate::capture::loader::EBPF_OBJECT
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// `0.1.0 (eBPF object 1234 bytes, fnv 0123..., built with nightly-...)`.
pub fn long() -> String {
    format!(
        "{} (eBPF object {} bytes, fnv1a {:016x}, built with {})",
        env!("CARGO_PKG_VERSION"),
        crate::capture::loader::EBPF_OBJECT.len(),
        object_hash(),
        env!("SCHEDTRACE_EBPF_TOOLCHAIN_USED"),
    )
}

/// The crate version, for `-V`.
pub fn short() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// [`long`], leaked once for clap's `'static` string.
pub fn long_static() -> &'static str {
    static LONG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LONG.get_or_init(long)
}

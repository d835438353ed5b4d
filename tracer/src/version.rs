//! Version strings, with the build info of the embedded eBPF object.

use crate::ebpf_object::{EBPF_OBJECT, fnv1a};

/// `0.1.0 (eBPF object 1234 bytes, fnv 0123..., built with nightly-...)`.
pub fn long() -> String {
    format!(
        "{} (eBPF object {} bytes, fnv1a {:016x}, built with {})",
        env!("CARGO_PKG_VERSION"),
        EBPF_OBJECT.len(),
        fnv1a(),
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

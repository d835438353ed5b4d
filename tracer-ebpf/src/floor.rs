//! The physical floor of the benchmark (`cargo xtask bench`, condition
//! "floor"): `tp_btf` programs on `sched_switch` and `sched_waking` that do
//! nothing. Attached, they cost what any program on those tracepoints must
//! (the tracepoint's dispatch to BPF, the trampoline into the program and
//! back), and nothing more: no maps, no helpers, no filter. schedtrace's
//! cost is read against this one. Loaded by the hidden `schedtrace __floor`
//! command, never by a capture.
#![no_std]
#![no_main]
#![allow(unreachable_pub)]

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

#[btf_tracepoint(function = "sched_switch")]
pub fn floor_switch(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_waking")]
pub fn floor_waking(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

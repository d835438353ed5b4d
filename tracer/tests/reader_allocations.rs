//! No value read from a trace file sizes an allocation (docs/security.md):
//! this test binary's allocator records the largest single allocation while
//! crafted and randomly damaged traces are read and analysed. The readers'
//! own buffers are bounded by the longest line or header object they accept
//! (1 MiB, in a vector that may double once); anything sized by a crafted
//! CPU count, CPU number or timestamp would be gigabytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use schedtrace::analysis::{Analyzer, Options};
use schedtrace::trace::read_file;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Twice the longest line or object a reader buffers, plus slack (the
/// file is read through a 1 MiB buffer too).
const BOUND: usize = 4 << 20;

/// Read `bytes` as a trace file (as `schedtrace report` does), analyse
/// what it reads; returns the largest allocation made meanwhile.
fn largest_allocation(bytes: &[u8]) -> usize {
    let path = std::env::temp_dir().join(format!(
        "schedtrace-alloc-{}-{:?}.trace",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).unwrap();
    LARGEST.store(0, Ordering::Relaxed);
    let mut a = Analyzer::new(Options {
        keep_timeline: true,
        ..Default::default()
    });
    let _ = read_file(&path, &mut a);
    let _ = a.finish();
    let n = LARGEST.load(Ordering::Relaxed);
    let _ = std::fs::remove_file(&path);
    n
}

const HEADER: &str = r#"{"type":"header","schema":"schedtrace-trace","version":1,"clock":"CLOCK_MONOTONIC","wall_clock_offset_ns":0,"ncpus":2,"target":{"pid":100,"comm":"app"},"kernel_release":"k","hostname":"h","tool_version":"t","start_ns":1000}"#;

fn switch(ts: u64, cpu: u64, tid: u64) -> String {
    format!(
        r#"{{"type":"switch","ts":{ts},"cpu":{cpu},"prev":{{"tid":{tid},"tgid":100,"comm":"app","prio":120}},"next":{{"tid":0,"tgid":0,"comm":"swapper/0","prio":0}},"prev_state":"S","prev_state_raw":1,"preempt":false}}"#
    )
}

fn sample() -> String {
    let mut t = format!("{HEADER}\n");
    for i in 0..200u64 {
        t.push_str(&switch(2_000 + 10 * i, i % 2, 100 + i % 5));
        t.push('\n');
    }
    t.push_str(r#"{"type":"lost","ts":5000,"cpu":1,"count":3}"#);
    t.push('\n');
    t.push_str(r#"{"type":"end","end_ns":9000,"events":200,"lost_events":3,"lost_per_cpu":[0,3],"complete":true,"reason":"duration"}"#);
    t.push('\n');
    t
}

#[test]
fn crafted_values_size_nothing() {
    let big = [
        "4294967295",
        "4000000000",
        "18446744073709551615",
        "9223372036854775807",
        "65536",
        "65537",
    ];
    let base = sample();
    // Every number of the sample, in turn, replaced by each huge value.
    let numbers: Vec<(usize, usize)> = {
        let b = base.as_bytes();
        let mut v = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let j = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                v.push((i, j));
                i = j;
            } else {
                i += 1;
            }
        }
        v
    };
    assert!(numbers.len() > 1000);
    for &(i, j) in numbers
        .iter()
        .take(400)
        .chain(numbers.iter().rev().take(40))
    {
        for value in big {
            let crafted = format!("{}{value}{}", &base[..i], &base[j..]);
            let n = largest_allocation(crafted.as_bytes());
            assert!(
                n <= BOUND,
                "{n} bytes allocated at once for {value} in place of {:?}",
                &base[i..j]
            );
        }
    }
}

#[test]
fn damaged_traces_size_nothing() {
    // A fixed-seed xorshift: the same damage every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = sample().into_bytes();
    let digits = b"0123456789";
    for _ in 0..3_000 {
        let mut t = base.clone();
        for _ in 0..1 + next() % 6 {
            let at = (next() % t.len() as u64) as usize;
            t[at] = match next() % 3 {
                0 => digits[(next() % 10) as usize],
                1 => (next() & 0xff) as u8,
                _ => b'9',
            };
        }
        let n = largest_allocation(&t);
        assert!(n <= BOUND, "{n} bytes allocated at once");
    }
}

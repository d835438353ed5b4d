//! Reading event lines fast: a scanner for exactly the switch and wakeup
//! lines schedtrace writes; anything else goes to serde.

use crate::event::{
    Comm, Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SwitchCounters, Symbol,
    Task, WakeContext,
};
use crate::trace::Record;

// Reading events fast. `Wire` is internally tagged, so serde first buffers
// every line into a generic tree to find `type`, then decodes from that:
// most of the reader's time. Switches and wakeups (nearly every line) are
// read instead by a scanner that accepts exactly the lines schedtrace
// writes: fields in its order, no spaces, names of printable ASCII without
// escapes, numbers without leading zeros. Anything else takes the general
// path, which accepts a superset and gives the same records where both
// accept a line (tests check both).

/// A cursor over one line.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    /// The literal `l` next, passed over. (Always inlined: with the
    /// literal's length known, the comparison is a few loads, not a call.)
    #[inline(always)]
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        let rest = self.b.get(self.i..)?;
        rest.starts_with(l).then(|| self.i += l.len())
    }

    /// A JSON non-negative integer that fits `u64`: no leading zero, no
    /// overflow. Read eight digits at a time ([`eight_digits`]); a number
    /// of fewer digits (nearly all of them) in one step, inlined.
    #[inline]
    fn uint(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let Some(chunk) = rest.first_chunk::<8>() else {
            return self.uint_slow();
        };
        let (v, k) = eight_digits(*chunk);
        if k == 8 {
            return self.uint_long(v);
        }
        if k == 0 || (k > 1 && rest[0] == b'0') {
            return None;
        }
        self.i += k;
        Some(v)
    }

    /// [`Self::uint`] of a number whose first eight digits, `high`, were
    /// read: a timestamp's 14 in two steps.
    #[inline(never)]
    fn uint_long(&mut self, high: u64) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let (low, more) = eight_digits(chunk_at(rest, 8));
        if more == 8 {
            return self.uint_slow();
        }
        if rest[0] == b'0' {
            return None;
        }
        // At most 15 digits: no overflow.
        self.i += 8 + more;
        Some(high * POW10[more] + low)
    }

    /// [`Self::uint`] one digit at a time: 19 digits always fit
    /// (10^19 - 1 < 2^64), only a 20th needs checking.
    fn uint_slow(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let digit = |n: usize| rest.get(n).filter(|c| c.is_ascii_digit()).map(|c| c - b'0');
        let (mut v, mut n) = (0u64, 0usize);
        while n < 19
            && let Some(d) = digit(n)
        {
            v = v * 10 + u64::from(d);
            n += 1;
        }
        if n == 0 || (n > 1 && rest[0] == b'0') {
            return None;
        }
        if let Some(d) = digit(n) {
            v = v.checked_mul(10)?.checked_add(u64::from(d))?;
            n += 1;
            if digit(n).is_some() {
                return None;
            }
        }
        self.i += n;
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        self.uint()?.try_into().ok()
    }

    fn i32(&mut self) -> Option<i32> {
        if self.lit(b"-").is_some() {
            let v = self.uint()?;
            // No "-0": serde reads it as a float.
            (v != 0).then_some(())?;
            i32::try_from(-(i64::try_from(v).ok()?)).ok()
        } else {
            self.u32()?.try_into().ok()
        }
    }

    fn bool(&mut self) -> Option<bool> {
        if self.lit(b"true").is_some() {
            Some(true)
        } else {
            self.lit(b"false").map(|()| false)
        }
    }

    /// A string of printable ASCII without quotes or escapes, and its
    /// quotes: its bytes (ASCII, so also UTF-8).
    fn plain(&mut self) -> Option<&'a [u8]> {
        self.lit(b"\"")?;
        let rest = &self.b[self.i..];
        let n = rest.iter().position(|&c| !super::plain_byte(c))?;
        // The first byte that is not plain must close the string.
        (rest[n] == b'"').then_some(())?;
        self.i += n + 1;
        Some(&rest[..n])
    }

    /// [`Self::plain`] as a `str`.
    fn plain_str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.plain()?).ok()
    }

    /// [`Self::plain`] as a task name (its bytes as they are: no UTF-8
    /// pass, cut as [`Comm::new`] cuts a name).
    fn comm(&mut self) -> Option<Comm> {
        Some(Comm::from_prefix(self.plain()?))
    }

    /// `{"tid":N,"tgid":N,"comm":"...","prio":N}`
    fn task(&mut self) -> Option<Task> {
        self.lit(b"{\"tid\":")?;
        let tid = self.u32()?;
        self.lit(b",\"tgid\":")?;
        let tgid = self.u32()?;
        self.lit(b",\"comm\":")?;
        let comm = self.comm()?;
        self.lit(b",\"prio\":")?;
        let prio = self.i32()?;
        self.lit(b"}")?;
        Some(Task {
            tid,
            tgid,
            comm,
            prio,
        })
    }

    /// `,"prev_off":{...}` as the writer writes it, if there.
    fn off_cpu(&mut self) -> Option<Option<OffCpu>> {
        if self.lit(b",\"prev_off\":{").is_none() {
            return Some(None);
        }
        let mut o = OffCpu::default();
        if self.lit(b"\"syscall\":").is_some() {
            let nr = self.u32()?;
            o.syscall = Some(nr);
            if self.lit(b",\"syscall_name\":").is_some() {
                // Derived from the number: the general path ignores it too,
                // but only the name the writer would write is accepted here.
                let name = self.plain_str()?;
                (crate::syscalls::name(nr) == Some(name)).then_some(())?;
            }
            self.lit(b",")?;
        }
        self.lit(b"\"iowait\":")?;
        o.iowait = self.bool()?;
        if self.lit(b",\"kernel_stack\":").is_some() {
            o.kernel_stack = Some(self.u32()?);
        }
        if self.lit(b",\"user_stack\":").is_some() {
            o.user_stack = Some(self.u32()?);
        }
        if self.lit(b",\"stack_lost\":true").is_some() {
            o.stack_lost = true;
        }
        self.lit(b"}")?;
        Some(Some(o))
    }

    /// `,"KEY":N` if the line has it there (`Some(None)` if not).
    fn opt_uint(&mut self, key: &[u8]) -> Option<Option<u64>> {
        match self.lit(key) {
            Some(()) => self.uint().map(Some),
            None => Some(None),
        }
    }

    /// An optional `,"prev_counters":{...}` (`None`: a malformed one).
    fn prev_counters(&mut self) -> Option<Option<PrevCounters>> {
        if self.lit(b",\"prev_counters\":{\"runtime_ns\":").is_none() {
            return Some(None);
        }
        let runtime_ns = self.uint()?;
        let run_clock_ns = self.opt_uint(b",\"run_clock_ns\":")?;
        let pcount = match self.opt_uint(b",\"pcount\":")? {
            Some(v) => Some(u32::try_from(v).ok()?),
            None => None,
        };
        self.lit(b",\"nvcsw\":")?;
        let nvcsw = self.u32()?;
        self.lit(b",\"nivcsw\":")?;
        let nivcsw = self.u32()?;
        self.lit(b"}")?;
        Some(Some(PrevCounters {
            runtime_ns,
            run_clock_ns,
            pcount,
            nvcsw,
            nivcsw,
        }))
    }

    /// An optional `,"next_counters":{...}` (`None`: a malformed one).
    fn next_counters(&mut self) -> Option<Option<NextCounters>> {
        if self.lit(b",\"next_counters\":{\"runtime_ns\":").is_none() {
            return Some(None);
        }
        let runtime_ns = self.uint()?;
        let pcount = match self.opt_uint(b",\"pcount\":")? {
            Some(v) => Some(u32::try_from(v).ok()?),
            None => None,
        };
        self.lit(b"}")?;
        Some(Some(NextCounters { runtime_ns, pcount }))
    }

    /// The rest of a `context` object after `{"kind":`, as the writer
    /// puts it: the fields present in their order, then `}`.
    fn context(&mut self) -> Option<WakeContext> {
        let kind = self.plain_str()?;
        let mut function = None;
        let mut soft = false;
        let mut vector = None;
        let mut irq = None;
        let mut name = None;
        if self.lit(b",\"function\":").is_some() {
            function = Some(Symbol::new(self.plain_str()?));
        }
        if self.lit(b",\"soft\":true").is_some() {
            soft = true;
        }
        if self.lit(b",\"vector\":").is_some() {
            vector = Some(self.u32()?);
        }
        if self.lit(b",\"irq\":").is_some() {
            irq = Some(self.u32()?);
        }
        if self.lit(b",\"name\":").is_some() {
            name = Some(Symbol::new(self.plain_str()?));
        }
        self.lit(b"}")?;
        Some(match kind {
            "task" => WakeContext::Task,
            "timer" => WakeContext::Timer { function, soft },
            "softirq" => WakeContext::Softirq { vector },
            "hardirq" => WakeContext::Hardirq { irq, name },
            "nmi" => WakeContext::Nmi,
            _ => WakeContext::Unknown,
        })
    }

    fn end(&mut self) -> Option<()> {
        self.lit(b"}")?;
        (self.i == self.b.len()).then_some(())
    }

    /// The rest of a switch line after its `cpu`, up to the closing `}`.
    #[inline(always)]
    fn switch(&mut self) -> Option<EventKind> {
        self.lit(b",\"prev\":")?;
        let prev = self.task()?;
        self.lit(b",\"next\":")?;
        let next = self.task()?;
        self.lit(b",\"prev_state\":")?;
        self.plain()?;
        self.lit(b",\"prev_state_raw\":")?;
        let prev_state = self.uint()?;
        self.lit(b",\"preempt\":")?;
        let preempt = self.bool()?;
        let counters = SwitchCounters {
            prev: self.prev_counters()?,
            next: self.next_counters()?,
        };
        let next_wait = self.next_wait()?;
        let prev_off = self.off_cpu()?;
        Some(EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt,
            next_wait,
            counters,
            prev_off,
        })
    }

    /// An optional `,"next_wait":{...}` (`None`: a malformed one).
    #[inline(always)]
    fn next_wait(&mut self) -> Option<Option<KernelWait>> {
        Some(match self.lit(b",\"next_wait\":{\"run_delay_ns\":") {
            Some(()) => {
                let run_delay_ns = self.uint()?;
                self.lit(b",\"queued_ns\":")?;
                let queued_ns = self.uint()?;
                self.lit(b"}")?;
                Some(KernelWait {
                    run_delay_ns,
                    queued_ns,
                })
            }
            None => None,
        })
    }

    /// The rest of a wakeup (`wakeup_new` if `new`) line after its `cpu`,
    /// up to the closing `}`.
    #[inline(always)]
    fn wakeup(&mut self, new: bool) -> Option<EventKind> {
        self.lit(b",\"waker\":")?;
        let waker = self.task()?;
        self.lit(b",\"wakee\":")?;
        let wakee = self.task()?;
        self.lit(b",\"wakee_cpu\":")?;
        let wakee_cpu = self.u32()?;
        let wakee_run_delay_ns = self.opt_uint(b",\"wakee_run_delay_ns\":")?;
        let wakee_queued = self.lit(b",\"wakee_queued\":true").is_some();
        let context = match self.lit(b",\"context\":{\"kind\":") {
            Some(()) => self.context()?,
            None => WakeContext::Task,
        };
        let waker_process = match self.lit(b",\"waker_process\":") {
            Some(()) => Some(self.comm()?),
            None => None,
        };
        Some(EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            wakee_run_delay_ns,
            wakee_queued,
            new,
            context,
            waker_process,
        })
    }
}

/// 10^k for k up to 8.
const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The eight bytes of `b` from `at`, padded with NULs (not digits) past
/// its end (a stack id ends a line).
fn chunk_at(b: &[u8], at: usize) -> [u8; 8] {
    match b.get(at..at + 8) {
        Some(c) => c.try_into().unwrap_or_default(),
        None => {
            let tail = b.get(at..).unwrap_or_default();
            let mut c = [0u8; 8];
            c[..tail.len()].copy_from_slice(tail);
            c
        }
    }
}

/// The decimal digits that begin `b` (at most 8) as a number, and how many
/// there are, with a few word operations instead of a loop (SWAR: the
/// bytes are lanes of one `u64`, the first byte the lowest).
fn eight_digits(b: [u8; 8]) -> (u64, usize) {
    let w = u64::from_le_bytes(b);
    const LANES: u64 = 0x0101_0101_0101_0101;
    // A lane's top bit is set where the byte is below '0' (it borrows) or
    // above '9' (adding 0x46 reaches 0x80), or, for a byte of 0xba and
    // more (whose addition carries out), by the subtraction. A borrow or
    // carry reaches only lanes after a non-digit: the first set lane is
    // the first non-digit.
    let sub = w.wrapping_sub(LANES * u64::from(b'0'));
    let add = w.wrapping_add(LANES * 0x46);
    let non_digit = (sub | add) & (LANES * 0x80);
    let k = (non_digit.trailing_zeros() / 8) as usize;
    if k == 0 {
        return (0, 0);
    }
    // The k digits' values, moved to the top lanes (the lanes below are
    // leading zeros), then combined pairwise: 2, 4, 8 digits per lane.
    let mut x = (sub << (8 * (8 - k))) & (LANES * 0x0f);
    // (The products overflow into nothing kept.)
    x = x.wrapping_mul(10 * 256 + 1) >> 8;
    x = (x & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 * 65_536 + 1) >> 16;
    x = (x & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 * (1 << 32) + 1) >> 32;
    (x, k)
}

/// A switch or wakeup line as schedtrace writes it, decoded by [`Scan`];
/// `None` sends the line down the general path (which also produces the
/// error message for a bad line).
pub(super) fn fast_event(text: &[u8]) -> Option<Record> {
    let mut s = Scan { b: text, i: 0 };
    let kind = if s.lit(b"{\"type\":\"switch\",\"ts\":").is_some() {
        None
    } else if s.lit(b"{\"type\":\"wakeup\",\"ts\":").is_some() {
        Some(false)
    } else {
        s.lit(b"{\"type\":\"wakeup_new\",\"ts\":")?;
        Some(true)
    };
    let ts = s.uint()?;
    s.lit(b",\"cpu\":")?;
    let cpu = s.u32()?;
    let kind = match kind {
        None => s.switch()?,
        Some(new) => s.wakeup(new)?,
    };
    s.end()?;
    Some(Record::Event(Event { ts, cpu, kind }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::wire::{Wire, from_wire};
    use super::super::write_record;
    use super::*;
    use crate::testutil::*;

    /// Integers as serde reads them into a `u64`: no leading zero, no
    /// overflow (the one-pass loop checks only a 20th digit), and the scan
    /// stops at the first non-digit.
    /// (Each number also followed by enough of a line for the eight-digit
    /// path, which must read it the same.)
    #[test]
    fn uint_takes_what_fits_u64_and_nothing_else() {
        let read = |t: &str| {
            let scan = |b: &[u8]| {
                let mut s = Scan { b, i: 0 };
                s.uint().map(|v| (v, s.i))
            };
            let alone = scan(t.as_bytes());
            let in_line = scan(format!("{t},\"next\":{{}}}}").as_bytes());
            assert_eq!(alone, in_line, "{t}");
            alone
        };
        assert_eq!(read("0"), Some((0, 1)));
        assert_eq!(read("7,"), Some((7, 1)));
        assert_eq!(
            read("9999999999999999999}"),
            Some((9_999_999_999_999_999_999, 19))
        );
        assert_eq!(read("18446744073709551615"), Some((u64::MAX, 20)));
        for bad in [
            "",
            "-1",
            "01",
            "00",
            "18446744073709551616",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
        for v in [1u64, 10, 4_294_967_296, u64::MAX / 10, u64::MAX - 1] {
            assert_eq!(read(&v.to_string()), Some((v, v.to_string().len())));
        }
    }

    /// The fast path for switch and wakeup lines decodes exactly what the
    /// general path does, for every line the writer produces, and declines
    /// lines the general path would refuse.
    #[test]
    fn fast_event_path_matches_the_general_path() {
        let odd = |tid: u32, name: &[u8]| {
            let mut b = [0u8; schedtrace_common::COMM_LEN];
            b[..name.len()].copy_from_slice(name);
            Task {
                tid,
                tgid: 3,
                comm: Comm::from_bytes(b),
                prio: -5,
            }
        };
        let waited = with_wait(
            switch(u64::MAX, u32::MAX, odd(9, b"x"), 0, task(102)),
            u64::MAX,
            0,
        );
        let plain = [
            switch(1, 0, task(101), 1, task(0)),
            waited,
            wakeup(6, 1, task(7), task(101), true),
            wakeup(0, 0, odd(0, b""), odd(1, b"~ !"), false),
            with_off(
                switch(7, 0, task(101), 1, task(0)),
                Some("futex"),
                Some(3),
                Some(0),
            ),
            with_off(switch(8, 0, task(101), 2, task(0)), None, None, None),
            timer_wakeup(7, 0, task(0), task(101)),
            from_process(wakeup(8, 1, task(7), task(101), false), "client"),
            in_context(
                wakeup(9, 1, task(7), task(101), false),
                WakeContext::Timer {
                    function: None,
                    soft: true,
                },
            ),
            in_context(
                wakeup(10, 1, task(7), task(101), false),
                WakeContext::Softirq { vector: Some(1) },
            ),
            in_context(
                wakeup(11, 1, task(7), task(101), false),
                WakeContext::Hardirq {
                    irq: Some(24),
                    name: Some(Symbol::new("virtio0-input.0")),
                },
            ),
            in_context(wakeup(12, 1, task(7), task(101), false), WakeContext::Nmi),
            in_context(
                wakeup(13, 1, task(7), task(101), false),
                WakeContext::Unknown,
            ),
        ];
        // Names with escapes are left to the general path.
        let escaped = [
            switch(u64::MAX, u32::MAX, odd(7, b"a\"b\\c\td"), 0x402, task(102)),
            wakeup(5, 1, task(7), odd(8, b"caf\xc3\xa9 \xff"), false),
        ];
        for (e, fast_path) in plain
            .iter()
            .map(|e| (e, true))
            .chain(escaped.iter().map(|e| (e, false)))
        {
            let mut line = Vec::new();
            write_record(&mut line, &Record::Event(*e)).unwrap();
            let text = line.trim_ascii();
            let general = from_wire(serde_json::from_slice::<Wire>(text).unwrap()).unwrap();
            if fast_path {
                assert_eq!(general, Record::Event(*e));
            }
            match fast_event(text) {
                Some(fast) => assert_eq!(fast, general),
                None => assert!(!fast_path, "declined {}", String::from_utf8_lossy(text)),
            }
        }
        for bad in [
            &b"{\"type\":\"switch\",\"ts\":1}"[..],
            b"{\"type\":\"switch\",\"ts\":-1,\"cpu\":0}",
            b"{\"type\":\"wakeup\",\"ts\":1,\"cpu\":0,\"waker\":{}}",
        ] {
            assert!(fast_event(bad).is_none());
            assert!(serde_json::from_slice::<Wire>(bad).is_err());
        }
        // Without prev_state the general path refuses a switch; so does the fast one.
        let mut line = Vec::new();
        write_record(&mut line, &Record::Event(plain[0])).unwrap();
        let line = String::from_utf8(line).unwrap();
        let text = line.replace("\"prev_state\":\"S\",", "");
        assert!(fast_event(text.trim().as_bytes()).is_none());
        assert!(serde_json::from_slice::<Wire>(text.trim().as_bytes()).is_err());
        // JSON has no leading zeros; "-0" is left to the general path.
        let zero = line.replace("\"ts\":1,", "\"ts\":01,");
        assert!(fast_event(zero.trim().as_bytes()).is_none());
        assert!(serde_json::from_slice::<Wire>(zero.trim().as_bytes()).is_err());
        let minus_zero = line.replacen("\"prio\":120", "\"prio\":-0", 1);
        assert_ne!(minus_zero, line);
        assert!(fast_event(minus_zero.trim().as_bytes()).is_none());
    }

    proptest! {
        #![proptest_config(crate::trace::fuzz::config())]

        /// Eight digits at a time reads what one at a time reads, wherever
        /// the digits stop and whatever byte stops them.
        #[test]
        fn uint_fast_reads_as_the_slow_path(
            digits in "[0-9]{0,24}",
            tail in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut b = digits.into_bytes();
            b.extend(tail);
            let mut fast = Scan { b: &b, i: 0 };
            let mut slow = Scan { b: &b, i: 0 };
            prop_assert_eq!(fast.uint(), slow.uint_slow());
            prop_assert_eq!(fast.i, slow.i);
        }

        /// The eight-digit step against a digit loop, on any eight bytes.
        #[test]
        fn eight_digits_reads_the_leading_digits(b in any::<[u8; 8]>()) {
            let k = b.iter().take_while(|c| c.is_ascii_digit()).count();
            let v = b[..k].iter().fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
            prop_assert_eq!(eight_digits(b), (v, k));
        }

        /// Whatever the fast path accepts, the general path accepts too
        /// and reads the same: lines schedtrace writes, with one byte
        /// changed or added, or cut short.
        #[test]
        fn fast_path_accepts_only_what_the_general_path_reads_the_same(
            ts in any::<u64>(),
            cpu in any::<u32>(),
            tids in any::<(u32, u32, u32)>(),
            prios in any::<(i32, i32)>(),
            names in ("[ -~]{0,15}", "[ -~]{0,15}"),
            state in any::<u32>(),
            wait in proptest::option::of(any::<(u64, u32)>()),
            prev_counters in proptest::option::of(any::<(u64, Option<u64>, Option<u32>, u32, u32)>()),
            next_counters in proptest::option::of(any::<(u64, Option<u32>)>()),
            off in proptest::option::of(any::<(Option<u32>, bool, Option<u32>, Option<u32>, bool)>()),
            wakeup_line in any::<bool>(),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            op in 0u8..3,
        ) {
            let t = |tid, tgid, prio, name: &str| Task { tid, tgid, comm: Comm::new(name), prio };
            let a = t(tids.0, tids.1, prios.0, &names.0);
            let b = t(tids.2, tids.1, prios.1, &names.1);
            let prev_off = off.map(|(syscall, iowait, kernel_stack, user_stack, stack_lost)| OffCpu {
                syscall: syscall.map(|n| n % 500),
                iowait,
                kernel_stack,
                user_stack,
                stack_lost,
            });
            let kind = if wakeup_line {
                let name = Some(Symbol::new(&names.0));
                let context = match state % 7 {
                    0 => WakeContext::Task,
                    1 => WakeContext::Timer { function: name, soft: state % 2 == 0 },
                    2 => WakeContext::Softirq { vector: Some(state / 7) },
                    3 => WakeContext::Hardirq { irq: Some(state), name },
                    4 => WakeContext::Hardirq { irq: None, name: None },
                    5 => WakeContext::Nmi,
                    _ => WakeContext::Unknown,
                };
                let waker_process = (state % 3 == 0).then(|| Comm::new(&names.1));
                EventKind::Wakeup {
                    waker: a,
                    wakee: b,
                    wakee_cpu: cpu,
                    wakee_run_delay_ns: (state % 5 == 0).then_some(u64::from(state) << 20),
                    wakee_queued: state % 4 == 1,
                    new: state % 2 == 0,
                    context,
                    waker_process,
                }
            } else {
                EventKind::Switch {
                    prev: a,
                    next: b,
                    prev_state: state.into(),
                    preempt: state % 3 == 0,
                    next_wait: wait.map(|(r, q)| KernelWait { run_delay_ns: r, queued_ns: q.into() }),
                    counters: SwitchCounters {
                        prev: prev_counters.map(|(runtime_ns, run_clock_ns, pcount, nvcsw, nivcsw)| {
                            PrevCounters { runtime_ns, run_clock_ns, pcount, nvcsw, nivcsw }
                        }),
                        next: next_counters
                            .map(|(runtime_ns, pcount)| NextCounters { runtime_ns, pcount }),
                    },
                    prev_off,
                }
            };
            let e = Event { ts, cpu, kind };
            let mut line = Vec::new();
            write_record(&mut line, &Record::Event(e)).unwrap();
            let mut text = line.trim_ascii().to_vec();
            let plain = names.0.bytes().chain(names.1.bytes()).all(|c| c != b'"' && c != b'\\');
            if plain {
                prop_assert_eq!(fast_event(&text), Some(Record::Event(e)));
            }
            let (len, i) = (text.len(), at.index(text.len() + 1));
            match op {
                0 => text.truncate(i),
                1 => text.insert(i, byte),
                _ => text[i.min(len - 1)] = byte,
            }
            if let Some(fast) = fast_event(&text) {
                let general = crate::trace::jsonl::record_from_json(&text);
                prop_assert_eq!(general.ok(), Some(fast));
            }
        }
    }
}

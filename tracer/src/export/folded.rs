//! Folded off-CPU stacks (`--folded FILE`), one line per stack: the thread
//! first (`name-TID`, with its role when known), then the frames from the
//! root of the user stack to the innermost kernel frame, a space, and the
//! off-CPU microseconds; as bcc's `offcputime -f` writes and flamegraph.pl,
//! inferno and speedscope read. The time is the thread's sleeping and
//! blocked time that began at a switch-out with that stack (the run-queue
//! wait after the wakeup is runnable time, not counted). A trace without
//! stacks gives one line per thread and wait reason, the reason as the
//! frame (`[epoll_wait (event loop idle)]`); with stacks, the time of
//! sleeps that have none (their stack was lost, or the sleep was under way
//! when tracing started) is such a line too (`[futex (lock/condvar), no stack]`),
//! so that a thread's lines add up to its sleeping and blocked time.

use std::io::Write;

use super::{Exporter, Report};
use crate::analysis::summary::{Summary, ThreadSummary};
use crate::trace::Stack;

pub struct Folded;

/// A frame name as folded text allows it: no `;` (the separator) and no
/// line breaks.
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The frames of a stack from its root, named (`0x...` when unknown).
fn root_first(stack: &Stack) -> impl Iterator<Item = String> + '_ {
    stack.frames.iter().rev().map(|f| match &f.name {
        Some(n) => clean(n),
        None => format!("{:#x}", f.addr),
    })
}

/// The root frame of a thread's stacks.
pub(crate) fn thread_frame(t: &ThreadSummary) -> String {
    let name = clean(&t.comm);
    match &t.role {
        Some(r) => format!("{name}-{} ({})", t.tid, clean(&r.label)),
        None => format!("{name}-{}", t.tid),
    }
}

/// The folded stacks of thread `t` and their off-CPU ns, in the order of
/// the summary (largest first); identical lines are merged.
pub(crate) fn thread_lines(s: &Summary, t: &ThreadSummary) -> Vec<(String, u64)> {
    let mut lines: Vec<(String, u64)> = Vec::new();
    let mut push = |line: String, ns: u64| match lines.iter_mut().find(|l| l.0 == line) {
        Some(l) => l.1 += ns,
        None => lines.push((line, ns)),
    };
    let root = thread_frame(t);
    for st in t.stacks.iter().filter(|x| x.ns > 0) {
        let mut frames = vec![root.clone()];
        for id in [st.user_stack, st.kernel_stack].into_iter().flatten() {
            match s.stack_table.get(&id) {
                Some(stack) => frames.extend(root_first(stack)),
                None => frames.push(format!("[stack {id} lost]")),
            }
        }
        push(frames.join(";"), st.ns);
    }
    for o in t.unstacked() {
        push(
            format!("{root};[{}]", clean(&t.unstacked_reason(&o.key))),
            o.ns,
        );
    }
    lines
}

/// Every thread's folded lines, with the value in µs (lines under 1 µs
/// dropped).
pub(crate) fn folded_text(s: &Summary) -> String {
    let mut out = String::new();
    for t in &s.threads {
        for (line, ns) in thread_lines(s, t) {
            let us = (ns + 500) / 1000;
            if us > 0 {
                out.push_str(&format!("{line} {us}\n"));
            }
        }
    }
    out
}

impl Exporter for Folded {
    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(folded_text(report.summary).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;
    use crate::trace::{Record, StackKind};

    const MS: u64 = 1_000_000;

    /// 101 sleeps 10 ms and 5 ms in one stack, 20 ms in another; 102 sleeps
    /// in nanosleep without stacks.
    fn recs() -> Vec<Record> {
        let ev = [
            with_off(
                switch(2 * MS, 0, task(101), 1, task(0)),
                Some("futex"),
                Some(1),
                Some(2),
            ),
            wakeup(12 * MS, 1, task(7), task(101), false),
            switch(12 * MS, 0, task(0), 0, task(101)),
            with_off(
                switch(13 * MS, 0, task(101), 1, task(0)),
                Some("read"),
                Some(3),
                Some(2),
            ),
            wakeup(33 * MS, 1, task(7), task(101), false),
            switch(33 * MS, 0, task(0), 0, task(101)),
            with_off(
                switch(34 * MS, 0, task(101), 1, task(0)),
                Some("futex"),
                Some(1),
                Some(2),
            ),
            wakeup(39 * MS, 1, task(7), task(101), false),
            switch(39 * MS, 0, task(0), 0, task(101)),
            with_off(
                switch(40 * MS, 1, task(102), 1, task(0)),
                Some("nanosleep"),
                None,
                None,
            ),
        ];
        let mut r = trace(2, MS, &[(101, 'R'), (102, 'R')], &ev, 50 * MS);
        let end = r.pop().unwrap();
        r.push(stack(
            1,
            StackKind::Kernel,
            0xffff_0000,
            &["schedule", "futex_wait", "do_futex"],
        ));
        r.push(stack(
            2,
            StackKind::User,
            0x1000,
            &["pthread_cond_wait", "wait_for;work", "main"],
        ));
        r.push(stack(
            3,
            StackKind::Kernel,
            0xffff_1000,
            &["schedule", "pipe_read", "vfs_read"],
        ));
        r.push(end);
        r
    }

    /// Each thread's folded lines add up to its sleeping and blocked time.
    fn assert_totals_are_off_cpu_time(s: &Summary) {
        for t in &s.threads {
            let total: u64 = thread_lines(s, t).iter().map(|l| l.1).sum();
            let off = t.states.sleeping_ns + t.states.blocked_ns;
            assert_eq!(total, off, "{}", t.tid);
        }
    }

    #[test]
    fn lines_go_from_the_thread_through_user_to_kernel_frames() {
        let (s, _) = analyze(&recs(), Options::default());
        let text = folded_text(&s);
        assert_eq!(
            text,
            "worker-102-102;[nanosleep (sleep)] 10000\n\
             worker-101-101;main;wait_for:work;pthread_cond_wait;vfs_read;pipe_read;schedule 20000\n\
             worker-101-101;main;wait_for:work;pthread_cond_wait;do_futex;futex_wait;schedule 15000\n"
        );
        // Threads by on-CPU time (102 ran 1..40 ms), each thread's stacks by
        // time. The folded total of a thread is its sleeping and blocked time.
        assert_totals_are_off_cpu_time(&s);
    }

    #[test]
    fn sleeps_without_a_stack_keep_their_time_under_their_reason() {
        // 101's last sleep (5 ms in futex) lost its stack in the kernel.
        let mut r = recs();
        for rec in &mut r {
            if let Record::Event(e) = rec
                && e.ts == 34 * MS
                && let crate::event::EventKind::Switch {
                    prev_off: Some(o), ..
                } = &mut e.kind
            {
                (o.kernel_stack, o.user_stack, o.stack_lost) = (None, None, true);
            }
        }
        let (s, _) = analyze(&r, Options::default());
        assert_eq!(s.lost_stacks, 1);
        let text = folded_text(&s);
        assert!(
            text.contains("worker-101-101;[futex (lock/condvar), no stack] 5000\n"),
            "{text}"
        );
        assert!(
            text.contains(";do_futex;futex_wait;schedule 10000\n"),
            "{text}"
        );
        // A thread without stacks still has its reasons alone.
        assert!(
            text.contains("worker-102-102;[nanosleep (sleep)] 10000\n"),
            "{text}"
        );
        assert_totals_are_off_cpu_time(&s);
    }

    /// inferno's own folded-stack reader takes the file (it draws it).
    #[test]
    fn inferno_reads_the_lines() {
        let (s, _) = analyze(&recs(), Options::default());
        let text = folded_text(&s);
        let mut svg = Vec::new();
        let mut opt = inferno::flamegraph::Options::default();
        inferno::flamegraph::from_reader(&mut opt, text.as_bytes(), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("pipe_read"));
        assert!(svg.contains("worker-102-102"));
    }
}

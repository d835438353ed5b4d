//! The off-CPU profile as pprof (`--pprof FILE`): the profile format of
//! `go tool pprof`, Pyroscope, Parca and Grafana, written with the types
//! prost-build generates from pprof's own `profile.proto`
//! (`tracer/proto/`), gzip-compressed as the format asks.
//!
//! Two values per sample, `waits/count` (switch-outs into the wait) and
//! `off_cpu/nanoseconds` (the sleeping and blocked time that followed, the
//! default); one sample per thread, stack and wait reason, with labels
//! `thread` (name), `tid`, `pid`, `process`, `wait_reason` (the system call
//! and class), `wait_class`, and `role` when known. The stack is the kernel
//! stack (innermost first) followed by the user stack, as pprof lists
//! locations leaf first; frames are deduplicated by address and process,
//! functions by name and binary, binaries become mappings. A trace without
//! stacks gives one location per wait reason (`[epoll_wait (event loop
//! idle)]`).

use std::collections::HashMap;
use std::io::Write;

use prost::Message as _;

use super::{Exporter, Report};
use crate::analysis::summary::{StackTime, Summary, ThreadSummary};
use crate::trace::{Frame, StackKind};

#[cfg(test)]
mod generate;
#[rustfmt::skip]
#[allow(clippy::all, unreachable_pub, missing_docs, unused_qualifications, trivial_numeric_casts)]
mod profile;

use profile::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

pub struct Pprof;

/// The profile being built: its tables and their indexes.
#[derive(Default)]
struct Builder {
    p: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    mappings: HashMap<String, u64>,
    /// (kernel?, TGID for user frames, address) -> location id.
    locations: HashMap<(bool, u32, u64), u64>,
    /// Pseudo-locations named after a wait reason.
    reasons: HashMap<String, u64>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Builder::default();
        b.s("");
        b
    }

    /// The index of `s` in the string table.
    fn s(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn mapping(&mut self, module: &str) -> u64 {
        if let Some(&id) = self.mappings.get(module) {
            return id;
        }
        let id = self.p.mapping.len() as u64 + 1;
        let filename = self.s(module);
        self.p.mapping.push(Mapping {
            id,
            filename,
            has_functions: true,
            ..Mapping::default()
        });
        self.mappings.insert(module.to_string(), id);
        id
    }

    fn function(&mut self, name: &str, module: &str) -> u64 {
        let key = (name.to_string(), module.to_string());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.p.function.len() as u64 + 1;
        let (n, f) = (self.s(name), self.s(module));
        self.p.function.push(Function {
            id,
            name: n,
            system_name: n,
            filename: f,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    fn location(&mut self, kernel: bool, tgid: u32, f: &Frame) -> u64 {
        let key = (kernel, if kernel { 0 } else { tgid }, f.addr);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let module = f.module.clone().unwrap_or_else(|| {
            if kernel {
                "[kernel]".into()
            } else {
                "[unknown]".into()
            }
        });
        let name = f.name.clone().unwrap_or_else(|| format!("{:#x}", f.addr));
        let function_id = self.function(&name, &module);
        let mapping_id = self.mapping(&module);
        let id = self.p.location.len() as u64 + 1;
        self.p.location.push(Location {
            id,
            mapping_id,
            address: f.addr,
            line: vec![Line {
                function_id,
                line: 0,
            }],
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    fn reason_location(&mut self, reason: &str) -> u64 {
        if let Some(&id) = self.reasons.get(reason) {
            return id;
        }
        let name = format!("[{reason}]");
        let function_id = self.function(&name, "[schedtrace]");
        let id = self.p.location.len() as u64 + 1;
        self.p.location.push(Location {
            id,
            line: vec![Line {
                function_id,
                line: 0,
            }],
            ..Location::default()
        });
        self.reasons.insert(reason.to_string(), id);
        id
    }

    fn str_label(&mut self, key: &str, value: &str) -> Label {
        Label {
            key: self.s(key),
            str: self.s(value),
            ..Label::default()
        }
    }

    fn num_label(&mut self, key: &str, value: i64) -> Label {
        Label {
            key: self.s(key),
            num: value,
            ..Label::default()
        }
    }

    /// The labels of a sample of thread `t`.
    fn labels(&mut self, s: &Summary, t: &ThreadSummary, reason: &str, class: &str) -> Vec<Label> {
        let process = s
            .processes
            .iter()
            .find(|p| p.tgid == t.tgid)
            .map_or_else(|| t.comm.clone(), |p| p.comm.clone());
        let mut l = vec![
            self.str_label("thread", &t.comm),
            self.num_label("tid", t.tid.into()),
            self.num_label("pid", t.tgid.into()),
            self.str_label("process", &process),
            self.str_label("wait_reason", reason),
            self.str_label("wait_class", class),
        ];
        if let Some(r) = &t.role {
            l.push(self.str_label("role", &r.label));
        }
        l
    }

    /// The locations of a stacked sample, leaf first.
    fn stack_locations(&mut self, s: &Summary, t: &ThreadSummary, st: &StackTime) -> Vec<u64> {
        let mut ids = Vec::new();
        for (id, kernel) in [(st.kernel_stack, true), (st.user_stack, false)] {
            let Some(stack) = id.and_then(|id| s.stack_table.get(&id)) else {
                continue;
            };
            let kernel = kernel || stack.kind == StackKind::Kernel;
            for f in &stack.frames {
                ids.push(self.location(kernel, t.tgid, f));
            }
        }
        ids
    }
}

/// The profile of `s`.
pub(crate) fn profile(s: &Summary) -> Profile {
    let mut b = Builder::new();
    let waits = ValueType {
        r#type: b.s("waits"),
        unit: b.s("count"),
    };
    let off_cpu = ValueType {
        r#type: b.s("off_cpu"),
        unit: b.s("nanoseconds"),
    };
    b.p.sample_type = vec![waits, off_cpu];
    b.p.period_type = Some(off_cpu);
    b.p.period = 1;
    b.p.default_sample_type = off_cpu.r#type;
    b.p.time_nanos = (s.window_start_ns as i64).saturating_add(s.wall_clock_offset_ns);
    b.p.duration_nanos = s.window_ns as i64;
    let comment = b.s(&format!(
        "schedtrace off-CPU profile of PID {} ({}): sleeping and blocked time by stack",
        s.target_pid, s.target_comm
    ));
    b.p.comment = vec![comment];
    // What the profile may lack, as every output says it.
    let mut lacks = Vec::new();
    if s.lost_events > 0 {
        lacks.push(format!("{} events lost", s.lost_events));
    }
    if s.lost_processes > 0 {
        lacks.push(format!(
            "{} processes not traced (map full)",
            s.lost_processes
        ));
    }
    if s.lost_stacks > 0 {
        lacks.push(format!(
            "{} sleeps without their stack (under [reason, no stack])",
            s.lost_stacks
        ));
    }
    if s.late_events() > 0 {
        lacks.push(format!("{} events arrived late", s.late_events()));
    }
    if !s.complete {
        lacks.push(format!("the trace is incomplete ({})", s.stop_reason));
    }
    if !lacks.is_empty() {
        let c = b.s(&format!("schedtrace: {}", lacks.join("; ")));
        b.p.comment.push(c);
    }
    for t in &s.threads {
        for st in t.stacks.iter().filter(|x| x.ns > 0) {
            let location_id = b.stack_locations(s, t, st);
            let label = b.labels(s, t, &st.key.describe(), st.key.class.key());
            b.p.sample.push(sample(location_id, label, st.count, st.ns));
        }
        for o in t.unstacked() {
            let location_id = vec![b.reason_location(&t.unstacked_reason(&o.key))];
            let label = b.labels(s, t, &o.key.describe(), o.key.class.key());
            b.p.sample.push(sample(location_id, label, o.count, o.ns));
        }
    }
    b.p
}

/// A sample of `count` waits and `ns` off-CPU at a stack.
fn sample(location_id: Vec<u64>, label: Vec<Label>, count: u64, ns: u64) -> Sample {
    Sample {
        location_id,
        value: vec![count as i64, ns as i64],
        label,
        breakdown: vec![],
    }
}

impl Exporter for Pprof {
    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let bytes = profile(report.summary).encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        gz.write_all(&bytes)?;
        gz.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;
    use crate::trace::Record;

    const MS: u64 = 1_000_000;

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
                switch(14 * MS, 1, task(102), 1, task(0)),
                Some("epoll_wait"),
                Some(1),
                Some(2),
            ),
        ];
        let mut r = trace(2, MS, &[(101, 'R'), (102, 'R')], &ev, 20 * MS);
        let end = r.pop().unwrap();
        r.push(stack(
            1,
            StackKind::Kernel,
            0xffff_0000,
            &["schedule", "futex_wait"],
        ));
        r.push(stack(
            2,
            StackKind::User,
            0x1000,
            &["pthread_cond_wait", "main"],
        ));
        r.push(end);
        r
    }

    #[test]
    fn samples_carry_stacks_values_and_labels() {
        let (s, _) = analyze(&recs(), Options::default());
        let p = profile(&s);
        let st = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(st(0), "");
        assert_eq!(st(p.sample_type[1].r#type), "off_cpu");
        assert_eq!(st(p.sample_type[1].unit), "nanoseconds");
        assert_eq!(p.sample.len(), 2);
        // Frames shared by both threads are one set of locations.
        assert_eq!(p.location.len(), 4);
        let names = |sample: &Sample| -> Vec<&str> {
            sample
                .location_id
                .iter()
                .map(|id| {
                    let loc = &p.location[*id as usize - 1];
                    st(p.function[loc.line[0].function_id as usize - 1].name)
                })
                .collect()
        };
        for sample in &p.sample {
            assert_eq!(
                names(sample),
                vec!["schedule", "futex_wait", "pthread_cond_wait", "main"]
            );
            let label = |k: &str| sample.label.iter().find(|l| st(l.key) == k).unwrap();
            let tid = label("tid").num as u32;
            let t = s.thread(tid).unwrap();
            assert_eq!(sample.value, vec![1, (t.states.sleeping_ns) as i64]);
            assert_eq!(st(label("thread").str), t.comm);
            assert_eq!(label("pid").num, 100);
        }
        let reasons: Vec<&str> = p
            .sample
            .iter()
            .map(|x| {
                st(x.label
                    .iter()
                    .find(|l| st(l.key) == "wait_reason")
                    .unwrap()
                    .str)
            })
            .collect();
        assert_eq!(
            reasons,
            vec!["epoll_wait (event loop idle)", "futex (lock/condvar)"]
        );
    }

    #[test]
    fn sleeps_without_a_stack_keep_their_time_under_their_reason() {
        // 101 sleeps again at 15 ms, in futex, and the kernel lost that
        // sleep's stack: its 5 ms are a sample of their own.
        let mut lost = with_off(
            switch(15 * MS, 0, task(101), 1, task(0)),
            Some("futex"),
            None,
            None,
        );
        if let crate::event::EventKind::Switch {
            prev_off: Some(o), ..
        } = &mut lost.kind
        {
            o.stack_lost = true;
        }
        let mut r = recs();
        let end = r.len() - 3;
        r.insert(end, Record::Event(lost));
        let (s, _) = analyze(&r, Options::default());
        assert_eq!(s.lost_stacks, 1);
        let p = profile(&s);
        let st = |i: i64| p.string_table[i as usize].as_str();
        let frame = |sample: &Sample| {
            let loc = &p.location[sample.location_id[0] as usize - 1];
            st(p.function[loc.line[0].function_id as usize - 1].name)
        };
        let tid_of = |sample: &Sample| {
            sample
                .label
                .iter()
                .find(|l| st(l.key) == "tid")
                .unwrap()
                .num as u32
        };
        let unstacked: Vec<&Sample> = p
            .sample
            .iter()
            .filter(|x| frame(x) == "[futex (lock/condvar), no stack]")
            .collect();
        assert_eq!(unstacked.len(), 1);
        assert_eq!(tid_of(unstacked[0]), 101);
        assert_eq!(unstacked[0].value, vec![1, 5 * MS as i64]);
        // The comments say so.
        let comments: Vec<&str> = p.comment.iter().map(|&c| st(c)).collect();
        assert_eq!(
            comments[1], "schedtrace: 1 sleeps without their stack (under [reason, no stack])",
            "{comments:?}"
        );
        assert_eq!(
            profile(&analyze(&recs(), Options::default()).0)
                .comment
                .len(),
            1
        );
        // Every thread's samples add up to its sleeping time.
        for t in &s.threads {
            let total: i64 = p
                .sample
                .iter()
                .filter(|x| tid_of(x) == t.tid)
                .map(|x| x.value[1])
                .sum();
            assert_eq!(total, t.states.sleeping_ns as i64, "{}", t.tid);
        }
    }

    #[test]
    fn the_file_is_gzip_of_the_encoded_profile() {
        let (s, _) = analyze(&recs(), Options::default());
        let mut buf = Vec::new();
        Pprof
            .write(
                &Report {
                    summary: &s,
                    timeline: None,
                },
                &mut buf,
            )
            .unwrap();
        assert_eq!(&buf[..2], &[0x1f, 0x8b]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&buf[..]), &mut raw).unwrap();
        assert_eq!(Profile::decode(&raw[..]).unwrap(), profile(&s));
    }
}

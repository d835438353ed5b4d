//! Checks on every record read from a trace file, before any value is used
//! to size anything or enters the analysis (docs/security.md, "Trace files
//! given to report"). Both readers call [`Limits::check`] on each record and
//! turn an [`Invalid`] into a one-line error with the line or record number.

use super::{Header, Record};
use crate::event::EventKind;

/// Most CPUs a trace may declare. Linux's `NR_CPUS` tops out at 8192 on
/// the architectures it runs on today; the analysis keeps a few words per
/// CPU, so a generous bound costs nothing.
pub(crate) const MAX_CPUS: u32 = 65_536;

/// How far from the trace's start a timestamp may lie: 2^56 ns, about 2.3
/// years. Further is no trace schedtrace wrote, and would make a window
/// (and every total in it) absurd.
pub(crate) const MAX_SPAN_NS: u64 = 1 << 56;

/// Most further target processes a header may name: what the kernel's
/// map of targets besides the first holds (`MAX_CHILDREN`).
pub(crate) const MAX_ALSO: usize = schedtrace_common::MAX_CHILDREN as usize;

/// Most frames a stack record may hold: the kernel's `PERF_MAX_STACK_DEPTH`
/// (127), the depth of the stack map's entries a capture writes.
pub(crate) const MAX_STACK_FRAMES: usize = 127;

/// A value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("ncpus {0} is out of range (1 to {MAX_CPUS})")]
    Ncpus(u32),
    #[error("{field} {value} is out of range: the trace has CPUs 0 to {last}")]
    Cpu {
        field: &'static str,
        value: u32,
        last: u32,
    },
    #[error(
        "{field} {value} is out of range: more than 2^56 ns (about 2.3 years) from the trace's \
         start_ns {start}"
    )]
    Time {
        field: &'static str,
        value: u64,
        start: u64,
    },
    #[error("{field} has {len} entries for a trace of {ncpus} CPUs")]
    PerCpu {
        field: &'static str,
        len: usize,
        ncpus: u32,
    },
    #[error("a gap of CPU {cpu} ends ({to_ns}) before it starts ({from_ns})")]
    GapBackwards { cpu: u32, from_ns: u64, to_ns: u64 },
    #[error("stack {id} has {len} frames (at most {MAX_STACK_FRAMES})")]
    StackDepth { id: u32, len: usize },
    #[error("the header names {0} further target processes (at most {MAX_ALSO})")]
    TooManyTargets(usize),
}

/// What a trace's header allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    ncpus: u32,
    start_ns: u64,
}

impl Limits {
    /// The limits a header sets, if the header itself is sane.
    pub(crate) fn from_header(h: &Header) -> Result<Limits, Invalid> {
        if h.ncpus == 0 || h.ncpus > MAX_CPUS {
            return Err(Invalid::Ncpus(h.ncpus));
        }
        if h.also.len() > MAX_ALSO {
            return Err(Invalid::TooManyTargets(h.also.len()));
        }
        let l = Limits {
            ncpus: h.ncpus,
            start_ns: h.start_ns,
        };
        for &c in h.pinned_cpus.iter().flatten() {
            l.cpu("pinned_cpus", c)?;
        }
        Ok(l)
    }

    fn cpu(&self, field: &'static str, value: u32) -> Result<(), Invalid> {
        if value < self.ncpus {
            return Ok(());
        }
        Err(Invalid::Cpu {
            field,
            value,
            last: self.ncpus - 1,
        })
    }

    fn time(&self, field: &'static str, value: u64) -> Result<(), Invalid> {
        if value.abs_diff(self.start_ns) <= MAX_SPAN_NS {
            return Ok(());
        }
        Err(Invalid::Time {
            field,
            value,
            start: self.start_ns,
        })
    }

    /// Check one record (other than the header) against the limits.
    pub(crate) fn check(&self, r: &Record) -> Result<(), Invalid> {
        match r {
            Record::Header(h) => {
                Limits::from_header(h)?;
            }
            Record::Thread(t) => {
                self.time("ts", t.ts)?;
                self.cpu("cpu", t.cpu)?;
            }
            Record::Event(e) => {
                self.time("ts", e.ts)?;
                self.cpu("cpu", e.cpu)?;
                match e.kind {
                    EventKind::Wakeup { wakee_cpu, .. } => self.cpu("wakee_cpu", wakee_cpu)?,
                    EventKind::Migrate { from, to, .. } => {
                        self.cpu("from_cpu", from)?;
                        self.cpu("to_cpu", to)?;
                    }
                    _ => {}
                }
            }
            Record::Counters(c) => self.time("ts", c.ts)?,
            Record::Lost(l) => {
                self.time("ts", l.ts)?;
                self.cpu("cpu", l.cpu)?;
            }
            Record::Stack(st) => {
                if st.frames.len() > MAX_STACK_FRAMES {
                    return Err(Invalid::StackDepth {
                        id: st.id,
                        len: st.frames.len(),
                    });
                }
            }
            Record::End(e) => {
                self.time("end_ns", e.end_ns)?;
                for (field, v) in [
                    ("lost_per_cpu", &e.lost_per_cpu),
                    ("missing_switch_ins_per_cpu", &e.missing_switch_ins_per_cpu),
                ] {
                    if v.len() > self.ncpus as usize {
                        return Err(Invalid::PerCpu {
                            field,
                            len: v.len(),
                            ncpus: self.ncpus,
                        });
                    }
                }
                let o = &e.ordering;
                for (field, len) in [
                    ("late_per_cpu", o.late_per_cpu.len()),
                    ("gaps", o.gaps.len()),
                ] {
                    if len > self.ncpus as usize {
                        return Err(Invalid::PerCpu {
                            field,
                            len,
                            ncpus: self.ncpus,
                        });
                    }
                }
                for g in &o.gaps {
                    self.cpu("gaps.cpu", g.cpu)?;
                    self.time("gaps.from_ns", g.from_ns)?;
                    self.time("gaps.to_ns", g.to_ns)?;
                    if g.to_ns < g.from_ns {
                        return Err(Invalid::GapBackwards {
                            cpu: g.cpu,
                            from_ns: g.from_ns,
                            to_ns: g.to_ns,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::trace::{End, Frame, Gap, Lost, OrderMethod, Ordering, Stack, StackKind};

    fn limits() -> Limits {
        Limits::from_header(&header(2, 1_000)).unwrap()
    }

    #[test]
    fn headers_declare_a_sane_cpu_count() {
        for n in [0, MAX_CPUS + 1, u32::MAX] {
            let mut h = header(2, 1);
            h.ncpus = n;
            assert_eq!(Limits::from_header(&h), Err(Invalid::Ncpus(n)));
        }
        let mut h = header(2, 1);
        let other = crate::trace::TargetProcess {
            pid: 7,
            comm: "x".into(),
            ns_pid: None,
        };
        h.also = vec![other; MAX_ALSO + 1];
        assert_eq!(
            Limits::from_header(&h),
            Err(Invalid::TooManyTargets(MAX_ALSO + 1))
        );
        let mut h = header(2, 1);
        h.pinned_cpus = Some(vec![0, 5]);
        assert_eq!(
            Limits::from_header(&h).unwrap_err().to_string(),
            "pinned_cpus 5 is out of range: the trace has CPUs 0 to 1"
        );
    }

    #[test]
    fn cpus_and_times_are_checked_in_every_record() {
        let l = limits();
        let h = header(2, 1_000);
        let start = h.start_ns;
        l.check(&Record::Event(switch(start + 5, 1, task(101), 1, task(0))))
            .unwrap();
        let e = l
            .check(&Record::Event(switch(start, 2, task(101), 1, task(0))))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cpu 2 is out of range: the trace has CPUs 0 to 1"
        );
        let e = l
            .check(&Record::Event(switch(u64::MAX, 0, task(101), 1, task(0))))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Invalid::Time {
                    field: "ts",
                    value: u64::MAX,
                    ..
                }
            ),
            "{e}"
        );
        let e = l
            .check(&Record::Event(wakeup(start, 0, task(7), task(101), false)))
            .map(|_| ());
        assert!(e.is_ok());
        let mut w = wakeup(start, 0, task(7), task(101), false);
        if let EventKind::Wakeup { wakee_cpu, .. } = &mut w.kind {
            *wakee_cpu = u32::MAX;
        }
        assert!(matches!(
            l.check(&Record::Event(w)),
            Err(Invalid::Cpu {
                field: "wakee_cpu",
                ..
            })
        ));
        let lost = Lost {
            ts: start,
            cpu: u32::MAX,
            count: 1,
        };
        assert_eq!(
            l.check(&Record::Lost(lost)).unwrap_err().to_string(),
            "cpu 4294967295 is out of range: the trace has CPUs 0 to 1"
        );
        let end = |end_ns, lost_per_cpu| {
            Record::End(End {
                end_ns,
                events: 0,
                lost_events: 0,
                lost_per_cpu,
                complete: true,
                reason: String::new(),
                missing_switch_ins_per_cpu: vec![],
                recursion_misses: None,
                ordering: Default::default(),
                lost_processes: 0,
            })
        };
        l.check(&end(start + 10, vec![0, 0])).unwrap();
        assert!(l.check(&end(u64::MAX, vec![])).is_err());
        assert_eq!(
            l.check(&end(start, vec![0; 3])).unwrap_err().to_string(),
            "lost_per_cpu has 3 entries for a trace of 2 CPUs"
        );
        let ordered = |late_per_cpu: Vec<u64>, gaps: Vec<Gap>| {
            let Record::End(mut e) = end(start + 10, vec![]) else {
                unreachable!()
            };
            e.ordering = Ordering {
                method: Some(OrderMethod::Marks),
                late_per_cpu,
                gaps,
            };
            l.check(&Record::End(e)).map_err(|e| e.to_string())
        };
        let gap = |cpu, from_ns, to_ns| Gap {
            cpu,
            from_ns,
            to_ns,
        };
        assert_eq!(ordered(vec![1, 2], vec![gap(1, start, start + 10)]), Ok(()));
        assert_eq!(
            ordered(vec![0; 3], vec![]).unwrap_err(),
            "late_per_cpu has 3 entries for a trace of 2 CPUs"
        );
        assert_eq!(
            ordered(vec![], vec![gap(2, start, start + 10)]).unwrap_err(),
            "gaps.cpu 2 is out of range: the trace has CPUs 0 to 1"
        );
        assert!(ordered(vec![], vec![gap(0, start, u64::MAX)]).is_err());
        assert_eq!(
            ordered(vec![], vec![gap(0, start + 10, start + 5)]).unwrap_err(),
            format!(
                "a gap of CPU 0 ends ({}) before it starts ({})",
                start + 5,
                start + 10
            )
        );
        for ev in migrate_fork_exec_exit(start, start + 1, 1) {
            l.check(&Record::Event(ev)).unwrap();
        }
        let stack = |n| {
            Record::Stack(Stack {
                id: 3,
                kind: StackKind::User,
                tgid: 100,
                frames: vec![Frame::default(); n],
                thread: None,
            })
        };
        l.check(&stack(MAX_STACK_FRAMES)).unwrap();
        assert_eq!(
            l.check(&stack(MAX_STACK_FRAMES + 1))
                .unwrap_err()
                .to_string(),
            "stack 3 has 128 frames (at most 127)"
        );
    }
}

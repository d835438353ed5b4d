//! Who ran instead: the task that took a traced thread's CPU when it was
//! preempted, and the tasks that held the CPU while the thread waited for
//! it. Every switch record says which task left a CPU and which got it, so
//! the analysis follows each CPU's current task; a stretch between two
//! records of a CPU whose ends do not match (tasks switched without a
//! record) is "not recorded", not guessed.

use std::collections::VecDeque;

use crate::event::{Comm, Task};

/// A task holding a CPU, as a switch record names it (TID 0: the CPU was
/// idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Occupant {
    pub tid: u32,
    /// 0 when the trace does not know it.
    pub tgid: u32,
    pub comm: Comm,
}

impl Occupant {
    pub(crate) fn of(t: &Task) -> Occupant {
        Occupant {
            tid: t.tid,
            tgid: t.tgid,
            comm: t.comm,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.tid == 0
    }
}

/// Who held a CPU during a stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    Task(Occupant),
    /// Tasks switched on this CPU without a record in between.
    Unrecorded,
}

/// `[start, end)` on `cpu`, held by `holder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub cpu: u32,
    pub start: u64,
    pub end: u64,
    pub holder: Holder,
}

/// The stretches each CPU has been held, as far back as a waiting thread
/// may still ask about.
#[derive(Debug, Default)]
pub(crate) struct CpuTracker {
    cpus: Vec<CpuState>,
    /// Stretches held in all CPUs' `recent` (asked at every switch: kept
    /// rather than added up over the CPUs).
    held: usize,
}

#[derive(Debug, Default)]
struct CpuState {
    /// The task the last record put on this CPU, and when.
    current: Option<(Occupant, u64)>,
    /// Closed stretches, oldest first.
    recent: VecDeque<Hold>,
}

/// Stretches kept per CPU before the oldest go whatever their age (a thread
/// waiting longer than that many switches of its CPU loses the start of the
/// account, not the total of its wait).
const MAX_RECENT: usize = 4096;

impl CpuTracker {
    fn cpu(&mut self, cpu: u32) -> &mut CpuState {
        let i = cpu as usize;
        if self.cpus.len() <= i {
            self.cpus.resize_with(i + 1, CpuState::default);
        }
        &mut self.cpus[i]
    }

    /// A switch on `cpu` at `ts` from `prev` to `next`. Returns the stretch
    /// it closes.
    pub(crate) fn switch(&mut self, cpu: u32, ts: u64, prev: &Task, next: &Task) -> Option<Hold> {
        let st = self.cpu(cpu);
        let closed = st.current.map(|(occ, since)| Hold {
            cpu,
            start: since,
            end: ts,
            holder: if occ.tid == prev.tid {
                Holder::Task(Occupant {
                    // The later record may know more (a TGID, a new name).
                    tgid: if prev.tgid != 0 { prev.tgid } else { occ.tgid },
                    ..Occupant::of(prev)
                })
            } else {
                Holder::Unrecorded
            },
        });
        let mut grew = false;
        if let Some(h) = closed {
            if st.recent.len() >= MAX_RECENT {
                st.recent.pop_front();
            } else {
                grew = true;
            }
            st.recent.push_back(h);
        }
        st.current = Some((Occupant::of(next), ts));
        self.held += usize::from(grew);
        closed
    }

    /// [`Self::each_held`] into a new list.
    #[cfg(test)]
    pub(crate) fn held(&self, cpu: u32, from: u64, to: u64) -> Vec<Hold> {
        let mut v = Vec::new();
        self.each_held(cpu, from, to, |h| v.push(h));
        v
    }

    /// Each stretch of `cpu` overlapping `[from, to)`, clipped to it,
    /// newest first, handed to `f`. (A loop over the queue's two slices:
    /// as an iterator chain into `Vec::extend` it cost about 70
    /// instructions per switch on the pipe capture, about 25 as a loop;
    /// handed over instead of collected, as the caller only adds them up.)
    #[inline]
    pub(crate) fn each_held(&self, cpu: u32, from: u64, to: u64, mut f: impl FnMut(Hold)) {
        let Some(c) = self.cpus.get(cpu as usize) else {
            return;
        };
        let (older, newer) = c.recent.as_slices();
        for part in [newer, older] {
            for h in part.iter().rev() {
                if h.end <= from {
                    return;
                }
                let (start, end) = (h.start.max(from), h.end.min(to));
                if start < end {
                    f(Hold { start, end, ..*h });
                }
            }
        }
    }

    /// Forget stretches that ended before `ts` (no waiting thread started
    /// earlier).
    pub(crate) fn forget_before(&mut self, ts: u64) {
        for c in &mut self.cpus {
            while c.recent.front().is_some_and(|h| h.end <= ts) {
                c.recent.pop_front();
                self.held -= 1;
            }
        }
    }

    /// Stretches held in all.
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(
            self.held,
            self.cpus.iter().map(|c| c.recent.len()).sum::<usize>()
        );
        self.held
    }

    /// What each CPU holds at `end`, as open stretches closed there.
    pub(crate) fn open_at(&self, end: u64) -> Vec<Hold> {
        self.cpus
            .iter()
            .enumerate()
            .filter_map(|(cpu, c)| {
                let (occ, since) = c.current?;
                (since < end).then_some(Hold {
                    cpu: cpu as u32,
                    start: since,
                    end,
                    holder: Holder::Task(occ),
                })
            })
            .collect()
    }
}

/// Time and count per holder, for one thread: who preempted it, or whom it
/// waited behind. Few holders matter; past [`MAX_HOLDERS`] the rest are
/// added up as [`Holder::Unrecorded`]'s neighbour "others".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HolderTimes {
    entries: Vec<HolderEntry>,
    /// Time and count of holders past the cap.
    others: (u64, u64),
}

/// A holder with its time and count.
pub(crate) type HolderEntry = (Holder, u64, u64);

/// Distinct holders kept per thread and list.
const MAX_HOLDERS: usize = 32;

impl HolderTimes {
    pub(crate) fn add(&mut self, holder: Holder, ns: u64, count: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == holder) {
            e.1 += ns;
            e.2 += count;
        } else if self.entries.len() < MAX_HOLDERS {
            self.entries.push((holder, ns, count));
        } else {
            self.others.0 += ns;
            self.others.1 += count;
        }
    }

    /// Largest time first (then count); `others` as a last entry if any.
    pub(crate) fn top(&self, n: usize) -> (Vec<HolderEntry>, (u64, u64)) {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        let mut rest = self.others;
        for e in v.iter().skip(n) {
            rest.0 += e.1;
            rest.1 += e.2;
        }
        v.truncate(n);
        (v, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::task;

    #[test]
    fn stretches_follow_the_records_and_gaps_are_unrecorded() {
        let mut c = CpuTracker::default();
        assert_eq!(c.switch(0, 10, &task(100), &task(7)), None);
        // 7 held CPU 0 from 10 to 20.
        let h = c.switch(0, 20, &task(7), &task(0)).unwrap();
        assert_eq!(h.holder, Holder::Task(Occupant::of(&task(7))));
        assert_eq!((h.start, h.end), (10, 20));
        // Idle from 20; the next record says 8 left at 30: unrecorded.
        let h = c.switch(0, 30, &task(8), &task(101)).unwrap();
        assert_eq!(h.holder, Holder::Unrecorded);
        let got: Vec<_> = c.held(0, 15, 25).iter().map(|h| (h.start, h.end)).collect();
        assert_eq!(got, vec![(20, 25), (15, 20)]);
        c.forget_before(20);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.open_at(40)[0].holder,
            Holder::Task(Occupant::of(&task(101)))
        );
    }

    #[test]
    fn holder_lists_keep_the_largest_and_add_up_the_rest() {
        let mut t = HolderTimes::default();
        for i in 0..40u32 {
            t.add(Holder::Task(Occupant::of(&task(1000 + i))), u64::from(i), 1);
        }
        let (top, rest) = t.top(3);
        assert_eq!(
            top.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![31, 30, 29]
        );
        // 8 past the cap (32..39) and 29 below the top three (0..28).
        let below: u64 = (0..29).sum();
        let past: u64 = (32..40).sum();
        assert_eq!(rest, (below + past, 37));
    }
}

//! Running and runnable counts of a set of threads (a process, or all
//! traced threads), and their integrals over time: the parallelism
//! profile. The counts are constant between two of their changes, so the
//! integrals are added up lazily: a process's time is accounted when its
//! counts are about to change and at the end, never per event. Thousands of
//! processes (`--follow-children` on a build, `--all`) thus cost nothing per
//! event, and a profile holds only the counts it has reached, not one per
//! CPU.

use std::collections::BTreeMap;

use super::summary::Parallelism;
use super::thread::{State, Window};
use crate::event::Comm;

/// Running/runnable counts of a set of threads and the time integrals of them.
#[derive(Clone, Debug, Default)]
pub(super) struct ProcAcc {
    pub(super) comm: Comm,
    pub(super) running: u32,
    pub(super) runnable: u32,
    /// Time with exactly k threads running, for k up to the most seen.
    pub(super) running_ns: Vec<u64>,
    /// CPUs of the trace (the profile's length in the summary).
    ncpus: u32,
    /// Up to when (trace clock) its time has been accounted: its counts
    /// have been the same since.
    accounted_to: u64,
    pub(super) parallel_ns: u64,
    pub(super) time_sliced_ns: u64,
    pub(super) busy_ns: u64,
    pub(super) running_area: u128,
    pub(super) runnable_area: u128,
}

impl ProcAcc {
    /// A set of threads with none running or waiting yet, accounted up to
    /// `since`.
    pub(super) fn new(ncpus: u32, since: u64) -> Self {
        ProcAcc {
            running_ns: vec![0],
            ncpus,
            accounted_to: since,
            ..Default::default()
        }
    }

    /// Account its time from where it was accounted up to `to`, the part of
    /// it inside `w`. (Inlined: the transitions after the first of an
    /// event find nothing to add, and then make no call.)
    #[inline]
    pub(super) fn catch_up(&mut self, w: Window, to: u64) {
        if to > self.accounted_to {
            self.add(w.overlap(self.accounted_to, to));
            self.accounted_to = to;
        }
    }

    /// Account `dt` ns at the present counts. (Always inlined, into
    /// `catch_up`: it runs at nearly every event, and the call cost nearly
    /// half of it.)
    #[inline(always)]
    fn add(&mut self, dt: u64) {
        if dt == 0 {
            return;
        }
        let k = (self.running as usize).min(self.ncpus as usize);
        if self.running_ns.len() <= k {
            self.running_ns.resize(k + 1, 0);
        }
        self.running_ns[k] += dt;
        if self.running >= 2 {
            self.parallel_ns += dt;
        }
        if self.running + self.runnable >= 2 && self.runnable >= 1 {
            self.time_sliced_ns += dt;
        }
        if self.running >= 1 {
            self.busy_ns += dt;
        }
        self.running_area += self.running as u128 * dt as u128;
        self.runnable_area += self.runnable as u128 * dt as u128;
    }

    pub(super) fn shift(&mut self, old: State, new: State) {
        match old {
            State::Running { .. } => self.running = self.running.saturating_sub(1),
            State::Runnable => self.runnable = self.runnable.saturating_sub(1),
            _ => {}
        }
        match new {
            State::Running { .. } => self.running += 1,
            State::Runnable => self.runnable += 1,
            _ => {}
        }
    }

    pub(super) fn parallelism(&self, window: u64) -> Parallelism {
        let mean = |area: u128| {
            if window == 0 {
                0.0
            } else {
                area as f64 / window as f64
            }
        };
        let mut running_ns = self.running_ns.clone();
        running_ns.resize(self.ncpus as usize + 1, 0);
        Parallelism {
            running_ns,
            parallel_ns: self.parallel_ns,
            time_sliced_ns: self.time_sliced_ns,
            busy_ns: self.busy_ns,
            mean_running: mean(self.running_area),
            mean_runnable: mean(self.runnable_area),
        }
    }
}

/// The processes' accumulators. A thread's track keeps the index of its
/// process's ([`ThreadTrack::proc`](super::thread::ThreadTrack::proc)):
/// the counts nearly every event changes are found by it, not looked up
/// by TGID (two look-ups per switch in a map by TGID cost about 1% of the
/// analysis' instructions).
#[derive(Clone, Debug, Default)]
pub(super) struct Procs {
    /// By index, in order of first sight; a process is never removed, so
    /// an index stays valid.
    accs: Vec<ProcAcc>,
    /// TGID → index in `accs`, in TGID order (the summaries').
    by_tgid: BTreeMap<u32, u32>,
}

impl Procs {
    /// The index of `tgid`'s accumulator, made with `new` if it has none.
    pub(super) fn index_or_insert(&mut self, tgid: u32, new: impl FnOnce() -> ProcAcc) -> u32 {
        let accs = &mut self.accs;
        *self.by_tgid.entry(tgid).or_insert_with(|| {
            accs.push(new());
            (accs.len() - 1) as u32
        })
    }

    /// The accumulator at index `i` (see [`Self::index_or_insert`]).
    #[inline]
    pub(super) fn at(&mut self, i: u32) -> &mut ProcAcc {
        &mut self.accs[i as usize]
    }

    pub(super) fn get_mut(&mut self, tgid: u32) -> Option<&mut ProcAcc> {
        let i = *self.by_tgid.get(&tgid)?;
        Some(self.at(i))
    }

    /// Every accumulator with its TGID, in TGID order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &ProcAcc)> {
        self.by_tgid
            .iter()
            .map(|(&tgid, &i)| (tgid, &self.accs[i as usize]))
    }

    /// Every accumulator, in no particular order.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut ProcAcc> {
        self.accs.iter_mut()
    }

    /// Name each process `name` has a name for (by TGID).
    pub(super) fn rename(&mut self, name: impl Fn(u32) -> Option<Comm>) {
        for (&tgid, &i) in &self.by_tgid {
            if let Some(comm) = name(tgid) {
                self.accs[i as usize].comm = comm;
            }
        }
    }
}

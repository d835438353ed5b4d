//! The CPUs' occupancy records of a `--kernel-sums` capture
//! ([`Occupancy`]), folded as they come into how long k CPUs ran traced
//! threads, all together and by process. What it keeps is bounded by the
//! CPUs and the processes, not by the records: a capture that runs for
//! hours beside other busy processes (a record at each switch between a
//! traced thread and another) stays the same size.
//!
//! Records are folded in time order once every CPU is known to have handed
//! over those up to that time (the capture's marks). A CPU's state before
//! its first record is that record's `before`: the task it switched out had
//! held it since the trace began. Until that record comes, the CPU's state
//! is unknown, but constant; so the time is kept by which CPUs were still
//! unknown then (an *epoch*: the set only shrinks, one CPU at a time), and
//! resolved at the end, when each CPU's state from the start is known (its
//! first record's `before`, or a thread that held it throughout, or none).

use std::collections::{BTreeMap, VecDeque};

use super::Occupancy;

/// Time at each count of known CPUs running a set of threads, by epoch.
#[derive(Clone, Debug, Default)]
struct Steps {
    /// Known CPUs running the set now.
    known: usize,
    /// Accounted up to.
    since: u64,
    /// `hist[epoch][k]`: time in that epoch with k known CPUs running it.
    hist: Vec<Vec<u64>>,
}

impl Steps {
    /// Account the time from `since` to `t` at the present count.
    fn to(&mut self, t: u64, epoch: usize) {
        let dt = t.saturating_sub(self.since);
        self.since = self.since.max(t);
        if dt == 0 {
            return;
        }
        if self.hist.len() <= epoch {
            self.hist.resize(epoch + 1, Vec::new());
        }
        let row = &mut self.hist[epoch];
        if row.len() <= self.known {
            row.resize(self.known + 1, 0);
        }
        row[self.known] += dt;
    }

    /// The time with k CPUs running the set, k = 0..=ncpus, once the
    /// unknown CPUs of each epoch are known: `extra[epoch]` of them ran it.
    fn resolve(&self, extra: &[usize], ncpus: usize) -> Vec<u64> {
        let mut out = vec![0u64; ncpus + 1];
        for (epoch, row) in self.hist.iter().enumerate() {
            for (k, ns) in row.iter().enumerate() {
                let k = (k + extra[epoch]).min(ncpus);
                out[k] += ns;
            }
        }
        out
    }
}

/// The occupancy records folded so far (see the module's description).
#[derive(Clone, Debug)]
pub struct OccupancyFold {
    start: u64,
    ncpus: usize,
    /// Records received, by CPU, in time order, not yet folded.
    pending: Vec<VecDeque<Occupancy>>,
    /// Each CPU's state as folded: `None` until its first record.
    state: Vec<Option<Option<u32>>>,
    /// What each CPU ran from the start until its first record.
    first: Vec<Option<Option<u32>>>,
    /// The unknown CPUs of each epoch; the present epoch is the last.
    epochs: Vec<Vec<u32>>,
    /// Folded up to (trace clock).
    folded_to: u64,
    total: Steps,
    /// By TGID.
    processes: BTreeMap<u32, Steps>,
}

/// How long k CPUs ran traced threads (k = 0..=ncpus: `running_ns[k]`),
/// all together and by process (TGID).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OccupancyProfile {
    pub total: Vec<u64>,
    pub processes: BTreeMap<u32, Vec<u64>>,
}

impl Default for OccupancyFold {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl OccupancyFold {
    /// Nothing folded yet, for a trace starting at `start` on `ncpus` CPUs
    /// (a record of a CPU beyond them adds it).
    pub fn new(start: u64, ncpus: u32) -> Self {
        let n = ncpus as usize;
        OccupancyFold {
            start,
            ncpus: n,
            pending: vec![VecDeque::new(); n],
            state: vec![None; n],
            first: vec![None; n],
            epochs: vec![(0..ncpus).collect()],
            folded_to: start,
            total: Steps {
                since: start,
                ..Default::default()
            },
            processes: BTreeMap::new(),
        }
    }

    /// Records received and not yet folded.
    pub fn pending(&self) -> usize {
        self.pending.iter().map(VecDeque::len).sum()
    }

    /// Take a record as read (a CPU's records come nearly in time order).
    pub fn push(&mut self, o: Occupancy) {
        let c = o.cpu as usize;
        if c >= self.ncpus {
            self.grow(c + 1);
        }
        let q = &mut self.pending[c];
        let at = q.iter().rposition(|p| p.ts <= o.ts).map_or(0, |i| i + 1);
        q.insert(at, o);
    }

    /// Fold the records up to `until`: every CPU has handed over those.
    pub fn fold_until(&mut self, until: u64) {
        loop {
            let next = (0..self.ncpus)
                .filter_map(|c| self.pending[c].front().map(|o| (o.ts, c)))
                .filter(|&(ts, _)| ts <= until)
                .min();
            let Some((_, c)) = next else { break };
            if let Some(o) = self.pending[c].pop_front() {
                self.fold(&o);
            }
        }
    }

    /// The profile over `[start, end]`, records after `end` left out.
    /// `held`: the CPUs (CPU, TGID) that a traced thread which never
    /// switched held throughout (a CPU with no record).
    pub fn profile(&self, end: u64, held: &[(u32, u32)]) -> OccupancyProfile {
        let mut f = self.clone();
        if let Some(&(c, _)) = held.iter().max_by_key(|h| h.0)
            && c as usize >= f.ncpus
        {
            f.grow(c as usize + 1);
        }
        f.fold_until(end);
        let epoch = f.epochs.len() - 1;
        let end = end.max(f.start);
        f.total.to(end, epoch);
        for p in f.processes.values_mut() {
            p.to(end, epoch);
        }
        // What each CPU ran from the start, known now.
        // (A CPU whose first record came after the end held it throughout.)
        let from_start: Vec<Option<u32>> = (0..f.ncpus)
            .map(|c| match (f.first[c], f.pending[c].front()) {
                (Some(s), _) => s,
                (None, Some(o)) => o.before,
                (None, None) => held.iter().find(|h| h.0 as usize == c).map(|h| h.1),
            })
            .collect();
        for g in from_start.iter().flatten() {
            f.process(*g);
        }
        let extra = |of: &dyn Fn(Option<u32>) -> bool| -> Vec<usize> {
            f.epochs
                .iter()
                .map(|u| u.iter().filter(|&&c| of(from_start[c as usize])).count())
                .collect()
        };
        let n = f.ncpus;
        OccupancyProfile {
            total: f.total.resolve(&extra(&|s| s.is_some()), n),
            processes: f
                .processes
                .iter()
                .map(|(&g, p)| (g, p.resolve(&extra(&|s| s == Some(g)), n)))
                .collect(),
        }
    }

    fn grow(&mut self, n: usize) {
        let epoch = self.epochs.len() - 1;
        for c in self.ncpus..n {
            self.epochs[epoch].push(c as u32);
        }
        self.ncpus = n;
        self.pending.resize(n, VecDeque::new());
        self.state.resize(n, None);
        self.first.resize(n, None);
    }

    /// The steps of process `g`, made with the time folded so far at none
    /// running.
    fn process(&mut self, g: u32) -> &mut Steps {
        if !self.processes.contains_key(&g) {
            self.total.to(self.folded_to, self.epochs.len() - 1);
        }
        let total = &self.total;
        self.processes.entry(g).or_insert_with(|| Steps {
            known: 0,
            since: total.since,
            hist: total
                .hist
                .iter()
                .map(|row| vec![row.iter().sum()])
                .collect(),
        })
    }

    /// Fold one record, the oldest left.
    fn fold(&mut self, o: &Occupancy) {
        let t = o.ts.max(self.start).max(self.folded_to);
        self.folded_to = t;
        let c = o.cpu as usize;
        if self.state[c].is_none() {
            // Its first record: the CPU's state since the start is known,
            // and it leaves the unknown set from now on.
            self.new_epoch(t, c as u32);
            self.first[c] = Some(o.before);
            self.state[c] = Some(o.before);
            self.total.known += usize::from(o.before.is_some());
            if let Some(g) = o.before {
                self.process(g).known += 1;
            }
        }
        let epoch = self.epochs.len() - 1;
        let before = self.state[c].flatten();
        if before == o.after {
            return;
        }
        self.state[c] = Some(o.after);
        if before.is_some() != o.after.is_some() {
            self.total.to(t, epoch);
            self.total.known =
                self.total.known + usize::from(o.after.is_some()) - usize::from(before.is_some());
        }
        if let Some(g) = before {
            let p = self.process(g);
            p.to(t, epoch);
            p.known -= 1;
        }
        if let Some(g) = o.after {
            let p = self.process(g);
            p.to(t, epoch);
            p.known += 1;
        }
    }

    /// From `t` on, CPU `c` is no longer unknown.
    fn new_epoch(&mut self, t: u64, c: u32) {
        let epoch = self.epochs.len() - 1;
        self.total.to(t, epoch);
        for p in self.processes.values_mut() {
            p.to(t, epoch);
        }
        let mut unknown = self.epochs[epoch].clone();
        unknown.retain(|&u| u != c);
        self.epochs.push(unknown);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record; a TGID of 0 is no traced process.
    pub(crate) fn occ(ts: u64, cpu: u32, before: u32, after: u32) -> Occupancy {
        Occupancy {
            ts,
            cpu,
            before: (before != 0).then_some(before),
            after: (after != 0).then_some(after),
        }
    }

    /// Window 0..100 on 2 CPUs. CPU 0: none until 10, process 7 until 50,
    /// process 8 until 60, none after. CPU 1: held by process 7 from
    /// before the start until 80 (its first record), none after.
    fn records() -> Vec<Occupancy> {
        vec![
            occ(10, 0, 0, 7),
            occ(50, 0, 7, 8),
            occ(60, 0, 8, 0),
            occ(80, 1, 7, 0),
        ]
    }

    fn expected() -> OccupancyProfile {
        OccupancyProfile {
            // 0..10: 1; 10..50: 2; 50..60: 2; 60..80: 1; 80..100: 0.
            total: vec![20, 30, 50],
            processes: [
                // 7: CPU 1 0..80, CPU 0 10..50 as well.
                (7, vec![20, 40, 40]),
                // 8: CPU 0 50..60.
                (8, vec![90, 10, 0]),
            ]
            .into(),
        }
    }

    #[test]
    fn a_cpus_first_record_says_what_it_ran_since_the_start_even_when_it_comes_late() {
        // All at once.
        let mut f = OccupancyFold::new(0, 2);
        records().into_iter().for_each(|o| f.push(o));
        assert_eq!(f.profile(100, &[]), expected());
        // As a capture folds them: CPU 0's records first, folded up to 70
        // before CPU 1's only record (at 80) has come.
        let mut f = OccupancyFold::new(0, 2);
        for o in &records()[..3] {
            f.push(*o);
        }
        f.fold_until(70);
        assert_eq!(f.pending(), 0);
        f.push(records()[3]);
        f.fold_until(90);
        assert_eq!(f.pending(), 0);
        assert_eq!(f.profile(100, &[]), expected());
    }

    #[test]
    fn a_cpu_with_no_record_ran_nothing_unless_held_and_late_records_are_cut() {
        let mut f = OccupancyFold::new(0, 2);
        f.push(occ(10, 0, 0, 7));
        f.fold_until(50);
        assert_eq!(f.profile(100, &[]).total, [10, 90, 0]);
        // Held by process 9 throughout: one more CPU at all times.
        let p = f.profile(100, &[(1, 9)]);
        assert_eq!(p.total, [0, 10, 90]);
        assert_eq!(p.processes[&9], [0, 100, 0]);
        assert_eq!(p.processes[&7], [10, 90, 0]);
        // A first record after the end says what the CPU ran throughout.
        f.push(occ(150, 1, 9, 0));
        assert_eq!(f.profile(100, &[]).total, [0, 10, 90]);
        // A record before the start counts from the start.
        let mut f = OccupancyFold::new(20, 1);
        f.push(occ(5, 0, 0, 7));
        assert_eq!(f.profile(120, &[]).total, [0, 100]);
    }

    #[test]
    fn what_it_keeps_does_not_grow_with_the_records() {
        // A traced thread and another task taking turns on CPU 0, a switch
        // each 10 ns for a million ns, folded as a capture does.
        let mut f = OccupancyFold::new(0, 2);
        let mut traced = false;
        for i in 1..100_000u64 {
            let o = if traced {
                occ(i * 10, 0, 7, 0)
            } else {
                occ(i * 10, 0, 0, 7)
            };
            traced = !traced;
            f.push(o);
            if i % 64 == 0 {
                f.fold_until(i * 10);
                assert!(f.pending() <= 1, "{}", f.pending());
            }
        }
        f.fold_until(u64::MAX);
        // Two epochs (CPU 0 known from its first record; CPU 1 never), one
        // process, counts 0 and 1.
        assert_eq!(f.epochs.len(), 2);
        assert_eq!(f.processes.len(), 1);
        let cells: usize = f.total.hist.iter().map(Vec::len).sum();
        assert!(cells <= 4, "{:?}", f.total.hist);
        let p = f.profile(1_000_000, &[]);
        // 0..10 none; then alternating 10 ns stretches, the last from
        // 999,990 (traced) to the end.
        assert_eq!(p.total, [10 + 49_999 * 10, 50_000 * 10, 0]);
    }
}

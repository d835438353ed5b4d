//! The HTML report's level of detail for long traces: how much of the
//! timeline the page embeds record by record (every record that starts
//! before a cut, at most [`MAX_DETAIL_RECORDS`] of them), and the
//! per-bucket aggregates of every lane's states at a few zoom levels that
//! the page draws beyond the cut.
//!
//! The bounds come from the page's targets, under 50 MB and a first paint
//! under 3 s in Chromium on a 2-core machine, whatever the trace's length
//! (figures in docs/outputs.md, measured with `scripts/html-figures.py`):
//!
//! * A detailed record (a thread's segment with its wait label, a CPU run,
//!   another task's hold of a CPU, a wakeup, a running/runnable step) costs
//!   about 22 bytes of JSON as measured (three or four numbers of up to 10
//!   digits, 30 bytes at most). 300,000 records are at most about 9 MB,
//!   which Chromium parses and draws zoomed out in well under a second.
//! * An aggregate cell (one lane's time in each of four states over a run
//!   of equal buckets) is five numbers, each at most a bucket's length in
//!   ns: 22 bytes as measured, at worst about 45. 500,000 cells are at most
//!   about 23 MB.
//!   Cells are run-length merged, so a thread that sleeps through many
//!   buckets costs one cell, and a level is kept only while the cells fit.
//!   The first level always has at least [`MIN_FIRST_BUCKETS`] buckets a
//!   lane, so with thousands of lanes (`--all`) its cells may pass the
//!   budget, in proportion to the lanes, not to the trace's length.
//!
//! Together at most about 32 MB beside the summary, under the 50 MB
//! target with room for the summary and flame graphs of many threads.

/// Detailed records embedded at most (see the module doc for the sizes).
pub(crate) const MAX_DETAIL_RECORDS: usize = 300_000;
/// Aggregate cells embedded at most, over all levels and lanes.
pub(crate) const MAX_AGG_CELLS: usize = 500_000;
/// Buckets of the coarsest level: one a pixel column of a wide screen's
/// timeline, so that the whole window zoomed out is exact to the pixel.
const FIRST_BUCKETS: u64 = 2048;
/// With many lanes the first level has fewer buckets, not fewer than this.
const MIN_FIRST_BUCKETS: u64 = 256;
/// Each level's buckets are this many times narrower than the last one's.
const LEVEL_FACTOR: u64 = 8;
/// At most this many levels (the finest has 2048 × 8³ buckets a lane).
const MAX_LEVELS: usize = 4;
/// No level's buckets narrower than this (ns).
const MIN_BUCKET_NS: u64 = 1_000;

/// The budgets, the constants above unless a test sets smaller ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub detail_records: usize,
    pub agg_cells: usize,
}

pub(crate) const BOUNDS: Bounds = Bounds {
    detail_records: MAX_DETAIL_RECORDS,
    agg_cells: MAX_AGG_CELLS,
};

/// The cut, in ns from the window's start: given the start of every record
/// (any order), the latest time such that the records starting before it
/// are at most `max`; none when all fit.
pub(crate) fn detail_end(mut starts: Vec<u64>, max: usize) -> Option<u64> {
    if starts.len() <= max {
        return None;
    }
    // The (max+1)-th earliest start: those before it are at most `max`.
    Some(*starts.select_nth_unstable(max).1)
}

/// A stretch `[start, end)` (ns from the window's start) of a lane that
/// adds `weight[k] × ns` to slot k of each bucket it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub start: u64,
    pub end: u64,
    pub weight: [u64; 4],
}

impl Item {
    /// One unit of time in slot `slot`.
    pub(crate) fn slot(start: u64, end: u64, slot: usize) -> Self {
        let mut weight = [0; 4];
        weight[slot] = 1;
        Item { start, end, weight }
    }
}

/// A lane's buckets, run-length merged: `[n, s0, s1, s2, s3, ...]` for
/// `n` consecutive buckets with the same `width` slot values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Runs {
    pub width: usize,
    pub flat: Vec<u64>,
}

impl Runs {
    fn push(&mut self, v: [u64; 4], n: u64) {
        if n == 0 {
            return;
        }
        let w = self.width;
        let len = self.flat.len();
        if len > w && self.flat[len - w..] == v[..w] {
            self.flat[len - w - 1] += n;
            return;
        }
        self.flat.push(n);
        self.flat.extend_from_slice(&v[..w]);
    }

    /// Merged runs (cells).
    pub(crate) fn cells(&self) -> usize {
        self.flat.len() / (self.width + 1)
    }

    /// Each bucket's slots, expanded (for tests).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        for run in self.flat.chunks(self.width + 1) {
            for _ in 0..run[0] {
                out.push(run[1..].to_vec());
            }
        }
        out
    }
}

/// Sums `items` (sorted by start, not overlapping) into `nb` buckets of
/// `bucket_ns`, run-length merged as it goes: the cost is the items plus
/// the runs, not the buckets.
pub(crate) fn bucket_runs(items: &[Item], bucket_ns: u64, nb: u64, width: usize) -> Runs {
    let mut runs = Runs {
        width,
        flat: Vec::new(),
    };
    let (mut cur, mut cell) = (0u64, [0u64; 4]);
    let mut done = 0u64; // end of what was added, to keep items from overlapping
    for it in items {
        let mut t = it.start.max(done);
        let end = it.end.min(nb * bucket_ns);
        done = done.max(end);
        while t < end {
            let i = t / bucket_ns;
            if i > cur {
                runs.push(cell, 1);
                runs.push([0; 4], i - cur - 1);
                (cur, cell) = (i, [0; 4]);
            }
            let bucket_end = (i + 1) * bucket_ns;
            if t == i * bucket_ns && end >= bucket_end && cell == [0; 4] {
                let full = (end - t) / bucket_ns;
                runs.push(it.weight.map(|w| w * bucket_ns), full);
                (cur, t) = (i + full, t + full * bucket_ns);
                continue;
            }
            let e = end.min(bucket_end);
            for (c, w) in cell.iter_mut().zip(it.weight) {
                *c += w * (e - t);
            }
            t = e;
        }
    }
    if cur < nb {
        runs.push(cell, 1);
        runs.push([0; 4], nb - cur - 1);
    }
    runs
}

/// Every lane's items: threads (slots running, runnable, sleeping,
/// blocked), CPUs (a traced thread, another process, idle, not recorded)
/// and the running/runnable counts (two slots weighted by the counts).
pub(crate) struct Lanes {
    pub threads: Vec<Vec<Item>>,
    pub cpus: Vec<Vec<Item>>,
    pub conc: Vec<Item>,
}

/// One zoom level.
#[derive(Debug)]
pub(crate) struct Level {
    pub bucket_ns: u64,
    pub threads: Vec<Runs>,
    pub cpus: Vec<Runs>,
    pub conc: Runs,
}

impl Level {
    fn of(lanes: &Lanes, window: u64, buckets: u64) -> Level {
        let bucket_ns = window.div_ceil(buckets).max(1);
        let nb = window.div_ceil(bucket_ns);
        let each = |l: &Vec<Vec<Item>>| -> Vec<Runs> {
            l.iter()
                .map(|items| bucket_runs(items, bucket_ns, nb, 4))
                .collect()
        };
        Level {
            bucket_ns,
            threads: each(&lanes.threads),
            cpus: each(&lanes.cpus),
            conc: bucket_runs(&lanes.conc, bucket_ns, nb, 2),
        }
    }

    pub(crate) fn cells(&self) -> usize {
        self.threads
            .iter()
            .chain(&self.cpus)
            .map(Runs::cells)
            .sum::<usize>()
            + self.conc.cells()
    }
}

/// The levels, coarsest first, while their cells fit `max_cells` (the
/// first always).
pub(crate) fn levels(lanes: &Lanes, window: u64, max_cells: usize) -> Vec<Level> {
    let n_lanes = (lanes.threads.len() + lanes.cpus.len() + 1) as u64;
    let mut buckets = (max_cells as u64 / n_lanes).clamp(MIN_FIRST_BUCKETS, FIRST_BUCKETS);
    let mut out: Vec<Level> = Vec::new();
    let mut cells = 0;
    while out.len() < MAX_LEVELS && window > 0 {
        let level = Level::of(lanes, window, buckets);
        let c = level.cells();
        if !out.is_empty() && cells + c > max_cells {
            break;
        }
        cells += c;
        let fine = level.bucket_ns <= MIN_BUCKET_NS;
        out.push(level);
        if fine {
            break;
        }
        buckets *= LEVEL_FACTOR;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_items_and_merge_equal_runs() {
        // Bucket 10 ns, 6 buckets: running 0..25, sleeping 25..60.
        let items = [Item::slot(0, 25, 0), Item::slot(25, 60, 2)];
        let r = bucket_runs(&items, 10, 6, 4);
        assert_eq!(
            r.buckets(),
            vec![
                vec![10, 0, 0, 0],
                vec![10, 0, 0, 0],
                vec![5, 0, 5, 0],
                vec![0, 0, 10, 0],
                vec![0, 0, 10, 0],
                vec![0, 0, 10, 0],
            ]
        );
        assert_eq!(r.cells(), 3, "two full runs and the split bucket");
    }

    #[test]
    fn gaps_are_empty_buckets_and_the_last_bucket_may_be_short() {
        let items = [Item::slot(12, 14, 1), Item::slot(47, 55, 3)];
        let r = bucket_runs(&items, 10, 6, 4);
        let b = r.buckets();
        assert_eq!(b.len(), 6);
        assert_eq!(b[1], vec![0, 2, 0, 0]);
        assert_eq!(b[4], vec![0, 0, 0, 3]);
        assert_eq!(b[5], vec![0, 0, 0, 5]);
        assert_eq!(b[0], vec![0; 4]);
        assert_eq!(b[2], vec![0; 4]);
    }

    #[test]
    fn the_cut_keeps_at_most_the_bound() {
        let starts: Vec<u64> = (0..100).rev().map(|i| i / 3).collect();
        let cut = detail_end(starts.clone(), 10).unwrap();
        let kept = starts.iter().filter(|&&s| s < cut).count();
        assert!(kept <= 10, "{kept}");
        assert!(kept >= 8, "ties at the cut drop at most two: {kept}");
        assert_eq!(detail_end(starts, 100), None);
    }
}

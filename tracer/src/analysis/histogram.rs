//! A log-linear histogram of durations: quantiles within 1/32 (about 3%)
//! of the true value, and exact count, sum and max. Stored sparsely: only
//! the buckets used (at most 1,920, 8 bytes each), so a thread that waited
//! a few times costs a few words, not the 15 KiB of every bucket.

/// Sub-buckets per power of two (2^5 = 32).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` get one bucket each; above, 32 per power of two.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A used bucket: its index in the top 16 bits, its count below.
type Entry = u64;
const COUNT_BITS: u32 = 48;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const _: () = assert!(BUCKETS < 1 << (64 - COUNT_BITS));

#[derive(Clone, Debug, Default)]
pub(crate) struct Histogram {
    /// Used buckets, sorted by index. A bucket's count saturates at 2^48-1
    /// (a thread would have to wait that often: 2.8e14 times).
    entries: Vec<Entry>,
    /// Where the last value went: durations of one thread cluster, so the
    /// next one often lands there too and skips the search.
    last: u32,
    count: u64,
    sum: u128,
    max: u64,
}

fn index(e: Entry) -> usize {
    (e >> COUNT_BITS) as usize
}

fn count_of(e: Entry) -> u64 {
    e & COUNT_MAX
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// Smallest and largest value that land in bucket `b`.
fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < SUB {
        return (b, b);
    }
    let shift = b / SUB - 1;
    let sub = b % SUB;
    let lo = (SUB + sub) << shift;
    let hi = lo + ((1u64 << shift) - 1);
    (lo, hi)
}

impl Histogram {
    /// Count `v`. (Always inlined: see `ThreadTrack::charge`.)
    #[inline(always)]
    pub(crate) fn record(&mut self, v: u64) {
        let b = bucket_of(v);
        let last = self.last as usize;
        let found = match self.entries.get(last) {
            Some(&e) if index(e) == b => Ok(last),
            _ => self.entries.binary_search_by_key(&b, |e| index(*e)),
        };
        match found {
            Ok(i) => {
                self.last = i as u32;
                if count_of(self.entries[i]) < COUNT_MAX {
                    self.entries[i] += 1;
                }
            }
            Err(i) => {
                self.entries.insert(i, (b as u64) << COUNT_BITS | 1);
                self.last = i as u32;
            }
        }
        self.count = self.count.saturating_add(1);
        self.sum += v as u128;
        self.max = self.max.max(v);
    }

    /// The histogram of every value recorded in any of `parts`: the same
    /// as recording them all in one (bucket counts saturate alike).
    pub(crate) fn merged(parts: &[&Histogram]) -> Histogram {
        let mut entries: Vec<Entry> = parts.iter().flat_map(|p| p.entries.clone()).collect();
        entries.sort_unstable_by_key(|&e| index(e));
        // (`kept` is the earlier entry of a bucket; counts below 2^48 each.)
        entries.dedup_by(|e, kept| {
            let same = index(*e) == index(*kept);
            if same {
                let n = (count_of(*kept) + count_of(*e)).min(COUNT_MAX);
                *kept = (*kept & !COUNT_MAX) | n;
            }
            same
        });
        Histogram {
            entries,
            last: 0,
            count: parts.iter().fold(0, |n, p| n.saturating_add(p.count)),
            sum: parts.iter().map(|p| p.sum).sum(),
            max: parts.iter().map(|p| p.max).max().unwrap_or(0),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn sum(&self) -> u64 {
        self.sum.min(u64::MAX as u128) as u64
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    pub(crate) fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / self.count as u128) as u64
        }
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding
    /// it, never above the maximum seen.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let total: u64 = self.entries.iter().map(|e| count_of(*e)).sum();
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &e in &self.entries {
            seen += count_of(e);
            if seen >= rank {
                let (lo, hi) = bucket_range(index(e));
                return (lo + (hi - lo) / 2).min(self.max);
            }
        }
        self.max
    }

    /// Bytes this histogram holds on the heap.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [0u64, 1, 31, 32, 33, 63, 64, 1000, 1 << 20, u64::MAX] {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went backwards");
            let (lo, hi) = bucket_range(b);
            assert!(lo <= v && v <= hi, "{v} not in [{lo}, {hi}]");
            last = b;
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_are_within_three_percent() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.mean(), 5_000_500);
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - want).abs() / want < 0.032,
                "q{q}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn stores_only_the_buckets_used() {
        let mut h = Histogram::default();
        assert_eq!(h.heap_bytes(), 0);
        for _ in 0..1000 {
            h.record(5_000);
        }
        h.record(7);
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.count(), 1001);
        // The middle of 5000's bucket is above the maximum, which caps it.
        assert_eq!(h.quantile(0.5), 5_000);
        assert_eq!(h.quantile(0.0), 7);
        // Every bucket at most once, in order, whatever the order of values.
        let mut h = Histogram::default();
        for v in (0..5000u64)
            .rev()
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 60))
        {
            h.record(v);
        }
        assert!(h.entries.windows(2).all(|w| index(w[0]) < index(w[1])));
        assert!(h.entries.len() <= BUCKETS);
    }

    #[test]
    fn merged_is_as_if_recorded_in_one() {
        let values = |seed: u64| {
            (0..3000u64).map(move |i| (i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 61))
        };
        let mut one = Histogram::default();
        let mut parts = [
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        ];
        for (k, part) in parts.iter_mut().enumerate() {
            for v in values(k as u64).take(1000 * k + 7) {
                one.record(v);
                part.record(v);
            }
        }
        let m = Histogram::merged(&[&parts[0], &parts[1], &parts[2]]);
        assert_eq!(m.entries, one.entries);
        assert_eq!((m.count, m.sum, m.max), (one.count, one.sum, one.max));
        let e = Histogram::merged(&[&Histogram::default()]);
        assert_eq!((e.entries.len(), e.count(), e.max()), (0, 0, 0));
    }

    #[test]
    fn empty_is_zero() {
        let h = Histogram::default();
        assert_eq!((h.quantile(0.5), h.mean(), h.max()), (0, 0, 0));
    }
}

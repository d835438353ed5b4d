//! The statistics that let the benchmark decide: a robust centre for paired
//! per-round ratios, bootstrap confidence intervals, and a verdict that says
//! "cannot tell apart" when the interval does not exclude no difference.
//!
//! Every ratio is a throughput over another throughput measured in the same
//! round (a condition over the same round's untraced run, or one condition
//! over another), so round-to-round drift of the machine cancels. Ratios
//! are averaged on the log scale (a 0.5 and a 2.0 average to 1.0), with
//! the top and bottom [`TRIM`] of rounds left out, so that one round hit by
//! a burst of steal or another tenant's build cannot move the estimate far.
//! The interval is the percentile bootstrap of that same statistic:
//! rounds are resampled with replacement (a round keeps all its
//! conditions, which keeps the pairing), the statistic is recomputed each
//! time, and the 2.5th and 97.5th percentiles bound it.

/// Share of rounds left out at each end before averaging.
pub(super) const TRIM: f64 = 0.1;
/// Bootstrap resamples per interval.
pub(super) const RESAMPLES: usize = 4000;
/// Two-sided confidence level of every interval.
pub(super) const LEVEL: f64 = 0.95;

/// A deterministic generator (SplitMix64): the same data give the same
/// interval in every run, and tests need no entropy.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 2^-50 for the
    /// round counts used here.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    #[cfg(test)]
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller), for the tests' synthetic rounds.
    #[cfg(test)]
    pub(super) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Mean of `v` without its lowest and highest `trim` share (rounded down;
/// at least one value always stays). `v` need not be sorted.
pub(super) fn trimmed_mean(v: &[f64], trim: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let k = ((s.len() as f64 * trim).floor() as usize).min((s.len() - 1) / 2);
    let kept = &s[k..s.len() - k];
    Some(kept.iter().sum::<f64>() / kept.len() as f64)
}

/// The centre of a set of ratios: the trimmed mean of their logs, as a
/// ratio ([`ratio_interval`]'s estimate).
#[cfg(test)]
pub(super) fn centre(ratios: &[f64]) -> Option<f64> {
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    trimmed_mean(&logs, TRIM).map(f64::exp)
}

/// A ratio with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Interval {
    pub est: f64,
    pub lo: f64,
    pub hi: f64,
    /// Rounds it rests on.
    pub n: usize,
}

impl Interval {
    /// Half the interval's width, relative to the estimate: the smallest
    /// difference this interval can tell from none, roughly.
    pub(super) fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0 / self.est
    }
}

/// The `q` quantile of sorted `s` (linear interpolation).
fn quantile(s: &[f64], q: f64) -> f64 {
    let pos = q * (s.len() - 1) as f64;
    let i = pos.floor() as usize;
    let f = pos - i as f64;
    if i + 1 < s.len() {
        s[i] * (1.0 - f) + s[i + 1] * f
    } else {
        s[i]
    }
}

/// [`centre`] of `ratios` with its percentile-bootstrap interval. `None`
/// for fewer than two finite positive ratios (no spread to resample).
pub(super) fn ratio_interval(ratios: &[f64], seed: u64) -> Option<Interval> {
    ratio_interval_with(ratios, seed, RESAMPLES)
}

fn ratio_interval_with(ratios: &[f64], seed: u64, resamples: usize) -> Option<Interval> {
    let logs: Vec<f64> = ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(f64::ln)
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let est = trimmed_mean(&logs, TRIM)?;
    let mut rng = Rng::new(seed);
    let mut sample = vec![0.0; logs.len()];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            for x in sample.iter_mut() {
                *x = logs[rng.below(logs.len())];
            }
            trimmed_mean(&sample, TRIM).unwrap_or(est)
        })
        .collect();
    stats.sort_by(|a, b| a.total_cmp(b));
    let a = (1.0 - LEVEL) / 2.0;
    Some(Interval {
        est: est.exp(),
        lo: quantile(&stats, a).exp(),
        hi: quantile(&stats, 1.0 - a).exp(),
        n: logs.len(),
    })
}

/// A over B, paired by round: `a[i]` and `b[i]` are the throughputs (or
/// ratios to the same untraced run) of two conditions in round `i`; rounds
/// where either is missing are left out.
pub(super) fn paired_interval(a: &[Option<f64>], b: &[Option<f64>], seed: u64) -> Option<Interval> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some((*x)? / (*y)?))
        .collect();
    ratio_interval(&ratios, seed)
}

/// What an interval of A over B says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The whole interval is above 1: A is faster than B.
    Faster,
    /// The whole interval is below 1: A is slower than B.
    Slower,
    /// The interval holds 1: this run cannot tell A and B apart.
    CannotTell,
}

pub(super) fn verdict(iv: &Interval) -> Verdict {
    if iv.lo > 1.0 {
        Verdict::Faster
    } else if iv.hi < 1.0 {
        Verdict::Slower
    } else {
        Verdict::CannotTell
    }
}

impl Verdict {
    pub(super) fn text(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::CannotTell => "cannot tell apart",
        }
    }
}

/// A seed per (workload, condition, reference) so that intervals do not
/// share resamples by accident, yet repeat exactly on the same data.
pub(super) fn seed(parts: &[&str]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, p| {
        p.bytes()
            .chain([0u8])
            .fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_mean_drops_the_ends() {
        // 10 values, 10% trim: one dropped at each end.
        let v = [5.0, 1.0, 2.0, 3.0, 4.0, 100.0, 2.0, 3.0, 4.0, -50.0];
        let kept = [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0];
        assert_eq!(trimmed_mean(&v, 0.1), Some(kept.iter().sum::<f64>() / 8.0));
        // Too few values to trim: all stay.
        assert_eq!(trimmed_mean(&[1.0, 3.0], 0.1), Some(2.0));
        assert_eq!(trimmed_mean(&[7.0], 0.4), Some(7.0));
        assert_eq!(trimmed_mean(&[], 0.1), None);
    }

    #[test]
    fn centre_is_geometric() {
        // 0.5 and 2.0 are the same distance from 1 on the log scale.
        assert!((centre(&[0.5, 2.0]).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn constant_ratios_give_a_point_interval() {
        let iv = ratio_interval(&[0.9; 12], 1).unwrap();
        assert!((iv.est - 0.9).abs() < 1e-12);
        assert!((iv.lo - 0.9).abs() < 1e-12 && (iv.hi - 0.9).abs() < 1e-12);
        assert_eq!(iv.n, 12);
        assert_eq!(ratio_interval(&[0.9], 1), None);
        assert_eq!(ratio_interval(&[], 1), None);
    }

    #[test]
    fn one_wild_round_moves_the_estimate_little() {
        let mut v = vec![0.90; 19];
        v.push(0.30); // a round lost to another tenant
        let iv = ratio_interval(&v, 2).unwrap();
        assert!((iv.est - 0.90).abs() < 1e-12, "{iv:?}");
    }

    /// Synthetic rounds: the untraced throughput drifts by ±10% from round to
    /// round (shared by every condition of a round, as on a VM with steal);
    /// on top, each run has its own 2% noise. Condition A costs 10%, B 12%.
    type PerRound = Vec<Option<f64>>;

    fn rounds(n: usize, seed: u64) -> (PerRound, PerRound, PerRound) {
        let mut rng = Rng::new(seed);
        let mut base = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let drift = 1.0 + 0.1 * (2.0 * rng.unit() - 1.0);
            let run = |rng: &mut Rng, f: f64| Some(500e3 * drift * f * (1.0 + 0.02 * rng.normal()));
            base.push(run(&mut rng, 1.0));
            a.push(run(&mut rng, 0.90));
            b.push(run(&mut rng, 0.88));
        }
        (base, a, b)
    }

    #[test]
    fn two_percent_apart_is_told_apart_with_enough_rounds() {
        let (base, a, b) = rounds(24, 7);
        // Against untraced, each condition's interval is narrow although
        // the machine drifts ±10%: the drift is shared within a round.
        // Per-run noise of 2% gives a ratio noise of 2.8% (two runs), so 24
        // rounds give a standard error near 0.6%; the interval spans about
        // four of them.
        for (c, truth) in [(&a, 0.90), (&b, 0.88)] {
            let iv = paired_interval(c, &base, 1).unwrap();
            assert!(iv.hi - iv.lo < 0.04, "{iv:?}");
            assert!((iv.est - truth).abs() < 0.02, "{iv:?}");
        }
        // Paired A over B: 0.90 / 0.88 = 1.0227, about four standard errors
        // from 1: told apart.
        let d = paired_interval(&a, &b, 3).unwrap();
        assert_eq!(verdict(&d), Verdict::Faster, "{d:?}");
        assert_eq!(
            verdict(&paired_interval(&b, &a, 3).unwrap()),
            Verdict::Slower
        );
    }

    #[test]
    fn equal_conditions_cannot_be_told_apart() {
        // Per-round differences of ±3% alternating: no difference on average.
        let a: Vec<Option<f64>> = (0..20)
            .map(|i| Some(if i % 2 == 0 { 1.03 } else { 1.0 / 1.03 }))
            .collect();
        let b = vec![Some(1.0); 20];
        let d = paired_interval(&a, &b, 5).unwrap();
        assert!((d.est - 1.0).abs() < 1e-12, "{d:?}");
        assert_eq!(verdict(&d), Verdict::CannotTell);
    }

    #[test]
    fn missing_rounds_are_left_out_of_the_pairs() {
        let a = [Some(0.9), None, Some(0.9), Some(0.9)];
        let b = [Some(1.0), Some(1.0), None, Some(1.0)];
        let d = paired_interval(&a, &b, 1).unwrap();
        assert_eq!(d.n, 2);
        assert!((d.est - 0.9).abs() < 1e-12);
    }

    /// The interval covers the true ratio about as often as it claims. With
    /// 400 simulated benchmarks of 20 rounds, the count of intervals that
    /// hold the truth is binomial: at 95% coverage its standard deviation
    /// is sqrt(400 × 0.95 × 0.05) ≈ 4.4, so 360..=394 (−4.5 to +3.2 sd) is
    /// what a correct 95% interval gives except with negligible chance; the
    /// percentile bootstrap of a small sample is known to run a little
    /// narrow (a few points under nominal), which the lower side allows.
    #[test]
    fn coverage_is_near_nominal() {
        let mut rng = Rng::new(42);
        let mut covered = 0;
        for k in 0..400 {
            let ratios: Vec<f64> = (0..20).map(|_| 0.9 * (0.03 * rng.normal()).exp()).collect();
            // 1000 resamples: enough for the 2.5% tails, and fast in a debug build.
            let iv = ratio_interval_with(&ratios, k, 1000).unwrap();
            if iv.lo <= 0.9 && 0.9 <= iv.hi {
                covered += 1;
            }
        }
        eprintln!("covered {covered} of 400");
        assert!((360..=394).contains(&covered), "covered {covered} of 400");
    }

    #[test]
    fn seeds_differ_by_part() {
        assert_ne!(seed(&["pipe", "a"]), seed(&["pipe", "b"]));
        assert_ne!(seed(&["ab", "c"]), seed(&["a", "bc"]));
        assert_eq!(seed(&["x"]), seed(&["x"]));
    }
}

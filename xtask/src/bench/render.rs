//! Aggregating the runs (medians, spreads, paired ratios) and writing the
//! Markdown tables and the JSON results.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::stats::{self, Interval, Verdict};
use super::{Cond, Kind, LONG_FORMATS, REFERENCE, Run, TRACED, Workload};

/// The most a capture's file writer holds while the disk stalls: 32 queued
/// 1 MiB buffers, one being written and one being filled
/// (`tracer/src/trace/files/background.rs`; xtask builds without the schedtrace
/// crate). RSS bounded by a constant does not grow with the trace, but a
/// long run is more likely than a short one to meet a stall that fills it.
const WRITE_QUEUE_KB: f64 = 34.0 * 1024.0;

pub(super) struct Results<'a> {
    pub command: String,
    pub machine: Value,
    pub elapsed_s: f64,
    /// Other work on the machine before each round.
    pub quiet: Value,
    pub workloads: &'a [Workload],
    /// The conditions run, untraced first; `runs[w][i]` is `conds[i]`'s.
    pub conds: &'a [Cond],
    /// Conditions left out, and why.
    pub notes: Vec<String>,
    /// How long each run of each workload was.
    pub sizes: Value,
    /// `runs[workload][cond][round]`
    pub runs: &'a [Vec<Vec<Run>>],
    pub ebpf: Value,
    pub long: Value,
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let lo = v
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .reduce(f64::min)?;
    let hi = v
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .reduce(f64::max)?;
    Some((lo, hi))
}

/// 512345 -> "512k", 1.5e6 -> "1.50M".
fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn opt(x: Option<String>) -> String {
    x.unwrap_or_else(|| "–".into())
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// Aggregates of one condition of one workload.
#[derive(Default)]
struct Agg {
    ratios: Vec<f64>,
    throughput: Vec<f64>,
    events: Vec<f64>,
    lost_max: Option<u64>,
    bytes_per_event: Vec<f64>,
    tool_cpu: Vec<f64>,
    us_per_event: Vec<f64>,
    rss_mb: Vec<f64>,
    nivcsw: Vec<f64>,
    nivcsw_rise: Vec<f64>,
    work_cpu: Vec<f64>,
    work_cpu_rise: Vec<f64>,
    node_nivcsw: Vec<f64>,
    node_nivcsw_rise: Vec<f64>,
    failures: Vec<String>,
    /// A run kept its figures in the kernel.
    kernel_sums: bool,
}

fn node_invol(r: &Run) -> Option<f64> {
    r.node_rusage.as_ref()?.get("involuntary")?.as_f64()
}

/// A condition that keeps its figures in the kernel (by its flags, or a
/// candidate by what its runs said): its few records (forks, exits,
/// names) are no measure of its consumer's cost per event.
fn no_record_per_event(c: &Cond, a: &Agg) -> bool {
    c.flags.contains(&"--kernel-sums") || a.kernel_sums
}

fn aggregate(runs: &[Vec<Run>], ci: usize) -> Agg {
    let base = &runs[0];
    let mut a = Agg::default();
    for (round, r) in runs[ci].iter().enumerate() {
        let b = &base[round];
        if let Some(f) = &r.failure {
            a.failures.push(format!("round {}: {f}", round + 1));
        }
        a.kernel_sums |= r.kernel_sums;
        if let (Some(t), Some(u)) = (r.throughput, b.throughput) {
            a.ratios.push(t / u);
            a.throughput.push(t);
        }
        if let Some(e) = r.events {
            a.events.push(e as f64);
            if let Some(by) = r.out_bytes {
                a.bytes_per_event.push(by as f64 / e.max(1) as f64);
            }
            if let Some(c) = r.tool_cpu_s {
                a.us_per_event.push(c * 1e6 / e.max(1) as f64);
            }
        }
        if let Some(l) = r.lost {
            a.lost_max = Some(a.lost_max.unwrap_or(0).max(l));
        }
        if let Some(c) = r.tool_cpu_s {
            a.tool_cpu.push(c);
        }
        if let Some(k) = r.tool_rss_kb {
            a.rss_mb.push(k as f64 / 1024.0);
        }
        if let Some(w) = r.work {
            a.nivcsw.push(w.nivcsw as f64);
            a.work_cpu.push(w.cpu_s());
            if let Some(bw) = b.work {
                if bw.nivcsw > 0 {
                    a.nivcsw_rise.push(w.nivcsw as f64 / bw.nivcsw as f64 - 1.0);
                }
                if bw.cpu_s() > 0.0 {
                    a.work_cpu_rise.push(w.cpu_s() / bw.cpu_s() - 1.0);
                }
            }
        }
        if let Some(n) = node_invol(r) {
            a.node_nivcsw.push(n);
            if let Some(bn) = node_invol(b).filter(|x| *x > 0.0) {
                a.node_nivcsw_rise.push(n / bn - 1.0);
            }
        }
    }
    a
}

/// "0.873 [0.861–0.886]"
fn iv_text(iv: &Interval) -> String {
    format!("{:.3} [{:.3}–{:.3}]", iv.est, iv.lo, iv.hi)
}

fn iv_json(iv: Option<Interval>) -> Value {
    match iv {
        None => Value::Null,
        Some(iv) => json!({
            "estimate": iv.est, "lo": iv.lo, "hi": iv.hi, "rounds": iv.n,
            "verdict": stats::verdict(&iv).text(),
        }),
    }
}

/// A target "x ≥ threshold" on an interval: held when the whole interval
/// clears it, missed when none of it does, else undecided.
fn at_least(iv: &Interval, threshold: f64) -> &'static str {
    if iv.lo >= threshold {
        "HOLDS"
    } else if iv.hi < threshold {
        "MISSED"
    } else {
        "UNDECIDED (the interval straddles the threshold)"
    }
}

fn with_rise(v: &[f64], rise: &[f64], fmt: impl Fn(f64) -> String, is_base: bool) -> String {
    match median(v) {
        None => "–".into(),
        Some(m) if is_base => fmt(m),
        Some(m) => match median(rise) {
            Some(r) => format!("{} ({})", fmt(m), pct(r)),
            None => fmt(m),
        },
    }
}

/// One row per program: its cost tracing the bench, tracing it with
/// `--no-wakeups`, tracing another process, and bpftrace's.
fn ebpf_rows(ebpf: &Value) -> Vec<(String, [Value; 4])> {
    let get = |k: &str, name: &str| -> Value {
        ebpf.get(k)
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let mut names: Vec<String> = Vec::new();
    for k in ["schedtrace_target", "schedtrace_non_target"] {
        for p in ebpf
            .get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.as_slice())
            .unwrap_or_default()
        {
            if let Some(n) = p["name"].as_str()
                && !names.iter().any(|x| x == n)
            {
                names.push(n.to_string());
            }
        }
    }
    let bt = ebpf
        .get("bpftrace_count")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first().cloned())
        .unwrap_or(Value::Null);
    names
        .into_iter()
        .map(|n| {
            let b = if n == "sched_switch" {
                bt.clone()
            } else {
                Value::Null
            };
            let t = get("schedtrace_target", &n);
            let lean = get("schedtrace_target_no_wakeups", &n);
            let nt = get("schedtrace_non_target", &n);
            (n, [t, lean, nt, b])
        })
        .collect()
}

fn prog_cell(p: &Value) -> String {
    match (p["ns_per_run"].as_f64(), p["run_cnt"].as_u64()) {
        (Some(ns), Some(n)) => format!("{ns:.0} ns ({} runs)", si(n as f64)),
        _ => "–".into(),
    }
}

fn status(ok: bool) -> &'static str {
    if ok { "HOLDS" } else { "MISSED" }
}

impl Results<'_> {
    fn agg(&self, w: Workload, key: &str) -> Option<Agg> {
        let (wi, ci) = self.index(w, key)?;
        if self.runs[wi][ci].is_empty() {
            return None;
        }
        Some(aggregate(&self.runs[wi], ci))
    }

    fn index(&self, w: Workload, key: &str) -> Option<(usize, usize)> {
        let wi = self.workloads.iter().position(|x| *x == w)?;
        let ci = self.conds.iter().position(|c| c.key == key)?;
        Some((wi, ci))
    }

    /// Throughput of condition `key` in each round (`None`: the run failed).
    fn per_round(&self, w: Workload, key: &str) -> Option<Vec<Option<f64>>> {
        let (wi, ci) = self.index(w, key)?;
        Some(self.runs[wi][ci].iter().map(|r| r.throughput).collect())
    }

    /// Condition `a` over condition `b`, paired by round, with its interval.
    fn interval(&self, w: Workload, a: &str, b: &str) -> Option<Interval> {
        if a == b {
            return None;
        }
        stats::paired_interval(
            &self.per_round(w, a)?,
            &self.per_round(w, b)?,
            stats::seed(&[w.key(), a, b]),
        )
    }

    /// schedtrace's userspace CPU per event beyond what an idle capture
    /// costs: per round, (CPU − the same round's `schedtrace-other-pid` CPU)
    /// / events; the median over rounds.
    fn marginal_consumer_ns(&self, w: Workload, key: &str) -> Option<f64> {
        let (wi, ci) = self.index(w, key)?;
        let (_, oi) = self.index(w, "schedtrace-other-pid")?;
        let v: Vec<f64> = self.runs[wi][ci]
            .iter()
            .zip(&self.runs[wi][oi])
            .filter_map(|(r, o)| {
                let e = r.events.filter(|e| *e > 0)? as f64;
                Some((r.tool_cpu_s? - o.tool_cpu_s?) * 1e9 / e)
            })
            .collect();
        median(&v)
    }

    /// The interval of `key` over untraced.
    fn vs_untraced(&self, w: Workload, key: &str) -> Option<Interval> {
        self.interval(w, key, "untraced")
    }

    /// Figures derived from one format's long captures (`json`, `record`).
    fn long_derived(&self, format: &str) -> Option<Value> {
        let q = self.long.get(format)?.get("quarter")?;
        let f = self.long.get(format)?.get("full")?;
        let (eq, ef) = (q["events"].as_f64()?, f["events"].as_f64()?);
        let (cq, cf) = (q["capture_cpu_s"].as_f64()?, f["capture_cpu_s"].as_f64()?);
        let per_event = (cf - cq) / (ef - eq).max(1.0);
        let average = cf / ef.max(1.0);
        let rate = ef / f["capture_wall_s"].as_f64()?.max(1e-9);
        Some(json!({
            "consumer_cpu_ns_per_event_marginal": per_event * 1e9,
            "consumer_cpu_ns_per_event": average * 1e9,
            "core_share_at_100k_events_per_s": average * 1e5,
            "event_rate_full": rate,
            "core_share_at_full_rate": cf / f["capture_wall_s"].as_f64()?.max(1e-9),
            "capture_rss_full_over_quarter":
                f["capture_peak_rss_kb"].as_f64()? / q["capture_peak_rss_kb"].as_f64()?.max(1.0),
            "capture_rss_quarter_kb": q["capture_peak_rss_kb"].as_f64()?,
            "capture_rss_full_kb": f["capture_peak_rss_kb"].as_f64()?,
            "report_rss_full_over_quarter":
                f["report_peak_rss_kb"].as_f64()? / q["report_peak_rss_kb"].as_f64()?.max(1.0),
            "report_events_per_s": f["report_events"].as_f64()? / f["report_wall_s"].as_f64()?.max(1e-9),
            "report_cpu_ns_per_event": f["report_cpu_s"].as_f64()? * 1e9 / f["report_events"].as_f64()?.max(1.0),
            "file_bytes_per_event": f["bytes"].as_f64()? / ef.max(1.0),
            "report_instructions": q.get("report_instructions").cloned().unwrap_or(Value::Null),
        }))
    }

    pub(super) fn markdown(&self) -> String {
        let mut s = String::new();
        self.md_header(&mut s);
        let rounds = self.runs.first().map(|w| w[0].len()).unwrap_or(0);
        // Throughput table and per-workload details (none with --rounds 0).
        if rounds > 0 {
            self.md_decide(&mut s, rounds);
            for &w in self.workloads {
                self.md_workload(&mut s, w);
            }
        }
        self.md_ebpf(&mut s);
        let derived: Vec<(&str, &str, Value)> = LONG_FORMATS
            .iter()
            .filter_map(|(k, flag, _)| Some((*k, *flag, self.long_derived(k)?)))
            .collect();
        self.md_long(&mut s, &derived);
        self.md_targets(&mut s, &derived);
        s
    }

    /// The command, the machine, the peers, and how busy the machine was.
    fn md_header(&self, s: &mut String) {
        let m = &self.machine;
        let _ = writeln!(s, "# schedtrace benchmark results\n");
        let _ = writeln!(
            s,
            "Command: `{}` (as root; {:.0} s)  ",
            self.command, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "Machine: Linux {}, {} CPUs, {}; commit {}  ",
            m["kernel"].as_str().unwrap_or("?"),
            m["nproc"].as_str().unwrap_or("?"),
            m["cpu"].as_str().unwrap_or("?"),
            m["commit"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(
            s,
            "Peers: {}; {}; {}; node {}\n",
            m["perf"].as_str().unwrap_or("?"),
            m["trace_cmd"].as_str().unwrap_or("?"),
            m["bpftrace"].as_str().unwrap_or("?"),
            m["node"].as_str().unwrap_or("?"),
        );

        let busy: Vec<String> = self
            .quiet
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|q| {
                format!(
                    "{}: {} (load {})",
                    q["round"],
                    q["busy_before"]
                        .as_f64()
                        .map(|b| format!("{:.0}% busy", b * 100.0))
                        .unwrap_or_else(|| "–".into()),
                    q["loadavg"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "Other work on the machine before each round: {}\n",
            busy.join("; ")
        );
    }

    /// Per workload: each condition's throughput over untraced, over the
    /// floor and over the reference, with 95% intervals and verdicts, and
    /// the consumer's CPU; then the resolution the run achieved.
    fn md_decide(&self, s: &mut String, rounds: usize) {
        let _ = writeln!(
            s,
            "## Throughput, paired by round, with 95% confidence intervals\n\n\
             {rounds} interleaved rounds (every condition once per round, order rotated). \
             Each cell is a ratio of throughputs measured in the same rounds: the trimmed \
             (10%) geometric mean over rounds, [95% percentile-bootstrap interval over \
             rounds]. A comparison says *faster* or *slower* only when its whole interval \
             is on one side of 1, else *cannot tell apart*. Consumer: the tool's own CPU \
             (schedtrace's userspace; a peer's process minus the workload) per event it \
             captured, median over rounds; *less startup*: minus the CPU of the same round's \
             schedtrace tracing an idle process (loading, BTF, the drain timer), which leaves \
             the cost of the events themselves.\n"
        );
        if rounds < 8 {
            // With n rounds the bootstrap has few distinct resamples (10 for
            // n = 3): its percentiles are too narrow, and verdicts overstate.
            let _ = writeln!(
                s,
                "**Only {rounds} rounds: the intervals below are too narrow to trust (a bootstrap \
                 of so few rounds under-covers); use them as a smoke test, not a verdict.**\n"
            );
        }
        let reference = self
            .conds
            .iter()
            .find(|c| c.key == REFERENCE)
            .map(|c| c.command());
        for &w in self.workloads {
            let base = self.agg(w, "untraced").unwrap_or_default();
            let _ = writeln!(
                s,
                "### {} ({}; untraced: {} {})\n",
                w.key(),
                w.describe(&self.sizes),
                opt(median(&base.throughput).map(si)),
                w.unit()
            );
            let _ = writeln!(
                s,
                "| Condition | vs untraced | vs floor | vs `{}` | consumer ns/event | same, less startup | lost (max) |\n|---|---|---|---|---|---|---|",
                reference.as_deref().unwrap_or(REFERENCE)
            );
            let mut widths = Vec::new();
            for c in self.conds.iter().filter(|c| c.kind != Kind::Untraced) {
                let a = self.agg(w, c.key).unwrap_or_default();
                let cell = |iv: Option<Interval>, verdict: bool| match iv {
                    None => "–".to_string(),
                    Some(iv) if verdict => {
                        format!("{} {}", iv_text(&iv), stats::verdict(&iv).text())
                    }
                    Some(iv) => iv_text(&iv),
                };
                let vs_floor = self.interval(w, c.key, "floor");
                let vs_ref = self.interval(w, c.key, REFERENCE);
                for iv in [vs_floor, vs_ref].into_iter().flatten() {
                    widths.push(iv.half_width());
                }
                let consumer = if c.kind == Kind::StOther || c.kind == Kind::Floor {
                    "–".into()
                } else if no_record_per_event(c, &a) {
                    "– (no record per switch)".into()
                } else {
                    opt(median(&a.us_per_event).map(|u| format!("{:.0}", u * 1e3)))
                };
                let marginal = if matches!(c.kind, Kind::Schedtrace | Kind::Candidate(_))
                    && !no_record_per_event(c, &a)
                {
                    opt(self
                        .marginal_consumer_ns(w, c.key)
                        .map(|n| format!("{n:.0}")))
                } else {
                    "–".into()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    c.label,
                    cell(self.vs_untraced(w, c.key), false),
                    cell(vs_floor, true),
                    cell(vs_ref, true),
                    consumer,
                    marginal,
                    opt(a.lost_max.map(|l| l.to_string())),
                );
            }
            for c in self
                .conds
                .iter()
                .filter(|c| matches!(c.kind, Kind::Candidate(_)))
            {
                if let Some(iv) = self.interval(w, c.key, "schedtrace-summary") {
                    let _ = writeln!(
                        s,
                        "\n{} against `schedtrace-summary` (paired by round): {} {}",
                        c.key,
                        iv_text(&iv),
                        stats::verdict(&iv).text()
                    );
                }
            }
            if let (Some(m), Some((_, hi))) = (median(&widths), min_max(&widths)) {
                let _ = writeln!(
                    s,
                    "\nResolution ({}): the paired intervals above are ±{:.1}% wide (median; widest ±{:.1}%): \
                     two conditions further apart than about that are told apart, closer ones are reported as \
                     *cannot tell apart*.",
                    w.key(),
                    m * 100.0,
                    hi * 100.0
                );
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "Not run: {}\n", self.notes.join("; "));
        }
    }

    /// One workload: events, cost and observer effect per condition.
    fn md_workload(&self, s: &mut String, w: Workload) {
        let _ = writeln!(
            s,
            "\n## {}: events, cost, observer effect (medians; Δ vs untraced, paired by round)\n",
            w.key()
        );
        let node = w == Workload::Node;
        let _ = writeln!(
            s,
            "| Condition | events | lost (max) | bytes/event | tool CPU s | tool CPU µs/event | tool peak RSS MiB | workload nivcsw | workload CPU s |{}",
            if node { " node's own nivcsw |" } else { "" }
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|{}",
            if node { "---|" } else { "" }
        );
        for c in self.conds {
            let a = self.agg(w, c.key).unwrap_or_default();
            let base = c.kind == Kind::Untraced;
            let events = if c.kind == Kind::StOther {
                opt(median(&a.events).map(|e| format!("{} (other pid)", si(e))))
            } else {
                opt(median(&a.events).map(si))
            };
            let _ = write!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.label,
                events,
                opt(a.lost_max.map(|l| l.to_string())),
                opt(median(&a.bytes_per_event).map(|b| format!("{b:.0}"))),
                opt(median(&a.tool_cpu).map(|c| format!("{c:.3}"))),
                if c.kind == Kind::StOther || no_record_per_event(c, &a) {
                    "–".into()
                } else {
                    opt(median(&a.us_per_event).map(|u| format!("{u:.2}")))
                },
                opt(median(&a.rss_mb).map(|r| format!("{r:.1}"))),
                with_rise(&a.nivcsw, &a.nivcsw_rise, si, base),
                with_rise(&a.work_cpu, &a.work_cpu_rise, |x| format!("{x:.3}"), base),
            );
            if node {
                let _ = write!(
                    s,
                    " {} |",
                    with_rise(&a.node_nivcsw, &a.node_nivcsw_rise, si, base)
                );
            }
            s.push('\n');
        }
        let fails: Vec<String> = self
            .conds
            .iter()
            .flat_map(|c| {
                self.agg(w, c.key)
                    .unwrap_or_default()
                    .failures
                    .into_iter()
                    .map(move |f| format!("- {}: {f}", c.label))
            })
            .collect();
        if !fails.is_empty() {
            let _ = writeln!(s, "\nFailed or incomplete runs:\n{}", fails.join("\n"));
        }
    }

    /// The eBPF cost per program run.
    fn md_ebpf(&self, s: &mut String) {
        if self.ebpf.is_null() {
            return;
        }
        let _ = writeln!(
            s,
            "\n## eBPF cost per program run (`bpf_stats`, 1 s window under `taskset -c 0 perf bench sched pipe -T`)\n"
        );
        if let Some(e) = self.ebpf.get("error") {
            let _ = writeln!(s, "Failed: {e}");
            return;
        }
        let _ = writeln!(
            s,
            "| Program | schedtrace tracing the bench (target events) | same, `--no-wakeups` | schedtrace tracing an idle `sleep` (all non-target) | bpftrace counting |\n|---|---|---|---|---|"
        );
        for (n, cells) in ebpf_rows(&self.ebpf) {
            let cells: Vec<String> = cells.iter().map(prog_cell).collect();
            let _ = writeln!(s, "| {n} | {} |", cells.join(" | "));
        }
    }

    /// The long captures and `schedtrace report` on their files.
    fn md_long(&self, s: &mut String, derived: &[(&str, &str, Value)]) {
        if !self.long.is_null() {
            let _ = writeln!(
                s,
                "\n## Long capture: memory, consumer CPU, `schedtrace report` speed\n\n`schedtrace --json FILE -- taskset -c 0 perf bench sched pipe -T -l N` and the same with `--record FILE` (binary capture), at N/4 and N, then `schedtrace report FILE --format json` on each file.\n"
            );
            if let Some(e) = self.long.get("error") {
                let _ = writeln!(s, "Failed: {e}");
            } else {
                let _ = writeln!(
                    s,
                    "| File | Length | loops | events | lost | file MiB | capture s | capture CPU s | capture peak RSS MiB | report s | report events/s | report peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
                let mut failed = Vec::new();
                for (key, flag, _) in LONG_FORMATS {
                    for k in ["quarter", "full"] {
                        let r = &self.long[key][k];
                        if let Some(e) = r.get("error") {
                            failed.push(format!("- `{flag}`, {k}: {}", e.as_str().unwrap_or("?")));
                            continue;
                        }
                        if r.is_null() {
                            continue;
                        }
                        let f = |key: &str| r[key].as_f64();
                        let _ = writeln!(
                            s,
                            "| `{flag}` | {k} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            opt(f("loops").map(si)),
                            opt(f("events").map(si)),
                            opt(r["lost"].as_u64().map(|x| x.to_string())),
                            opt(f("bytes").map(|b| format!("{:.0}", b / 1048576.0))),
                            opt(f("capture_wall_s").map(|x| format!("{x:.1}"))),
                            opt(f("capture_cpu_s").map(|x| format!("{x:.2}"))),
                            opt(f("capture_peak_rss_kb").map(|x| format!("{:.1}", x / 1024.0))),
                            opt(f("report_wall_s").map(|x| format!("{x:.1}"))),
                            opt(f("report_events")
                                .zip(f("report_wall_s"))
                                .map(|(e, t)| si(e / t.max(1e-9)))),
                            opt(f("report_peak_rss_kb").map(|x| format!("{:.1}", x / 1024.0))),
                        );
                    }
                }
                if !failed.is_empty() {
                    let _ = writeln!(s, "\nFailed runs:\n{}", failed.join("\n"));
                }
                for (_, flag, d) in derived {
                    let _ = writeln!(
                        s,
                        "\n`{flag}`: consumer (schedtrace userspace) CPU per event over the full run, startup included: {:.0} ns, i.e. {:.1}% of one core at 100k events/s (full minus quarter: {:.0} ns/event; {:.1}% of a core at the full run's {} events/s). File: {:.0} bytes/event. Report: {:.0} CPU ns/event.",
                        d["consumer_cpu_ns_per_event"].as_f64().unwrap_or(f64::NAN),
                        d["core_share_at_100k_events_per_s"]
                            .as_f64()
                            .unwrap_or(f64::NAN)
                            * 100.0,
                        d["consumer_cpu_ns_per_event_marginal"]
                            .as_f64()
                            .unwrap_or(f64::NAN),
                        d["core_share_at_full_rate"].as_f64().unwrap_or(f64::NAN) * 100.0,
                        si(d["event_rate_full"].as_f64().unwrap_or(f64::NAN)),
                        d["file_bytes_per_event"].as_f64().unwrap_or(f64::NAN),
                        d["report_cpu_ns_per_event"].as_f64().unwrap_or(f64::NAN),
                    );
                    let _ = writeln!(s, "{}", instructions_line(&d["report_instructions"]));
                }
            }
        }
    }

    /// Each target of issue 5, held or missed: throughput, the eBPF cost
    /// of other processes' events, the observer effect, then the long
    /// captures' targets.
    fn md_targets(&self, s: &mut String, derived: &[(&str, &str, Value)]) {
        let _ = writeln!(s, "\n## Targets (issues 5 and 18)\n");
        let peers: Vec<&Cond> = self.conds.iter().filter(|c| c.is_peer()).collect();
        let mut keys: Vec<&str> = vec!["schedtrace-summary"];
        keys.extend(TRACED);
        for &w in self
            .workloads
            .iter()
            .filter(|w| matches!(w, Workload::Pipe | Workload::Full))
        {
            for key in &keys {
                let Some(c) = self.conds.iter().find(|c| c.key == *key) else {
                    continue;
                };
                let Some(iv) = self.vs_untraced(w, key) else {
                    continue;
                };
                let lost = self
                    .agg(w, key)
                    .and_then(|a| a.lost_max)
                    .unwrap_or(u64::MAX);
                let _ = writeln!(
                    s,
                    "- {}: {} traced by `{}` ≥ 0.92 of untraced: {}; most lost in a run {lost}{}.",
                    at_least(&iv, 0.92),
                    w.key(),
                    c.command(),
                    iv_text(&iv),
                    if lost == 0 { "" } else { " (target: zero)" }
                );
                if let Some(f) = self.interval(w, key, "floor") {
                    let _ = writeln!(
                        s,
                        "- {}: {}, `{}` within 3% of the floor (ratio to floor ≥ 0.97): {}.",
                        at_least(&f, 0.97),
                        w.key(),
                        c.command(),
                        iv_text(&f)
                    );
                }
                let behind: Vec<String> = peers
                    .iter()
                    .filter_map(|p| {
                        let iv = self.interval(w, key, p.key)?;
                        (stats::verdict(&iv) != Verdict::Faster).then(|| {
                            format!(
                                "{} ({}, {})",
                                p.key,
                                iv_text(&iv),
                                stats::verdict(&iv).text()
                            )
                        })
                    })
                    .collect();
                if !peers.is_empty() {
                    let _ = writeln!(
                        s,
                        "- {}: {}, `{}` faster than every peer (paired intervals above 1){}.",
                        status(behind.is_empty()),
                        w.key(),
                        c.command(),
                        if behind.is_empty() {
                            String::new()
                        } else {
                            format!("; not shown faster than: {}", behind.join("; "))
                        }
                    );
                }
            }
        }
        if let Some(nt) = self
            .ebpf
            .get("schedtrace_non_target")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().find(|p| p["name"] == "sched_switch"))
        {
            let _ = writeln!(
                s,
                "- (no threshold) eBPF cost per non-target switch: {:.0} ns per `sched_switch` run{}.",
                nt["ns_per_run"].as_f64().unwrap_or(f64::NAN),
                self.vs_untraced(Workload::Pipe, "schedtrace-other-pid")
                    .map(|iv| format!("; pipe bench runs at {} of untraced while schedtrace traces another process", iv_text(&iv)))
                    .unwrap_or_default()
            );
        }
        // Not on the full machine: there every tracer lowers the workload's
        // rate, and its switch count falls with it.
        for &w in self.workloads.iter().filter(|w| **w != Workload::Full) {
            for key in TRACED {
                let Some(c) = self.conds.iter().find(|c| c.key == key) else {
                    continue;
                };
                let Some(r) = self.agg(w, key).and_then(|a| median(&a.nivcsw_rise)) else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "- {}: {} workload's involuntary switches rise < 2% under `{}`: {} (median of paired rounds; untraced median {}).",
                    status(r < 0.02),
                    w.key(),
                    c.command(),
                    pct(r),
                    opt(self
                        .agg(w, "untraced")
                        .and_then(|b| median(&b.nivcsw))
                        .map(si)),
                );
            }
        }
        self.md_long_targets(s, derived);
    }

    /// The targets the long captures check: consumer CPU, flat memory,
    /// report speed.
    fn md_long_targets(&self, s: &mut String, derived: &[(&str, &str, Value)]) {
        for (_, flag, d) in derived {
            let share = d["core_share_at_100k_events_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "- {}: consumer < 5% of one core at 100k events/s, every event to `{flag}`: {:.1}% (long capture, CPU per event × 100k).",
                status(share < 0.05),
                share * 100.0
            );
        }
        for (_, flag, d) in derived {
            let rss = d["capture_rss_full_over_quarter"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let rep = d["report_rss_full_over_quarter"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let kb = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
            let (q_kb, f_kb) = (kb("capture_rss_quarter_kb"), kb("capture_rss_full_kb"));
            let _ = writeln!(
                s,
                "- {}: flat RSS with trace length (full ≤ quarter × 1.10, plus for the capture the \
                 {} MiB write queue, which fills only while the disk stalls), `{flag}`: capture \
                 {:.1} → {:.1} MiB ({rss:.2}), report {rep:.2}.",
                status(f_kb <= q_kb * 1.10 + WRITE_QUEUE_KB && rep <= 1.10),
                WRITE_QUEUE_KB / 1024.0,
                q_kb / 1024.0,
                f_kb / 1024.0,
            );
        }
        // Issue 18: --json's consumer under 250 ns per event (long capture,
        // full length, start-up included).
        for (key, flag, d) in derived {
            if *key != "json" {
                continue;
            }
            let ns = d["consumer_cpu_ns_per_event"].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "- {}: `{flag}`'s consumer < 250 ns of CPU per event (long capture): {ns:.0} ns.",
                status(ns < 250.0),
            );
        }
        // Issue 18: report reads ≥ 5M events/s from the binary capture and
        // ≥ 4M/s from JSON Lines (issue 5 asked 2M/s of both).
        for (key, flag, d) in derived {
            let eps = d["report_events_per_s"].as_f64().unwrap_or(f64::NAN);
            let want = if *key == "record" { 5e6 } else { 4e6 };
            let _ = writeln!(
                s,
                "- {}: `schedtrace report` reads ≥ {} events/s, file from `{flag}`: {} events/s.",
                status(eps >= want),
                si(want),
                si(eps)
            );
        }
    }

    pub(super) fn json(&self) -> Value {
        let mut workloads = serde_json::Map::new();
        for (wi, &w) in self.workloads.iter().enumerate() {
            let mut conds = serde_json::Map::new();
            for (ci, c) in self.conds.iter().enumerate() {
                let a = aggregate(&self.runs[wi], ci);
                conds.insert(
                    c.key.into(),
                    json!({
                        "label": c.label,
                        "vs_untraced": iv_json(self.vs_untraced(w, c.key)),
                        "vs_floor": iv_json(self.interval(w, c.key, "floor")),
                        "vs_reference": iv_json(self.interval(w, c.key, REFERENCE)),
                        "vs_peers": self
                            .conds
                            .iter()
                            .filter(|p| p.is_peer() && p.key != c.key)
                            .map(|p| (p.key.to_string(), iv_json(self.interval(w, c.key, p.key))))
                            .collect::<serde_json::Map<_, _>>(),
                        "ratio_median": median(&a.ratios),
                        "ratio_min": min_max(&a.ratios).map(|x| x.0),
                        "ratio_max": min_max(&a.ratios).map(|x| x.1),
                        "throughput_median": median(&a.throughput),
                        "events_median": median(&a.events),
                        "lost_max": a.lost_max,
                        "bytes_per_event_median": median(&a.bytes_per_event),
                        "tool_cpu_s_median": median(&a.tool_cpu),
                        "tool_cpu_us_per_event_median": median(&a.us_per_event),
                        "tool_peak_rss_mib_median": median(&a.rss_mb),
                        "workload_nivcsw_median": median(&a.nivcsw),
                        "workload_nivcsw_rise_median": median(&a.nivcsw_rise),
                        "workload_cpu_s_median": median(&a.work_cpu),
                        "workload_cpu_rise_median": median(&a.work_cpu_rise),
                        "node_nivcsw_rise_median": median(&a.node_nivcsw_rise),
                        "runs": self.runs[wi][ci].iter().map(Run::json).collect::<Vec<_>>(),
                    }),
                );
            }
            workloads.insert(
                w.key().into(),
                json!({ "unit": w.unit(), "conditions": conds }),
            );
        }
        json!({
            "command": self.command,
            "machine": self.machine,
            "elapsed_s": self.elapsed_s,
            "machine_busy": self.quiet,
            "sizes": self.sizes,
            "reference": REFERENCE,
            "not_run": self.notes,
            "statistics": {
                "centre": "trimmed geometric mean of per-round ratios",
                "trim_each_end": stats::TRIM,
                "interval": "percentile bootstrap over rounds",
                "resamples": stats::RESAMPLES,
                "level": stats::LEVEL,
            },
            "workloads": workloads,
            "ebpf_cost": self.ebpf,
            "long_capture": self.long,
            "long_capture_derived": LONG_FORMATS
                .iter()
                .map(|(k, _, _)| (k.to_string(), self.long_derived(k).unwrap_or(Value::Null)))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// One line per run while the benchmark goes.
pub(super) fn progress(r: &Run, w: Workload) -> String {
    if let Some(f) = &r.failure {
        return format!("FAILED: {f}");
    }
    let note = r
        .note
        .as_ref()
        .map(|n| format!("  [{n}]"))
        .unwrap_or_default();
    let mut s = opt(r.throughput.map(|t| format!("{} {}", si(t), w.unit())));
    if let Some(e) = r.events {
        let _ = write!(s, "  events {}", si(e as f64));
    }
    if let Some(l) = r.lost {
        let _ = write!(s, " lost {l}");
    }
    if let Some(c) = r.tool_cpu_s {
        let _ = write!(s, "  tool CPU {c:.3} s");
    }
    if let Some(u) = r.work {
        let _ = write!(s, "  nivcsw {}", u.nivcsw);
    }
    s + &note
}

/// The sentence on `report`'s instructions per event (callgrind, the
/// quarter-length file), or why there is none.
fn instructions_line(v: &Value) -> String {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return format!("Report under callgrind failed: {e}.");
    }
    match (
        v["per_event"].as_f64(),
        v["per_event_analysis_thread"].as_f64(),
    ) {
        (Some(all), Some(analysis)) => format!(
            "Report, counted by callgrind on the quarter-length file ({} events): {all:.0} \
             instructions per event, {analysis:.0} of them on the analysis thread (the same \
             file and binary give the same count on a busy machine).",
            si(v["events"].as_f64().unwrap_or(f64::NAN)),
        ),
        // A missing valgrind is an error above; nothing is counted only
        // when the quarter-length capture or its report failed.
        _ => "Report instructions: not counted (the quarter-length run failed).".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(si(512_345.0), "512k");
        assert_eq!(si(1_500_000.0), "1.50M");
        assert_eq!(pct(0.0123), "+1.2%");
    }

    /// A candidate is told a kernel-sums build by what its runs said,
    /// not by its flags (a wrapper passes `--kernel-sums`).
    #[test]
    fn a_candidate_that_kept_sums_in_the_kernel_has_no_cost_per_event() {
        let cond = crate::bench::ALL_CONDS
            .iter()
            .find(|c| c.key == "schedtrace-summary")
            .copied()
            .expect("schedtrace-summary");
        let run = |kernel_sums| Run {
            throughput: Some(1.0),
            events: Some(9),
            tool_cpu_s: Some(0.3),
            kernel_sums,
            ..Default::default()
        };
        let runs = vec![vec![run(false)], vec![run(true)]];
        assert!(no_record_per_event(&cond, &aggregate(&runs, 1)));
        let runs = vec![vec![run(false)], vec![run(false)]];
        assert!(!no_record_per_event(&cond, &aggregate(&runs, 1)));
    }

    /// Synthetic rounds through the whole table: verdicts, the reference
    /// column, the resolution line and the interval targets.
    #[test]
    fn decides_from_paired_rounds() {
        let keys = ["untraced", "floor", "schedtrace-json", "schedtrace-record"];
        let conds: Vec<Cond> = crate::bench::ALL_CONDS
            .iter()
            .filter(|c| keys.contains(&c.key))
            .copied()
            .collect();
        // The machine drifts ±20% between rounds (shared by a round's runs);
        // each run adds ±0.5% of its own. True ratios to untraced: floor
        // 0.97, --json 0.90, --record 0.97 (the floor's cost exactly).
        let truth = [1.0, 0.97, 0.90, 0.97];
        let runs: Vec<Vec<Run>> = (0..conds.len())
            .map(|ci| {
                (0..16)
                    .map(|r| {
                        let drift = if r % 2 == 0 { 1.2 } else { 0.8 };
                        let own = if (r + ci) % 2 == 0 { 1.005 } else { 0.995 };
                        Run {
                            throughput: Some(500e3 * drift * own * truth[ci]),
                            events: (ci >= 2).then_some(1_000_000),
                            lost: (ci >= 2).then_some(0),
                            ..Default::default()
                        }
                    })
                    .collect()
            })
            .collect();
        let runs = vec![runs];
        let r = Results {
            command: "test".into(),
            machine: json!({}),
            elapsed_s: 1.0,
            quiet: json!([]),
            workloads: &[Workload::Pipe],
            conds: &conds,
            notes: Vec::new(),
            sizes: json!({ "pipe_loops": 1 }),
            runs: &runs,
            ebpf: Value::Null,
            long: Value::Null,
        };
        let md = r.markdown();
        let row = |label: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {label}")))
                .unwrap_or_else(|| panic!("no row {label} in {md}"))
                .to_string()
        };
        // --json: 0.90 of untraced, 0.928 of the floor: slower, clearly.
        let json_row = row("schedtrace --json");
        assert!(json_row.contains("| 0.900 ["), "{json_row}");
        assert!(
            json_row.contains("0.928 [") && json_row.contains("] slower"),
            "{json_row}"
        );
        // --record costs what the floor costs: cannot tell apart from it,
        // and faster than --json.
        let rec = row("schedtrace --record");
        assert!(rec.contains("] cannot tell apart |"), "{rec}");
        assert!(rec.contains("1.078 [") && rec.contains("] faster"), "{rec}");
        assert!(md.contains("Resolution (pipe): "), "{md}");
        // Targets on intervals: --json under 0.92 of untraced, whole
        // interval below: missed; not within 3% of the floor.
        assert!(
            md.contains("- MISSED: pipe traced by `schedtrace --json` ≥ 0.92 of untraced: 0.900 ["),
            "{md}"
        );
        let js = r.json();
        let c = &js["workloads"]["pipe"]["conditions"]["schedtrace-record"];
        assert_eq!(c["vs_floor"]["verdict"], "cannot tell apart");
        assert_eq!(c["vs_reference"]["verdict"], "faster");
        // No peer ran: no peer comparisons.
        assert_eq!(c["vs_peers"], json!({}));
    }

    /// A quarter-length run with neither a callgrind figure nor an error
    /// (it failed before callgrind ran) says it was not counted, rather
    /// than printing NaN.
    #[test]
    fn report_instructions_not_counted() {
        let not_counted = "Report instructions: not counted (the quarter-length run failed).";
        assert_eq!(instructions_line(&Value::Null), not_counted);
        assert_eq!(
            instructions_line(&json!({ "events": 1e6, "per_event": 2400.0 })),
            not_counted
        );
    }

    /// `--rounds 0`: no round tables, no round-based verdicts; the long
    /// capture's table and targets for both file formats.
    #[test]
    fn long_capture_only() {
        let run = |events: f64, cpu: f64, bytes: f64, report_s: f64| {
            json!({
                "loops": events / 3.0, "events": events, "lost": 0, "bytes": bytes * events,
                "capture_wall_s": events / 1e6, "capture_cpu_s": cpu, "capture_peak_rss_kb": 60000,
                "report_events": events, "report_wall_s": report_s, "report_cpu_s": report_s,
                "report_peak_rss_kb": 10000,
            })
        };
        let mut long = json!({
            "json": { "quarter": run(1e6, 0.5, 214.0, 1.2), "full": run(4e6, 1.9, 214.0, 5.0) },
            "record": { "quarter": run(1e6, 0.2, 88.0, 0.25), "full": run(4e6, 0.8, 88.0, 1.0) },
        });
        long["json"]["quarter"]["report_instructions"] = json!({
            "events": 1e6, "per_event": 2400.4, "per_event_analysis_thread": 1900.6,
        });
        long["record"]["quarter"]["report_instructions"] =
            json!({ "error": "callgrind on schedtrace report: exit status: 1" });
        let mut failed = long.clone();
        failed["record"]["full"] = json!({ "error": "no summary from the long capture" });
        let conds = crate::bench::ALL_CONDS;
        let runs = vec![vec![Vec::new(); conds.len()]];
        let r = Results {
            command: "cargo xtask bench --rounds 0".into(),
            machine: json!({}),
            elapsed_s: 1.0,
            quiet: json!([]),
            workloads: &[Workload::Pipe],
            conds,
            notes: Vec::new(),
            sizes: json!({}),
            runs: &runs,
            ebpf: Value::Null,
            long,
        };
        let md = r.markdown();
        assert!(!md.contains("Throughput relative"), "{md}");
        assert!(!md.contains("0.90 of untraced"), "{md}");
        assert!(md.contains("| `--record` | full | "), "{md}");
        assert!(md.contains("- HOLDS: consumer < 5% of one core at 100k events/s, every event to `--record`: 2.0%"), "{md}");
        assert!(md.contains("- MISSED: `schedtrace report` reads ≥ 4.00M events/s, file from `--json`: 800k events/s."), "{md}");
        assert!(md.contains("- MISSED: `schedtrace report` reads ≥ 5.00M events/s, file from `--record`: 4.00M events/s."), "{md}");
        // 1.9 s of CPU for 4M events: 475 ns per event.
        assert!(
            md.contains(
                "- MISSED: `--json`'s consumer < 250 ns of CPU per event (long capture): 475 ns."
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Report, counted by callgrind on the quarter-length file (1.00M events): 2400 \
                 instructions per event, 1901 of them on the analysis thread"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Report under callgrind failed: callgrind on schedtrace report: exit status: 1."
            ),
            "{md}"
        );
        let js = r.json();
        assert_eq!(
            js["long_capture_derived"]["record"]["file_bytes_per_event"],
            88.0
        );
    }
}

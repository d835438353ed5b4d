//! `cargo xtask bench`: how much schedtrace costs the workloads it watches,
//! against the physical floor (empty programs on the same tracepoints) and
//! side by side with perf, trace-cmd and bpftrace (project issues 5 and 18).
//! Method and results: docs/benchmark.md.
//!
//! Every round runs every condition once per workload, in an order that
//! rotates by one each round; a throughput ratio is always taken between
//! runs of the same round, and [`stats`] turns the rounds into intervals and
//! verdicts (faster, slower, cannot tell apart). Rounds run until a time
//! budget is spent. Then three single-shot phases: eBPF cost per program
//! run (`bpf_stats`), a long capture at 1/4 and full length with `--json`
//! and with `--record` (peak RSS, consumer CPU per event), and `schedtrace
//! report` read speed on both files.
//! Results go to stdout and `artifacts/bench/results.{md,json}`.

mod bpfstats;
mod instructions;
mod pairs;
mod proc;
mod render;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use proc::{Finished, Usage};

/// Loops of `perf bench sched pipe` per run (about 0.6 s untraced here).
const PIPE_LOOPS: u64 = 300_000;
/// Seconds of each full-machine run (about as long as a pipe run).
const FULL_SECONDS: f64 = 1.0;
/// Per-run limit; a run past it is interrupted and recorded as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// What the bpftrace condition runs: count every switch, nothing else.
const BPFTRACE_PROG: &str = "tracepoint:sched:sched_switch { @switches = count(); }";
/// Debian packages of the peers (command, package).
const PEERS: &[(&str, &str)] = &[
    ("perf", "linux-perf"),
    ("trace-cmd", "trace-cmd"),
    ("bpftrace", "bpftrace"),
    ("bpftool", "bpftool"),
    ("taskset", "util-linux"),
    ("node", "nodejs"),
    ("valgrind", "valgrind"),
];

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Most rounds: every condition runs once per workload per round, in
    /// an order rotated each round (0: only the eBPF cost and long-capture
    /// phases). Rounds stop earlier when --round-budget is spent.
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
    /// Seconds the rounds may take: no round starts that would likely end
    /// past it (after at least 3 rounds). With the other phases, the default
    /// bench stays under 15 minutes (docs/benchmark.md).
    #[arg(long, default_value_t = 600)]
    pub round_budget: u64,
    /// Smoke run: 3 rounds of shorter runs, no eBPF-cost phase, no long
    /// capture (about a minute; its intervals are wide).
    #[arg(long)]
    pub quick: bool,
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pipe,full")]
    pub workloads: Vec<Workload>,
    /// Conditions to run, comma-separated keys (default: all; untraced
    /// always runs). Keys: untraced, floor, schedtrace-summary,
    /// schedtrace-records, schedtrace-json, schedtrace-record, schedtrace-json-no-wakeups,
    /// schedtrace-json-no-wait-reasons, schedtrace-json-no-antagonists,
    /// schedtrace-json-stacks, schedtrace-other-pid, schedtrace-all,
    /// perf-sched-record, trace-cmd, bpftrace-count.
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    pub conditions: Vec<String>,
    /// Loops of the long pipe capture (memory, consumer CPU, report speed); 0 skips it.
    #[arg(long, default_value_t = 3_000_000)]
    pub long_loops: u64,
    /// Skip the eBPF per-program cost phase.
    #[arg(long)]
    pub no_bpf_stats: bool,
    /// Before each round, wait until other work uses less than this
    /// fraction of all CPUs (at most --quiet-wait seconds).
    #[arg(long, default_value_t = 0.15)]
    pub busy_limit: f64,
    /// Niceness of the whole benchmark (workloads, tracers, peers alike):
    /// other tenants' work at nice 0 then takes a small share of a CPU the
    /// workload wants (about 1% per busy task at -20) instead of half.
    /// 0 leaves it as it is.
    #[arg(long, default_value_t = -20, allow_negative_numbers = true)]
    pub nice: i32,
    /// The longest wait for a quiet machine before a round (seconds).
    #[arg(long, default_value_t = 5)]
    pub quiet_wait: u64,
    /// Use this schedtrace binary instead of building one.
    #[arg(long, value_name = "PATH")]
    pub schedtrace: Option<PathBuf>,
    /// Also run this other schedtrace build, summary only (conditions
    /// `candidate-1`, `candidate-2`, ... in the order given; repeatable), in
    /// every round beside the one measured, and give its paired ratio to
    /// `schedtrace-summary`: an experiment priced side by side in one run
    /// rather than against another day's numbers.
    #[arg(long, value_name = "PATH")]
    pub candidate: Vec<PathBuf>,
    /// (internal) Run the command after `--` and write its rusage to FILE.
    #[arg(long, hide = true, value_name = "FILE")]
    pub child_rusage: Option<PathBuf>,
    /// (internal) Run the full-machine workload for SECONDS: a pinned pipe
    /// pair per CPU (bench/pairs.rs).
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub pipe_pairs: Option<f64>,
    #[arg(last = true, hide = true)]
    pub child_cmd: Vec<String>,
}

/// How long each run of a workload is: shorter with `--quick`.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    pipe_loops: u64,
    full_seconds: f64,
}

const SIZES: Sizes = Sizes {
    pipe_loops: PIPE_LOOPS,
    full_seconds: FULL_SECONDS,
};
const QUICK_SIZES: Sizes = Sizes {
    pipe_loops: PIPE_LOOPS / 3,
    full_seconds: FULL_SECONDS / 3.0,
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `taskset -c 0 perf bench sched pipe -T -l 300000`: two threads, one CPU.
    Pipe,
    /// The full machine: a pinned pipe pair per CPU in one process, 1 s
    /// (`xtask bench --pipe-pairs 1`): every CPU busy, so the consumer's
    /// CPU is the workload's loss.
    Full,
    /// `perf bench sched messaging -t -g 10 -l 200`: 400 threads, unpinned.
    Messaging,
    /// `taskset -c 0 node bench/node-workload.js`: worker_threads + libuv pool.
    /// Pinned: unpinned, its rate swings 3x with idle-vCPU wakeup latency.
    Node,
}

impl Workload {
    fn key(self) -> &'static str {
        match self {
            Workload::Pipe => "pipe",
            Workload::Full => "full",
            Workload::Messaging => "messaging",
            Workload::Node => "node",
        }
    }

    fn argv(self, ctx: &Ctx) -> Vec<String> {
        let v: Vec<String> = match self {
            Workload::Pipe => return pipe_argv(ctx.sizes.pipe_loops),
            Workload::Full => vec![
                ctx.xtask.to_string_lossy().into_owned(),
                "bench".into(),
                "--pipe-pairs".into(),
                ctx.sizes.full_seconds.to_string(),
            ],
            Workload::Messaging => [
                "perf",
                "bench",
                "sched",
                "messaging",
                "-t",
                "-g",
                "10",
                "-l",
                "200",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Workload::Node => vec![
                "taskset".into(),
                "-c".into(),
                "0".into(),
                "node".into(),
                crate::root()
                    .join("bench/node-workload.js")
                    .to_string_lossy()
                    .into_owned(),
            ],
        };
        v
    }

    /// Throughput from the workload's own output (higher is better).
    fn throughput(self, stdout: &str) -> Option<f64> {
        match self {
            Workload::Pipe | Workload::Full => stdout
                .lines()
                .find(|l| l.contains("ops/sec"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok(),
            Workload::Messaging => {
                let l = stdout.lines().find(|l| l.contains("Total time:"))?;
                let secs: f64 = l
                    .split("Total time:")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                (secs > 0.0).then(|| 1.0 / secs)
            }
            Workload::Node => node_result(stdout)?.get("ops_per_sec")?.as_f64(),
        }
    }

    /// What one run is, for the tables.
    fn describe(self, sizes: &Value) -> String {
        match self {
            Workload::Pipe => format!(
                "`taskset -c 0 perf bench sched pipe -T -l {}`",
                sizes["pipe_loops"]
            ),
            Workload::Full => format!(
                "a pinned pipe pair per CPU, one process, {:.2} s per run (`xtask bench --pipe-pairs`)",
                sizes["full_seconds"].as_f64().unwrap_or(f64::NAN)
            ),
            Workload::Messaging => "`perf bench sched messaging -t -g 10 -l 200`".into(),
            Workload::Node => "`taskset -c 0 node bench/node-workload.js`".into(),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Pipe | Workload::Full => "ops/s",
            Workload::Messaging => "runs/s",
            Workload::Node => "ops/s",
        }
    }
}

fn pipe_argv(loops: u64) -> Vec<String> {
    let mut v: Vec<String> = ["taskset", "-c", "0", "perf", "bench", "sched", "pipe", "-T"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(["-l".to_string(), loops.to_string()]);
    v
}

fn node_result(stdout: &str) -> Option<Value> {
    let l = stdout
        .lines()
        .find_map(|l| l.strip_prefix("NODE_RESULT "))?;
    serde_json::from_str(l).ok()
}

/// How a condition runs the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The workload alone.
    Untraced,
    /// The workload while `schedtrace __floor` holds empty programs on
    /// `sched_switch` and `sched_waking`: the cost of merely being attached.
    Floor,
    /// schedtrace launches and traces the workload, with [`Cond::flags`].
    Schedtrace,
    /// As [`Kind::Schedtrace`] without flags, with the n-th (from 0)
    /// `--candidate` build.
    Candidate(usize),
    /// The workload untraced while schedtrace traces an idle process.
    StOther,
    /// The workload while `schedtrace --all` traces every task (the
    /// workload's among them), summary only: what the peers, which trace
    /// the whole machine, are compared with.
    StAll,
    PerfSched,
    TraceCmd,
    Bpftrace,
}

/// One condition of the benchmark: a row of every table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    kind: Kind,
    /// Stable name (JSON results, `--conditions`).
    key: &'static str,
    /// The row's label.
    label: &'static str,
    /// For [`Kind::Schedtrace`]: the flags. `FILE` stands for a fresh
    /// output file in the run directory (removed once measured).
    flags: &'static [&'static str],
}

const fn cond(kind: Kind, key: &'static str, label: &'static str) -> Cond {
    Cond {
        kind,
        key,
        label,
        flags: &[],
    }
}

/// A schedtrace condition: the flags it adds to `-q --as-root --format json -- CMD`.
const fn st(key: &'static str, label: &'static str, flags: &'static [&'static str]) -> Cond {
    Cond {
        kind: Kind::Schedtrace,
        key,
        label,
        flags,
    }
}

/// The reference that every feature is priced against: every event
/// written as JSON Lines, the mode the issue-5 targets were set for.
const REFERENCE: &str = "schedtrace-json";

/// Every condition, in their order in the tables. A feature switch gets a
/// row here (a flag the binary does not know is skipped with a note).
/// Untraced must stay first: every ratio is against it.
const ALL_CONDS: &[Cond] = &[
    cond(Kind::Untraced, "untraced", "untraced"),
    cond(
        Kind::Floor,
        "floor",
        "floor: empty tp_btf programs on sched_switch + sched_waking",
    ),
    st(
        "schedtrace-summary",
        "schedtrace, summary only (`schedtrace --pid`'s default: sums kept in the kernel)",
        &[],
    ),
    st(
        "schedtrace-records",
        "schedtrace --records, summary only (a record per event)",
        &["--records"],
    ),
    st(
        "schedtrace-json",
        "schedtrace --json (every event)",
        &["--json", "FILE"],
    ),
    st(
        "schedtrace-record",
        "schedtrace --record (binary capture)",
        &["--record", "FILE"],
    ),
    st(
        "schedtrace-json-no-wakeups",
        "schedtrace --json --no-wakeups",
        &["--json", "FILE", "--no-wakeups"],
    ),
    // Each "why" feature priced alone against `--json` (issue 18).
    st(
        "schedtrace-json-no-wait-reasons",
        "schedtrace --json --no-wait-reasons",
        &["--json", "FILE", "--no-wait-reasons"],
    ),
    st(
        "schedtrace-json-no-antagonists",
        "schedtrace --json --no-antagonists",
        &["--json", "FILE", "--no-antagonists"],
    ),
    st(
        "schedtrace-json-stacks",
        "schedtrace --json --stacks",
        &["--json", "FILE", "--stacks"],
    ),
    cond(
        Kind::StOther,
        "schedtrace-other-pid",
        "schedtrace on another process",
    ),
    cond(
        Kind::StAll,
        "schedtrace-all",
        "schedtrace --all (every task, summary only)",
    ),
    cond(Kind::PerfSched, "perf-sched-record", "perf sched record"),
    cond(
        Kind::TraceCmd,
        "trace-cmd",
        "trace-cmd record -e sched_switch",
    ),
    cond(
        Kind::Bpftrace,
        "bpftrace-count",
        "bpftrace count sched_switch",
    ),
];

/// The n-th (from 0) `--candidate` build at `path`, run as
/// `schedtrace-summary` is. Its key and label are made once per run.
fn candidate(n: usize, path: &Path) -> Cond {
    let key = format!("candidate-{}", n + 1);
    let label = format!("candidate {}: `{}`, summary only", n + 1, path.display());
    Cond {
        kind: Kind::Candidate(n),
        key: String::leak(key),
        label: String::leak(label),
        flags: &[],
    }
}

/// The conditions where schedtrace keeps every event it records, which the
/// issue's targets are about.
const TRACED: [&str; 2] = ["schedtrace-json", "schedtrace-json-no-wakeups"];

impl Cond {
    /// How the condition runs schedtrace, for the targets.
    fn command(&self) -> String {
        match self.kind {
            Kind::Schedtrace | Kind::Candidate(_) => {
                let flags: Vec<&str> = self
                    .flags
                    .iter()
                    .copied()
                    .filter(|f| *f != "FILE")
                    .collect();
                format!("schedtrace {}", flags.join(" "))
                    .trim_end()
                    .to_string()
            }
            _ => self.label.to_string(),
        }
    }

    fn is_peer(&self) -> bool {
        matches!(self.kind, Kind::PerfSched | Kind::TraceCmd | Kind::Bpftrace)
    }
}

/// The conditions to run: those named (all by default), untraced always
/// first, schedtrace flags the binary lacks (`has_flag` false) left out
/// (with a note), and the `candidates` last.
fn select_conds(
    names: &[String],
    has_flag: impl Fn(&str) -> bool,
    candidates: &[PathBuf],
) -> anyhow::Result<(Vec<Cond>, Vec<String>)> {
    for n in names {
        if !ALL_CONDS.iter().any(|c| c.key == n) {
            bail!(
                "unknown condition {n:?}; known: {}",
                ALL_CONDS
                    .iter()
                    .map(|c| c.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut conds = Vec::new();
    let mut notes = Vec::new();
    for c in ALL_CONDS {
        if c.kind != Kind::Untraced && !names.is_empty() && !names.iter().any(|n| n == c.key) {
            continue;
        }
        let missing: Vec<&str> = c
            .flags
            .iter()
            .copied()
            .filter(|f| f.starts_with("--") && !has_flag(f))
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "{}: skipped, this schedtrace has no {}",
                c.key,
                missing.join(", ")
            ));
            continue;
        }
        conds.push(*c);
    }
    conds.extend(candidates.iter().enumerate().map(|(n, p)| candidate(n, p)));
    Ok((conds, notes))
}

/// One run of one workload under one condition.
#[derive(Clone, Debug, Default)]
struct Run {
    throughput: Option<f64>,
    /// Events the tool captured (its own notion of an event).
    events: Option<u64>,
    lost: Option<u64>,
    out_bytes: Option<u64>,
    /// The tool's own CPU seconds (without the workload's).
    tool_cpu_s: Option<f64>,
    tool_rss_kb: Option<u64>,
    tool_wall_s: Option<f64>,
    /// The workload's usage (all its processes and threads).
    work: Option<Usage>,
    /// What the Node.js workload reported about itself.
    node_rusage: Option<Value>,
    /// Tool output worth keeping (e.g. perf's lost-event lines).
    note: Option<String>,
    failure: Option<String>,
    /// schedtrace kept its figures in the kernel (its summary's `mode`):
    /// its few records are no measure of a cost per event.
    kernel_sums: bool,
}

impl Run {
    fn json(&self) -> Value {
        json!({
            "throughput": self.throughput,
            "events": self.events,
            "lost": self.lost,
            "out_bytes": self.out_bytes,
            "tool_cpu_s": self.tool_cpu_s,
            "tool_rss_kb": self.tool_rss_kb,
            "tool_wall_s": self.tool_wall_s,
            "workload": self.work.map(|u| json!({
                "user_s": u.user_s, "sys_s": u.sys_s,
                "nvcsw": u.nvcsw, "nivcsw": u.nivcsw, "maxrss_kb": u.maxrss_kb,
            })),
            "node_rusage": self.node_rusage,
            "note": self.note,
            "failure": self.failure,
            "kernel_sums": self.kernel_sums,
        })
    }
}

struct Ctx {
    schedtrace: PathBuf,
    /// The `--candidate` builds.
    candidates: Vec<PathBuf>,
    xtask: PathBuf,
    dir: PathBuf,
    seq: u64,
    sizes: Sizes,
}

impl Ctx {
    /// A fresh path in the run directory.
    fn path(&mut self, what: &str) -> PathBuf {
        self.seq += 1;
        self.dir.join(format!("{:04}-{what}", self.seq))
    }

    fn st(&self) -> Command {
        Command::new(&self.schedtrace)
    }

    /// `xtask bench --child-rusage FILE -- argv`
    fn wrapped(&self, usage_file: &Path, argv: &[String]) -> Vec<String> {
        let mut v = vec![
            self.xtask.to_string_lossy().into_owned(),
            "bench".into(),
            "--child-rusage".into(),
            usage_file.to_string_lossy().into_owned(),
            "--".into(),
        ];
        v.extend(argv.iter().cloned());
        v
    }

    fn run(&mut self, cmd: &mut Command, what: &str) -> anyhow::Result<Finished> {
        let out = self.path(&format!("{what}.out"));
        let err = self.path(&format!("{what}.err"));
        let f = proc::spawn(cmd, &out, &err)?.wait(RUN_TIMEOUT)?;
        let _ = std::fs::remove_file(out);
        let _ = std::fs::remove_file(err);
        Ok(f)
    }
}

/// The pretty-printed JSON summary schedtrace prints last on stdout.
fn st_summary(stdout: &str) -> Option<Value> {
    let at = if stdout.starts_with("{\n") {
        0
    } else {
        stdout.rfind("\n{\n")? + 1
    };
    serde_json::from_str(&stdout[at..]).ok()
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// The first unsigned integer in `s`.
fn first_number(s: &str) -> Option<u64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// `[ perf record: Captured and wrote X MB F (N samples) ]`
fn perf_samples(stderr: &str) -> Option<u64> {
    let l = stderr.lines().find(|l| l.contains(" samples)"))?;
    let open = l.rfind('(')?;
    first_number(&l[open..])
}

/// Lost-event counts perf mentions (0 when it mentions none).
fn perf_lost(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("lost"))
        .filter_map(|l| {
            let i = l.to_ascii_lowercase().find("lost")?;
            first_number(&l[i..]).or_else(|| first_number(l))
        })
        .sum()
}

/// Events in a trace-cmd file and the overruns/drops its stats record.
fn trace_cmd_counts(file: &Path) -> (Option<u64>, Option<u64>) {
    use std::io::BufRead;
    let events = Command::new("trace-cmd")
        .args(["report", "-i"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
        .and_then(|mut c| {
            let out = c.stdout.take()?;
            let mut n = 0u64;
            let mut r = std::io::BufReader::with_capacity(1 << 20, out);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).ok()? > 0 {
                if line.windows(13).any(|w| w == b"sched_switch:") {
                    n += 1;
                }
                line.clear();
            }
            c.wait().ok()?;
            Some(n)
        });
    let lost = Command::new("trace-cmd")
        .args(["report", "--stat", "-i"])
        .arg(file)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("overrun:") || l.starts_with("dropped events:"))
                .filter_map(first_number)
                .sum()
        });
    (events, lost)
}

/// The bpftrace map value `@switches: N`.
fn bpftrace_count(stdout: &str) -> Option<u64> {
    first_number(stdout.lines().find_map(|l| l.strip_prefix("@switches:"))?)
}

fn read_usage(p: &Path) -> Option<Usage> {
    Usage::from_line(&std::fs::read_to_string(p).ok()?)
}

/// Fill what schedtrace's own JSON summary tells.
fn from_st_summary(run: &mut Run, stdout: &str) {
    if let Some(s) = st_summary(stdout) {
        run.events = s.get("events").and_then(Value::as_u64);
        run.lost = s.get("lost_events").and_then(Value::as_u64);
        run.kernel_sums = s.get("mode").and_then(Value::as_str) == Some("kernel-sums");
    } else {
        run.failure = Some("no JSON summary on stdout".into());
    }
}

fn run_one(ctx: &mut Ctx, w: Workload, c: &Cond) -> anyhow::Result<Run> {
    let argv = w.argv(ctx);
    let mut run = Run::default();
    let f = match c.kind {
        Kind::Untraced => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            let f = ctx.run(&mut cmd, "untraced")?;
            run.work = Some(f.usage);
            f
        }
        Kind::Floor => run_under_floor(ctx, &argv, &mut run)?,
        Kind::Schedtrace | Kind::Candidate(_) => run_schedtrace(ctx, &argv, c, &mut run)?,
        Kind::StOther => {
            let idle = ["--as-root", "--", "sleep", "300"];
            run_beside(ctx, &argv, &mut run, &idle, "other")?
        }
        Kind::StAll => run_beside(ctx, &argv, &mut run, &["--all"], "all")?,
        Kind::PerfSched | Kind::TraceCmd | Kind::Bpftrace => run_peer(ctx, &argv, c, &mut run)?,
    };
    run.throughput = w.throughput(&f.stdout);
    if w == Workload::Node {
        run.node_rusage = node_result(&f.stdout).and_then(|v| v.get("rusage").cloned());
    }
    if run.throughput.is_none() {
        let tail: String = f
            .stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        run.failure = Some(format!("no throughput in output (exit {}): {tail}", f.exit));
    }
    Ok(run)
}

/// The workload launched and traced by schedtrace with `c`'s flags.
fn run_schedtrace(
    ctx: &mut Ctx,
    argv: &[String],
    c: &Cond,
    run: &mut Run,
) -> anyhow::Result<Finished> {
    let file = ctx.path(&format!("{}.out", c.key));
    let writes = c.flags.contains(&"FILE");
    let mut cmd = match c.kind {
        Kind::Candidate(n) => Command::new(&ctx.candidates[n]),
        _ => ctx.st(),
    };
    for f in c.flags {
        if *f == "FILE" {
            cmd.arg(&file);
        } else {
            cmd.arg(f);
        }
    }
    cmd.args(["-q", "--as-root", "--format", "json", "--"])
        .args(argv);
    let f = ctx.run(&mut cmd, c.key)?;
    from_st_summary(run, &f.stdout);
    if writes {
        run.out_bytes = file_size(&file);
        let _ = std::fs::remove_file(&file);
    }
    run.tool_cpu_s = f.own_cpu_s();
    run.tool_rss_kb = Some(f.hwm_kb);
    run.tool_wall_s = Some(f.wall.as_secs_f64());
    run.work = f.children_usage();
    Ok(f)
}

/// The workload untraced while `schedtrace __floor` holds empty programs
/// on the two hot tracepoints.
fn run_under_floor(ctx: &mut Ctx, argv: &[String], run: &mut Run) -> anyhow::Result<Finished> {
    let (so, se) = (ctx.path("floor.out"), ctx.path("floor.err"));
    let mut cmd = ctx.st();
    cmd.arg("__floor");
    let mut holder = proc::spawn(&mut cmd, &so, &se)?;
    if !holder.wait_for_output(Duration::from_secs(30), |_, e| {
        e.contains("schedtrace: floor attached")
    }) {
        holder.signal(libc::SIGINT);
        let t = holder.wait(Duration::from_secs(10))?;
        bail!("schedtrace __floor did not attach: {}", t.stderr.trim());
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let f = ctx.run(&mut cmd, "under-floor")?;
    holder.signal(libc::SIGINT);
    let t = holder.wait(Duration::from_secs(30))?;
    let _ = std::fs::remove_file(so);
    let _ = std::fs::remove_file(se);
    if t.exit != 0 {
        run.note = Some(format!("__floor exited {}", t.exit));
    }
    run.work = Some(f.usage);
    Ok(f)
}

/// The workload run while a schedtrace started before it with `targets`
/// traces: an idle process (every event it filters out in the kernel is
/// the workload's), or every task (`--all`). The tool's figures are those
/// of its whole run, start-up and the workload's start and end included.
fn run_beside(
    ctx: &mut Ctx,
    argv: &[String],
    run: &mut Run,
    targets: &[&str],
    name: &str,
) -> anyhow::Result<Finished> {
    let (so, se) = (
        ctx.path(&format!("{name}.out")),
        ctx.path(&format!("{name}.err")),
    );
    let mut cmd = ctx.st();
    cmd.args(["--format", "json"]).args(targets);
    let mut tracer = proc::spawn(&mut cmd, &so, &se)?;
    if !tracer.wait_for_output(Duration::from_secs(30), |_, e| {
        e.contains("schedtrace: tracing")
    }) {
        tracer.signal(libc::SIGINT);
        let t = tracer.wait(Duration::from_secs(10))?;
        bail!("schedtrace did not start: {}", t.stderr.trim());
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let f = ctx.run(&mut cmd, &format!("under-{name}"))?;
    tracer.signal(libc::SIGINT);
    let t = tracer.wait(Duration::from_secs(30))?;
    let _ = std::fs::remove_file(so);
    let _ = std::fs::remove_file(se);
    from_st_summary(run, &t.stdout);
    run.tool_cpu_s = t.own_cpu_s();
    run.tool_rss_kb = Some(t.hwm_kb);
    run.tool_wall_s = Some(t.wall.as_secs_f64());
    run.work = Some(f.usage);
    Ok(f)
}

/// The workload traced by a peer tool (perf, trace-cmd, bpftrace), run
/// under xtask's rusage wrapper so that the workload's own usage is known.
fn run_peer(ctx: &mut Ctx, argv: &[String], c: &Cond, run: &mut Run) -> anyhow::Result<Finished> {
    let usage = ctx.path("workload.rusage");
    let data = ctx.path(match c.kind {
        Kind::PerfSched => "perf.data",
        _ => "trace.dat",
    });
    let wrapped = ctx.wrapped(&usage, argv);
    let mut cmd;
    match c.kind {
        Kind::PerfSched => {
            cmd = Command::new("perf");
            cmd.args(["sched", "record", "-o"])
                .arg(&data)
                .arg("--")
                .args(&wrapped);
        }
        Kind::TraceCmd => {
            // Only these options work here (TOOLCHAIN.md); it exits 1
            // after writing a complete file.
            cmd = Command::new("trace-cmd");
            cmd.args(["record", "--no-filter", "-d", "-e", "sched_switch", "-o"])
                .arg(&data)
                .args(&wrapped);
        }
        _ => {
            cmd = Command::new("bpftrace");
            cmd.args(["-e", BPFTRACE_PROG, "-c", &wrapped.join(" ")]);
        }
    }
    let f = ctx.run(&mut cmd, c.key)?;
    run.work = read_usage(&usage);
    let _ = std::fs::remove_file(&usage);
    match c.kind {
        Kind::PerfSched => {
            run.events = perf_samples(&f.stderr);
            run.lost = Some(perf_lost(&f.stderr));
            let lines: Vec<&str> = f
                .stderr
                .lines()
                .filter(|l| l.to_ascii_lowercase().contains("lost"))
                .collect();
            if !lines.is_empty() {
                run.note = Some(lines.join(" | "));
            }
        }
        Kind::TraceCmd => (run.events, run.lost) = trace_cmd_counts(&data),
        _ => {
            run.events = bpftrace_count(&f.stdout);
            run.lost = Some(0);
        }
    }
    run.out_bytes = file_size(&data);
    let _ = std::fs::remove_file(&data);
    // The tool's own share: everything it reaped minus the workload.
    run.tool_cpu_s = run.work.map(|w| f.usage.minus(&w).cpu_s());
    run.tool_rss_kb = Some(f.hwm_kb);
    run.tool_wall_s = Some(f.wall.as_secs_f64());
    Ok(f)
}

/// Per-program eBPF cost: schedtrace filtering out every event (it traces an
/// idle process while the pipe bench runs), schedtrace keeping nearly every
/// event (it traces the pipe bench), and bpftrace's counting program.
fn ebpf_cost(ctx: &mut Ctx) -> anyhow::Result<Value> {
    let _on = bpfstats::StatsOn::enable()?;
    let window = Duration::from_millis(1000);
    let progs = |v: &[bpfstats::Prog]| -> Value {
        v.iter()
            .map(|p| {
                json!({
                    "name": p.name, "type": p.kind, "run_cnt": p.run_cnt,
                    "run_time_ns": p.run_time_ns,
                    "ns_per_run": p.run_time_ns as f64 / p.run_cnt.max(1) as f64,
                })
            })
            .collect()
    };
    let mut out = serde_json::Map::new();

    // 1. Non-target: schedtrace on `sleep`, the pipe bench untraced.
    let base = bpfstats::snapshot()?;
    let (so, se) = (ctx.path("nt.out"), ctx.path("nt.err"));
    let mut cmd = ctx.st();
    cmd.args(["--as-root", "--format", "json", "--", "sleep", "300"]);
    let mut tracer = proc::spawn(&mut cmd, &so, &se)?;
    if !tracer.wait_for_output(Duration::from_secs(30), |_, e| {
        e.contains("schedtrace: tracing")
    }) {
        bail!("schedtrace did not start: {}", tracer.stderr_text());
    }
    let s0 = bpfstats::snapshot()?;
    let mut cmd = Command::new("taskset");
    cmd.args(&pipe_argv(PIPE_LOOPS)[1..]);
    ctx.run(&mut cmd, "nt-pipe")?;
    let s1 = bpfstats::snapshot()?;
    tracer.signal(libc::SIGINT);
    tracer.wait(Duration::from_secs(30))?;
    out.insert(
        "schedtrace_non_target".into(),
        progs(&bpfstats::delta(&base, &s0, &s1)),
    );

    // 2. Target: schedtrace --pid on the running pipe bench, with and
    // without wakeups.
    for (key, extra) in [
        ("schedtrace_target", None),
        ("schedtrace_target_no_wakeups", Some("--no-wakeups")),
    ] {
        let base = bpfstats::snapshot()?;
        let (wo, we) = (ctx.path("t-pipe.out"), ctx.path("t-pipe.err"));
        let mut cmd = Command::new("taskset");
        cmd.args(&pipe_argv(PIPE_LOOPS * 5)[1..]);
        let pipe = proc::spawn(&mut cmd, &wo, &we)?;
        let mut cmd = ctx.st();
        cmd.args(["--format", "json", "--pid", &pipe.pid().to_string()])
            .args(extra);
        let (so, se) = (ctx.path("t.out"), ctx.path("t.err"));
        let mut tracer = proc::spawn(&mut cmd, &so, &se)?;
        if !tracer.wait_for_output(Duration::from_secs(30), |_, e| {
            e.contains("schedtrace: tracing")
        }) {
            bail!("schedtrace did not start: {}", tracer.stderr_text());
        }
        std::thread::sleep(Duration::from_millis(100));
        let s0 = bpfstats::snapshot()?;
        std::thread::sleep(window);
        let s1 = bpfstats::snapshot()?;
        pipe.wait(RUN_TIMEOUT)?;
        tracer.wait(Duration::from_secs(30))?;
        out.insert(key.into(), progs(&bpfstats::delta(&base, &s0, &s1)));
    }

    // 3. bpftrace counting every switch while the pipe bench runs.
    let base = bpfstats::snapshot()?;
    let (so, se) = (ctx.path("bt.out"), ctx.path("bt.err"));
    let mut cmd = Command::new("bpftrace");
    cmd.args(["-e", BPFTRACE_PROG]);
    let mut bt = proc::spawn(&mut cmd, &so, &se)?;
    if bt.wait_for_output(Duration::from_secs(30), |o, _| o.contains("Attaching")) {
        std::thread::sleep(Duration::from_millis(200));
        let s0 = bpfstats::snapshot()?;
        let mut cmd = Command::new("taskset");
        cmd.args(&pipe_argv(PIPE_LOOPS)[1..]);
        ctx.run(&mut cmd, "bt-pipe")?;
        let s1 = bpfstats::snapshot()?;
        out.insert(
            "bpftrace_count".into(),
            progs(&bpfstats::delta(&base, &s0, &s1)),
        );
    }
    // bpftrace may miss one SIGINT on a busy machine: repeat it.
    for _ in 0..20 {
        bt.signal(libc::SIGINT);
        std::thread::sleep(Duration::from_millis(250));
        if bt.poll() {
            break;
        }
    }
    bt.wait(Duration::from_secs(10))?;
    Ok(Value::Object(out))
}

/// How the long capture keeps every event: the flag and the file extension.
/// Keys of `long_capture` in the JSON results.
pub(crate) const LONG_FORMATS: [(&str, &str, &str); 2] = [
    ("json", "--json", "jsonl"),
    ("record", "--record", "schedtrace"),
];

/// The long capture at 1/4 and full length, once with `--json` and once with
/// `--record` (alternating), and `schedtrace report` on each file, each
/// after waiting for the machine to be quiet (as before a round). A failed
/// run is recorded as `{"error": ...}` in its place.
fn long_run(ctx: &mut Ctx, loops: u64, busy_limit: f64, quiet_wait: u64) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for (label, l) in [("quarter", loops / 4), ("full", loops)] {
        for (key, flag, ext) in LONG_FORMATS {
            let busy = wait_quiet(busy_limit, Duration::from_secs(quiet_wait));
            let mut v = long_one(ctx, label, l, flag, ext)
                .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
            v["busy_before"] = json!(busy);
            let entry = out
                .entry(key)
                .or_insert_with(|| Value::Object(Default::default()));
            entry[label] = v;
        }
    }
    Ok(Value::Object(out))
}

/// One long capture with `flag` (`--json` or `--record`), then `schedtrace report` on its file.
fn long_one(ctx: &mut Ctx, label: &str, l: u64, flag: &str, ext: &str) -> anyhow::Result<Value> {
    let trace = ctx.path(&format!("long-{label}.{ext}"));
    let mut cmd = ctx.st();
    cmd.arg(flag)
        .arg(&trace)
        .args(["-q", "--as-root", "--format", "json", "--"])
        .args(pipe_argv(l));
    eprintln!("bench: long capture ({label}, {l} loops, {flag})...");
    let f = ctx.run(&mut cmd, &format!("long-{label}-{ext}"));
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&trace);
            return Err(e);
        }
    };
    let Some(s) = st_summary(&f.stdout) else {
        let _ = std::fs::remove_file(&trace);
        bail!(
            "no summary from the long capture: {}",
            f.stderr.lines().next().unwrap_or("").trim()
        );
    };
    let events = s.get("events").and_then(Value::as_u64).unwrap_or(0);
    let bytes = file_size(&trace).unwrap_or(0);
    eprintln!("bench: schedtrace report on {events} events ({bytes} bytes, {flag})...");
    let mut cmd = ctx.st();
    cmd.arg("report").arg(&trace).args(["--format", "json"]);
    let r = ctx.run(&mut cmd, &format!("report-{label}-{ext}"));
    // The analysis' instructions per event, on the shorter file (callgrind
    // runs it some fifty times slower).
    let instructions = (label == "quarter" && r.is_ok()).then(|| {
        eprintln!("bench: schedtrace report under callgrind ({flag})...");
        instructions::report_instructions(&ctx.schedtrace, &trace, events, &ctx.dir)
            .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
    });
    let _ = std::fs::remove_file(&trace);
    let r = r?;
    let report_events = st_summary(&r.stdout)
        .and_then(|s| s.get("events").and_then(Value::as_u64))
        .unwrap_or(0);
    Ok(json!({
        "loops": l,
        "events": events,
        "lost": s.get("lost_events"),
        "bytes": bytes,
        "throughput_ops_s": Workload::Pipe.throughput(&f.stdout),
        "capture_wall_s": f.wall.as_secs_f64(),
        "capture_cpu_s": f.own_cpu_s(),
        "capture_peak_rss_kb": f.hwm_kb,
        "report_exit": r.exit,
        "report_events": report_events,
        "report_wall_s": r.wall.as_secs_f64(),
        "report_cpu_s": r.usage.cpu_s(),
        "report_peak_rss_kb": r.usage.maxrss_kb,
        "report_instructions": instructions,
    }))
}

/// Fraction of all CPUs busy over `window`, from /proc/stat.
fn busy_fraction(window: Duration) -> Option<f64> {
    let read = || -> Option<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = s
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest is in user)
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4)?;
        Some((total, idle))
    };
    let (t0, i0) = read()?;
    std::thread::sleep(window);
    let (t1, i1) = read()?;
    let dt = t1.saturating_sub(t0).max(1);
    Some(1.0 - i1.saturating_sub(i0) as f64 / dt as f64)
}

/// Wait (up to `max`) until other work on the machine uses under `limit`
/// of its CPUs; returns the busy fraction seen last.
fn wait_quiet(limit: f64, max: Duration) -> f64 {
    let t = Instant::now();
    let mut warned = false;
    loop {
        let b = busy_fraction(Duration::from_millis(500)).unwrap_or(0.0);
        if b < limit || t.elapsed() > max {
            if b >= limit {
                eprintln!(
                    "bench: warning: the machine stays {:.0}% busy with other work; measuring anyway",
                    b * 100.0
                );
            }
            return b;
        }
        if !warned {
            eprintln!(
                "bench: the machine is {:.0}% busy with other work; waiting up to {max:?} for it to settle",
                b * 100.0
            );
            warned = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Value {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    json!({
        "kernel": sh("uname -r"),
        "nproc": sh("nproc"),
        "cpu": cpu,
        "perf": sh("perf --version"),
        "trace_cmd": sh("trace-cmd --version 2>&1 | head -n 3 | tr -s '\\n' ' '"),
        "bpftrace": sh("bpftrace --version"),
        "node": sh("node --version"),
        "commit": sh(&format!("git -C {} rev-parse --short HEAD", crate::root().display())),
    })
}

pub(crate) fn main(mut args: Args) -> anyhow::Result<()> {
    if let Some(out) = &args.child_rusage {
        return proc::child_main(out, &args.child_cmd);
    }
    if let Some(secs) = args.pipe_pairs {
        return pairs::main(secs);
    }
    if !crate::is_root() {
        bail!("the benchmark loads eBPF programs and runs perf system-wide: run it as root");
    }
    if args.quick {
        args.rounds = args.rounds.min(3);
        args.long_loops = 0;
        args.no_bpf_stats = true;
    }
    let started = Instant::now();
    if args.nice != 0 {
        renice(args.nice)?;
    }
    crate::setup::ensure_packages(PEERS)?;
    crate::setup::ensure_tracefs();
    let schedtrace = match &args.schedtrace {
        Some(p) => p.clone(),
        None => crate::build_release()?,
    };
    let help = Command::new(&schedtrace)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .with_context(|| format!("running {} --help", schedtrace.display()))?;
    // Flags for measuring costs are hidden from --help: a flag is known if
    // `schedtrace FLAG --help` prints the help rather than an error.
    let has_flag = |f: &str| {
        help.contains(f)
            || Command::new(&schedtrace)
                .args([f, "--help"])
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if let Some(c) = args.candidate.iter().find(|c| !c.is_file()) {
        bail!("--candidate {}: no such file", c.display());
    }
    let (conds, notes) = select_conds(&args.conditions, has_flag, &args.candidate)?;
    for n in &notes {
        eprintln!("bench: {n}");
    }
    let out_dir = crate::root().join("artifacts/bench");
    let dir = out_dir.join("runs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ctx = Ctx {
        schedtrace,
        candidates: args.candidate.clone(),
        xtask: std::env::current_exe().context("locating xtask")?,
        dir,
        seq: 0,
        sizes: if args.quick { QUICK_SIZES } else { SIZES },
    };
    let (runs, mut quiet) = rounds(&mut ctx, &args, &conds);
    quiet.push(json!({ "round": "end", "loadavg": loadavg() }));
    let ebpf = if args.no_bpf_stats {
        Value::Null
    } else {
        eprintln!("bench: eBPF cost per program run (bpf_stats)...");
        ebpf_cost(&mut ctx).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
    };
    let long = if args.long_loops == 0 {
        Value::Null
    } else {
        long_run(&mut ctx, args.long_loops, args.busy_limit, args.quiet_wait)
            .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
    };
    // Scratch outputs (traces are removed as soon as they are measured).
    let _ = std::fs::remove_dir_all(&ctx.dir);
    let results = render::Results {
        command: command_line(&args),
        machine: machine(),
        elapsed_s: started.elapsed().as_secs_f64(),
        quiet: Value::Array(quiet),
        workloads: &args.workloads,
        conds: &conds,
        notes,
        sizes: json!({
            "pipe_loops": ctx.sizes.pipe_loops,
            "full_seconds": ctx.sizes.full_seconds,
        }),
        runs: &runs,
        ebpf,
        long,
    };
    write_results(&results, &out_dir, started)
}

/// Run the benchmark, and everything it starts, at niceness `nice`, also
/// against other sessions: with `kernel.sched_autogroup_enabled` (on here)
/// the scheduler first shares CPUs between sessions' autogroups by their
/// own nice value, so a process's nice alone only ranks it within its
/// session. So: a new session (a new autogroup), that autogroup's nice
/// set too (`/proc/self/autogroup`), and the process's own.
fn renice(nice: i32) -> anyhow::Result<()> {
    // SAFETY: setsid on ourselves; fails (harmlessly) if we lead a group.
    if unsafe { libc::setsid() } < 0 {
        eprintln!(
            "bench: warning: setsid: {} (staying in the caller's autogroup)",
            std::io::Error::last_os_error()
        );
    }
    if Path::new("/proc/self/autogroup").exists()
        && let Err(e) = std::fs::write("/proc/self/autogroup", nice.to_string())
    {
        eprintln!("bench: warning: autogroup nice {nice}: {e}");
    }
    // SAFETY: plain setpriority on this process; children inherit it.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        bail!("setpriority({nice}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every round: each workload under each condition (the order rotated
/// from round to round), after waiting for the machine to be quiet.
/// Returns `runs[workload][cond][round]` and how busy each round began.
fn rounds(ctx: &mut Ctx, args: &Args, conds: &[Cond]) -> (Vec<Vec<Vec<Run>>>, Vec<Value>) {
    let mut runs: Vec<Vec<Vec<Run>>> =
        vec![vec![Vec::with_capacity(args.rounds); conds.len()]; args.workloads.len()];
    let mut quiet = Vec::new();
    let t0 = Instant::now();
    for round in 0..args.rounds {
        let busy = wait_quiet(args.busy_limit, Duration::from_secs(args.quiet_wait));
        quiet.push(json!({ "round": round + 1, "busy_before": busy, "loadavg": loadavg() }));
        for (wi, &w) in args.workloads.iter().enumerate() {
            // Rotate by one each round, and start the workloads at
            // different places, so no condition always follows another.
            for k in 0..conds.len() {
                let ci = (k + round + wi) % conds.len();
                let c = &conds[ci];
                let r = run_one(ctx, w, c).unwrap_or_else(|e| Run {
                    failure: Some(format!("{e:#}")),
                    ..Default::default()
                });
                eprintln!(
                    "bench: round {}/{} {:<9} {:<34} {}",
                    round + 1,
                    args.rounds,
                    w.key(),
                    c.key,
                    render::progress(&r, w)
                );
                // Each round adds exactly one run per condition.
                runs[wi][ci].push(r);
            }
        }
        let spent = t0.elapsed().as_secs_f64();
        eprintln!(
            "bench: round {} done, {spent:.0} s in rounds so far",
            round + 1
        );
        // Stop before a round that would likely overrun the budget.
        let per_round = spent / (round + 1) as f64;
        if round + 1 >= 3 && round + 1 < args.rounds && spent + per_round > args.round_budget as f64
        {
            eprintln!(
                "bench: stopping after {} rounds: the next would pass the {} s budget",
                round + 1,
                args.round_budget
            );
            break;
        }
    }
    (runs, quiet)
}

/// The command that reproduces this run, for the results.
fn command_line(args: &Args) -> String {
    let mut s = format!(
        "cargo xtask bench --rounds {} --round-budget {} --workloads {} --long-loops {}",
        args.rounds,
        args.round_budget,
        args.workloads
            .iter()
            .map(|w| w.key())
            .collect::<Vec<_>>()
            .join(","),
        args.long_loops,
    );
    if args.quick {
        s += " --quick";
    }
    if args.nice != -20 {
        s += &format!(" --nice {}", args.nice);
    }
    if !args.conditions.is_empty() {
        s += &format!(" --conditions {}", args.conditions.join(","));
    }
    if args.no_bpf_stats {
        s += " --no-bpf-stats";
    }
    for c in &args.candidate {
        s += &format!(" --candidate {}", c.display());
    }
    s
}

/// Print the Markdown results and write them, with the JSON results, to `out_dir`.
fn write_results(
    results: &render::Results<'_>,
    out_dir: &Path,
    started: Instant,
) -> anyhow::Result<()> {
    let md = results.markdown();
    let js = results.json();
    println!("{md}");
    std::fs::write(out_dir.join("results.md"), &md)?;
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&js)? + "\n",
    )?;
    eprintln!(
        "bench: wrote {} and results.json in {:.0} s",
        out_dir.join("results.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conditions_help_names_every_condition() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: Args,
        }
        let cmd = Wrap::command();
        let help = cmd
            .get_arguments()
            .find(|a| a.get_id() == "conditions")
            .and_then(|a| a.get_help())
            .expect("--conditions has help")
            .to_string();
        for c in ALL_CONDS {
            assert!(help.contains(c.key), "{} missing from: {help}", c.key);
        }
    }

    #[test]
    fn candidates_run_last_in_the_order_given_and_only_when_given() {
        let names = vec!["schedtrace-summary".to_string()];
        let conds = |candidates: &[PathBuf]| select_conds(&names, |_| true, candidates).unwrap().0;
        let keys = |conds: &[Cond]| conds.iter().map(|c| c.key).collect::<Vec<_>>();
        assert_eq!(keys(&conds(&[])), ["untraced", "schedtrace-summary"]);
        let two = conds(&["/tmp/a".into(), "/tmp/b".into()]);
        assert_eq!(
            keys(&two),
            [
                "untraced",
                "schedtrace-summary",
                "candidate-1",
                "candidate-2"
            ]
        );
        assert_eq!(two[3].kind, Kind::Candidate(1));
        assert!(two[3].label.contains("/tmp/b"));
        assert_eq!(two[3].command(), "schedtrace");
    }

    #[test]
    fn parses_tool_outputs() {
        let pipe = "# Running 'sched/pipe' benchmark:\n\n     Total time: 0.549 [sec]\n\n       2.746190 usecs/op\n         364140 ops/sec\n";
        assert_eq!(Workload::Pipe.throughput(pipe), Some(364140.0));
        let msg = "# 10 groups == 400 threads run\n\n     Total time: 0.500 [sec]\n";
        assert_eq!(Workload::Messaging.throughput(msg), Some(2.0));
        let node = "NODE_RESULT {\"ops\":1,\"ops_per_sec\":123.5,\"rusage\":{}}\n";
        assert_eq!(Workload::Node.throughput(node), Some(123.5));
        let st = format!("{pipe}{{\n  \"events\": 7,\n  \"lost_events\": 0\n}}\n");
        let s = st_summary(&st).unwrap();
        assert_eq!(s["events"], 7);
        let perf = "[ perf record: Woken up 53 times to write data ]\n[ perf record: Captured and wrote 104.517 MB /tmp/p.data (1007844 samples) ]\n";
        assert_eq!(perf_samples(perf), Some(1007844));
        assert_eq!(perf_lost(perf), 0);
        assert_eq!(
            perf_lost("Warning:\nProcessed 10 events and lost 3 chunks!\n"),
            3
        );
        assert_eq!(bpftrace_count("x\n\n@switches: 400179\n"), Some(400179));
    }
}

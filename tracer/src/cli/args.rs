//! The command line, as one clap definition: every argument struct, and
//! the value enums mapped to the library's plain types. The binary parses
//! it, and the man page and shell completions are generated from it.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use schedtrace::{export, units, workload};

const EXAMPLES: &str = "\
Examples:
  sudo schedtrace                                 trace the built-in Node.js-like example
  sudo schedtrace --pid 4242                      trace PID 4242 until Ctrl-C or it exits
  sudo schedtrace --pid 4242 --duration 5         ... for 5 seconds
  sudo schedtrace --pid 4242 --pid 4250           two processes in one trace, each kept apart
  sudo schedtrace --comm 'nginx*'                 every process so named, now or later
  sudo schedtrace --cgroup /sys/fs/cgroup/system.slice/nginx.service   a service, or a container
  sudo schedtrace --all --duration 5              every task, ranked per process
  sudo schedtrace --pid 4242 --format json | jq   summary as JSON
  sudo schedtrace --pid 4242 --records            summary from a record per event (chains, time-sliced)
  sudo schedtrace --pid 4242 --json trace.jsonl   keep every event (JSON Lines)
  sudo schedtrace --pid 4242 --record t.schedtrace  ... in the compact binary capture
  sudo schedtrace --cpus 0 -- node app.js         run a command pinned to CPU 0 and trace it
  sudo schedtrace --pid 4242 --live               full-screen view while tracing (q quits)
  schedtrace report trace.jsonl --comm 'libuv*'   summarise a saved trace (no root needed)
  sudo schedtrace --timeline --html report.html   ... and draw it in the terminal and as a web page
  schedtrace report t.jsonl --perfetto t.pftrace  open the trace in ui.perfetto.dev
  schedtrace report t.schedtrace --json t.jsonl   convert a binary capture to JSON Lines
  schedtrace report t.schedtrace --parquet DIR    Parquet tables for DuckDB, Spark, Trino
  sudo schedtrace demo                            one core versus all cores, side by side

Exit status: 0 when tracing ended normally; with `-- CMD`, CMD's own status;
1 on an error; 130 when a second Ctrl-C cut finishing short (the outputs are
valid but end early).";

/// A CPU list such as `0` or `0-3,6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CpuList(pub Vec<u32>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    schedtrace::procfs::parse_cpu_list(s).map(CpuList)
}

fn parse_ring(s: &str) -> Result<u32, String> {
    let n = units::parse_size(s)?;
    if n < 4096 || !n.is_power_of_two() || n > (1 << 30) {
        return Err(format!(
            "{s:?}: the buffer size must be a power of two between 4K and 1G"
        ));
    }
    Ok(n as u32)
}

fn parse_pid(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a process ID (a positive number)"))?;
    if n <= 0 || n > u32::MAX as i64 {
        return Err(format!("{s:?} is not a process ID (a positive number)"));
    }
    Ok(n as u32)
}

/// Trace which threads of a process ran on which CPU, when, and why they stopped.
///
/// schedtrace follows every context switch of a process (and its wakeups,
/// migrations, forks and exits) with eBPF programs filtered in the kernel,
/// then shows per-thread on-CPU time, run-queue waits, who woke whom, and how
/// much the threads really ran in parallel versus took turns on a core. By
/// default the kernel keeps those figures per thread (no record per switch);
/// --records, and every option that saves, draws or exports events, write a
/// record per event instead.
#[derive(Debug, Parser)]
#[command(
    name = "schedtrace",
    version = schedtrace::version::short(),
    long_version = schedtrace::version::long_static(),
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Summarise, export or convert a trace saved with --json or --record (no root needed).
    Report(ReportArgs),
    /// Run the example workload on one core, then on all cores, and compare (needs root).
    Demo(DemoArgs),
    /// Compare two traces saved with --json or --record: timelines, parallelism, per-thread time.
    Compare(CompareArgs),
    /// Run the example workload without tracing it (used by the default run and the tests).
    #[command(hide = true, name = "__workload")]
    Workload(WorkloadArgs),
    /// Hold empty programs on sched_switch and sched_waking until SIGINT (the benchmark's floor).
    #[command(hide = true, name = "__floor")]
    Floor,
}

/// Where the summary and exports go; shared by live tracing and `report`.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
    #[command(flatten)]
    pub common: Common,
    /// Kernel-side log messages, the verifier log on load errors, debug output.
    #[arg(short, long)]
    pub verbose: bool,
    /// After the summary, draw a timeline: which thread ran on each CPU, and each thread's states.
    #[arg(long)]
    pub timeline: bool,
    /// Write a Perfetto trace (CPU and thread tracks, wakeups) to FILE; open it in ui.perfetto.dev.
    #[arg(long, value_name = "FILE")]
    pub perfetto: Option<PathBuf>,
    /// Write a Chrome trace (JSON trace events) to FILE, for chrome://tracing or ui.perfetto.dev.
    #[arg(long, value_name = "FILE")]
    pub chrome_trace: Option<PathBuf>,
    /// Write a self-contained HTML report (zoomable timeline, thread table, parallelism) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write Parquet tables into directory DIR (created if needed): segments, events, threads
    /// and meta (docs/parquet.md), for DuckDB, Spark or Trino across hosts (docs/fleet.md).
    #[arg(long, value_name = "DIR")]
    pub parquet: Option<PathBuf>,
    /// The `host` column of the Parquet tables (default: the traced machine's hostname).
    #[arg(long, value_name = "NAME", requires = "parquet")]
    pub host: Option<String>,
    /// Write the off-CPU stacks as folded lines to FILE (thread;user frames;kernel frames
    /// microseconds), for flamegraph.pl, inferno or speedscope; without --stacks, one line
    /// per thread and wait reason.
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,
    /// Write the off-CPU profile to FILE as pprof (gzip protobuf) for go tool pprof,
    /// Pyroscope, Parca or Grafana, labelled with thread, process and wait reason.
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct TraceArgs {
    /// Process to trace (all its threads, including ones created later).
    /// Repeat it to trace several processes at once: each one's threads and
    /// figures are kept apart, and tracing ends when all have exited.
    #[arg(
        short,
        long,
        value_parser = parse_pid,
        conflicts_with = "command",
        allow_negative_numbers = true,
        action = clap::ArgAction::Append
    )]
    pub pid: Vec<u32>,
    /// Trace every process whose name matches PATTERN (a glob: `*` any run
    /// of bytes, `?` one byte), as by a repeated `--pid`, and every process
    /// that takes such a name while tracing runs (it execs a file so named,
    /// or its main thread is renamed): from then on, until Ctrl-C or
    /// `--duration`. With `--pid`, those too. The name is the process's
    /// (`/proc/PID/comm`, its main thread's), not its threads'.
    #[arg(long, value_name = "PATTERN", conflicts_with = "command")]
    pub comm: Option<String>,
    /// Trace every process in this cgroup v2 directory and below it (a
    /// container, a systemd service or `systemd-run --scope`), including
    /// those that enter it while tracing, e.g.
    /// `/sys/fs/cgroup/system.slice/nginx.service`. Processes forked inside
    /// it are traced (it implies `--follow-children`); a process that leaves
    /// it stays traced until it exits. Tracing runs until Ctrl-C or
    /// `--duration`, even when the cgroup is empty.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub cgroup: Option<PathBuf>,
    /// Trace every task on the machine (kernel threads included, schedtrace
    /// itself not), summarised per process and ranked by on-CPU time, with
    /// each process's run-queue wait and parallelism. Runs until Ctrl-C or
    /// `--duration`. Every switch on the machine becomes an event: see the
    /// status line's rate and losses.
    #[arg(long, conflicts_with_all = ["command", "pid", "comm", "cgroup"])]
    pub all: bool,
    /// Stop after this many seconds (default: until Ctrl-C or the process exits).
    #[arg(
        short,
        long,
        value_name = "SECONDS",
        value_parser = units::parse_seconds,
        allow_negative_numbers = true
    )]
    pub duration: Option<Duration>,
    /// Write every event as JSON Lines to FILE (docs/trace-format.md); `schedtrace report` reads it back.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write every event to FILE as a compact binary capture (docs/trace-format.md): 2.4x
    /// smaller than --json and far cheaper to write and read; `schedtrace report` reads it
    /// back and converts it to JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Also trace processes the target forks (added to the kernel filter as they appear).
    #[arg(long)]
    pub follow_children: bool,
    /// Do not trace wakeups (with the default's kernel sums: no wakers). In a record capture,
    /// the cheapest one: each switch then carries the kernel's own
    /// run-queue wait (what /proc/PID/task/TID/schedstat counts), so waits and runnable
    /// time stay exact; who woke whom (wakers, wake edges) is not recorded. About a third
    /// fewer events and eBPF runs on a wakeup-heavy workload.
    #[arg(long)]
    pub no_wakeups: bool,
    /// Record the kernel and user stack where each thread goes to sleep, for off-CPU flame
    /// graphs (--folded, --pprof, the HTML report). Names are looked up at the end of the
    /// capture (kernel, ELF/DWARF, perf maps such as node --perf-basic-prof writes).
    #[arg(long)]
    pub stacks: bool,
    /// Do not record which other processes held the CPUs the target's threads waited for
    /// (on by default; it records other tasks' switches only on a CPU while a target thread
    /// waits there).
    #[arg(long)]
    pub no_antagonists: bool,
    /// Do not record why threads left the CPU (system call, I/O wait): for measuring what
    /// that costs.
    #[arg(long, hide = true)]
    pub no_wait_reasons: bool,
    /// Keep each thread's figures in the kernel instead of writing a record per switch
    /// (docs/kernel-summary.md): the default unless an option needs records; given, such an
    /// option is an error instead. Prints a per-thread summary: on-CPU and runnable time and
    /// switch counts from the kernel's counters; the wait distribution (p50, p99, max),
    /// sleeping and blocked time by system call, steal, slices, migrations, time per CPU, top
    /// wakers and preemptors, and how many CPUs ran the threads at once from the kernel's
    /// sums. No timeline, wakeup chains or time-sliced time, no trace files or exports, and
    /// not with --comm or --cgroup (a process that joins mid-trace brings counters from
    /// before).
    #[arg(
        long,
        conflicts_with_all = [
            "json", "record", "live", "stacks", "timeline", "perfetto", "chrome_trace", "html",
            "parquet", "folded", "pprof", "all", "comm", "cgroup"
        ]
    )]
    pub kernel_sums: bool,
    /// Summarize from a record per switch and wakeup instead of the sums the kernel keeps:
    /// adds wakeup chains, the time each thread waited behind others, the time-sliced figure
    /// and anomalies to the summary, for a record per event (docs/benchmark.md prices it).
    /// Implied by every option that saves, draws or exports events (--json, --record, --live,
    /// --timeline, --html, --perfetto, --chrome-trace, --parquet, --folded, --pprof), and by
    /// --stacks, --all, --comm and --cgroup.
    #[arg(long, conflicts_with = "kernel_sums")]
    pub records: bool,
    /// Pin the launched command (all its threads) to these CPUs, e.g. `0` or `0-3,6`.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Run the launched command as root instead of the user who ran sudo.
    #[arg(long)]
    pub as_root: bool,
    /// Let the launched command gain privileges through setuid programs or
    /// file capabilities (by default it runs with PR_SET_NO_NEW_PRIVS).
    #[arg(long)]
    pub allow_new_privs: bool,
    /// Full-screen live view while tracing: a lane per CPU, a row per thread
    /// (keys: p pause, s sort, f filter, q quit); the summary and files follow.
    #[arg(long)]
    pub live: bool,
    /// Kernel ring buffer size (power of two: 4K..1G). Raise it if events are lost.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring, default_value = "16M")]
    pub buffer_size: u32,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Command to start and trace from its first instruction (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ReportArgs {
    /// A trace written by `schedtrace --json FILE` or `--record FILE` (the format is detected).
    pub file: PathBuf,
    /// Also write the whole trace as JSON Lines to FILE (converts a binary capture; the
    /// filters below do not apply to it).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the whole trace as a binary capture to FILE (the filters below do not apply).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Only these threads (repeatable). Every total, share, count and profile is
    /// recomputed for the threads the filters select.
    #[arg(long, value_name = "TID")]
    pub tid: Vec<u32>,
    /// Only threads whose name matches (`*` and `?` wildcards).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Only threads that ran on this CPU.
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Start this many seconds after the trace's start.
    #[arg(long, value_name = "SECONDS", value_parser = parse_offset)]
    pub since: Option<Duration>,
    /// End this many seconds after the trace's start.
    #[arg(long, value_name = "SECONDS", value_parser = parse_offset)]
    pub until: Option<Duration>,
    /// Instead of the summary, print the wakeup chain of a wait of thread TID: the wait
    /// going on SECONDS after the trace's start (or the last one before it), without
    /// @SECONDS its longest sleep. Who woke it, what that waker had been waiting for, and
    /// so on back to a timer, an interrupt or a task outside the process.
    #[arg(long, value_name = "TID[@SECONDS]", value_parser = parse_chain)]
    pub chain: Option<ChainAt>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `report --chain TID[@SECONDS]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainAt {
    pub tid: u32,
    pub at: Option<Duration>,
}

fn parse_chain(s: &str) -> Result<ChainAt, String> {
    let (tid, at) = match s.split_once('@') {
        Some((t, a)) => (t, Some(parse_offset(a)?)),
        None => (s, None),
    };
    Ok(ChainAt {
        tid: parse_pid(tid).map_err(|_| format!("{tid:?} is not a thread ID"))?,
        at,
    })
}

fn parse_offset(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    units::parse_seconds(s)
}

/// The flags `demo` and `compare` share.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Overwrite output files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Colours in the terminal timelines: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Only messages about errors on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// How long the workload runs each time (seconds).
    #[arg(long, default_value_t = 2.0, value_parser = parse_demo_seconds)]
    pub seconds: f64,
    /// Write the HTML comparison report to FILE.
    #[arg(long, value_name = "FILE", default_value = "schedtrace-demo.html")]
    pub html: PathBuf,
    /// Also keep both traces (JSON Lines) in DIR: one-core.jsonl and all-cores.jsonl.
    #[arg(long, value_name = "DIR")]
    pub save_traces: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CompareArgs {
    /// The first trace (written by `schedtrace --json FILE` or `--record FILE`).
    pub a: PathBuf,
    /// The second trace (either format).
    pub b: PathBuf,
    /// Also write an HTML report of both to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

fn parse_demo_seconds(s: &str) -> Result<f64, String> {
    let d = units::parse_seconds(s)?;
    if d > Duration::from_secs(600) {
        return Err(format!(
            "{s:?}: the demo runs at most 600 seconds each time"
        ));
    }
    Ok(d.as_secs_f64())
}

#[derive(Clone, Debug, Args)]
pub struct WorkloadArgs {
    /// How long the event loop runs (seconds of wall time).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Pool threads.
    #[arg(long, default_value_t = 4)]
    pub pool: usize,
    /// Helper threads.
    #[arg(long, default_value_t = 2)]
    pub helpers: usize,
    /// Create every thread, then wait for a line on stdin before working;
    /// when done, print `done` and wait for stdin to close before exiting.
    /// (Integration tests use this to read /proc at quiet moments.)
    #[arg(long)]
    pub gated: bool,
}

impl From<&WorkloadArgs> for workload::Workload {
    fn from(a: &WorkloadArgs) -> Self {
        workload::Workload {
            seconds: a.seconds,
            pool: a.pool,
            helpers: a.helpers,
            gated: a.gated,
        }
    }
}

/// The summary formats for stdout (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// A table for people.
    Text,
    /// The JSON summary (docs/summary-schema.md).
    Json,
}

impl From<SummaryFormat> for export::SummaryFormat {
    fn from(f: SummaryFormat) -> Self {
        match f {
            SummaryFormat::Text => export::SummaryFormat::Text,
            SummaryFormat::Json => export::SummaryFormat::Json,
        }
    }
}

/// When to colour the timeline (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Resolve for stdout. An explicit `always` wins over NO_COLOR (as
    /// no-color.org asks of command-line flags); `auto` honours it.
    pub(crate) fn for_stdout(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        }
    }
}

impl TraceArgs {
    /// Does the capture keep its figures in the kernel (`--kernel-sums`,
    /// the default) rather than write a record per event? Records when
    /// asked (`--records`) or when anything asked for needs them.
    pub(crate) fn uses_kernel_sums(&self) -> bool {
        if self.kernel_sums {
            return true;
        }
        !(self.records
            || self.json.is_some()
            || self.record.is_some()
            || super::output::wants_events(&self.out)
            || self.live
            || self.stacks
            || self.all
            || self.comm.is_some()
            || self.cgroup.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_kernel_keeps_the_sums_unless_records_are_needed() {
        let sums = |args: &[&str]| parse(args).unwrap().trace.uses_kernel_sums();
        assert!(sums(&[]));
        assert!(sums(&["--pid", "1", "--format", "json", "--duration", "1"]));
        assert!(sums(&["--pid", "1", "--no-wakeups", "--follow-children"]));
        assert!(sums(&["--kernel-sums", "--pid", "1"]));
        for records in [
            &["--records"][..],
            &["--json", "t.jsonl"],
            &["--record", "t.bin"],
            &["--live"],
            &["--timeline"],
            &["--html", "r.html"],
            &["--perfetto", "t.pftrace"],
            &["--chrome-trace", "t.json"],
            &["--parquet", "d"],
            &["--folded", "f.txt"],
            &["--pprof", "p.pb.gz"],
            &["--stacks"],
            &["--all"],
            &["--comm", "x"],
            &["--cgroup", "/sys/fs/cgroup"],
        ] {
            assert!(!sums(records), "{records:?} needs records");
        }
        assert!(parse(&["--records", "--kernel-sums"]).is_err());
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("schedtrace").chain(args.iter().copied()))
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["--pid", "abc"][..],
            &["--pid", "-1"],
            &["--pid", "0"],
            &["--duration", "0"],
            &["--duration", "-1"],
            &["--duration", "abc"],
            &["--format", "xml"],
            &["--buffer-size", "3000"],
            &["--cpus", "x"],
            &["--pid", "1", "--", "true"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn parses_trace_and_report() {
        let c = parse(&["--pid", "42", "--duration", "1.5", "--format", "json"]).unwrap();
        assert_eq!(c.trace.pid, vec![42]);
        assert_eq!(c.trace.duration, Some(Duration::from_millis(1500)));
        let c = parse(&["--pid", "42", "-p", "7", "--comm", "ng*"]).unwrap();
        assert_eq!(c.trace.pid, vec![42, 7]);
        assert_eq!(c.trace.comm.as_deref(), Some("ng*"));
        assert!(parse(&["--comm", "x", "--", "true"]).is_err());
        let c = parse(&["--cpus", "0-1", "--", "node", "-e", "1"]).unwrap();
        assert_eq!(c.trace.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(c.trace.command, vec!["node", "-e", "1"]);
        let c = parse(&["report", "t.jsonl", "--comm", "libuv*", "--since", "0.5"]).unwrap();
        match c.cmd {
            Some(Command::Report(r)) => {
                assert_eq!(r.comm.as_deref(), Some("libuv*"));
                assert_eq!(r.since, Some(Duration::from_millis(500)));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The man page and shell completions are generated from this
    /// definition and checked in; this test fails when they are stale.
    /// Regenerate with `cargo xtask gen`.
    #[test]
    fn generated_man_page_and_completions_are_current() {
        use clap_complete::Shell;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut man = Vec::new();
        // The long version names the eBPF object's hash, which differs
        // between builds: the checked-in page carries the plain version.
        clap_mangen::Man::new(Cli::command().long_version(schedtrace::version::short()))
            .render(&mut man)
            .expect("render man page");
        files.push((root.join("docs/man/schedtrace.1"), man));
        for (shell, name) in [
            (Shell::Bash, "schedtrace.bash"),
            (Shell::Zsh, "_schedtrace"),
            (Shell::Fish, "schedtrace.fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "schedtrace", &mut out);
            files.push((root.join("completions").join(name), out));
        }
        let update = std::env::var_os("SCHEDTRACE_UPDATE_GENERATED").is_some();
        for (path, want) in files {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is stale: run `cargo xtask gen`",
                path.display()
            );
        }
    }
}

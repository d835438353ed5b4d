# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_schedtrace_global_optspecs
    string join \n p/pid= comm= cgroup= all d/duration= json= record= follow-children no-wakeups stacks no-antagonists no-wait-reasons kernel-sums records cpus= as-root allow-new-privs live buffer-size= format= force color= q/quiet v/verbose timeline perfetto= chrome-trace= html= parquet= host= folded= pprof= h/help V/version
end

function __fish_schedtrace_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_schedtrace_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_schedtrace_using_subcommand
    set -l cmd (__fish_schedtrace_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c schedtrace -n "__fish_schedtrace_needs_command" -s p -l pid -d 'Process to trace (all its threads, including ones created later). Repeat it to trace several processes at once: each one\'s threads and figures are kept apart, and tracing ends when all have exited' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l comm -d 'Trace every process whose name matches PATTERN (a glob: `*` any run of bytes, `?` one byte), as by a repeated `--pid`, and every process that takes such a name while tracing runs (it execs a file so named, or its main thread is renamed): from then on, until Ctrl-C or `--duration`. With `--pid`, those too. The name is the process\'s (`/proc/PID/comm`, its main thread\'s), not its threads\'' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l cgroup -d 'Trace every process in this cgroup v2 directory and below it (a container, a systemd service or `systemd-run --scope`), including those that enter it while tracing, e.g. `/sys/fs/cgroup/system.slice/nginx.service`. Processes forked inside it are traced (it implies `--follow-children`); a process that leaves it stays traced until it exits. Tracing runs until Ctrl-C or `--duration`, even when the cgroup is empty' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -s d -l duration -d 'Stop after this many seconds (default: until Ctrl-C or the process exits)' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l json -d 'Write every event as JSON Lines to FILE (docs/trace-format.md); `schedtrace report` reads it back' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l record -d 'Write every event to FILE as a compact binary capture (docs/trace-format.md): 2.4x smaller than --json and far cheaper to write and read; `schedtrace report` reads it back and converts it to JSON Lines' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l cpus -d 'Pin the launched command (all its threads) to these CPUs, e.g. `0` or `0-3,6`' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l buffer-size -d 'Kernel ring buffer size (power of two: 4K..1G). Raise it if events are lost' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l format -d 'Summary format on stdout' -r -f -a "text\t'A table for people'
json\t'The JSON summary (docs/summary-schema.md)'"
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l color -d 'Colours in the terminal timelines: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'When stdout is a terminal and NO_COLOR is not set'
always\t''
never\t''"
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l perfetto -d 'Write a Perfetto trace (CPU and thread tracks, wakeups) to FILE; open it in ui.perfetto.dev' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l chrome-trace -d 'Write a Chrome trace (JSON trace events) to FILE, for chrome://tracing or ui.perfetto.dev' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l html -d 'Write a self-contained HTML report (zoomable timeline, thread table, parallelism) to FILE' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l parquet -d 'Write Parquet tables into directory DIR (created if needed): segments, events, threads and meta (docs/parquet.md), for DuckDB, Spark or Trino across hosts (docs/fleet.md)' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l host -d 'The `host` column of the Parquet tables (default: the traced machine\'s hostname)' -r
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l folded -d 'Write the off-CPU stacks as folded lines to FILE (thread;user frames;kernel frames microseconds), for flamegraph.pl, inferno or speedscope; without --stacks, one line per thread and wait reason' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l pprof -d 'Write the off-CPU profile to FILE as pprof (gzip protobuf) for go tool pprof, Pyroscope, Parca or Grafana, labelled with thread, process and wait reason' -r -F
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l all -d 'Trace every task on the machine (kernel threads included, schedtrace itself not), summarised per process and ranked by on-CPU time, with each process\'s run-queue wait and parallelism. Runs until Ctrl-C or `--duration`. Every switch on the machine becomes an event: see the status line\'s rate and losses'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l follow-children -d 'Also trace processes the target forks (added to the kernel filter as they appear)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l no-wakeups -d 'Do not trace wakeups (with the default\'s kernel sums: no wakers). In a record capture, the cheapest one: each switch then carries the kernel\'s own run-queue wait (what /proc/PID/task/TID/schedstat counts), so waits and runnable time stay exact; who woke whom (wakers, wake edges) is not recorded. About a third fewer events and eBPF runs on a wakeup-heavy workload'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l stacks -d 'Record the kernel and user stack where each thread goes to sleep, for off-CPU flame graphs (--folded, --pprof, the HTML report). Names are looked up at the end of the capture (kernel, ELF/DWARF, perf maps such as node --perf-basic-prof writes)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l no-antagonists -d 'Do not record which other processes held the CPUs the target\'s threads waited for (on by default; it records other tasks\' switches only on a CPU while a target thread waits there)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l no-wait-reasons -d 'Do not record why threads left the CPU (system call, I/O wait): for measuring what that costs'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l kernel-sums -d 'Keep each thread\'s figures in the kernel instead of writing a record per switch (docs/kernel-summary.md): the default unless an option needs records; given, such an option is an error instead. Prints a per-thread summary: on-CPU and runnable time and switch counts from the kernel\'s counters; the wait distribution (p50, p99, max), sleeping and blocked time by system call, steal, slices, migrations, time per CPU, top wakers and preemptors, and how many CPUs ran the threads at once from the kernel\'s sums. No timeline, wakeup chains or time-sliced time, no trace files or exports, and not with --comm or --cgroup (a process that joins mid-trace brings counters from before)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l records -d 'Summarize from a record per switch and wakeup instead of the sums the kernel keeps: adds wakeup chains, the time each thread waited behind others, the time-sliced figure and anomalies to the summary, for a record per event (docs/benchmark.md prices it). Implied by every option that saves, draws or exports events (--json, --record, --live, --timeline, --html, --perfetto, --chrome-trace, --parquet, --folded, --pprof), and by --stacks, --all, --comm and --cgroup'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l as-root -d 'Run the launched command as root instead of the user who ran sudo'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l allow-new-privs -d 'Let the launched command gain privileges through setuid programs or file capabilities (by default it runs with PR_SET_NO_NEW_PRIVS)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l live -d 'Full-screen live view while tracing: a lane per CPU, a row per thread (keys: p pause, s sort, f filter, q quit); the summary and files follow'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l force -d 'Overwrite output files that already exist'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -s q -l quiet -d 'Only messages about errors on stderr'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -s v -l verbose -d 'Kernel-side log messages, the verifier log on load errors, debug output'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -l timeline -d 'After the summary, draw a timeline: which thread ran on each CPU, and each thread\'s states'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -s V -l version -d 'Print version'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "report" -d 'Summarise, export or convert a trace saved with --json or --record (no root needed)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "demo" -d 'Run the example workload on one core, then on all cores, and compare (needs root)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "compare" -d 'Compare two traces saved with --json or --record: timelines, parallelism, per-thread time'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "__workload" -d 'Run the example workload without tracing it (used by the default run and the tests)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "__floor" -d 'Hold empty programs on sched_switch and sched_waking until SIGINT (the benchmark\'s floor)'
complete -c schedtrace -n "__fish_schedtrace_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l json -d 'Also write the whole trace as JSON Lines to FILE (converts a binary capture; the filters below do not apply to it)' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l record -d 'Also write the whole trace as a binary capture to FILE (the filters below do not apply)' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l tid -d 'Only these threads (repeatable). Every total, share, count and profile is recomputed for the threads the filters select' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l comm -d 'Only threads whose name matches (`*` and `?` wildcards)' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l cpu -d 'Only threads that ran on this CPU' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l since -d 'Start this many seconds after the trace\'s start' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l until -d 'End this many seconds after the trace\'s start' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l chain -d 'Instead of the summary, print the wakeup chain of a wait of thread TID: the wait going on SECONDS after the trace\'s start (or the last one before it), without @SECONDS its longest sleep. Who woke it, what that waker had been waiting for, and so on back to a timer, an interrupt or a task outside the process' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l format -d 'Summary format on stdout' -r -f -a "text\t'A table for people'
json\t'The JSON summary (docs/summary-schema.md)'"
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l color -d 'Colours in the terminal timelines: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'When stdout is a terminal and NO_COLOR is not set'
always\t''
never\t''"
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l perfetto -d 'Write a Perfetto trace (CPU and thread tracks, wakeups) to FILE; open it in ui.perfetto.dev' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l chrome-trace -d 'Write a Chrome trace (JSON trace events) to FILE, for chrome://tracing or ui.perfetto.dev' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l html -d 'Write a self-contained HTML report (zoomable timeline, thread table, parallelism) to FILE' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l parquet -d 'Write Parquet tables into directory DIR (created if needed): segments, events, threads and meta (docs/parquet.md), for DuckDB, Spark or Trino across hosts (docs/fleet.md)' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l host -d 'The `host` column of the Parquet tables (default: the traced machine\'s hostname)' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l folded -d 'Write the off-CPU stacks as folded lines to FILE (thread;user frames;kernel frames microseconds), for flamegraph.pl, inferno or speedscope; without --stacks, one line per thread and wait reason' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l pprof -d 'Write the off-CPU profile to FILE as pprof (gzip protobuf) for go tool pprof, Pyroscope, Parca or Grafana, labelled with thread, process and wait reason' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l force -d 'Overwrite output files that already exist'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -s q -l quiet -d 'Only messages about errors on stderr'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -s v -l verbose -d 'Kernel-side log messages, the verifier log on load errors, debug output'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -l timeline -d 'After the summary, draw a timeline: which thread ran on each CPU, and each thread\'s states'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -l seconds -d 'How long the workload runs each time (seconds)' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -l html -d 'Write the HTML comparison report to FILE' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -l save-traces -d 'Also keep both traces (JSON Lines) in DIR: one-core.jsonl and all-cores.jsonl' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -l color -d 'Colours in the terminal timelines: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'When stdout is a terminal and NO_COLOR is not set'
always\t''
never\t''"
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -l force -d 'Overwrite output files that already exist'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -s q -l quiet -d 'Only messages about errors on stderr'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand compare" -l html -d 'Also write an HTML report of both to FILE' -r -F
complete -c schedtrace -n "__fish_schedtrace_using_subcommand compare" -l color -d 'Colours in the terminal timelines: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'When stdout is a terminal and NO_COLOR is not set'
always\t''
never\t''"
complete -c schedtrace -n "__fish_schedtrace_using_subcommand compare" -l force -d 'Overwrite output files that already exist'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand compare" -s q -l quiet -d 'Only messages about errors on stderr'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand compare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __workload" -l seconds -d 'How long the event loop runs (seconds of wall time)' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __workload" -l pool -d 'Pool threads' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __workload" -l helpers -d 'Helper threads' -r
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __workload" -l gated -d 'Create every thread, then wait for a line on stdin before working; when done, print `done` and wait for stdin to close before exiting. (Integration tests use this to read /proc at quiet moments.)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __workload" -s h -l help -d 'Print help'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand __floor" -s h -l help -d 'Print help'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "report" -d 'Summarise, export or convert a trace saved with --json or --record (no root needed)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "demo" -d 'Run the example workload on one core, then on all cores, and compare (needs root)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "compare" -d 'Compare two traces saved with --json or --record: timelines, parallelism, per-thread time'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "__workload" -d 'Run the example workload without tracing it (used by the default run and the tests)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "__floor" -d 'Hold empty programs on sched_switch and sched_waking until SIGINT (the benchmark\'s floor)'
complete -c schedtrace -n "__fish_schedtrace_using_subcommand help; and not __fish_seen_subcommand_from report demo compare __workload __floor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

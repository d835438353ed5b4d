#!/usr/bin/env bash
# What the in-kernel filter costs the events of processes that are not
# traced, with one target, with two (a repeated --pid looks every other
# task up in the kernel's map of further targets) and with a cgroup
# (--cgroup: the same map, which the cgroup's processes are put in). Two
# idle `sleep` processes are the targets (the cgroup holds both); an untraced `perf bench sched pipe -T` pinned
# to CPU 0 makes the switches. Prints the mean ns per run of the
# sched_switch program (bpf_stats) in each mode, ROUNDS times, interleaved.
#
#   sudo flock /work/root-tests.lock scripts/filter-cost.sh [SCHEDTRACE] [ROUNDS]
#
# Needs root, bpftool, perf, python3. Restores kernel.bpf_stats_enabled on exit.
set -euo pipefail
ST=${1:-target/release/schedtrace}
ROUNDS=${2:-3}
was=$(sysctl -n kernel.bpf_stats_enabled)
sleep 600 & A=$!
sleep 600 & B=$!
CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)/schedtrace-filter-cost-$$
mkdir "$CG"
echo "$A" > "$CG/cgroup.procs"
echo "$B" > "$CG/cgroup.procs"
trap 'kill $A $B 2>/dev/null; sleep 0.1; rmdir "$CG"; sysctl -q kernel.bpf_stats_enabled=$was' EXIT
sysctl -q kernel.bpf_stats_enabled=1
for _ in $(seq "$ROUNDS"); do
  for mode in one two cgroup; do
    args=(--pid "$A")
    [[ $mode == two ]] && args+=(--pid "$B")
    [[ $mode == cgroup ]] && args=(--cgroup "$CG")
    "$ST" -q "${args[@]}" --duration 3 > /dev/null 2>&1 &
    T=$!
    sleep 0.8
    taskset -c 0 perf bench sched pipe -T -l 200000 > /dev/null 2>&1
    bpftool prog show -j | python3 -c "
import json, sys
p = [p for p in json.load(sys.stdin) if p.get('name') == 'sched_switch'][-1]
print('$mode: %.1f ns per run over %d runs' % (p['run_time_ns'] / p['run_cnt'], p['run_cnt']))"
    wait $T
  done
done

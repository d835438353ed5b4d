#!/usr/bin/env bash
# Per-program eBPF cost of schedtrace (bpf_stats), as in docs/benchmark.md:
# `taskset -c 0 perf bench sched pipe -T` traced with `schedtrace --pid`,
# WINDOWS windows of 1 s each; prints, per program, the median ns per run
# and the runs per window, for each mode given (default: both capture modes).
#
#   sudo flock /work/root-tests.lock scripts/bpf-cost.sh [SCHEDTRACE] [WINDOWS] [-- MODE...]
#   MODE: "" (the default: sums kept in the kernel), "--no-wakeups", or "--records"
#   (a record per event; default: "" and "--records")
#
# Needs root, bpftool, perf. Restores kernel.bpf_stats_enabled on exit.
set -euo pipefail
ST=${1:-target/release/schedtrace}
WINDOWS=${2:-7}
shift $(( $# > 2 ? 2 : $# )) || true
[[ ${1:-} == -- ]] && shift
MODES=("$@")
(( ${#MODES[@]} )) || MODES=("" "--records")

old=$(sysctl -n kernel.bpf_stats_enabled)
tmp=$(mktemp -d)
cleanup() {
    sysctl -q -w kernel.bpf_stats_enabled="$old"
    [[ -n ${tracer:-} ]] && kill -INT "$tracer" 2>/dev/null || true
    [[ -n ${pipe:-} ]] && kill "$pipe" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
sysctl -q -w kernel.bpf_stats_enabled=1

for mode in "${MODES[@]}"; do
    taskset -c 0 perf bench sched pipe -T -l 100000000 >/dev/null 2>&1 &
    pipe=$!
    sleep 0.3
    # shellcheck disable=SC2086
    "$ST" --pid "$pipe" --format json $mode >"$tmp/out" 2>"$tmp/err" &
    tracer=$!
    for _ in $(seq 100); do grep -q "schedtrace: tracing" "$tmp/err" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
    for w in $(seq 0 "$WINDOWS"); do
        bpftool prog show --json >"$tmp/snap$w"
        sleep 1
    done
    kill -INT "$tracer"; wait "$tracer" || true; tracer=
    kill "$pipe" 2>/dev/null; wait "$pipe" 2>/dev/null || true; pipe=
    python3 - "$tmp" "$WINDOWS" "${mode:-(wakeups)}" <<'PY'
import json, sys, statistics
d, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
snaps = [{p["id"]: p for p in json.load(open(f"{d}/snap{w}"))} for w in range(n + 1)]
per = {}
for a, b in zip(snaps, snaps[1:]):
    for pid, p in b.items():
        q = a.get(pid)
        if not q or p.get("type") != "tracing":
            continue
        cnt = p.get("run_cnt", 0) - q.get("run_cnt", 0)
        t = p.get("run_time_ns", 0) - q.get("run_time_ns", 0)
        miss = p.get("recursion_misses", 0) - q.get("recursion_misses", 0)
        if cnt:
            per.setdefault(p["name"], []).append((t / cnt, cnt, miss))
print(f"mode {mode}: median over {n} windows of 1 s")
for name, v in sorted(per.items()):
    ns = statistics.median(x[0] for x in v)
    runs = statistics.median(x[1] for x in v)
    miss = sum(x[2] for x in v)
    print(f"  {name:24} {ns:7.1f} ns/run  [{min(x[0] for x in v):.1f}-{max(x[0] for x in v):.1f}]  {runs:9.0f} runs/s  recursion_misses {miss}")
PY
done

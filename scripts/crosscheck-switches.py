#!/usr/bin/env python3
"""Same-run cross-check of schedtrace's kernel side against perf and the
kernel's own counters (issue 14). Run as root, under the shared lock:

    cargo build --release && cargo build --release --example raw-records
    sudo flock /work/root-tests.lock scripts/crosscheck-switches.py [--runs N] [--load N]

Each run starts the built-in workload (`schedtrace __workload --gated`),
records it with `raw-records` (schedtrace's eBPF programs, every raw record
with its kernel counters) and, at the same time, every CPU's switches with
`perf record -k CLOCK_MONOTONIC -e sched:sched_switch -a`, and reads
/proc/<pid>/task/<tid>/{schedstat,status} before and after the workload's
work. It reports, per thread:

- on-CPU, run-queue wait and switch-ins from the records' kernel counters
  against the schedstat deltas, and switch counts against nvcsw/nivcsw
  (all must be exact);
- switch-ins missing from the tracepoint stream (two switch-outs of a thread
  with no switch-in between), whether perf misses the same ones, the
  inferred run (where it starts, its length) and the switches perf saw on
  that CPU around its start;
- steal: per run, the run on the run-queue clock minus the kernel's on-CPU
  figure, against the tracepoint-timestamp span minus the kernel's figure;
- the programs' recursion misses and the ring buffer's losses, and perf's
  lost events.

Exit status 1 if a by-construction figure disagrees with the kernel.
"""

import argparse
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWITCH, WAKING, DIAG_RESUME = 1, 2, 8
FLAG_CTX_MISMATCH = 1 << 11
FLAG_PREV, FLAG_NEXT = 8, 16


def read_counters(pid):
    """TID -> (on-CPU ns, wait ns, pcount, nvcsw, nivcsw) from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                on, wait, pcount = (int(x) for x in f.read().split())
            nv = niv = None
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        nv = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        niv = int(line.split()[1])
            out[int(tid)] = (on, wait, pcount, nv, niv)
        except FileNotFoundError:
            pass
    return out


def steal_per_cpu():
    """CPU -> steal ticks (USER_HZ) from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) ", line)
            if m:
                out[int(m.group(1))] = int(line.split()[8])
    return out


def prog_ids():
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True)
    return {p["id"]: p for p in json.loads(out.stdout or "[]")}


def wait_for(path, text, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path) as f:
                if text in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return False


PERF_LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+sched:sched_switch:\s+"
    r"prev_comm=(?P<pcomm>.*?) prev_pid=(?P<ppid>\d+) prev_prio=\d+ prev_state=(?P<pstate>\S+) ==> "
    r"next_comm=(?P<ncomm>.*?) next_pid=(?P<npid>\d+) next_prio=\d+"
)


def perf_switches(data):
    out = subprocess.run(
        ["perf", "script", "-i", data, "--ns", "-F", "comm,tid,cpu,time,event,trace"],
        capture_output=True, text=True,
    )
    sw = []
    for line in out.stdout.splitlines():
        m = PERF_LINE.match(line)
        if not m:
            continue
        sec, frac = m.group("ts").split(".")
        ts = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        sw.append((ts, int(m.group("cpu")), int(m.group("ppid")), m.group("pcomm"),
                   m.group("pstate"), int(m.group("npid")), m.group("ncomm")))
    stats = subprocess.run(["perf", "report", "-i", data, "--stats"], capture_output=True, text=True)
    lost = 0
    for line in stats.stdout.splitlines():
        m = re.match(r"\s*LOST(?:_SAMPLES)? events:\s+(\d+)", line)
        if m:
            lost += int(m.group(1))
    return sw, lost


def one_run(args, run, tmp):
    st = os.path.join(ROOT, "target/release/schedtrace")
    raw = os.path.join(ROOT, "target/release/examples/raw-records")
    load = []
    for _ in range(args.load):
        load.append(subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True))
    if args.messaging:
        load.append(subprocess.Popen(
            ["sh", "-c", "while :; do perf bench sched messaging -t -g 4 -l 2000 >/dev/null 2>&1; done"],
            start_new_session=True))
    wl_cmd = [st, "__workload", "--gated", "--seconds", str(args.seconds),
              "--pool", str(args.pool), "--helpers", str(args.helpers)]
    if args.cpus:
        wl_cmd = ["taskset", "-c", args.cpus] + wl_cmd
    wl = subprocess.Popen(wl_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    want = 1 + args.pool + args.helpers
    for _ in range(200):
        if len(os.listdir(f"/proc/{wl.pid}/task")) == want:
            break
        time.sleep(0.05)
    ids0 = set(prog_ids())
    rawf, rawerr = os.path.join(tmp, f"raw{run}.jsonl"), os.path.join(tmp, f"raw{run}.err")
    extra = (["--wake-context", args.wake_context] if args.wake_context else []) + \
        ([] if args.no_diag else ["--diag"])
    if args.diag_tgid:
        extra += ["--diag-tgid", str(args.diag_tgid)]
    rec = subprocess.Popen([raw, "--pid", str(wl.pid)] + extra,
                           stdout=open(rawf, "w"), stderr=open(rawerr, "w"))
    if not wait_for(rawerr, "tracing"):
        sys.exit(f"raw-records did not start: {open(rawerr).read()}")
    ours = set(prog_ids()) - ids0
    pdata = os.path.join(tmp, f"perf{run}.data")
    perf = None
    if not args.no_perf:
        perf = subprocess.Popen(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", "sched:sched_switch",
                                 "-a", "-m", "8M", "-o", pdata], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, f"perf{run}.err"), "w"))
        # perf takes a moment to open its events on every CPU.
        time.sleep(2.0)
    before, steal0 = read_counters(wl.pid), steal_per_cpu()
    t0 = time.monotonic_ns()
    wl.stdin.write("go\n")
    wl.stdin.flush()
    line = wl.stdout.readline()
    assert line.strip() == "done", line
    # The helper threads may still be finishing when the main thread says
    # "done": read the counters once they stand still (every thread asleep),
    # so that no switch falls between the records and the reading.
    after = read_counters(wl.pid)
    for _ in range(100):
        time.sleep(0.05)
        again = read_counters(wl.pid)
        if again == after:
            break
        after = again
    t1 = time.monotonic_ns()
    steal1 = steal_per_cpu()
    progs = prog_ids()
    misses = {progs[i]["name"]: progs[i].get("recursion_misses", 0) for i in ours if i in progs}
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    rec.send_signal(signal.SIGINT)
    rec.wait()
    wl.stdin.close()
    wl.wait()
    for p in load:
        # Each load runs in its own process group (session): end it, children included.
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    recs = [json.loads(x) for x in open(rawf)]
    sw, plost = perf_switches(pdata) if perf else ([], None)
    return analyze(args, run, wl.pid, recs, before, after, steal0, steal1, t0, t1, misses, sw, plost)


def analyze(args, run, pid, recs, before, after, steal0, steal1, t0, t1, misses, psw, plost):
    footer = recs[-1]
    ev = sorted((r for r in recs if "kind" in r), key=lambda r: r["ts"])
    ok = True
    # Per thread, in order: its switch records (as prev or next).
    per = collections.defaultdict(list)
    for r in ev:
        if r["kind"] != SWITCH:
            continue
        if r["flags"] & FLAG_PREV and r["prev_tgid"] == pid:
            per[r["prev_tid"]].append(("out", r))
        if r["flags"] & FLAG_NEXT and r["next_tgid"] == pid:
            per[r["next_tid"]].append(("in", r))
    # perf's switches of the same threads.
    pin = collections.Counter(n for (_, _, _, _, _, n, _) in psw)
    pout = collections.Counter(p for (_, _, p, _, _, _, _) in psw)
    by_cpu = collections.defaultdict(list)
    for x in psw:
        by_cpu[x[1]].append(x)
    print(f"== run {run}: pid {pid}, {len(ev)} records, lost {footer['lost_per_cpu']}, "
          f"recursion misses {misses}, perf switches {len(psw)} (lost {plost})")
    dsteal = {c: (steal1[c] - steal0[c]) * 10_000_000 for c in steal0}
    print(f"   window {(t1 - t0) / 1e6:.1f} ms; /proc/stat steal per CPU (ms): "
          f"{ {c: v / 1e6 for c, v in dsteal.items()} }")
    missing_all = []
    perf_prev = collections.Counter()
    diag = [r for r in ev if r["kind"] == DIAG_RESUME]
    if diag:
        sw_in = sum(1 for r in diag if r["aux0"] and r["aux1"])
        no_tp = [r for r in diag if r["aux0"] and not r["aux1"]]
        kept = sum(1 for r in diag if not r["aux0"])
        print(f"   diag: {len(diag)} returns from __schedule into target threads: {sw_in} switch-ins "
              f"with sched_switch, {len(no_tp)} without, {kept} with no switch (prev == next)")
        for r in no_tp:
            print(f"      no sched_switch seen into {r['next_comm']}/{r['next_tid']} on CPU {r['cpu']} at {r['ts']}; "
                  f"last __schedule entry seen there: {r['prev_comm']}/{r['prev_tid']}, "
                  f"{(r['ts'] - r['state']) / 1e3:.1f} µs before")
    run_steal = []  # (run_clock - runtime delta, ts span - runtime delta, on-CPU, rq steal delta)
    for tid in sorted(before):
        if tid not in after:
            continue
        b, a = before[tid], after[tid]
        seq = per.get(tid, [])
        # Every thread sleeps at both gates, so the figures between them are
        # the records' alone: on-CPU from its first switch-in to its last
        # switch-out, switch-ins from the counts there; waits and switch
        # counts from the last record against /proc's reading at the first
        # gate (nothing moves them while the thread sleeps).
        inside = [(d, r) for d, r in seq if t0 <= r["ts"] <= t1]
        ins = sum(1 for d, _ in inside if d == "in")
        outs = sum(1 for d, _ in inside if d == "out")
        last_out = [r for d, r in inside if d == "out"]
        first_in = [r for d, r in inside if d == "in"]
        k_on, k_wait, k_pc = a[0] - b[0], a[1] - b[1], a[2] - b[2]
        k_nv, k_niv = a[3] - b[3], a[4] - b[4]
        c_on = c_wait = c_pc = c_nv = c_niv = None
        if last_out and first_in:
            lo, fi = last_out[-1], first_in[0]
            c_on = lo["prev_runtime"] - fi["next_runtime"]
            c_pc = lo["prev_pcount"] - (fi["next_pcount"] - 1)
            c_nv = (lo["prev_nvcsw"] - b[3]) & 0xFFFFFFFF
            c_niv = (lo["prev_nivcsw"] - b[4]) & 0xFFFFFFFF
            last_in = [r for d, r in inside if d == "in"][-1]
            # The thread sleeps at the gate, so its run delay before the
            # first switch-in is /proc's; the last switch-in's is final.
            c_wait = (last_in["aux0"] | last_in["aux1"] << 32) - b[1]
        # Missing switch-ins: two switch-outs with no switch-in between.
        prev = None
        missing = []
        for d, r in seq:
            if d == "out" and prev is not None and prev[0] == "out":
                missing.append((prev[1], r))
            if d == "in" and prev is not None and prev[0] == "in":
                print(f"   tid {tid}: two switch-ins in a row at {r['ts']} (a switch-out is missing)")
            prev = (d, r)
        # Per run: steal.
        last_in_rec = None
        for d, r in seq:
            if d == "in":
                last_in_rec = r
            elif last_in_rec is not None and r["prev_run_clock"] != 0xFFFFFFFF:
                dr = r["prev_runtime"] - last_in_rec["next_runtime"]
                if r["prev_pcount"] == last_in_rec["next_pcount"] and r["cpu"] == last_in_rec["cpu"]:
                    # With --diag, `reserved` is the rq's steal so far (low 32 bits).
                    rq_steal = (r["reserved"] - last_in_rec["reserved"]) & 0xFFFFFFFF if diag else None
                    run_steal.append((r["prev_run_clock"] - dr, (r["ts"] - last_in_rec["ts"]) - dr, dr, rq_steal))
                last_in_rec = None
        good = (c_on == k_on and c_pc == k_pc and c_nv == k_nv and c_niv == k_niv and c_wait == k_wait)
        ok &= good
        print(f"   tid {tid:>7} on-CPU {k_on / 1e6:8.3f} ms {'=' if c_on == k_on else '!='} counters "
              f"{(c_on or 0) / 1e6:8.3f}; wait {k_wait / 1e6:7.3f} ms {'=' if c_wait == k_wait else '!='} "
              f"{(c_wait or 0) / 1e6:7.3f}; pcount {k_pc} {'=' if c_pc == k_pc else '!='} {c_pc}; "
              f"nv/niv {k_nv}/{k_niv} {'=' if (c_nv, c_niv) == (k_nv, k_niv) else '!='} {c_nv}/{c_niv}; "
              f"records in/out {ins}/{outs}, perf in/out {pin[tid]}/{pout[tid]}; "
              f"missing switch-ins {len(missing)}")
        for o1, o2 in missing:
            missing_all.append((tid, o1, o2))
    for tid, o1, o2 in missing_all:
        # The inferred run: it ended at o2 (on o2's CPU) after o2.prev_run_clock
        # ns of run-queue clock, and the kernel charged it o2.runtime - o1.runtime.
        length = o2["prev_runtime"] - o1["prev_runtime"]
        start = o2["ts"] - o2["prev_run_clock"]
        cpu = o2["cpu"]
        pc = o2["prev_pcount"] - o1["prev_pcount"]
        # perf's view: its switches of this thread between the two outs, and
        # what ran on that CPU around the inferred start.
        pv = [x for x in psw if o1["ts"] - 5000 <= x[0] <= o2["ts"] + 5000 and tid in (x[2], x[5])]
        near = [x for x in by_cpu[cpu] if start - 200_000 <= x[0] <= start + 200_000]
        perf_has = any(x[5] == tid and o1["ts"] < x[0] < o2["ts"] for x in pv)
        print(f"   missing switch-in of {tid}: out at {o1['ts']} on CPU {o1['cpu']} "
              f"(state {o1['state'] & 0xffffffff:#x}, preempt {bool(o1['flags'] & 1)}), "
              f"next out at {o2['ts']} on CPU {cpu}; pcount +{pc}; inferred run {length / 1e3:.1f} µs "
              f"on CPU, {o2['prev_run_clock'] / 1e3:.1f} µs of run-queue clock, from ~{start}; "
              f"perf {'has' if perf_has else 'lacks'} it")
        before_start = [x for x in by_cpu[cpu] if x[0] < start][-2:]
        after_start = [x for x in by_cpu[cpu] if x[0] >= start][:1]
        for x in before_start + after_start:
            print(f"      perf cpu{x[1]} {x[0]} ({(x[0] - start) / 1e3:+9.1f} µs) "
                  f"{x[3]}/{x[2]} [{x[4]}] => {x[6]}/{x[5]}")
        if before_start:
            perf_prev[(before_start[-1][6], before_start[-1][5])] += 1
        # The diagnostic programs' view of the same switch-in.
        for r in diag:
            if r["next_tid"] == tid and o1["ts"] < r["ts"] < o2["ts"] and r["aux0"]:
                print(f"      {tid} resumed on CPU {r['cpu']} at {r['ts']} (sched_exit_tp), "
                      f"sched_switch to it {'seen' if r['aux1'] else 'NOT seen'}; the last __schedule entry "
                      f"seen on that CPU was {r['prev_comm']}/{r['prev_tid']}'s, "
                      f"{(r['ts'] - r['state']) / 1e3:.1f} µs before")
    checked = [x for x in run_steal if x[3] is not None]
    if checked:
        same = sum(1 for x in checked if x[0] == x[3])
        worst = max(checked, key=lambda x: abs(x[0] - x[3]))
        print(f"   steal per run, run-queue clock - on-CPU vs the rq's prev_steal_time_rq delta: "
              f"{same} of {len(checked)} runs equal; largest difference {worst[0] - worst[3]} ns "
              f"({worst[0]} vs {worst[3]})")
    if perf_prev:
        print(f"   task running on that CPU before each missing switch-in (perf): {dict(perf_prev)}")
    if run_steal:
        s_clock = sum(x[0] for x in run_steal)
        s_ts = sum(x[1] for x in run_steal)
        s_on = sum(x[2] for x in run_steal)
        print(f"   steal over {len(run_steal)} runs ({s_on / 1e6:.1f} ms on-CPU): run-queue clock - on-CPU "
              f"= {s_clock / 1e6:.3f} ms ({100 * s_clock / max(1, s_on):.2f}%); timestamps - on-CPU "
              f"= {s_ts / 1e6:.3f} ms; per run: clock-based median {statistics.median(x[0] for x in run_steal)} ns, "
              f"max {max(x[0] for x in run_steal)} ns; ts-based median {statistics.median(x[1] for x in run_steal)} ns, "
              f"min {min(x[1] for x in run_steal)}, max {max(x[1] for x in run_steal)} ns")
    # Wakeups of the target by context, per woken thread name (digits
    # dropped): a thread woken by its nanosleep timer must show the hrtimer
    # callback `hrtimer_wakeup`, a futex wake from another thread that
    # thread, in task context.
    ctx = collections.defaultdict(collections.Counter)
    mismatch = []
    for r in ev:
        if r["kind"] == WAKING and r["next_tgid"] == pid:
            c = r.get("context", "?")
            c = re.sub(r"Some\((\d{10,})\)|function: (\d+)",
                       lambda m: ksym(int(m.group(1) or m.group(2))), c)
            waker = re.sub(r"\d+$", "", r["prev_comm"])
            ctx[re.sub(r"\d+$", "", r["next_comm"])][c + (f" by {waker}" if c == "Task" else "")] += 1
            if r["flags"] & FLAG_CTX_MISMATCH:
                mismatch.append(r)
    for wakee, c in sorted(ctx.items()):
        print(f"   wakeups of {wakee}: " + ", ".join(f"{k}: {v}" for k, v in c.most_common()))
    if args.wake_context == "preempt-count":
        n = sum(1 for r in ev if r["kind"] == WAKING and r["next_tgid"] == pid)
        print(f"   wake-context check: {len(mismatch)} of {n} wakeups "
              f"where the per-CPU interrupt state alone would have told another context")
        for r in mismatch[:5]:
            print(f"      {r['ts']} cpu{r['cpu']} {r['prev_comm']} -> {r['next_comm']}: {r.get('context')}")
    return ok, len(missing_all)


_KSYMS = None


def ksym(addr):
    global _KSYMS
    if _KSYMS is None:
        _KSYMS = {}
        with open("/proc/kallsyms") as f:
            for line in f:
                a, _, name = line.split()[:3]
                _KSYMS[int(a, 16)] = name
    return _KSYMS.get(addr, hex(addr))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--helpers", type=int, default=2)
    ap.add_argument("--cpus", help="pin the workload (taskset list)")
    ap.add_argument("--load", type=int, default=0, help="busy loops of foreign load")
    ap.add_argument("--messaging", action="store_true", help="perf bench sched messaging as foreign load")
    ap.add_argument("--wake-context", choices=["off", "irq-state", "preempt-count"],
                    help="how sched_waking tells a wakeup's context (default: irq-state)")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--no-diag", action="store_true",
                    help="leave out the sched_entry_tp/sched_exit_tp programs that tell whether "
                         "sched_switch ran for each switch-in")
    ap.add_argument("--diag-tgid", type=int, default=0,
                    help="also record this process's switches and __schedule entries/exits "
                         "(to follow the task that ran before a missing switch-in)")
    ap.add_argument("--keep", help="keep the raw files in this directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (and under flock /work/root-tests.lock)")
    tmp = args.keep or tempfile.mkdtemp(prefix="crosscheck-")
    os.makedirs(tmp, exist_ok=True)
    bad, missing = 0, 0
    for run in range(args.runs):
        ok, m = one_run(args, run, tmp)
        bad += not ok
        missing += m
    print(f"== {args.runs} runs: {bad} with a counter mismatch, {missing} missing switch-ins; files in {tmp}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Page size and first paint of `schedtrace report --html` on synthetic
traces, the figures of docs/outputs.md ("Long traces"). No root needed;
Chromium (Debian `chromium`) is. Hold the shared lock, other tests time
things on this machine:

    cargo build --release
    flock /work/root-tests.lock scripts/html-figures.py [--bin SCHEDTRACE] [--dir DIR] [NAME...]

NAME is one of the traces below (default: all). Each is a JSON Lines trace
written into DIR (default /tmp/schedtrace-html-figures), made into a page
with SCHEDTRACE (default target/release/schedtrace), then opened in
headless Chromium: first paint is the wall time of a 1400x900 screenshot
less that of an empty page (median of three, one run for a page over
100 MB), and the page's script reports when it finished (ms from the
navigation's start) and how many rectangles it drew.

- ping-pong: two threads taking 40 us turns on one CPU, woken 20 us before
  their turn, 80 us a cycle, plus threads that only sleep;
- many: that ping-pong on CPU 0 and BG threads in 30 other processes taking
  40 us turns on CPU 1.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

START = 1_000_000_000
US = 1_000
TRACES = {
    # name: (generator, seconds, arguments)
    "short": ("ping_pong", 1, {"pairs": 1, "sleepers": 2}),
    "mid": ("ping_pong", 3, {"pairs": 2, "sleepers": 4}),
    "long": ("ping_pong", 60, {"pairs": 1, "sleepers": 20}),
    "many-short": ("many", 1, {"bg": 300, "nproc": 30}),
    "many": ("many", 60, {"bg": 300, "nproc": 30}),
}


def header(ncpus, also=()):
    h = {"type": "header", "schema": "schedtrace-trace", "version": 3,
         "clock": "CLOCK_MONOTONIC", "wall_clock_offset_ns": 0, "ncpus": ncpus,
         "target": {"pid": 100, "comm": "pingpong", "follow_children": False,
                    "also": [{"pid": p, "comm": c} for p, c in also]},
         "kernel_release": "test", "hostname": "test", "tool_version": "test",
         "start_ns": START, "wakeups": True}
    return h


def switch(ts, cpu, prev, nxt):
    return {"type": "switch", "ts": ts, "cpu": cpu, "prev": prev, "next": nxt,
            "prev_state": "S", "prev_state_raw": 1, "preempt": False}


def wakeup(ts, cpu, waker, wakee):
    return {"type": "wakeup", "ts": ts, "cpu": cpu, "waker": waker, "wakee": wakee,
            "wakee_cpu": cpu}


def idle(cpu):
    return {"tid": 0, "tgid": 0, "comm": f"swapper/{cpu}", "prio": 120}


def write(path, head, tids, tgid_of, cycle, cycles, ncpus):
    """The trace: header, threads, `cycle(c, t)` records per cycle, end."""
    events = 0
    with open(path, "w") as w:
        w.write(json.dumps(head) + "\n")
        for t in tids:
            w.write(json.dumps({"type": "thread", "ts": START, "tid": t, "tgid": tgid_of(t),
                                "comm": f"t{t}", "state": "S", "cpu": 0}) + "\n")
        for c in range(cycles):
            recs = cycle(c, START + US + c * 80 * US)
            w.write("".join(json.dumps(r) + "\n" for r in recs))
            events += len(recs)
        end = START + 2 * US + cycles * 80 * US
        w.write(json.dumps({"type": "end", "end_ns": end, "events": events, "lost_events": 0,
                            "lost_per_cpu": [0] * ncpus, "complete": True,
                            "reason": "duration"}) + "\n")
    return events


def ping_pong(path, seconds, pairs, sleepers):
    task = lambda t: {"tid": t, "tgid": 100, "comm": f"t{t}", "prio": 120}
    cycles = int(seconds * 1e9 / (80 * US))

    def cycle(c, t):
        out = []
        for p in range(pairs):
            a, b = task(101 + 2 * p), task(102 + 2 * p)
            if c == 0:
                out.append(switch(t, p, idle(p), a))
            out += [wakeup(t + 20 * US, p, a, b), switch(t + 40 * US, p, a, b),
                    wakeup(t + 60 * US, p, b, a), switch(t + 80 * US, p, b, a)]
        return sorted(out, key=lambda r: r["ts"])

    tids = list(range(101, 101 + 2 * pairs + sleepers))
    return write(path, header(pairs), tids, lambda t: 100, cycle, cycles, pairs)


def many(path, seconds, bg, nproc):
    tgid_of = lambda t: 100 if t < 1000 else 1000 + 10 * ((t - 1000) % nproc)
    task = lambda t: {"tid": t, "tgid": tgid_of(t), "comm": f"t{t}", "prio": 120}
    cycles = int(seconds * 1e9 / (80 * US))
    bgs = [1000 + i for i in range(bg)]

    def cycle(c, t):
        a, b, x = task(101), task(102), task(bgs[c % bg])
        first = [switch(t, 0, idle(0), a)] if c == 0 else []
        return first + [switch(t + 10 * US, 1, idle(1), x), wakeup(t + 20 * US, 0, a, b),
                        switch(t + 40 * US, 0, a, b), switch(t + 50 * US, 1, x, idle(1)),
                        wakeup(t + 60 * US, 0, b, a), switch(t + 80 * US, 0, b, a)]

    also = [(1000 + 10 * k, f"bg{k}") for k in range(nproc)]
    return write(path, header(2, also), [101, 102] + bgs, tgid_of, cycle, cycles, 2)


PROBE = """<script>
(function () {
  const pre = document.createElement('pre');
  pre.id = 'figures';
  pre.textContent = 'script_done=' + performance.now().toFixed(0) + ' rects=' + document.querySelectorAll('rect').length;
  document.body.appendChild(pre);
})();
</script></body>"""


def chromium(args, profile):
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile}", "--window-size=1400,900"] + args,
                          capture_output=True, timeout=600)


def paint_s(page, profile, runs):
    times = []
    for _ in range(runs):
        t = time.monotonic()
        chromium([f"--screenshot={profile}.png", f"file://{page}"], profile)
        times.append(time.monotonic() - t)
    return statistics.median(times)


def measure(page, work):
    blank = os.path.join(work, "blank.html")
    with open(blank, "w") as f:
        f.write("<!DOCTYPE html><html><body>x</body></html>")
    size = os.path.getsize(page)
    runs = 1 if size > 100_000_000 else 3
    profile = os.path.join(work, "chromium-profile")
    paint = paint_s(page, profile, runs) - paint_s(blank, profile, runs)
    probe = os.path.join(work, "probe.html")
    with open(page) as f, open(probe, "w") as g:
        g.write(f.read().replace("</body>", PROBE))
    dom = chromium(["--virtual-time-budget=30000", "--dump-dom", f"file://{probe}"],
                   profile + "-dump").stdout.decode(errors="replace")
    at = dom.find('<pre id="figures">')
    script = dom[at + 18:dom.find("</pre>", at)] if at >= 0 else "no probe output"
    return size, paint, script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/schedtrace")
    ap.add_argument("--dir", default="/tmp/schedtrace-html-figures")
    ap.add_argument("names", nargs="*", default=list(TRACES))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    for name in a.names:
        gen, seconds, kw = TRACES[name]
        trace = os.path.join(a.dir, name + ".jsonl")
        page = os.path.join(a.dir, name + ".html")
        if not os.path.exists(trace):
            globals()[gen](trace, seconds, **kw)
        t = time.monotonic()
        subprocess.run([a.bin, "report", trace, "--html", page, "--force", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        made = time.monotonic() - t
        size, paint, script = measure(page, a.dir)
        print(f"{name}: page {size / 1e6:.1f} MB (made in {made:.1f} s), "
              f"first paint {paint:.2f} s, {script}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

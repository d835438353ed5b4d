//! The terminal timeline (`--timeline`): one lane per CPU showing which of
//! the target's threads was on it, then one lane per thread showing what it
//! was doing, over time from left to right, fitted to the terminal's width.
//!
//! Each column covers the same stretch of time (a round 1, 2 or 5 × 10ⁿ ns)
//! and shows what filled most of it: on a CPU lane the letter of the thread
//! that ran longest there (`·` when the target's threads filled less than a
//! quarter of the column), `#` where a task of another process held it most,
//! `_` where it was idle most, blank where nothing was recorded; on a
//! thread lane the CPU number while running, `-` runnable (waiting for a
//! CPU), `.` sleeping, `x` blocked (uninterruptible), blank before the
//! thread existed, after it exited, or where its state is unknown (after
//! lost events); what filled most of the column wins, running time counting
//! double so that short runs between long waits still show. With several
//! processes, each one's thread lanes come together under a line naming it.
//! Below them, a lane marks where events were lost (`!`) and one where runs
//! began whose switch-in the kernel's stream lacked (`^`, inferred runs).
//! Colours (one per thread) only when asked for or on a TTY.

use std::fmt::Write as _;
use std::io::Write;

use super::{Exporter, Report};
use crate::analysis::antagonists::Holder;
use crate::analysis::timeline::{SegState, Timeline};
use crate::units::duration;

/// Width used when neither `$COLUMNS` nor the terminal tells one.
pub(crate) const DEFAULT_WIDTH: usize = 100;
const MIN_WIDTH: usize = 40;
const MAX_WIDTH: usize = 1000;
/// Thread lanes drawn at most; the rest are counted in a note.
const MAX_THREAD_LANES: usize = 60;

/// `$COLUMNS` if set, else the width of the terminal on stdout (or stderr),
/// else `DEFAULT_WIDTH`.
pub fn terminal_width() -> usize {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
    {
        return w.clamp(MIN_WIDTH, MAX_WIDTH);
    }
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: an all-zero winsize is valid.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a winsize we own; fails harmlessly on non-TTYs.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return (ws.ws_col as usize).clamp(MIN_WIDTH, MAX_WIDTH);
        }
    }
    DEFAULT_WIDTH
}

/// The terminal timeline exporter.
#[derive(Clone, Copy, Debug)]
pub struct TerminalTimeline {
    /// Total line width in characters.
    pub width: usize,
    pub color: bool,
}

/// The letter of the i-th thread: A-Z, a-z, 0-9, then `*`.
pub(crate) fn thread_letter(i: usize) -> char {
    const L: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    L.get(i).map_or('*', |&b| b as char)
}

/// The character for running on `cpu`: 0-9, then A-Z, then `#`.
fn cpu_char(cpu: u32) -> char {
    match cpu {
        0..=9 => (b'0' + cpu as u8) as char,
        10..=35 => (b'A' + (cpu - 10) as u8) as char,
        _ => '#',
    }
}

/// Background colours, one per thread (cycled).
const PALETTE: [u8; 12] = [44, 42, 45, 46, 43, 41, 104, 102, 105, 106, 103, 101];

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn thread_paint(color: bool, i: usize, s: &str) -> String {
    paint(color, &format!("30;{}", PALETTE[i % PALETTE.len()]), s)
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `x` (and at least 1).
pub(crate) fn nice_step(x: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            if let Some(v) = p.checked_mul(m)
                && v >= x
            {
                return v;
            }
        }
        match p.checked_mul(10) {
            Some(n) => p = n,
            None => return u64::MAX,
        }
    }
}

/// `0`, `250µs`, `20ms`, `1.5s`: short tick labels.
fn tick_label(ns: u64) -> String {
    let trim = |v: f64| {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    match ns {
        0 => "0".into(),
        n if n >= 1_000_000_000 => format!("{}s", trim(n as f64 / 1e9)),
        n if n >= 1_000_000 => format!("{}ms", trim(n as f64 / 1e6)),
        n if n >= 1_000 => format!("{}µs", trim(n as f64 / 1e3)),
        n => format!("{n}ns"),
    }
}

/// The line above a process's thread lanes: its PID and name (its main
/// thread's, or its first traced thread's when the main one is not there).
fn process_heading(tl: &Timeline, tgid: u32) -> String {
    let mut threads = tl.threads.iter().filter(|t| t.tgid == tgid);
    let name = tl
        .threads
        .iter()
        .find(|t| t.tid == tgid)
        .or_else(|| threads.next())
        .map_or("", |t| t.comm.as_str());
    format!("process {tgid} ({name})")
}

/// Lanes in process then thread ID order (creation order, mostly).
pub(crate) fn sort_threads(tl: &mut Timeline) {
    tl.threads.sort_by_key(|t| (t.tgid, t.tid));
}

/// Per column: time in each state, and running time per CPU.
#[derive(Clone, Default)]
struct ThreadCell {
    runnable: u64,
    sleeping: u64,
    blocked: u64,
    running: Vec<(u32, u64)>,
}

impl ThreadCell {
    fn running_ns(&self) -> u64 {
        self.running.iter().map(|(_, ns)| ns).sum()
    }

    /// The state that filled most of the column, with running time
    /// counted double so that short runs between waits still show.
    fn glyph(&self) -> Option<char> {
        let run = self.running_ns();
        let run_weight = run.saturating_mul(2);
        let best = [
            (run_weight, 'r'),
            (self.runnable, '-'),
            (self.blocked, 'x'),
            (self.sleeping, '.'),
        ]
        .into_iter()
        .fold((0, ' '), |acc, c| if c.0 > acc.0 { c } else { acc });
        match best {
            (0, _) => None,
            (_, 'r') => {
                let cpu = self
                    .running
                    .iter()
                    .fold(
                        (0, 0),
                        |acc, &(c, ns)| if ns > acc.1 { (c, ns) } else { acc },
                    )
                    .0;
                Some(cpu_char(cpu))
            }
            (_, g) => Some(g),
        }
    }
}

fn add(cells: &mut [(u32, u64)], key: u32, ns: u64) -> Option<()> {
    let slot = cells.iter_mut().find(|(k, _)| *k == key)?;
    slot.1 += ns;
    Some(())
}

/// Split `[start, end)` (ns from the timeline start) over columns of `step`.
fn columns(start: u64, end: u64, step: u64, ncols: usize, mut f: impl FnMut(usize, u64)) {
    let mut t = start;
    while t < end {
        let col = (t / step) as usize;
        if col >= ncols {
            break;
        }
        let col_end = ((col as u64 + 1) * step).min(end);
        f(col, col_end - t);
        t = col_end;
    }
}

/// Render the timeline as text (with ANSI colours when `color`).
pub fn render(tl: &Timeline, width: usize, color: bool) -> String {
    let mut sorted = tl.clone();
    sort_threads(&mut sorted);
    let f = Frame::new(&sorted, width, color);
    let tl = f.tl;
    let mut out = String::new();
    let ncpu_lanes = f.ncpu_lanes;
    let _ = writeln!(
        out,
        "Timeline: {}, {} per column; {} CPU{}, {} thread{}",
        duration(f.window),
        duration(f.step),
        ncpu_lanes,
        if ncpu_lanes == 1 { "" } else { "s" },
        tl.threads.len(),
        if tl.threads.len() == 1 { "" } else { "s" },
    );
    if tl.threads.is_empty() || f.window == 0 {
        out.push_str("  (no thread of the target was seen in the window)\n");
        return out;
    }
    f.axis(&mut out);
    f.cpu_lanes(&mut out);
    f.legend(&mut out);
    f.thread_lanes(&mut out);
    if tl.threads.len() > f.shown.len() {
        let _ = writeln!(
            out,
            "  ({} more threads not drawn; pick some with `schedtrace report --tid/--comm`)",
            tl.threads.len() - f.shown.len()
        );
    }
    let lost = f.lost_lane(&mut out);
    let inferred = f.inferred_lane(&mut out);
    let _ = writeln!(
        out,
        "  CPU lanes: letter = thread that ran most of the column, · = under a quarter, # = another process, \
         _ = idle, blank = not recorded\n  \
         thread lanes: digit = running on that CPU (its time counts double), - runnable (waiting for a CPU), . sleeping, x blocked, \
         blank = not alive then, or unknown"
    );
    if lost > 0 {
        let _ = writeln!(
            out,
            "  ! = {lost} events lost around there; lanes may be wrong nearby"
        );
    }
    if inferred > 0 {
        let _ = writeln!(
            out,
            "  ^ = {inferred} runs began there whose switch-in the kernel's stream lacked \
             (inferred: placed from their switch-out's counters)"
        );
    }
    out
}

/// How a timeline fits the width: the threads drawn and their labels, the
/// label column, and the columns (each `step` ns) of the lanes.
struct Frame<'a> {
    tl: &'a Timeline,
    color: bool,
    width: usize,
    window: u64,
    /// Indexes of the threads that get a lane.
    shown: Vec<usize>,
    labels: Vec<String>,
    ncpu_lanes: usize,
    label_w: usize,
    step: u64,
    ncols: usize,
}

impl<'a> Frame<'a> {
    fn new(tl: &'a Timeline, width: usize, color: bool) -> Self {
        let window = tl.end_ns.saturating_sub(tl.start_ns);
        let shown: Vec<usize> = (0..tl.threads.len().min(MAX_THREAD_LANES)).collect();
        let labels: Vec<String> = shown
            .iter()
            .map(|&i| {
                let t = &tl.threads[i];
                format!("{} {} {}", thread_letter(i), t.tid, t.comm)
            })
            .collect();
        let ncpu_lanes = tl.cpu_lanes().len().max(tl.ncpus as usize);
        let label_w = labels
            .iter()
            .map(|l| l.chars().count())
            .chain([format!("CPU {}", ncpu_lanes.saturating_sub(1)).len()])
            .max()
            .unwrap_or(6)
            .min(24);
        let lane_w = width.saturating_sub(label_w + 3).max(10);
        let step = nice_step(window.div_ceil(lane_w as u64).max(1));
        let ncols = (window.div_ceil(step) as usize).clamp(1, lane_w);
        Frame {
            tl,
            color,
            width,
            window,
            shown,
            labels,
            ncpu_lanes,
            label_w,
            step,
            ncols,
        }
    }

    /// `t` relative to the timeline's start.
    fn rel(&self, t: u64) -> u64 {
        t.saturating_sub(self.tl.start_ns)
    }

    fn index_of(&self, tid: u32) -> Option<usize> {
        self.tl.threads.iter().position(|t| t.tid == tid)
    }

    /// One lane: its label, then its cells between bars.
    fn lane(&self, label: &str, cells: &str) -> String {
        let label_w = self.label_w;
        let label: String = label.chars().take(label_w).collect();
        format!("{label:label_w$} |{cells}|\n")
    }

    /// Axis: a label every 10 columns, where it fits, and the ticks.
    fn axis(&self, out: &mut String) {
        let (ncols, label_w) = (self.ncols, self.label_w);
        let mut axis = vec![' '; ncols + 12];
        let mut free_from = 0;
        for col in (0..ncols).step_by(10) {
            let label: Vec<char> = tick_label(col as u64 * self.step).chars().collect();
            if col >= free_from && col + label.len() <= axis.len() {
                axis[col..col + label.len()].copy_from_slice(&label);
                free_from = col + label.len() + 1;
            }
        }
        let axis: String = axis.into_iter().collect();
        let _ = writeln!(out, "{:label_w$}  {}", "", axis.trim_end());
        let mut ticks = String::new();
        for col in 0..ncols {
            ticks.push(if col % 10 == 0 { '|' } else { ' ' });
        }
        let _ = writeln!(out, "{:label_w$}  {}", "", ticks.trim_end());
    }

    /// CPU lanes: per column, the letter of the thread that ran longest,
    /// or what else held the CPU most.
    fn cpu_lanes(&self, out: &mut String) {
        let (ncols, step, color) = (self.ncols, self.step, self.color);
        let others = super::other_holds(self.tl);
        for (cpu, segs) in super::exclusive_cpu_lanes(self.tl).iter().enumerate() {
            // Per column: ns held by another process's task, and idle.
            let mut other = vec![(0u64, 0u64); ncols];
            for h in others.get(cpu).into_iter().flatten() {
                columns(
                    self.rel(h.start),
                    self.rel(h.end),
                    step,
                    ncols,
                    |c, ns| match h.holder {
                        Holder::Task(o) if o.is_idle() => other[c].1 += ns,
                        Holder::Task(_) => other[c].0 += ns,
                        Holder::Unrecorded => {}
                    },
                );
            }
            // Per column, running ns of each thread (by index).
            let mut cells: Vec<Vec<(u32, u64)>> = vec![Vec::new(); ncols];
            for s in segs {
                let Some(i) = self.index_of(s.tid) else {
                    continue;
                };
                columns(self.rel(s.start), self.rel(s.end), step, ncols, |c, ns| {
                    if add(&mut cells[c], i as u32, ns).is_none() {
                        cells[c].push((i as u32, ns));
                    }
                });
            }
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let busy: u64 = cell.iter().map(|(_, ns)| ns).sum();
                let col_len = (((c as u64) + 1) * step).min(self.window) - c as u64 * step;
                let best = cell.iter().fold(
                    (0u32, 0u64),
                    |acc, &(i, ns)| if ns > acc.1 { (i, ns) } else { acc },
                );
                let (foreign, idle) = other[c];
                if foreign > busy.max(idle) {
                    line.push_str(&paint(color, "2", "#"));
                } else if idle > busy.max(foreign) {
                    line.push('_');
                } else if busy == 0 {
                    line.push(' ');
                } else if busy * 4 < col_len {
                    line.push_str(&paint(color, "2", "·"));
                } else {
                    let i = best.0 as usize;
                    line.push_str(&thread_paint(color, i, &thread_letter(i).to_string()));
                }
            }
            out.push_str(&self.lane(&format!("CPU {cpu}"), &line));
        }
    }

    /// Which letter is which thread, wrapped to the width.
    fn legend(&self, out: &mut String) {
        let (tl, color) = (self.tl, self.color);
        let mut legend_line = String::from("  ");
        let mut plain_len = 2;
        for (k, &i) in self.shown.iter().enumerate() {
            let t = &tl.threads[i];
            let item_plain = format!("{}={} ({})", thread_letter(i), t.comm, t.tid);
            let item = format!(
                "{}={} ({})",
                thread_paint(color, i, &thread_letter(i).to_string()),
                t.comm,
                t.tid
            );
            let n = item_plain.chars().count() + 2;
            if plain_len + n > self.width && plain_len > 2 {
                out.push_str(legend_line.trim_end());
                out.push('\n');
                legend_line = String::from("  ");
                plain_len = 2;
            }
            legend_line.push_str(&item);
            if k + 1 < self.shown.len() {
                legend_line.push_str("  ");
            }
            plain_len += n;
        }
        out.push_str(legend_line.trim_end());
        out.push('\n');
        out.push('\n');
    }

    /// Thread lanes: per column, what the thread did most.
    fn thread_lanes(&self, out: &mut String) {
        let (ncols, step, color, label_w) = (self.ncols, self.step, self.color, self.label_w);
        let mut per_thread: Vec<Vec<ThreadCell>> =
            vec![vec![ThreadCell::default(); ncols]; self.shown.len()];
        for s in &self.tl.segments {
            let Some(i) = self.index_of(s.tid) else {
                continue;
            };
            let Some(cells) = per_thread.get_mut(i) else {
                continue;
            };
            columns(self.rel(s.start), self.rel(s.end), step, ncols, |c, ns| {
                let cell = &mut cells[c];
                match s.state {
                    SegState::Running { cpu } => {
                        if add(&mut cell.running, cpu, ns).is_none() {
                            cell.running.push((cpu, ns));
                        }
                    }
                    SegState::Runnable => cell.runnable += ns,
                    SegState::Sleeping => cell.sleeping += ns,
                    SegState::Blocked => cell.blocked += ns,
                }
            });
        }
        // With several processes, each one's lanes come together (see
        // `sort_threads`) under a line naming it.
        let mut tgids: Vec<u32> = self
            .shown
            .iter()
            .map(|&i| self.tl.threads[i].tgid)
            .collect();
        tgids.dedup();
        let several = tgids.len() > 1;
        let mut last_tgid = None;
        for (k, cells) in per_thread.iter().enumerate() {
            let tgid = self.tl.threads[self.shown[k]].tgid;
            if several && last_tgid != Some(tgid) {
                last_tgid = Some(tgid);
                let _ = writeln!(
                    out,
                    "{}",
                    paint(color, "1", &process_heading(self.tl, tgid))
                );
            }
            let mut line = String::new();
            for cell in cells {
                match cell.glyph() {
                    None => line.push(' '),
                    Some(g @ ('-' | '.' | 'x')) => {
                        let code = match g {
                            '-' => "33",
                            '.' => "2",
                            _ => "1;31",
                        };
                        line.push_str(&paint(color, code, &g.to_string()));
                    }
                    Some(g) => line.push_str(&thread_paint(color, k, &g.to_string())),
                }
            }
            let label = &self.labels[k];
            let label: String = label.chars().take(label_w).collect();
            let pad = label_w - label.chars().count();
            let mut chars = label.chars();
            let letter = chars.next().map(|c| c.to_string()).unwrap_or_default();
            let rest: String = chars.collect();
            let _ = writeln!(
                out,
                "{}{rest}{:pad$} |{line}|",
                thread_paint(color, k, &letter),
                ""
            );
        }
    }

    /// A lane marking where inferred runs began, if any did; returns how
    /// many did in the window.
    fn inferred_lane(&self, out: &mut String) -> usize {
        let starts: Vec<u64> = self
            .tl
            .segments
            .iter()
            .filter(|s| s.inferred)
            .map(|s| s.start)
            .filter(|&ts| self.column_of(ts).is_some())
            .collect();
        if !starts.is_empty() {
            self.mark_lane(out, "inferred runs", "1;33", '^', &starts);
        }
        starts.len()
    }

    /// A lane marking where events were lost, if any were; returns how many.
    fn lost_lane(&self, out: &mut String) -> u64 {
        let tl = self.tl;
        let lost: u64 = tl.lost.iter().map(|l| l.2).sum();
        if lost > 0 {
            let at: Vec<u64> = tl.lost.iter().map(|l| l.0).collect();
            self.mark_lane(out, "lost events", "1;31", '!', &at);
        }
        lost
    }

    /// The column `ts` falls in, if it is drawn.
    fn column_of(&self, ts: u64) -> Option<usize> {
        let c = (self.rel(ts) / self.step) as usize;
        (c < self.ncols).then_some(c)
    }

    /// A lane named `label` with `mark` (in `colour`) in the column of each
    /// of `at`.
    fn mark_lane(&self, out: &mut String, label: &str, colour: &str, mark: char, at: &[u64]) {
        let mut marks = vec![' '; self.ncols];
        for c in at.iter().filter_map(|&ts| self.column_of(ts)) {
            marks[c] = mark;
        }
        let marks: String = marks.into_iter().collect();
        out.push_str(&self.lane(label, &paint(self.color, colour, &marks)));
    }
}

impl Exporter for TerminalTimeline {
    fn needs_timeline(&self) -> bool {
        true
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let Some(tl) = report.timeline else {
            anyhow::bail!("the terminal timeline needs the analysis to keep a timeline");
        };
        out.write_all(render(tl, self.width, self.color).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;

    fn sample() -> Timeline {
        let opts = Options {
            keep_timeline: true,
            ..Default::default()
        };
        analyze(&interleaved_trace(), opts).1.expect("timeline")
    }

    #[test]
    fn timeline_snapshot() {
        insta::assert_snapshot!(render(&sample(), 80, false));
    }

    #[test]
    fn inferred_runs_are_marked_where_they_began() {
        let (_, tl) = inferred_run_analysis();
        let s = render(&tl, 80, false);
        let lane = s
            .lines()
            .find(|l| l.starts_with("inferred runs"))
            .unwrap_or_else(|| panic!("no inferred-runs lane: {s}"));
        assert_eq!(lane.matches('^').count(), 1, "{s}");
        assert!(s.contains("^ = 1 runs began there"), "{s}");
        // The run began at 4 ms, where the thread's lane shows it running
        // on CPU 0 after waiting.
        let col = lane.find('^').unwrap();
        let thread = s
            .lines()
            .find(|l| l.starts_with("A 101"))
            .unwrap_or_else(|| panic!("no lane for 101: {s}"));
        assert_eq!(thread.chars().nth(col), Some('0'), "{s}");
        // A timeline without any has no such lane.
        assert!(!render(&sample(), 80, false).contains("inferred runs"));
    }

    #[test]
    fn narrow_and_coloured() {
        let tl = sample();
        let s = render(&tl, 40, true);
        assert!(s.contains("\x1b[30;44mA\x1b[0m"), "{s}");
        for line in render(&tl, 40, false).lines().filter(|l| l.contains('|')) {
            assert!(line.chars().count() <= 60, "too wide: {line:?}");
        }
    }

    #[test]
    fn steps_and_labels() {
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(3), 5);
        assert_eq!(nice_step(11_000), 20_000);
        assert_eq!(nice_step(50_000_000), 50_000_000);
        assert_eq!(tick_label(1_500_000_000), "1.5s");
        assert_eq!(tick_label(20_000_000), "20ms");
        assert_eq!(tick_label(250_000), "250µs");
        assert_eq!(thread_letter(0), 'A');
        assert_eq!(thread_letter(26), 'a');
        assert_eq!(thread_letter(100), '*');
    }

    /// Two processes: each one's lanes under a line naming it, in process
    /// order; one process: no such line (the snapshot above).
    #[test]
    fn several_processes_get_a_heading_each() {
        let mut tl = sample();
        let moved = tl.threads[1].tid;
        tl.threads[1].tgid = 900;
        tl.threads[1].comm = "other".into();
        sort_threads(&mut tl);
        let text = render(&tl, 80, false);
        let lines: Vec<&str> = text.lines().collect();
        let first = tl.threads[0].tgid;
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle:?} in\n{text}"))
        };
        let (h1, h2) = (at(&format!("process {first} (")), at("process 900 (other)"));
        let lane = lines
            .iter()
            .position(|l| l.contains(&format!(" {moved} other")))
            .unwrap_or_else(|| panic!("lane of {moved} in\n{text}"));
        assert!(h1 < h2 && h2 < lane, "{text}");
        let one = render(&sample(), 80, false);
        assert!(!one.lines().any(|l| l.starts_with("process ")), "{one}");
    }

    #[test]
    fn empty_timeline() {
        let tl = Timeline::default();
        assert!(render(&tl, 80, false).contains("no thread"));
    }
}

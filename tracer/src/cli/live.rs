//! `--live`: a full-screen view refreshed on every capture progress tick
//! (about every 250 ms): a scrolling lane per CPU showing which of the
//! target's threads ran there, a row per thread with its state now and its
//! on-CPU share, run-queue wait and switches in the last interval, the
//! running/runnable counts, the lost-event count, and runs the kernel's
//! stream lacked (inferred, unplaced) and anomalies, once there are any.
//! Keys: `p` pause, `s` sort, `f` filter (cycle through threads), `q` quit.
//!
//! The terminal is restored on every exit path: normal return, error (the
//! guard's `Drop`), and panic (a panic hook installed while the view is up).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal, Stdout};
use std::time::Duration;

use anyhow::bail;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::crossterm::{execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::{Frame, Terminal, backend::CrosstermBackend};

use schedtrace::analysis::timeline::SegState;
use schedtrace::analysis::{Analyzer, LiveGaps, LiveThread};
use schedtrace::trace::Record;
use schedtrace::trace::consumer::{Consumer, Flow, Progress};
use schedtrace::units::duration;

/// Lane history kept per CPU (one cell per tick).
const HISTORY: usize = 512;
const PALETTE: [Color; 8] = [
    Color::Cyan,
    Color::Yellow,
    Color::Green,
    Color::Magenta,
    Color::Blue,
    Color::Red,
    Color::LightCyan,
    Color::LightGreen,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Cpu,
    Wait,
    Switches,
    Tid,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Cpu => Sort::Wait,
            Sort::Wait => Sort::Switches,
            Sort::Switches => Sort::Tid,
            Sort::Tid => Sort::Cpu,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Sort::Cpu => "cpu",
            Sort::Wait => "wait",
            Sort::Switches => "switches",
            Sort::Tid => "tid",
        }
    }
}

/// One thread's figures over the last interval.
#[derive(Clone, Debug)]
struct RowData {
    tid: u32,
    comm: String,
    state: Option<SegState>,
    cpu_ns: u64,
    wait_ns: u64,
    switches: u64,
    total_cpu_ns: u64,
}

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The view, drawing the analysis it feeds: records go on to the
/// [`Analyzer`], and every progress report redraws from its snapshot.
pub(super) struct LiveView<'a> {
    analyzer: &'a mut Analyzer,
    terminal: Terminal<CrosstermBackend<Stdout>>,
    _guard: Guard,
    title: String,
    ncpus: u32,
    prev: HashMap<u32, LiveThread>,
    lanes: Vec<VecDeque<Option<u32>>>,
    letters: HashMap<u32, (char, Color)>,
    rows: Vec<RowData>,
    interval_ns: u64,
    paused: bool,
    sort: Sort,
    filter: Option<u32>,
    progress: Progress,
    gaps: LiveGaps,
    /// No colours (NO_COLOR is set): threads are told apart by letter.
    plain: bool,
}

impl<'a> LiveView<'a> {
    /// Take over the terminal. Refuses when stdout is not a terminal.
    pub(super) fn start(
        title: String,
        ncpus: u32,
        analyzer: &'a mut Analyzer,
    ) -> anyhow::Result<Self> {
        if !std::io::stdout().is_terminal() {
            bail!("--live needs a terminal on stdout; run it in a terminal or drop --live");
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let guard = Guard;
        execute!(std::io::stdout(), terminal::EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(LiveView {
            analyzer,
            terminal,
            _guard: guard,
            title,
            ncpus,
            prev: HashMap::new(),
            lanes: vec![VecDeque::new(); ncpus as usize],
            letters: HashMap::new(),
            rows: Vec::new(),
            interval_ns: 1,
            paused: false,
            sort: Sort::Cpu,
            filter: None,
            progress: Progress::default(),
            gaps: LiveGaps::default(),
            plain: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        })
    }

    fn letter(&mut self, tid: u32) -> (char, Color) {
        let n = self.letters.len();
        let plain = self.plain;
        *self.letters.entry(tid).or_insert_with(|| {
            let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                .get(n)
                .map_or('#', |&b| b as char);
            let color = if plain {
                Color::Reset
            } else {
                PALETTE[n % PALETTE.len()]
            };
            (c, color)
        })
    }

    /// Take a new snapshot, handle keys, redraw.
    pub(super) fn tick(
        &mut self,
        threads: Vec<LiveThread>,
        progress: &Progress,
    ) -> anyhow::Result<Flow> {
        let flow = self.keys()?;
        if flow == Flow::Stop {
            return Ok(flow);
        }
        if !self.paused {
            self.update(threads, progress);
        }
        self.draw()?;
        Ok(Flow::Continue)
    }

    fn keys(&mut self) -> anyhow::Result<Flow> {
        while event::poll(Duration::ZERO)? {
            if let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(Flow::Stop),
                    KeyCode::Char('c') if k.modifiers.contains(event::KeyModifiers::CONTROL) => {
                        return Ok(Flow::Stop);
                    }
                    KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
                    KeyCode::Char('s') => self.sort = self.sort.next(),
                    KeyCode::Char('f') => self.cycle_filter(),
                    _ => {}
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn cycle_filter(&mut self) {
        let mut tids: Vec<u32> = self.rows.iter().map(|r| r.tid).collect();
        tids.sort_unstable();
        self.filter = match self.filter {
            None => tids.first().copied(),
            Some(cur) => tids.iter().copied().find(|&t| t > cur),
        };
    }

    fn update(&mut self, threads: Vec<LiveThread>, progress: &Progress) {
        let dt = progress
            .elapsed
            .saturating_sub(self.progress.elapsed)
            .as_nanos()
            .max(1) as u64;
        self.interval_ns = dt;
        self.progress = *progress;
        let mut best: Vec<(u64, Option<u32>)> = vec![(0, None); self.ncpus as usize];
        let mut rows = Vec::new();
        for t in &threads {
            let before = self.prev.get(&t.tid);
            let mut cpu_delta = 0;
            for (&cpu, &ns) in &t.cpu_ns {
                let was = before
                    .and_then(|b| b.cpu_ns.get(&cpu))
                    .copied()
                    .unwrap_or(0);
                let d = ns.saturating_sub(was);
                cpu_delta += d;
                if let Some(slot) = best.get_mut(cpu as usize)
                    && d > slot.0
                {
                    *slot = (d, Some(t.tid));
                }
            }
            rows.push(RowData {
                tid: t.tid,
                comm: t.comm.clone(),
                state: t.state,
                cpu_ns: cpu_delta,
                wait_ns: t
                    .runnable_ns
                    .saturating_sub(before.map_or(0, |b| b.runnable_ns)),
                switches: t.switches.saturating_sub(before.map_or(0, |b| b.switches)),
                total_cpu_ns: t.cpu_ns.values().sum(),
            });
        }
        for (cpu, (_, tid)) in best.into_iter().enumerate() {
            if let Some(lane) = self.lanes.get_mut(cpu) {
                lane.push_back(tid);
                if lane.len() > HISTORY {
                    lane.pop_front();
                }
            }
        }
        for r in &rows {
            self.letter(r.tid);
        }
        self.rows = rows;
        self.prev = threads.into_iter().map(|t| (t.tid, t)).collect();
    }

    fn sorted_rows(&self) -> Vec<&RowData> {
        let mut rows: Vec<&RowData> = self
            .rows
            .iter()
            .filter(|r| self.filter.is_none_or(|f| f == r.tid))
            .collect();
        match self.sort {
            Sort::Cpu => rows.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.tid.cmp(&b.tid))),
            Sort::Wait => rows.sort_by(|a, b| b.wait_ns.cmp(&a.wait_ns).then(a.tid.cmp(&b.tid))),
            Sort::Switches => {
                rows.sort_by(|a, b| b.switches.cmp(&a.switches).then(a.tid.cmp(&b.tid)));
            }
            Sort::Tid => rows.sort_by_key(|r| r.tid),
        }
        rows
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let status = self.status_text();
        let lane_lines = self.lane_lines();
        let rows = self.table_rows();
        let title = self.title.as_str();
        let ncpus = self.ncpus as u16;
        self.terminal
            .draw(|f| render(f, title, &status, &lane_lines, rows, ncpus))?;
        Ok(())
    }

    /// The line under the title: progress, running and waiting threads.
    fn status_text(&self) -> String {
        // Averages over the last interval: the states of the newest events
        // lag by up to one drain period, the interval sums do not.
        let interval = self.interval_ns as f64;
        let running = self.rows.iter().map(|r| r.cpu_ns).sum::<u64>() as f64 / interval;
        let waiting = self.rows.iter().map(|r| r.wait_ns).sum::<u64>() as f64 / interval;
        let p = self.progress;
        format!(
            "{:.1} s  {} events ({:.0}/s)  lost {}{}  threads running {running:.2} of {} CPUs, waiting {waiting:.2}  {}  sort: {}{}",
            p.elapsed.as_secs_f64(),
            p.events,
            p.rate,
            p.lost,
            gaps_text(&self.gaps),
            self.ncpus,
            if running > 1.05 {
                "PARALLEL"
            } else if waiting > 0.05 {
                "time-sliced"
            } else {
                ""
            },
            self.sort.name(),
            if self.paused { "  [PAUSED]" } else { "" },
        )
    }

    /// A line per CPU: its label, then a cell per refresh.
    fn lane_lines(&self) -> Vec<Line<'static>> {
        self.lanes
            .iter()
            .enumerate()
            .map(|(cpu, lane)| {
                let mut spans = vec![Span::raw(format!("CPU {cpu:<3}│"))];
                for cell in lane.iter() {
                    spans.push(match cell.and_then(|t| self.letters.get(&t)) {
                        Some(&(c, color)) => {
                            Span::styled(c.to_string(), Style::default().fg(color))
                        }
                        None => Span::raw("·"),
                    });
                }
                Line::from(spans)
            })
            .collect()
    }

    /// The thread table's rows, sorted and filtered as asked.
    fn table_rows(&self) -> Vec<Row<'static>> {
        let interval = self.interval_ns;
        self.sorted_rows()
            .into_iter()
            .map(|r| {
                let (letter, color) = self
                    .letters
                    .get(&r.tid)
                    .copied()
                    .unwrap_or(('?', Color::White));
                let state = match r.state {
                    Some(SegState::Running { cpu }) => format!("running@{cpu}"),
                    Some(s) => s.name().to_string(),
                    None => "exited".to_string(),
                };
                Row::new(vec![
                    Span::styled(letter.to_string(), Style::default().fg(color)),
                    Span::raw(r.tid.to_string()),
                    Span::raw(r.comm.clone()),
                    Span::raw(state),
                    Span::raw(format!("{:.0}%", 100.0 * r.cpu_ns as f64 / interval as f64)),
                    Span::raw(duration(r.wait_ns)),
                    Span::raw(r.switches.to_string()),
                    Span::raw(duration(r.total_cpu_ns)),
                ])
            })
            .collect()
    }
}

/// One frame: title and status, the CPU lanes (the newest cells that fit),
/// the thread table, the keys.
fn render(
    f: &mut Frame<'_>,
    title: &str,
    status: &str,
    lane_lines: &[Line<'static>],
    rows: Vec<Row<'static>>,
    ncpus: u16,
) {
    let area = f.area();
    let [head, lanes, table, help] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(ncpus + 2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::styled(title, Style::default().add_modifier(Modifier::BOLD)),
            Line::raw(status),
        ]),
        head,
    );
    let width = lanes.width.saturating_sub(10) as usize;
    let clipped: Vec<Line<'_>> = lane_lines
        .iter()
        .map(|l| {
            let n = l.spans.len();
            let keep = n.saturating_sub(1).min(width);
            let mut spans = vec![l.spans[0].clone()];
            spans.extend(l.spans[n - keep..].iter().cloned());
            Line::from(spans)
        })
        .collect();
    f.render_widget(
        Paragraph::new(clipped).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" CPU lanes (one cell per refresh, newest right) "),
        ),
        lanes,
    );
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(2),
                Constraint::Length(8),
                Constraint::Length(16),
                Constraint::Length(11),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new(vec![
                "", "TID", "NAME", "STATE", "CPU", "WAIT", "SWITCHES", "TOTAL",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" threads (last interval) "),
        ),
        table,
    );
    f.render_widget(
        Paragraph::new("p pause · s sort · f filter thread · q quit"),
        help,
    );
}

impl Consumer for LiveView<'_> {
    fn record(&mut self, r: &Record) {
        self.analyzer.feed(r);
    }

    fn progress(&mut self, p: &Progress) -> Flow {
        let now = schedtrace::procfs::monotonic_ns();
        let threads = self.analyzer.live_view(now);
        self.gaps = self.analyzer.live_gaps();
        self.tick(threads, p).unwrap_or(Flow::Stop)
    }
}

/// The status line's note of what the stream lacked, after the losses:
/// nothing when it lacked nothing.
fn gaps_text(g: &LiveGaps) -> String {
    let mut s = String::new();
    for (n, what) in [
        (g.inferred_runs, "inferred runs"),
        (g.unplaced_runs, "unplaced runs"),
        (g.anomalies, "anomalies"),
    ] {
        if n > 0 {
            let _ = write!(s, ", {n} {what}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_only_the_gaps_there_are() {
        assert_eq!(gaps_text(&LiveGaps::default()), "");
        let g = LiveGaps {
            inferred_runs: 3,
            unplaced_runs: 0,
            anomalies: 1,
        };
        assert_eq!(gaps_text(&g), ", 3 inferred runs, 1 anomalies");
    }
}

//! A self-contained HTML report (`--html FILE`): one file with inline CSS
//! and JavaScript and the data embedded as JSON, so it opens from file://
//! with no network. It draws an SVG timeline (a lane per CPU, a
//! running/runnable count lane, a lane per thread, under a heading per
//! process that collapses, with a filter by thread or process name; zoom
//! with the wheel or buttons, pan by dragging, details on hover, wakeup
//! arrows when zoomed in, lost-event marks), the per-thread table, and
//! the parallelism profile. Several runs can share one page, with a
//! comparison table on top (`schedtrace demo` and `compare`).
//!
//! The embedded data: the JSON summary (docs/summary-schema.md) of each run
//! plus its timeline, in ns from the window's start, as flat arrays:
//! per thread `[start, end, code, ...]` (code = CPU when running, -1
//! runnable, -2 sleeping, -3 blocked) and, one number per segment, why it
//! slept (an index into `labels`, -1 if not recorded); per CPU `[start,
//! end, thread index, ...]`, and what else held it `[start, end, kind,
//! label, ...]` (kind 0 another task, 1 idle, 2 not recorded); wakeups
//! `[ts, waker index or -1, wakee index, ...]` with, per wakeup, a label
//! for a waker outside the traced threads or an interrupt (-1 otherwise);
//! running and runnable counts `[ts, running, runnable, ...]`; and an
//! off-CPU flame graph (SVG, drawn by inferno) per thread with off-CPU time.
//!
//! A long trace is embedded in full only up to a cut (`detail_ns`): the
//! records above that start before it, at most
//! [`lod::MAX_DETAIL_RECORDS`] (`records` says how many of how many).
//! Beyond the cut the page draws from `lod`, levels of per-bucket
//! aggregates, coarsest first: each with its `bucket_ns`, and per thread,
//! per CPU and for the counts, the buckets run-length merged as `[n, ns
//! running, runnable, sleeping, blocked, ...]` (a CPU: a traced thread,
//! another process, idle, not recorded; the counts: running and runnable
//! thread·ns). `html/lod.rs` derives the bounds.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Value, json};

use super::{Exporter, Report};
use crate::analysis::antagonists::{Hold, Holder, Occupant};
use crate::analysis::chain::Link;
use crate::analysis::concurrency::{Step, concurrency_steps};
use crate::analysis::summary::{Summary, holder_label};
use crate::analysis::timeline::{SegState, Segment, Timeline, TimelineThread};
use crate::analysis::waits::WaitClass;

mod lod;

const CSS: &str = include_str!("html/report.css");
const JS: &str = include_str!("html/report.js");

/// One traced run on the page.
pub struct Run<'a> {
    /// Heading of its section (empty: none for a single run).
    pub label: String,
    pub summary: &'a Summary,
    pub timeline: &'a Timeline,
}

/// A whole page.
pub struct Page<'a> {
    pub title: String,
    /// A paragraph under the title.
    pub intro: Option<String>,
    /// A table shown first: a header row, then rows of cells.
    pub comparison: Option<Vec<Vec<String>>>,
    pub runs: Vec<Run<'a>>,
}

fn code(s: SegState) -> i64 {
    match s {
        SegState::Running { cpu } => cpu as i64,
        SegState::Runnable => -1,
        SegState::Sleeping => -2,
        SegState::Blocked => -3,
    }
}

/// A string table: each distinct label once, by index.
#[derive(Default)]
struct Labels {
    list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Labels {
    fn of(&mut self, s: String) -> i64 {
        if let Some(&i) = self.index.get(&s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.index.insert(s.clone(), i);
        self.list.push(s);
        i
    }
}

/// The timeline as the page's script reads it, within the default bounds.
pub(crate) fn timeline_value(s: &Summary, tl: &Timeline) -> Value {
    timeline_value_within(s, tl, lod::BOUNDS)
}

/// The timeline as the page's script reads it: in full up to the cut
/// (`detail_ns`), with the aggregate levels (`lod`) when the cut leaves
/// records out.
pub(crate) fn timeline_value_within(s: &Summary, tl: &Timeline, bounds: lod::Bounds) -> Value {
    let mut threads = tl.threads.clone();
    threads.sort_by_key(|t| (t.tgid, t.tid));
    let index: HashMap<u32, usize> = threads
        .iter()
        .enumerate()
        .map(|(i, t)| (t.tid, i))
        .collect();
    let window = tl.end_ns.saturating_sub(tl.start_ns);
    let rel = |t: u64| t.saturating_sub(tl.start_ns);
    let cpu_runs = super::exclusive_cpu_lanes(tl);
    let holds = super::other_holds(tl);
    let steps = concurrency_steps(tl);
    let starts: Vec<u64> = (tl.segments.iter().map(|g| g.start))
        .chain(cpu_runs.iter().flatten().map(|g| g.start))
        .chain(holds.iter().flatten().map(|h| h.start))
        .chain(tl.wakeups.iter().map(|w| w.ts))
        .chain(steps.iter().map(|p| p.ts))
        .map(rel)
        .collect();
    let total = starts.len();
    let cut = lod::detail_end(starts, bounds.detail_records);
    let keep = |t: u64| cut.is_none_or(|c| rel(t) < c);
    let mut labels = Labels::default();
    let mut v = detail_value(s, tl, &index, &keep, &mut labels);
    let cpu: Vec<Vec<i64>> = cpu_runs
        .iter()
        .map(|lane| {
            lane.iter()
                .filter(|g| keep(g.start))
                .filter_map(|g| {
                    let i = *index.get(&g.tid)?;
                    Some([rel(g.start) as i64, rel(g.end) as i64, i as i64])
                })
                .flatten()
                .collect()
        })
        .collect();
    let others: Vec<Vec<i64>> = holds
        .iter()
        .map(|lane| {
            lane.iter()
                .filter(|h| keep(h.start))
                .flat_map(|h| {
                    let label = labels.of(holder_label(&h.holder));
                    [
                        rel(h.start) as i64,
                        rel(h.end) as i64,
                        hold_kind(&h.holder),
                        label,
                    ]
                })
                .collect()
        })
        .collect();
    let conc: Vec<i64> = (steps.iter().filter(|p| keep(p.ts)))
        .flat_map(|p| [rel(p.ts) as i64, p.running as i64, p.runnable as i64])
        .collect();
    let kept = v["segs"].as_array().map_or(0, |l| {
        l.iter().map(|x| x.as_array().map_or(0, Vec::len) / 3).sum()
    }) + cpu.iter().map(|l| l.len() / 3).sum::<usize>()
        + others.iter().map(|l| l.len() / 4).sum::<usize>()
        + v["wakeups"].as_array().map_or(0, Vec::len) / 3
        + conc.len() / 3;
    let levels = match cut {
        Some(_) => {
            let lanes = lod_lanes(tl, &threads, &cpu_runs, &holds, &steps, &index);
            lod::levels(&lanes, window, bounds.agg_cells)
        }
        None => Vec::new(),
    };
    let conc_max = steps.iter().map(|p| p.running + p.runnable).max();
    let extra = json!({
        "window_ns": window,
        "ncpus": tl.ncpus,
        "threads": threads.iter().map(|t| json!({"tid": t.tid, "tgid": t.tgid, "comm": t.comm})).collect::<Vec<_>>(),
        "cpu": cpu,
        "others": others,
        "conc": conc,
        "conc_max": conc_max.unwrap_or(0),
        "lost": lost_value(tl, cut.unwrap_or(window), levels.first().map(|l| l.bucket_ns)),
        "detail_ns": cut.unwrap_or(window),
        "records": {"kept": kept, "total": total},
        "lod": levels.iter().map(level_value).collect::<Vec<_>>(),
        "labels": labels.list,
        "flamegraphs": flamegraphs(s),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

fn hold_kind(h: &Holder) -> i64 {
    match h {
        Holder::Task(o) if o.is_idle() => 1,
        Holder::Task(_) => 0,
        Holder::Unrecorded => 2,
    }
}

/// The threads' segments with their wait labels, and the wakeups, that
/// start before the cut (`keep`).
fn detail_value(
    s: &Summary,
    tl: &Timeline,
    index: &HashMap<u32, usize>,
    keep: &dyn Fn(u64) -> bool,
    labels: &mut Labels,
) -> Value {
    let rel = |t: u64| t.saturating_sub(tl.start_ns);
    let mut segs: Vec<Vec<i64>> = vec![Vec::new(); index.len()];
    let mut why: Vec<Vec<i64>> = vec![Vec::new(); index.len()];
    for seg in tl.segments.iter().filter(|g| keep(g.start)) {
        if let Some(&i) = index.get(&seg.tid) {
            segs[i].extend([rel(seg.start) as i64, rel(seg.end) as i64, code(seg.state)]);
            why[i].push(match seg.wait {
                None if seg.inferred => {
                    labels.of("an inferred run (its switch-in was not in the kernel's event stream; placed from its switch-out's counters)".into())
                }
                Some(w) => {
                    let mut d = w.describe();
                    if let Some(f) = super::blocked_function(s, seg.kernel_stack) {
                        d = format!("{d} in {f}");
                    }
                    labels.of(d)
                }
                None => -1,
            });
        }
    }
    let mut wakeups = Vec::new();
    let mut waker_tids = Vec::new();
    let mut wake_from = Vec::new();
    for w in tl.wakeups.iter().filter(|w| keep(w.ts)) {
        let Some(&to) = index.get(&w.wakee_tid) else {
            continue;
        };
        // A wakeup from an interrupt has no waker lane: the task it
        // interrupted did not wake anyone.
        let label = w.context.label();
        let from = match label {
            Some(_) => -1,
            None => index.get(&w.waker_tid).map_or(-1, |&i| i as i64),
        };
        wakeups.extend([rel(w.ts) as i64, from, to as i64]);
        waker_tids.push(w.waker_tid);
        let waker = Occupant {
            tid: w.waker_tid,
            tgid: w.waker_tgid,
            comm: w.waker_comm,
        };
        let link = Link::of(w.context, waker, from >= 0);
        wake_from.push(if matches!(link, Link::Thread(_)) {
            -1
        } else {
            labels.of(s.link_label(&link))
        });
    }
    json!({
        "segs": segs,
        "why": why,
        "wakeups": wakeups,
        "waker_tids": waker_tids,
        "wake_from": wake_from,
    })
}

/// Loss marks: each one before the cut, and after it one a CPU and
/// first-level bucket (its losses added up), so that their number is
/// bounded too.
fn lost_value(tl: &Timeline, cut: u64, bucket_ns: Option<u64>) -> Vec<Value> {
    let window = tl.end_ns.saturating_sub(tl.start_ns);
    let mut out: Vec<(u64, u32, u64)> = Vec::new();
    let mut merged: std::collections::BTreeMap<(u64, u32), (u64, u64)> = Default::default();
    for &(ts, cpu, n) in &tl.lost {
        let t = ts.saturating_sub(tl.start_ns).min(window);
        match bucket_ns {
            Some(b) if t >= cut => {
                let e = merged.entry((t / b, cpu)).or_insert((t, 0));
                e.1 += n;
            }
            _ => out.push((t, cpu, n)),
        }
    }
    out.extend(merged.into_iter().map(|((_, cpu), (t, n))| (t, cpu, n)));
    out.into_iter()
        .map(|(t, cpu, n)| json!([t, cpu, n]))
        .collect()
}

/// The lanes' items for the aggregates, in the page's thread order.
fn lod_lanes(
    tl: &Timeline,
    threads: &[TimelineThread],
    cpu_runs: &[Vec<Segment>],
    holds: &[Vec<Hold>],
    steps: &[Step],
    index: &HashMap<u32, usize>,
) -> lod::Lanes {
    let window = tl.end_ns.saturating_sub(tl.start_ns);
    let rel = |t: u64| t.saturating_sub(tl.start_ns).min(window);
    let mut thread_items = vec![Vec::new(); threads.len()];
    for g in &tl.segments {
        if let Some(&i) = index.get(&g.tid) {
            let slot = match g.state {
                SegState::Running { .. } => 0,
                SegState::Runnable => 1,
                SegState::Sleeping => 2,
                SegState::Blocked => 3,
            };
            thread_items[i].push(lod::Item::slot(rel(g.start), rel(g.end), slot));
        }
    }
    let ncpus = cpu_runs.len().max(holds.len());
    let cpus = (0..ncpus)
        .map(|c| {
            let runs = cpu_runs.get(c).into_iter().flatten();
            let mut items: Vec<lod::Item> = runs
                .map(|g| lod::Item::slot(rel(g.start), rel(g.end), 0))
                .collect();
            for h in holds.get(c).into_iter().flatten() {
                // Slots: a traced thread, another process, idle, not recorded.
                let slot = [1, 2, 3][hold_kind(&h.holder) as usize];
                items.push(lod::Item::slot(rel(h.start), rel(h.end), slot));
            }
            items.sort_by_key(|i| i.start);
            items
        })
        .collect();
    let conc = steps
        .iter()
        .enumerate()
        .map(|(i, p)| lod::Item {
            start: rel(p.ts),
            end: steps.get(i + 1).map_or(window, |n| rel(n.ts)),
            weight: [p.running as u64, p.runnable as u64, 0, 0],
        })
        .collect();
    lod::Lanes {
        threads: thread_items,
        cpus,
        conc,
    }
}

fn level_value(l: &lod::Level) -> Value {
    let flat = |r: &lod::Runs| Value::from(r.flat.clone());
    json!({
        "bucket_ns": l.bucket_ns,
        "threads": l.threads.iter().map(flat).collect::<Vec<_>>(),
        "cpus": l.cpus.iter().map(flat).collect::<Vec<_>>(),
        "conc": flat(&l.conc),
    })
}

/// An off-CPU flame graph (SVG) per thread with off-CPU time, by TID.
fn flamegraphs(s: &Summary) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for t in &s.threads {
        let recorded = !t.stacks.is_empty()
            || t.off_cpu
                .iter()
                .any(|o| o.ns > 0 && o.key.class != WaitClass::Unknown);
        if !recorded {
            continue;
        }
        let lines: Vec<String> = super::folded::thread_lines(s, t)
            .into_iter()
            .filter(|(_, ns)| *ns >= 1000)
            .map(|(l, ns)| format!("{l} {}", ns / 1000))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let mut opt = inferno::flamegraph::Options::default();
        opt.title = format!("Off-CPU time of {}", t.label());
        opt.subtitle = Some("sleeping and blocked time by stack (wider = longer)".into());
        opt.count_name = "µs".into();
        opt.colors =
            inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Io);
        opt.deterministic = true;
        opt.image_width = Some(960);
        opt.no_javascript = true;
        let mut svg = Vec::new();
        if inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut svg)
            .is_ok()
        {
            let svg = inline_svg(&String::from_utf8_lossy(&svg));
            out.insert(t.tid.to_string(), Value::String(svg));
        }
    }
    out
}

/// inferno's SVG made fit to sit inside the page: the `<svg>` element
/// only, without its script, its style (the page styles `.flamegraph`;
/// an SVG style element would apply to the whole page), event handlers,
/// comments and namespace declarations (HTML parses inline SVG without
/// them). Each frame keeps its `<title>`, which the browser shows on hover.
pub(crate) fn inline_svg(svg: &str) -> String {
    let mut s = svg[svg.find("<svg").unwrap_or(0)..].to_string();
    for (open, close) in [
        ("<!--", "-->"),
        ("<script", "</script>"),
        ("<style", "</style>"),
    ] {
        while let Some(a) = s.find(open) {
            let Some(b) = s[a..].find(close) else { break };
            s.replace_range(a..a + b + close.len(), "");
        }
    }
    // Attributes: ` name="value"` for names starting like these.
    for prefix in [" on", " xmlns"] {
        let mut from = 0;
        while let Some(i) = s[from..].find(prefix).map(|i| i + from) {
            let rest = &s[i + 1..];
            let name_len = rest.find('=').filter(|&n| {
                rest[..n]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b':')
            });
            match name_len {
                Some(n) if rest[n + 1..].starts_with('"') => {
                    let end = rest[n + 2..].find('"').map_or(rest.len(), |e| n + 3 + e);
                    s.replace_range(i..i + 1 + end, "");
                    from = i;
                }
                _ => from = i + 1,
            }
        }
    }
    s.replacen("<svg ", "<svg class=\"flamegraph\" ", 1)
}

/// Make JSON safe inside a `<script>` element: `<` only occurs inside JSON
/// strings, where `\u003c` means the same, so no `</script>` or `<!--`.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Write the page.
pub fn write_page(page: &Page<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let data = json!({
        "title": page.title,
        "intro": page.intro,
        "comparison": page.comparison,
        "generator": format!("schedtrace {}", crate::version::short()),
        "runs": page.runs.iter().map(|r| json!({
            "label": r.label,
            "summary": super::json::to_value(r.summary),
            "timeline": timeline_value(r.summary, r.timeline),
        })).collect::<Vec<_>>(),
    });
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\" data-status=\"loading\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main id=\"main\"></main>\n\
         <noscript>This report draws its charts with JavaScript; please enable it.</noscript>\n\
         <script type=\"application/json\" id=\"schedtrace-data\">{}</script>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        html_escape(&page.title),
        script_safe(&data.to_string()),
    )?;
    Ok(())
}

/// A page title for one summary.
pub(crate) fn title_for(s: &Summary) -> String {
    match &s.command {
        Some(c) => format!("schedtrace: {}", c.join(" ")),
        None => format!("schedtrace: {}", s.targets_label()),
    }
}

pub struct Html;

impl Exporter for Html {
    fn needs_timeline(&self) -> bool {
        true
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let Some(tl) = report.timeline else {
            anyhow::bail!("the HTML report needs the analysis to keep a timeline");
        };
        let page = Page {
            title: title_for(report.summary),
            intro: None,
            comparison: None,
            runs: vec![Run {
                label: String::new(),
                summary: report.summary,
                timeline: tl,
            }],
        };
        write_page(&page, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn sample() -> (Summary, Timeline) {
        interleaved_analysis()
    }

    fn page_text(s: &Summary, tl: &Timeline) -> String {
        let mut buf = Vec::new();
        Html.write(
            &Report {
                summary: s,
                timeline: Some(tl),
            },
            &mut buf,
        )
        .unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// The embedded data, parsed back.
    fn data(page: &str) -> Value {
        let start = page.find("id=\"schedtrace-data\">").unwrap() + 21;
        let end = page[start..].find("</script>").unwrap() + start;
        serde_json::from_str(&page[start..end]).unwrap()
    }

    #[test]
    fn html_data_snapshot() {
        let (s, tl) = sample();
        insta::assert_json_snapshot!(timeline_value(&s, &tl));
        let page = page_text(&s, &tl);
        let d = data(&page);
        assert_eq!(d["runs"][0]["summary"]["lost_events"], 3);
        assert_eq!(d["runs"][0]["timeline"], timeline_value(&s, &tl));
    }

    /// A ping-pong on CPU 0 (101 and 102 waking each other, 80 µs a
    /// cycle) and a thread on CPU 1 running 30 µs and blocking 50 µs, for
    /// `cycles` cycles.
    fn long_analysis(cycles: u64) -> (Summary, Timeline) {
        let us = 1_000;
        let start = 1_000_000;
        let mut ev = vec![switch(start + us, 0, task(0), 0, task(101))];
        for c in 0..cycles {
            let t = start + us + c * 80 * us;
            ev.extend([
                switch(t + 10 * us, 1, task(0), 0, task(103)),
                wakeup(t + 20 * us, 0, task(101), task(102), false),
                switch(t + 40 * us, 0, task(101), 1, task(102)),
                switch(t + 40 * us, 1, task(103), 2, task(0)),
                wakeup(t + 60 * us, 0, task(102), task(101), false),
                switch(t + 80 * us, 0, task(102), 1, task(101)),
            ]);
        }
        let stop = start + 2 * us + cycles * 80 * us;
        let recs = trace(2, start, &[(101, 'R'), (102, 'S'), (103, 'S')], &ev, stop);
        let opts = crate::analysis::Options {
            keep_timeline: true,
            ..Default::default()
        };
        let (s, tl) = crate::analysis::analyze(&recs, opts);
        (s, tl.expect("timeline"))
    }

    fn numbers(v: &Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    }

    /// Run-length merged buckets `[n, slots...]`, expanded.
    fn expand(v: &Value, width: usize) -> Vec<Vec<u64>> {
        let flat = numbers(v);
        let mut out = Vec::new();
        for run in flat.chunks(width + 1) {
            out.extend((0..run[0]).map(|_| run[1..].to_vec()));
        }
        out
    }

    /// The records the page embeds in full.
    fn detailed_records(v: &Value) -> usize {
        let lens = |k: &str, per: usize| -> usize {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_array().unwrap().len() / per)
                .sum()
        };
        lens("segs", 3)
            + lens("cpu", 3)
            + lens("others", 4)
            + v["wakeups"].as_array().unwrap().len() / 3
            + v["conc"].as_array().unwrap().len() / 3
    }

    /// Past the bound, the page embeds at most the bound's records, and the
    /// aggregates account for every ns: a thread lane's four states in a
    /// bucket add up to the time its segments cover there, its running
    /// time over all buckets is the summary's on-CPU time by the same
    /// timeline, and the CPU lanes and the running count add up to the
    /// same total.
    #[test]
    fn aggregates_conserve_time_and_detail_stays_within_the_bound() {
        let (s, tl) = long_analysis(5_000);
        let bounds = lod::Bounds {
            detail_records: 2_000,
            agg_cells: 150_000,
        };
        let v = timeline_value_within(&s, &tl, bounds);
        let kept = detailed_records(&v);
        assert!(kept <= 2_000, "{kept} records embedded");
        assert!(kept >= 1_990, "the cut keeps up to the bound: {kept}");
        assert_eq!(v["records"]["kept"], kept);
        let window = v["window_ns"].as_u64().unwrap();
        let cut = v["detail_ns"].as_u64().unwrap();
        assert!(cut < window / 10, "cut at {cut} of {window}");
        let levels = v["lod"].as_array().unwrap();
        assert!(levels.len() >= 2, "{} levels", levels.len());
        let on_cpu: u64 = s.threads.iter().map(|t| t.timeline_on_cpu_ns).sum();
        assert!(on_cpu > window, "both CPUs ran: {on_cpu}");
        for level in levels {
            let b = level["bucket_ns"].as_u64().unwrap();
            for (i, th) in v["threads"].as_array().unwrap().iter().enumerate() {
                let tid = th["tid"].as_u64().unwrap() as u32;
                let buckets = expand(&level["threads"][i], 4);
                assert_eq!(buckets.len() as u64, window.div_ceil(b));
                for (k, cell) in buckets.iter().enumerate() {
                    let (lo, hi) = (k as u64 * b, (k as u64 + 1) * b);
                    let covered: u64 = tl
                        .thread_segments(tid)
                        .map(|g| {
                            let (a, e) = (g.start - tl.start_ns, g.end - tl.start_ns);
                            e.min(hi).saturating_sub(a.max(lo))
                        })
                        .sum();
                    assert_eq!(cell.iter().sum::<u64>(), covered, "{tid} bucket {k}");
                }
                let running: u64 = buckets.iter().map(|c| c[0]).sum();
                let summary = s.threads.iter().find(|t| t.tid == tid).unwrap();
                assert_eq!(running, summary.timeline_on_cpu_ns, "{tid} at {b} ns");
            }
            let cpus: u64 = (level["cpus"].as_array().unwrap().iter())
                .flat_map(|l| expand(l, 4))
                .map(|c| c[0])
                .sum();
            assert_eq!(cpus, on_cpu, "CPU lanes at {b} ns");
            let conc: u64 = expand(&level["conc"], 2).iter().map(|c| c[0]).sum();
            assert_eq!(conc, on_cpu, "running count at {b} ns");
        }
    }

    /// A 60 s timeline of 4 million segments with the real bounds: the page
    /// embeds at most [`lod::MAX_DETAIL_RECORDS`] records and
    /// [`lod::MAX_AGG_CELLS`] cells, and its data stays under 40 MB.
    #[test]
    fn a_long_timeline_stays_within_the_default_bounds() {
        let (s, _) = sample();
        let step = 30_000; // ns: 60 s in 2,000,000 segments a thread
        let n = 2_000_000u64;
        let mut tl = empty_timeline(2, n * step, 100, &[101, 102]);
        for k in 0..n {
            // 101 and 102 take turns on CPU 0; the other one sleeps.
            let (runner, sleeper) = if k % 2 == 0 { (101, 102) } else { (102, 101) };
            let (a, b) = (k * step, (k + 1) * step);
            tl.segments
                .push(Segment::new(runner, a, b, SegState::Running { cpu: 0 }));
            tl.segments
                .push(Segment::new(sleeper, a, b, SegState::Sleeping));
        }
        let v = timeline_value(&s, &tl);
        assert!(detailed_records(&v) <= lod::MAX_DETAIL_RECORDS);
        assert!(v["records"]["total"].as_u64().unwrap() > 5_000_000);
        let cells: usize = (v["lod"].as_array().unwrap().iter())
            .map(|l| {
                let lanes = l["threads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .chain(l["cpus"].as_array().unwrap());
                lanes
                    .map(|r| r.as_array().unwrap().len() / 5)
                    .sum::<usize>()
                    + l["conc"].as_array().unwrap().len() / 3
            })
            .sum();
        assert!(cells <= lod::MAX_AGG_CELLS, "{cells} cells");
        let bytes = v.to_string().len();
        assert!(bytes < 40_000_000, "{bytes} bytes");
    }

    #[test]
    fn an_inferred_run_says_so_on_hover() {
        let (s, mut tl) = sample();
        let seg = tl
            .segments
            .iter_mut()
            .find(|g| matches!(g.state, SegState::Running { .. }))
            .unwrap();
        seg.inferred = true;
        let (tid, start) = (seg.tid, seg.start);
        let v = timeline_value(&s, &tl);
        let lane = v["threads"]
            .as_array()
            .unwrap()
            .iter()
            .position(|t| t["tid"] == tid)
            .unwrap();
        let segs = v["segs"][lane].as_array().unwrap();
        let i = (0..segs.len() / 3)
            .find(|&i| segs[i * 3] == start - tl.start_ns)
            .unwrap();
        let label = v["why"][lane][i].as_i64().unwrap();
        let text = v["labels"][label as usize].as_str().unwrap();
        assert!(text.starts_with("an inferred run"), "{text}");
    }

    #[test]
    fn flame_graphs_sit_inline_without_script_or_style() {
        let lines = ["a;b;c 10", "a;b 5", "x\"y;z 3"];
        let mut opt = inferno::flamegraph::Options::default();
        opt.no_javascript = true;
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut opt, lines, &mut svg).unwrap();
        let out = inline_svg(&String::from_utf8(svg).unwrap());
        assert!(out.starts_with("<svg class=\"flamegraph\" "));
        for gone in ["<script", "<style", "onload", "xmlns", "<!--", "<?xml"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        // The frames and their hover titles stay.
        assert!(out.contains("<title>c (10 samples"), "{out}");
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<svg").count(), out.matches("</svg>").count());
    }

    #[test]
    fn self_contained() {
        let (s, tl) = sample();
        let page = page_text(&s, &tl);
        for needle in [
            "http://", "https://", "src=", "<link", "@import", "url(http",
        ] {
            // The only URL is the SVG namespace the script passes to createElementNS.
            let hits = page.matches(needle).count();
            let allowed = if needle == "http://" { 1 } else { 0 };
            assert_eq!(hits, allowed, "{needle} found in the page");
        }
        assert!(page.contains("http://www.w3.org/2000/svg"));
    }

    #[test]
    fn names_cannot_close_the_script() {
        let (mut s, mut tl) = sample();
        tl.threads[0].comm = "</script><b>".into();
        s.threads[0].comm = "</script><!--".into();
        let page = page_text(&s, &tl);
        assert_eq!(page.matches("</script>").count(), 2, "only our own two");
        let d = data(&page);
        assert_eq!(
            d["runs"][0]["timeline"]["threads"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["comm"] == "</script><b>")
                .count(),
            1
        );
    }
}

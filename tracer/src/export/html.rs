//! A self-contained HTML report (`--html FILE`): one file with inline CSS
//! and JavaScript and the data embedded as JSON, so it opens from file://
//! with no network. It draws an SVG timeline (a lane per CPU, a
//! running/runnable count lane, a lane per thread; zoom with the wheel or
//! buttons, pan by dragging, details on hover, wakeup arrows when zoomed
//! in, lost-event marks), the per-thread table, and the parallelism
//! profile. Several runs can share one page, with a comparison table on
//! top (`schedtrace demo` and `compare`).
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

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Value, json};

use super::{Exporter, Report};
use crate::analysis::antagonists::{Holder, Occupant};
use crate::analysis::chain::Link;
use crate::analysis::concurrency::concurrency_steps;
use crate::analysis::summary::{Summary, holder_label};
use crate::analysis::timeline::{SegState, Timeline};
use crate::analysis::waits::WaitClass;

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

/// The timeline as the page's script reads it.
pub(crate) fn timeline_value(s: &Summary, tl: &Timeline) -> Value {
    let mut labels = Labels::default();
    let mut threads = tl.threads.clone();
    threads.sort_by_key(|t| (t.tgid, t.tid));
    let index: HashMap<u32, usize> = threads
        .iter()
        .enumerate()
        .map(|(i, t)| (t.tid, i))
        .collect();
    let rel = |t: u64| t.saturating_sub(tl.start_ns);
    let mut segs: Vec<Vec<i64>> = vec![Vec::new(); threads.len()];
    let mut why: Vec<Vec<i64>> = vec![Vec::new(); threads.len()];
    for seg in &tl.segments {
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
    let cpu: Vec<Vec<i64>> = super::exclusive_cpu_lanes(tl)
        .iter()
        .map(|lane| {
            lane.iter()
                .filter_map(|s| {
                    let i = *index.get(&s.tid)?;
                    Some([rel(s.start) as i64, rel(s.end) as i64, i as i64])
                })
                .flatten()
                .collect()
        })
        .collect();
    let others: Vec<Vec<i64>> = super::other_holds(tl)
        .iter()
        .map(|holds| {
            holds
                .iter()
                .flat_map(|h| {
                    let kind = match h.holder {
                        Holder::Task(o) if o.is_idle() => 1,
                        Holder::Task(_) => 0,
                        Holder::Unrecorded => 2,
                    };
                    let label = labels.of(holder_label(&h.holder));
                    [rel(h.start) as i64, rel(h.end) as i64, kind, label]
                })
                .collect()
        })
        .collect();
    let mut wakeups = Vec::new();
    let mut waker_tids = Vec::new();
    let mut wake_from = Vec::new();
    for w in &tl.wakeups {
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
    let conc: Vec<i64> = concurrency_steps(tl)
        .into_iter()
        .flat_map(|s| [rel(s.ts) as i64, s.running as i64, s.runnable as i64])
        .collect();
    let lost: Vec<Value> = tl
        .lost
        .iter()
        .map(|&(ts, cpu, n)| {
            json!([
                rel(ts.clamp(tl.start_ns, tl.end_ns.max(tl.start_ns))),
                cpu,
                n
            ])
        })
        .collect();
    json!({
        "window_ns": tl.end_ns.saturating_sub(tl.start_ns),
        "ncpus": tl.ncpus,
        "threads": threads.iter().map(|t| json!({"tid": t.tid, "tgid": t.tgid, "comm": t.comm})).collect::<Vec<_>>(),
        "segs": segs,
        "why": why,
        "cpu": cpu,
        "others": others,
        "wakeups": wakeups,
        "waker_tids": waker_tids,
        "wake_from": wake_from,
        "conc": conc,
        "lost": lost,
        "labels": labels.list,
        "flamegraphs": flamegraphs(s),
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

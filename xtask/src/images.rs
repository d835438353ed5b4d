//! `cargo xtask readme-images`: the README's pictures, made from real runs
//! of schedtrace on this machine: the demo's HTML comparison (one core vs
//! all cores) screenshotted by headless Chromium, and the demo's terminal
//! output saved as text; and the "why" pictures of docs/why.md from real
//! Node.js pinned beside a busy process: its off-CPU flame graph (drawn by
//! inferno from `--folded`), the wakeup chain of a pool thread's wait
//! (`report --chain`), and the terminal timeline whose CPU lane shows the
//! other process holding the CPU.

use std::process::Command;

use anyhow::Context as _;

use crate::{chromium, root, run, setup};

pub(crate) fn main(why_only: bool) -> anyhow::Result<()> {
    setup::setup(false)?;
    let bin = crate::build_release()?;
    let work = root().join("artifacts/readme");
    std::fs::create_dir_all(&work)?;
    let img = root().join("docs/img");
    std::fs::create_dir_all(&img)?;
    if !why_only {
        demo(&bin, &work, &img)?;
    }
    why(&bin, &work, &img)
}

/// docs/img/demo.png and demo-terminal.txt: `schedtrace demo`'s HTML
/// comparison and its terminal output.
fn demo(
    bin: &std::path::Path,
    work: &std::path::Path,
    img: &std::path::Path,
) -> anyhow::Result<()> {
    setup::ensure_packages(&[("chromium", "chromium")])?;
    let html = work.join("demo.html");
    let out = Command::new(bin)
        .args([
            "demo",
            "--seconds",
            "2",
            "--force",
            "--color",
            "never",
            "--html",
        ])
        .arg(&html)
        .current_dir(root())
        .output()
        .context("running schedtrace demo")?;
    anyhow::ensure!(
        out.status.success(),
        "schedtrace demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(img.join("demo-terminal.txt"), &out.stdout)?;
    let profile = work.join("chromium-profile");
    run(chromium::headless(&profile).args([
        "--window-size=1400,2300",
        "--virtual-time-budget=5000",
        &format!("--screenshot={}", img.join("demo.png").display()),
        &format!("file://{}", html.display()),
    ]))?;
    eprintln!("xtask: wrote docs/img/demo.png and docs/img/demo-terminal.txt");
    Ok(())
}

/// A Node.js script that keeps the libuv pool (`crypto.pbkdf2`, `fs`) and
/// the main loop's timers busy for `argv[2]` seconds.
const NODE_JS: &str = r#"
const crypto = require('crypto');
const fs = require('fs');
const end = Date.now() + Number(process.argv[2] || 1.5) * 1000;
function tick() {
  if (Date.now() > end) return;
  crypto.pbkdf2('secret', 'salt', 20000, 32, 'sha256', () => {});
  fs.readFile(__filename, () => {});
  setTimeout(tick, 5);
}
tick();
"#;

/// docs/img/why-flamegraph.svg, why-chain.txt and why-terminal.txt: real
/// Node.js 20 on CPU 0, with a busy shell loop pinned there too.
fn why(bin: &std::path::Path, work: &std::path::Path, img: &std::path::Path) -> anyhow::Result<()> {
    setup::ensure_packages(&[("node", "nodejs")])?;
    let script = work.join("why.js");
    std::fs::write(&script, NODE_JS)?;
    let (folded, trace) = (work.join("why.folded"), work.join("why.jsonl"));
    let mut hog = Command::new("taskset")
        .args(["-c", "0", "sh", "-c", "while :; do :; done"])
        .spawn()
        .context("starting the busy loop")?;
    let out = Command::new(bin)
        .args([
            "--stacks",
            "--timeline",
            "--color",
            "never",
            "--force",
            "--cpus",
            "0",
        ])
        .arg("--folded")
        .arg(&folded)
        .arg("--json")
        .arg(&trace)
        .args([
            "--",
            "env",
            "UV_THREADPOOL_SIZE=4",
            "node",
            "--perf-basic-prof",
        ])
        .arg(&script)
        .arg("1.5")
        // V8's isolate-*-v8.log files (written with perf maps) stay in `work`.
        .current_dir(work)
        .output();
    let _ = hog.kill();
    let _ = hog.wait();
    let out = out.context("running schedtrace on node")?;
    anyhow::ensure!(
        out.status.success(),
        "schedtrace on node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(img.join("why-terminal.txt"), &out.stdout)?;
    let text = std::fs::read_to_string(&folded)?;
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = "Off-CPU time of Node.js 20 on one core beside a busy loop".into();
    opt.count_name = "µs".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, text.lines(), &mut svg)?;
    std::fs::write(img.join("why-flamegraph.svg"), svg)?;
    let chain = Command::new(bin)
        .arg("report")
        .arg(&trace)
        .args(["--chain", &pool_thread(bin, &trace)?.to_string()])
        .output()?;
    anyhow::ensure!(chain.status.success(), "report --chain failed");
    std::fs::write(img.join("why-chain.txt"), &chain.stdout)?;
    eprintln!("xtask: wrote docs/img/why-flamegraph.svg, why-chain.txt and why-terminal.txt");
    Ok(())
}

/// The TID of the libuv pool thread that was woken most in `trace`.
fn pool_thread(bin: &std::path::Path, trace: &std::path::Path) -> anyhow::Result<u64> {
    let out = Command::new(bin)
        .arg("report")
        .arg(trace)
        .args(["--format", "json"])
        .output()?;
    anyhow::ensure!(out.status.success(), "report failed");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let threads = summary["threads"].as_array().context("no threads")?;
    threads
        .iter()
        .filter(|t| t["role"]["label"] == "libuv threadpool")
        .max_by_key(|t| t["wait"]["count"].as_u64())
        .and_then(|t| t["tid"].as_u64())
        .context("no thread labelled libuv threadpool")
}

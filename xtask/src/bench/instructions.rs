//! Instructions per event of `schedtrace report`, counted by callgrind: a
//! figure of the consumer's analysis that repeats run after run whatever
//! else the machine is doing (times on these shared VMs do not), so that a
//! change to the analysis can be priced on a busy machine.
//!
//! `report` reads on one thread and analyses on another (the main thread,
//! which also writes the summary); callgrind runs them one at a time and
//! counts each thread's instructions apart (`--separate-threads=yes`).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Instructions `report` ran on `trace`, in all and on the analysis (main)
/// thread, per event of its `events`.
pub(super) fn report_instructions(
    schedtrace: &Path,
    trace: &Path,
    events: u64,
    out_dir: &Path,
) -> anyhow::Result<Value> {
    let prefix = out_dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!("--callgrind-out-file={}", prefix.display()))
        .arg(schedtrace)
        .arg("report")
        .arg(trace)
        .args(["--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running valgrind")?;
    if !status.success() {
        bail!("callgrind on schedtrace report: {status}");
    }
    let threads = thread_totals(out_dir, "callgrind.out");
    // One file per thread, and an empty one under the prefix itself.
    let _ = std::fs::remove_file(&prefix);
    for t in threads.iter().flatten() {
        let _ = std::fs::remove_file(out_dir.join(format!("callgrind.out-{:02}", t.0)));
    }
    let threads = threads?;
    let all: u64 = threads.iter().map(|t| t.1).sum();
    let main = threads
        .iter()
        .find(|t| t.0 == 1)
        .map(|t| t.1)
        .context("callgrind wrote no file for the main thread")?;
    let per = |n: u64| n as f64 / events.max(1) as f64;
    Ok(json!({
        "events": events,
        "instructions": all,
        "instructions_analysis_thread": main,
        "per_event": per(all),
        "per_event_analysis_thread": per(main),
        "threads": threads.len(),
    }))
}

/// (thread number, instructions) of each `PREFIX-NN` file callgrind wrote
/// in `dir` (its `totals:` line), by thread number.
fn thread_totals(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(u32, u64)>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(prefix)?.strip_prefix('-'))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(&name))?;
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("no totals line in {}", name.to_string_lossy()))?;
        v.push((n, total));
    }
    if v.is_empty() {
        bail!("callgrind wrote no {prefix}-NN file in {}", dir.display());
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_per_thread_and_other_files_ignored() {
        let dir = std::env::temp_dir().join(format!("xtask-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, body: &str| std::fs::write(dir.join(name), body).unwrap();
        file("cg-02", "thread: 2\nsummary: 50\nfn=x\n3 50\ntotals: 50\n");
        file("cg-01", "thread: 1\nsummary: 700\ntotals: 700\n");
        file("cg", "totals: 1\n");
        file("cg-x1", "totals: 2\n");
        file("other-01", "totals: 3\n");
        let got = thread_totals(&dir, "cg");
        file("cg-03", "thread: 3\nsummary: 9\n");
        let missing = thread_totals(&dir, "cg");
        let none = thread_totals(&dir, "nothing");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.unwrap(), vec![(1, 700), (2, 50)]);
        assert!(missing.unwrap_err().to_string().contains("cg-03"));
        assert!(none.is_err());
    }
}

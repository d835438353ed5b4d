//! Per-program eBPF cost from the kernel's own accounting:
//! `kernel.bpf_stats_enabled=1`, then `bpftool prog show` reports
//! `run_time_ns` and `run_cnt` for every loaded program.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Context as _;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns the statistics on; turns them back to what they were when dropped.
pub(super) struct StatsOn {
    before: String,
}

impl StatsOn {
    pub(super) fn enable() -> anyhow::Result<StatsOn> {
        let before = std::fs::read_to_string(SYSCTL)
            .with_context(|| format!("reading {SYSCTL}"))?
            .trim()
            .to_string();
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing {SYSCTL}"))?;
        Ok(StatsOn { before })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let v = if self.before.is_empty() {
            "0"
        } else {
            &self.before
        };
        if let Err(e) = std::fs::write(SYSCTL, v) {
            eprintln!("bench: warning: could not restore {SYSCTL} to {v}: {e}");
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Prog {
    pub name: String,
    pub kind: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Loaded programs by id.
pub(super) type Snapshot = BTreeMap<u64, Prog>;

pub(super) fn snapshot() -> anyhow::Result<Snapshot> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("running bpftool prog show")?;
    parse(&out.stdout)
}

fn parse(json: &[u8]) -> anyhow::Result<Snapshot> {
    let v: serde_json::Value = serde_json::from_slice(json).context("bpftool's JSON")?;
    let mut s = Snapshot::new();
    for p in v.as_array().map(|a| a.as_slice()).unwrap_or_default() {
        let Some(id) = p.get("id").and_then(|x| x.as_u64()) else {
            continue;
        };
        let text = |k: &str| {
            p.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let num = |k: &str| p.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        s.insert(
            id,
            Prog {
                name: text("name"),
                kind: text("type"),
                run_time_ns: num("run_time_ns"),
                run_cnt: num("run_cnt"),
            },
        );
    }
    Ok(s)
}

/// Programs loaded after `base`, with their counters' growth from `from` to `to`.
pub(super) fn delta(base: &Snapshot, from: &Snapshot, to: &Snapshot) -> Vec<Prog> {
    to.iter()
        .filter(|(id, _)| !base.contains_key(id))
        .filter_map(|(id, p)| {
            let f = from.get(id)?;
            Some(Prog {
                name: p.name.clone(),
                kind: p.kind.clone(),
                run_time_ns: p.run_time_ns.saturating_sub(f.run_time_ns),
                run_cnt: p.run_cnt.saturating_sub(f.run_cnt),
            })
        })
        .filter(|p| p.run_cnt > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_diffs() {
        let a = parse(br#"[{"id":1,"type":"kprobe","name":"old","run_time_ns":5,"run_cnt":1}]"#)
            .unwrap();
        let b = parse(
            br#"[{"id":1,"type":"kprobe","name":"old","run_time_ns":9,"run_cnt":2},
                 {"id":7,"type":"tracing","name":"sched_switch","run_time_ns":100,"run_cnt":4}]"#,
        )
        .unwrap();
        let c = parse(
            br#"[{"id":7,"type":"tracing","name":"sched_switch","run_time_ns":400,"run_cnt":10}]"#,
        )
        .unwrap();
        let d = delta(&a, &b, &c);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "sched_switch");
        assert_eq!((d[0].run_time_ns, d[0].run_cnt), (300, 6));
    }
}

//! `--live` driven in a real terminal: tmux runs it, send-keys types,
//! capture-pane reads the screen. The last screens are saved under
//! `artifacts/live/` for people to look at.

use std::process::Command;
use std::time::Duration;

use schedtrace_tests::*;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(cols: u32, rows: u32) -> Tmux {
        let session = format!("schedtrace-live-{}", std::process::id());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .env_remove("TMUX")
            .status()
            .expect("tmux")
            .success();
        assert!(ok, "tmux new-session");
        Tmux { session }
    }

    fn send(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane and its scrollback: a summary longer than the pane.
    fn history(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, timeout: Duration) -> String {
        wait_for(timeout, || {
            let s = self.screen();
            s.contains(what).then_some(s)
        })
        .unwrap_or_else(|_| panic!("{what:?} never appeared; screen:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn save(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts/live");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn live_view_shows_lanes_and_threads_pauses_and_quits_cleanly() {
    require_root();
    let t = Tmux::start(140, 40);
    let cmd = format!(
        "{bin} --live -- {bin} __workload --seconds 60; echo exit-code=$?",
        bin = bin().display()
    );
    t.send(&[&cmd, "Enter"]);
    t.wait_for("CPU lanes", Duration::from_secs(15));
    let screen = t.wait_for("V8 Worker1", Duration::from_secs(10));
    save("running.txt", &screen);
    let ncpus = schedtrace::procfs::possible_cpus();
    for cpu in 0..ncpus {
        assert!(
            screen.contains(&format!("CPU {cpu}")),
            "lane for CPU {cpu}:\n{screen}"
        );
    }
    for name in [
        "node-main",
        "libuv-worker0",
        "libuv-worker1",
        "libuv-worker2",
        "libuv-worker3",
        "V8 Worker0",
        "V8 Worker1",
    ] {
        assert_eq!(
            screen.lines().filter(|l| l.contains(name)).count(),
            1,
            "one row for {name}:\n{screen}"
        );
    }
    t.send(&["p"]);
    let paused = t.wait_for("[PAUSED]", Duration::from_secs(5));
    save("paused.txt", &paused);
    t.send(&["q"]);
    // The normal summary follows, then the shell is back and usable.
    t.wait_for("exit-code=", Duration::from_secs(15));
    let after = t.history();
    assert!(
        after.contains("Threads on a CPU at once"),
        "summary:\n{after}"
    );
    t.send(&["echo usable-$((40+2))", "Enter"]);
    let after = t.wait_for("usable-42", Duration::from_secs(5));
    save("after-quit.txt", &after);
    assert!(
        !after.contains("CPU lanes"),
        "alternate screen left:\n{after}"
    );
}

#[test]
fn live_view_refuses_without_a_terminal() {
    require_root();
    let (status, _, err) = run_schedtrace(&["--live", "--", "true"]).unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("--live needs a terminal on stdout"), "{err}");
}

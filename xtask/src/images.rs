//! `cargo xtask readme-images`: the README's pictures, made from real runs
//! of schedtrace on this machine: the demo's HTML comparison (one core vs
//! all cores) screenshotted by headless Chromium, and the demo's terminal
//! output saved as text.

use std::process::Command;

use anyhow::Context as _;

use crate::{chromium, root, run, setup};

pub(crate) fn main() -> anyhow::Result<()> {
    setup::setup(false)?;
    setup::ensure_packages(&[("chromium", "chromium")])?;
    let bin = crate::build_release()?;
    let work = root().join("artifacts/readme");
    std::fs::create_dir_all(&work)?;
    let html = work.join("demo.html");
    let out = Command::new(&bin)
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
    let img = root().join("docs/img");
    std::fs::create_dir_all(&img)?;
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

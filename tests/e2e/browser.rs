//! Browser tests: headless Chromium driven by the scripts in `tests/browser/` (see
//! `e2e::browser`). Screenshots land in `target/e2e-screenshots/<test>/`.

use std::time::Duration;

use anyhow::ensure;

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] =
    &[("browser::chromium_opens_a_page_the_edge_serves", chromium_opens_a_page_the_edge_serves)];

fn chromium_opens_a_page_the_edge_serves(ctx: &Ctx) -> anyhow::Result<()> {
    let output = e2e::browser::run(
        "smoke.mjs",
        "smoke",
        &[("EDGE_URL", ctx.stack.edge_url())],
        Duration::from_secs(60),
    )?;
    ensure!(output.contains("screenshot"), "the script took no screenshot:\n{output}");
    Ok(())
}

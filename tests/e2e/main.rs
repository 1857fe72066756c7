//! The end-to-end suite. One stack (origin + `wrangler dev`) is started before the tests and
//! shared by them; tests that must stop or break a service start a stack of their own. Every
//! stack stops all its processes when dropped, which also happens when a test panics.

// This crate is a test suite: a broken expectation panics, which is how a test reports.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod analytics;
mod browser;
mod contract;
mod entitlements;
mod foundation;
mod hardening_auth;
mod hardening_data;
mod hardening_edge;
mod integrations;
mod jobs;
mod lifecycle;
mod limits;
mod multi_origin;
mod observability;
mod orgs;
mod passkeys;
mod personalization;
mod protection;
mod rights;
mod sessions;

use std::sync::Arc;

use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::{Backend, Stack};
use libtest_mimic::{Arguments, Failed, Trial};

/// What a test receives: the shared stack, its API, and an admin made by the origin's CLI.
pub struct Ctx {
    pub stack: Stack,
    pub api: Api,
    pub admin_id: String,
    pub admin_token: String,
    /// The port the origins reach the integration providers at (`e2e::oauth`): each
    /// integration test starts its own fake provider there, one test at a time.
    pub provider_port: u16,
    pub provider_lock: std::sync::Mutex<()>,
}

type TestFn = fn(&Ctx) -> anyhow::Result<()>;

fn trial(ctx: &Arc<Ctx>, name: &'static str, test: TestFn) -> Trial {
    let ctx = Arc::clone(ctx);
    Trial::test(name, move || test(&ctx).map_err(|e| Failed::from(format!("{e:#}"))))
}

fn start() -> anyhow::Result<Ctx> {
    // The shared stack keeps the production quotas per user; only the per-address limits of
    // signup, login and recovery are raised, since every test signs up and logs in from 127.0.0.1.
    // `E2E_BACKEND=postgres`: two origins on one PostgreSQL database behind a proxy.
    let backend = Backend::from_env()?;
    let provider_port = e2e::free_port()?;
    let provider_vars = e2e::oauth::origin_vars(provider_port);
    let origin_vars: Vec<(&str, &str)> =
        provider_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stack = Stack::start_configured(
        &[
            ("IP_SIGNUP_PER_HOUR", "1000000"),
            ("IP_LOGIN_PER_MINUTE", "1000000"),
            ("IP_RECOVERY_PER_HOUR", "1000000"),
            ("REFRESH_REUSE_GRACE_SECS", "2"),
            // Edge isolates ship their metric aggregates every second (10 s by default), so
            // the observability tests see the edge's counts at the origin quickly.
            ("EDGE_METRICS_FLUSH_SECS", "1"),
        ],
        &origin_vars,
        backend,
    )?;
    eprintln!(
        "shared stack: {backend:?} ({})",
        stack.database_url.split('@').next_back().unwrap_or_default()
    );
    let api = Api::new(stack.edge_url());
    let email = unique_email("admin");
    let admin_id = stack.create_admin(&email, GOOD_PASSWORD)?;
    let admin_token = stack.login_with_email_code(&api, &email, GOOD_PASSWORD)?;
    Ok(Ctx { stack, api, admin_id, admin_token, provider_port, provider_lock: std::sync::Mutex::new(()) })
}

fn main() {
    let args = Arguments::from_args();
    let ctx = match start() {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            eprintln!("could not start the stack: {e:#}");
            std::process::exit(1);
        }
    };
    let tests: Vec<Trial> = foundation::TESTS
        .iter()
        .chain(accounts::TESTS)
        .chain(limits::TESTS)
        .chain(sessions::TESTS)
        .chain(protection::TESTS)
        .chain(analytics::TESTS)
        .chain(jobs::TESTS)
        .chain(hardening_auth::TESTS)
        .chain(hardening_edge::TESTS)
        .chain(hardening_data::TESTS)
        .chain(browser::TESTS)
        .chain(contract::TESTS)
        .chain(passkeys::TESTS)
        .chain(lifecycle::TESTS)
        .chain(rights::TESTS)
        .chain(observability::TESTS)
        .chain(orgs::TESTS)
        .chain(entitlements::TESTS)
        .chain(integrations::TESTS)
        .chain(personalization::TESTS)
        .map(|(name, f)| trial(&ctx, name, *f))
        .collect();
    let mut tests = tests;
    if ctx.stack.origin_urls().len() > 1 {
        tests.extend(multi_origin::TESTS.iter().map(|(name, f)| trial(&ctx, name, *f)));
    } else {
        eprintln!(
            "skipped: the multi_origin tests ({} of them) need E2E_BACKEND=postgres (two origins)",
            multi_origin::TESTS.len()
        );
    }
    let conclusion = libtest_mimic::run(&args, tests);
    // The trials are done and dropped; dropping the last handle stops the shared stack before
    // the process exits (`exit` skips destructors).
    drop(ctx);
    conclusion.exit();
}

//! The automation jobs: provisioning, tier analysis, analytics, cleanup, and the demo
//! population. Each job is a function of the state and `now` that answers a JSON summary; the
//! CLI runs them with progress bars, the signed `/internal/jobs/{name}` endpoint (and through
//! it the edge's cron triggers) in the background. Every run is recorded in `job_runs`.

pub mod analytics;
pub mod catalogue;
pub mod cleanup;
pub mod demo;
pub mod federated_sim;
pub mod files;
pub mod integrations;
pub mod keys;
pub mod provision;
pub mod tiers;

use std::path::PathBuf;

use domain::time::UnixMillis;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::AppState;

/// Where a job's progress goes: a bar (indicatif) when the CLI runs on a terminal, plain lines
/// on stderr at every tenth of the work when it does not (a log, a pipe, CI), nowhere in the
/// service.
pub struct Progress(Shown);

enum Shown {
    Bar(ProgressBar),
    Lines { what: String, len: u64, done: AtomicU64, printed_tenths: AtomicU64 },
    Hidden,
}

impl Progress {
    /// A bar on a terminal, else plain lines.
    pub fn bar(len: u64, what: &str) -> Self {
        if std::io::stderr().is_terminal() {
            Self::terminal(len, what)
        } else {
            Self::lines(len, what)
        }
    }

    fn terminal(len: u64, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Self(Shown::Bar(bar))
    }

    /// Plain lines: `what: 500/5000 (10%)` at each tenth, and one when done.
    pub fn lines(len: u64, what: &str) -> Self {
        eprintln!("{what}: 0/{len}");
        Self(Shown::Lines {
            what: what.to_owned(),
            len,
            done: AtomicU64::new(0),
            printed_tenths: AtomicU64::new(0),
        })
    }

    pub fn hidden() -> Self {
        Self(Shown::Hidden)
    }

    pub fn inc(&self, n: u64) {
        match &self.0 {
            Shown::Bar(b) => b.inc(n),
            Shown::Lines { what, len, done, printed_tenths } => {
                let now = done.fetch_add(n, Ordering::Relaxed).saturating_add(n);
                let tenths = if *len == 0 { 10 } else { (now.min(*len) * 10) / len };
                let before = printed_tenths.fetch_max(tenths, Ordering::Relaxed);
                if tenths > before && tenths < 10 {
                    eprintln!("{what}: {now}/{len} ({}%)", tenths * 10);
                }
            }
            Shown::Hidden => {}
        }
    }

    pub fn finish(&self) {
        match &self.0 {
            Shown::Bar(b) => b.finish_and_clear(),
            Shown::Lines { what, len, done, .. } => {
                eprintln!("{what}: {}/{len} done", done.load(Ordering::Relaxed).min(*len));
            }
            Shown::Hidden => {}
        }
    }
}

/// The jobs, by name.
pub use domain::wire::job::Job;
/// How a job was started, recorded with its run.
pub use domain::wire::job::JobTrigger as Trigger;

/// Settings the jobs share.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Where reports are written.
    pub reports: PathBuf,
    /// Where files to provision are picked up when no file is named.
    pub inbox: PathBuf,
    /// How long events are kept.
    pub retention_days: u64,
    /// Run from the CLI: progress is shown (a bar on a terminal, lines otherwise).
    pub interactive: bool,
}

impl JobOptions {
    pub fn progress(&self, len: u64, what: &str) -> Progress {
        if self.interactive {
            Progress::bar(len, what)
        } else {
            Progress::hidden()
        }
    }
}

/// Runs `job` and records the run. `file` names a file to provision (else the inbox).
pub async fn run(
    state: &AppState,
    job: Job,
    file: Option<PathBuf>,
    options: &JobOptions,
    trigger: Trigger,
    now: UnixMillis,
) -> anyhow::Result<Value> {
    let id = state.store.start_job(job.as_str(), trigger.as_str(), now).await?;
    let started = std::time::Instant::now();
    let outcome = match job {
        Job::ProvisionUsers => provision::run(state, file, options, now).await,
        Job::AnalyzeTiers => tiers::run(state, options, now).await,
        Job::GenerateAnalytics => analytics::run(state, options, now).await,
        Job::Cleanup => cleanup::run(state, options, now).await,
        Job::RewrapKeys => keys::run(state, options, now).await,
        Job::RefreshIntegrations => integrations::refresh(state, options, now).await,
        Job::SyncIntegrations => integrations::sync(state, options, now).await,
        Job::Personalization => crate::personalisation::update_profiles(state, now).await,
        Job::FederatedRound => crate::personalisation::close_round(state, now).await,
        Job::RunAll => {
            let mut all = serde_json::Map::new();
            all.insert(Job::ProvisionUsers.to_string(), provision::run(state, file, options, now).await?);
            all.insert(Job::AnalyzeTiers.to_string(), tiers::run(state, options, now).await?);
            all.insert(Job::GenerateAnalytics.to_string(), analytics::run(state, options, now).await?);
            all.insert(Job::Cleanup.to_string(), cleanup::run(state, options, now).await?);
            Ok(Value::Object(all))
        }
    };
    let finished = state.clock.now();
    crate::metrics::job(job, outcome.is_ok(), started.elapsed().as_secs_f64());
    match &outcome {
        Ok(summary) => state.store.finish_job(id, true, &summary.to_string(), finished).await?,
        Err(e) => {
            state
                .store
                .finish_job(id, false, &serde_json::json!({ "error": e.to_string() }).to_string(), finished)
                .await?
        }
    }
    outcome
}

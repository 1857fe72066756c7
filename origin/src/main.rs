//! The origin's binary: `origin serve` runs the service; further subcommands run the jobs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use origin::config::Config;
use origin::jobs::{Job, JobOptions, Trigger};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "origin", version, about = "The user-management origin service and its jobs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the internal API (the default). Configured by ORIGIN_* environment variables.
    Serve,
    /// Create an administrator (the first one, typically). Prints the new user's id.
    CreateAdmin {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (else ORIGIN_ADMIN_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// The admin account's tier.
        #[arg(long, default_value = "enterprise")]
        tier: String,
    },
    /// Bulk onboarding from a CSV or JSON file (else every file in the inbox); users get
    /// activation tokens, written beside the file.
    ProvisionUsers {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Users whose usage fits another tier better, the tier distribution, and migrations.
    AnalyzeTiers,
    /// Trains the churn model (prints its held-out AUC), segments, cohorts; writes reports.
    GenerateAnalytics,
    /// Applies the retention table (every class of data past its age) and prints, per class,
    /// what it removed.
    Cleanup {
        /// Run as if at this time (RFC 3339, or Unix milliseconds) instead of now: what the
        /// rules would remove then. For checking the table; the schedule runs at the present.
        #[arg(long)]
        at: Option<String>,
    },
    /// Completes a master-key rotation: re-wraps every data key still wrapped by a retired
    /// key (ORIGIN_PREVIOUS_MASTER_KEYS), or by the master key itself (the format before the
    /// HKDF-derived wrapping key), with the current one, and recomputes email indexes.
    RewrapKeys,
    /// Renews the integrations' tokens that expire within 5 minutes; a provider's
    /// `invalid_grant` marks the integration `needs_reconnect` and emails its user.
    RefreshIntegrations,
    /// Reads Spotify's recently played and saved tracks into `track_played` events
    /// (incremental, deduplicated, waiting out a 429's `Retry-After`).
    SyncIntegrations,
    /// The four jobs, in order.
    RunAll {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Copies a SQLite database into PostgreSQL (idempotent) and verifies the copy: counts per
    /// table and a sample of users decrypted with the configured master keys. Prints a JSON
    /// summary; exit code 1 when the copy does not verify. Run it with the origins stopped.
    MigrateSqliteToPostgres {
        /// The SQLite database, e.g. sqlite://.local/data/origin.db.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database (it must exist; the schema is created), e.g.
        /// postgres://postgres@127.0.0.1:5432/origin.
        #[arg(long)]
        to: String,
    },
    /// Generates a realistic demo population (users and months of events).
    DemoData {
        #[arg(long, default_value_t = 2000)]
        users: usize,
        #[arg(long, default_value_t = 120)]
        days: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Learns taste profiles from the listening events since each user's cursor, and moods.
    UpdatePersonalization,
    /// Closes the open federated round (aggregates it with at least K clients).
    CloseFederatedRound,
    /// DP-FedAvg on the demo listeners against central training: both AUCs and ε, as JSON.
    FederatedSim {
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 500)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        rounds: u64,
    },
    /// Recommendations on the demo listeners' held-out plays, without and with bias
    /// mitigation: hit rate, calibration KL and mean popularity percentile, as JSON.
    RecommendationEval {
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 500)]
        users: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: a job's stdout is its JSON summary alone, which scripts (and the e2e
    // suite) parse, and a warning such as sqlx's slow-statement one must not corrupt it.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::CreateAdmin { email, password_stdin, tier } => {
            create_admin(email, password_stdin, tier).await
        }
        Command::ProvisionUsers { file } => job(Job::ProvisionUsers, file).await,
        Command::AnalyzeTiers => job(Job::AnalyzeTiers, None).await,
        Command::GenerateAnalytics => job(Job::GenerateAnalytics, None).await,
        Command::Cleanup { at } => job_at(Job::Cleanup, None, at.as_deref()).await,
        Command::RewrapKeys => job(Job::RewrapKeys, None).await,
        Command::RunAll { file } => job(Job::RunAll, file).await,
        Command::RefreshIntegrations => job(Job::RefreshIntegrations, None).await,
        Command::SyncIntegrations => job(Job::SyncIntegrations, None).await,
        Command::DemoData { users, days, seed } => demo(users, days, seed).await,
        Command::MigrateSqliteToPostgres { from, to } => migrate(&from, &to).await,
        Command::UpdatePersonalization => job(Job::Personalization, None).await,
        Command::CloseFederatedRound => job(Job::FederatedRound, None).await,
        Command::FederatedSim { seed, clients, rounds } => {
            let sim = origin::jobs::federated_sim::Simulation {
                seed,
                clients,
                rounds,
                ..origin::jobs::federated_sim::DEFAULT
            };
            let started = Instant::now();
            println!("{}", serde_json::to_string_pretty(&origin::jobs::federated_sim::run(&sim))?);
            eprintln!("federated-sim: done in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::RecommendationEval { seed, users } => {
            let started = Instant::now();
            let evaluation = origin::jobs::catalogue::evaluate(seed, users);
            println!("{}", serde_json::to_string_pretty(&evaluation)?);
            eprintln!("recommendation-eval: done in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let bind = config.bind;
    let state = origin::build_state(config).await.context("opening the database")?;
    // Only the service sends messages; the CLI's jobs leave what they queue to it.
    origin::outbox::spawn_dispatcher(std::sync::Arc::clone(&state.accounts), state.clock);
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    tracing::info!(address = %listener.local_addr()?, "origin listening");
    origin::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("origin stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so in-flight requests finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn create_admin(email: String, password_stdin: bool, tier: String) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        std::env::var("ORIGIN_ADMIN_PASSWORD")
            .context("give the password on standard input (--password-stdin) or in ORIGIN_ADMIN_PASSWORD")?
    };
    let tier = tier.parse().map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
    let state = origin::build_state(Config::from_env()?).await.context("opening the database")?;
    let request = origin::users::CreateUser {
        email,
        password,
        tier: Some(tier),
        role: Some(domain::identity::Role::Admin),
        profile: None,
        birth_date: None,
        parent_email: None,
    };
    let view = state
        .accounts
        .create(&domain::identity::Actor::System, request, state.clock.now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = match view {
        domain::wire::users::Signup::Created(user) => user.id,
        domain::wire::users::Signup::Pending(pending) => pending.id,
    };
    println!("{id}");
    Ok(())
}

fn job_options(config: &Config) -> JobOptions {
    JobOptions {
        reports: config.reports_dir.clone(),
        inbox: config.inbox_dir.clone(),
        retention_days: config.event_retention_days,
        interactive: true,
    }
}

/// Runs a job from the command line: progress on stderr, the JSON summary on stdout, a
/// one-line summary and the time on stderr; exit code 1 on failure, 2 when some rows failed.
async fn job(name: Job, file: Option<PathBuf>) -> anyhow::Result<()> {
    job_at(name, file, None).await
}

/// [`job`], as if at `at` (RFC 3339 or Unix milliseconds) when given.
async fn job_at(name: Job, file: Option<PathBuf>, at: Option<&str>) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let options = job_options(&config);
    let state = origin::build_state(config).await.context("opening the database")?;
    let now = match at {
        None => state.clock.now(),
        Some(raw) => parse_instant(raw).with_context(|| format!("--at {raw:?}"))?,
    };
    let started = Instant::now();
    let summary = origin::jobs::run(&state, name, file, &options, Trigger::Cli, now).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!("{name}: done in {:.2} s", started.elapsed().as_secs_f64());
    let failed_rows = summary.get("failed").and_then(|v| v.as_u64()).unwrap_or(0)
        + summary.pointer("/provision-users/failed").and_then(|v| v.as_u64()).unwrap_or(0);
    if failed_rows > 0 {
        eprintln!("{name}: {failed_rows} rows failed (listed above with their row numbers)");
        std::process::exit(2);
    }
    Ok(())
}

async fn demo(users: usize, days: u64, seed: u64) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let options = job_options(&config);
    let state = origin::build_state(config).await.context("opening the database")?;
    let started = Instant::now();
    let summary = origin::jobs::demo::run(&state, users, days, seed, &options, state.clock.now()).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!("demo-data: done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    // The configuration gives the keyring that verifies the sample; its database URL is unused.
    let config = Config::from_env()?;
    let keyring = origin::crypto::Keyring::with_retired(&config.master_key, &config.previous_master_keys);
    let started = Instant::now();
    let summary = origin::store::migrate::sqlite_to_postgres(from, to, &keyring).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!("migrate-sqlite-to-postgres: done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// An instant given as Unix milliseconds or RFC 3339.
fn parse_instant(raw: &str) -> anyhow::Result<domain::time::UnixMillis> {
    if let Ok(ms) = raw.trim().parse::<u64>() {
        return Ok(domain::time::UnixMillis(ms));
    }
    let t = time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .context("expected Unix milliseconds or an RFC 3339 time")?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    Ok(domain::time::UnixMillis(u64::try_from(ms).context("before 1970")?))
}

//! The analytics benchmark (a command, not a test): fills a fresh PostgreSQL database with
//! `BENCH_USERS` users (default 100,000) and `BENCH_EVENTS` events (default 10,000,000) spread
//! over their lives (a quarter of them stop halfway, so there is churn to learn), then runs
//! `origin generate-analytics` and `origin analyze-tiers` on it and prints, for each, the wall
//! time and the peak resident memory (the child's `ru_maxrss`, from `getrusage`).
//! Run it with `scripts/bench-analytics`.

// A command-line tool: a failed step ends it with a message, which is what a panic gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Instant;

use e2e::{origin_binary, Postgres, Secrets};
use nix::sys::resource::{getrusage, UsageWho};

const DAY_MS: u64 = 86_400_000;

fn count(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// `bench_analytics --measure PROGRAM ARGS...`: runs the program and prints its peak resident
/// memory in KiB (this process's only child, so `RUSAGE_CHILDREN` is exactly its `ru_maxrss`).
fn measure(argv: &[String]) -> ! {
    let (program, args) = argv.split_first().expect("--measure needs a program");
    let status = Command::new(program).args(args).status().expect("running the measured program");
    println!("{}", getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss());
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--measure") {
        measure(argv.get(2..).unwrap_or_default());
    }
    let users = count("BENCH_USERS", 100_000);
    let events = count("BENCH_EVENTS", 10_000_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;

    let pg = Postgres::start().expect("starting PostgreSQL");
    let url = pg.create_database("analytics").expect("creating the database");
    let secrets = Secrets::generate().unwrap();
    let dir = tempfile::Builder::new().prefix("um-bench-analytics-").tempdir().unwrap();
    // The origin's CLI, run through this program's `--measure` so its peak memory is its own.
    let origin = |args: &[&str]| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .arg("--measure")
            .arg(origin_binary().unwrap())
            .args(args)
            .env("ORIGIN_DATABASE_URL", &url)
            .env("ORIGIN_SHARED_SECRET", &secrets.shared_hex)
            .env("ORIGIN_MASTER_KEY", &secrets.master_key_b64)
            .env("ORIGIN_MASTER_KEY_ID", &secrets.master_key_id)
            .env("ORIGIN_OUTBOX", dir.path().join("outbox.jsonl"))
            .env("ORIGIN_REPORTS_DIR", dir.path().join("reports"))
            .env("ORIGIN_INBOX_DIR", dir.path().join("inbox"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    // The first run applies the migrations to the empty database.
    let status = origin(&["analyze-tiers"]).output().expect("running the origin").status;
    assert!(status.success(), "origin analyze-tiers on the empty database failed");

    let started = Instant::now();
    // Users: tenure 20 to 519 days. Only what analytics reads is meaningful; the sealed
    // columns hold a placeholder (the jobs never open them).
    pg.psql(
        "analytics",
        &format!(
            "INSERT INTO users (id, email_index, email_sealed, data_key_sealed, data_key_master_id, role, tier,
                                email_verified, profile_sealed, version, created_at, updated_at)
             SELECT 'usr_bench' || lpad(g::text, 9, '0'), decode(md5(g::text), 'hex'), '\\x00', '\\x00', 'k1', 'user',
                    (ARRAY['free', 'premium', 'enterprise', 'vip'])[1 + g % 4], true, '\\x00', 1,
                    {now} - (20 + g % 500) * {DAY_MS}::bigint, {now}
             FROM generate_series(1, {users}) AS g"
        ),
    )
    .expect("inserting the users");
    // Events: event g belongs to user 1 + g % users, at a pseudo-random time of its active
    // span (the whole life, or its first half for every fourth user: the churners).
    pg.psql(
        "analytics",
        &format!(
            "INSERT INTO events (id, user_id, kind, class, at, data, received_at)
             SELECT 'evb' || g, 'usr_bench' || lpad(u::text, 9, '0'),
                    CASE WHEN g % 50 = 0 THEN 'rate_limited' WHEN g % 20 = 0 THEN 'login_success' ELSE 'api_request' END,
                    (ARRAY['profile_read', 'profile_write', 'insights', 'sessions', 'security'])[1 + (g / 7) % 5],
                    at, '{{}}', at
             FROM (SELECT g, u, {now} - life * {DAY_MS}::bigint
                             + (g::bigint * 2654435761) % (CASE WHEN u % 4 = 0 THEN life / 2 ELSE life END * {DAY_MS}::bigint) AS at
                   FROM (SELECT g, 1 + g % {users} AS u, 20 + (1 + g % {users}) % 500 AS life
                         FROM generate_series(0, {events} - 1) AS g) AS s) AS t"
        ),
    )
    .expect("inserting the events");
    pg.psql("analytics", "ANALYZE").unwrap();
    let size = pg.psql("analytics", "SELECT pg_size_pretty(pg_database_size('analytics'))").unwrap();
    println!(
        "PostgreSQL: {users} users, {events} events loaded in {:.1} s (database {size})",
        started.elapsed().as_secs_f64()
    );

    println!("{:<20} {:>10} {:>14} {:>12}", "job", "seconds", "events/s", "peak RSS");
    for job in ["generate-analytics", "analyze-tiers"] {
        let started = Instant::now();
        let output = origin(&[job]).output().expect("running the job");
        let seconds = started.elapsed().as_secs_f64();
        assert!(output.status.success(), "{job} failed: {}", String::from_utf8_lossy(&output.stderr));
        // The job's JSON summary, then the peak memory `--measure` printed last.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let peak_kib: i64 = stdout.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
        println!("{job:<20} {seconds:>10.1} {:>14.0} {:>8} MiB", events as f64 / seconds, peak_kib / 1024);
    }
}

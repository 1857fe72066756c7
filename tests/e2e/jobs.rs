//! The automation jobs: the CLI on the stack's database, and the cron triggers.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use domain::wire::job::{Job, JobRun, JobRuns, JobTrigger};
use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::http::{client, SignedCall};
use e2e::{Postgres, Stack};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("jobs::a_cron_trigger_starts_its_job_at_the_origin", a_cron_trigger_starts_its_job_at_the_origin),
    (
        "jobs::provisioning_reports_bad_rows_and_is_idempotent",
        provisioning_reports_bad_rows_and_is_idempotent,
    ),
    ("jobs::demo_data_trains_a_churn_model_that_predicts", demo_data_trains_a_churn_model_that_predicts),
    (
        "jobs::the_master_key_rotates_without_losing_an_account",
        the_master_key_rotates_without_losing_an_account,
    ),
    (
        "jobs::a_sqlite_database_migrates_to_postgres_and_serves_from_there",
        a_sqlite_database_migrates_to_postgres_and_serves_from_there,
    ),
];

fn job_runs(stack: &Stack) -> Result<Vec<JobRun>> {
    let secret = stack.secrets.shared_secret()?;
    let answer = SignedCall::new("GET", "/internal/jobs/runs", b"").send(&stack.origin_url(), &secret)?;
    let body: JobRuns = serde_json::from_value(answer.json()?)?;
    Ok(body.runs)
}

fn a_cron_trigger_starts_its_job_at_the_origin(ctx: &Ctx) -> Result<()> {
    let fired = client().get(format!("{}/__scheduled?cron=0+2+*+*+*", ctx.stack.edge_url())).send()?;
    ensure!(fired.status().is_success(), "the scheduled handler ran: {}", fired.status());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = job_runs(&ctx.stack)?;
        if let Some(run) =
            runs.iter().find(|r| r.job == Job::GenerateAnalytics && r.trigger == JobTrigger::Schedule)
        {
            if run.ok == Some(true) {
                let users = run.summary.as_ref().and_then(|s| s["users"].as_u64());
                ensure!(users.is_some(), "a summary was recorded: {run:?}");
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no finished scheduled generate-analytics run: {runs:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn provisioning_reports_bad_rows_and_is_idempotent(ctx: &Ctx) -> Result<()> {
    let stack = &ctx.stack;
    let good = [unique_email("prov"), unique_email("prov")];
    let file = stack.dir.path().join(format!("users-{}.csv", &good[0][5..17]));
    std::fs::write(
        &file,
        format!(
            "email,tier,display_name,language,timezone\n{},premium,Ana,pt-BR,America/Sao_Paulo\nnot-an-email,free,,,\n{},free,Bo,sv,Europe/Stockholm\nx@example.com,gold,,,\ny@example.com,free,,english!,\n",
            good[0], good[1]
        ),
    )?;
    let path = file.display().to_string();
    let (code, out, err) = stack.origin_cli(&["provision-users", "--file", &path])?;
    assert_eq!(code, 2, "bad rows make a non-zero exit: {err}");
    let summary: Value = serde_json::from_str(&out)?;
    assert_eq!(summary["rows"], 5);
    assert_eq!(summary["created"], 2);
    assert_eq!(summary["failed"], 3);
    let rows: Vec<u64> =
        summary["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![2, 4, 5], "each bad row by number");
    assert_eq!(
        summary["errors"][1]["error"],
        "tier: \"gold\" is not a tier (free, premium, enterprise or vip)"
    );

    // Again: nothing new.
    let (_, out, _) = stack.origin_cli(&["provision-users", "--file", &path])?;
    let again: Value = serde_json::from_str(&out)?;
    assert_eq!(again["created"], 0);
    assert_eq!(again["existing"], 2);

    // A provisioned user activates with the token and logs in.
    let tokens = std::fs::read_to_string(format!("{path}.activations.csv"))?;
    let line = tokens.lines().find(|l| l.starts_with(&good[0])).expect("a token for the first user");
    let token = line.split(',').nth(1).unwrap();
    let activated =
        ctx.api.post("/api/v1/auth/activate", None, &json!({"token": token, "password": GOOD_PASSWORD}))?;
    expect(&activated, 200)?;
    let reuse =
        ctx.api.post("/api/v1/auth/activate", None, &json!({"token": token, "password": GOOD_PASSWORD}))?;
    expect(&reuse, 401)?;
    let access = ctx.api.login(&good[0], GOOD_PASSWORD)?;
    let me = ctx.api.get(&users(&activated.str("user_id")), Some(&access))?;
    expect(&me, 200)?;
    assert_eq!(me.str("tier"), "premium");
    assert_eq!(me.str("language"), "pt-BR");
    assert_eq!(me.body["email_verified"], true);
    Ok(())
}

fn demo_data_trains_a_churn_model_that_predicts(_: &Ctx) -> Result<()> {
    let stack = Stack::start()?;
    let (code, out, err) =
        stack.origin_cli(&["demo-data", "--users", "500", "--days", "90", "--seed", "11"])?;
    ensure!(code == 0, "demo-data failed: {err}");
    let demo: Value = serde_json::from_str(&out)?;
    assert_eq!(demo["users"], 500);
    let (code, out, err) = stack.origin_cli(&["generate-analytics"])?;
    ensure!(code == 0, "generate-analytics failed: {err}");
    let first: Value = serde_json::from_str(&out)?;
    let auc = first["auc"].as_f64().unwrap_or(0.0);
    eprintln!("churn model: held-out AUC {auc} on {} users", first["held_out"]);
    ensure!(auc > 0.75, "held-out AUC {auc} is not above 0.75");
    for report in ["analytics.json", "segments.csv", "cohorts.csv", "report.html"] {
        ensure!(stack.dir.path().join("reports").join(report).exists(), "no {report}");
    }
    // The same data gives the same numbers.
    let (_, out, _) = stack.origin_cli(&["generate-analytics"])?;
    let second: Value = serde_json::from_str(&out)?;
    assert_eq!(first, second);

    // A demo user's insights name the factors of their churn probability.
    let segments = std::fs::read_to_string(stack.dir.path().join("reports/segments.csv"))?;
    let id = segments
        .lines()
        .skip(1)
        .find(|l| !l.contains(",new,"))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_owned();
    let api = Api::new(stack.edge_url());
    let admin_email = unique_email("demo-admin");
    stack.create_admin(&admin_email, GOOD_PASSWORD)?;
    let admin = stack.login_with_email_code(&api, &admin_email, GOOD_PASSWORD)?;
    let insights = api.get(&format!("{}/insights", users(&id)), Some(&admin))?;
    expect(&insights, 200)?;
    let churn = &insights.body["churn"];
    assert_eq!(churn["available"], true, "{churn}");
    let p = churn["probability"].as_f64().unwrap();
    ensure!((0.0..=1.0).contains(&p));
    let factors = churn["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 5);
    ensure!(factors.iter().all(|f| f["effect"] == "raises" || f["effect"] == "lowers"));
    let again = api.get(&format!("{}/insights", users(&id)), Some(&admin))?;
    assert_eq!(again.body["churn"], insights.body["churn"]);
    Ok(())
}

fn the_master_key_rotates_without_losing_an_account(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start()?;
    let api = Api::new(stack.edge_url());
    let email = unique_email("rotate");
    let created = api.signup(&email, GOOD_PASSWORD, json!({"display_name": "Before Rotation"}))?;
    expect(&created, 201)?;
    let id = created.str("id");

    // The operator rotates: a new current key, the old one retired.
    stack.stop_origin();
    let old = format!("{}:{}", stack.secrets.master_key_id, stack.secrets.master_key_b64);
    stack.secrets.master_key_b64 = e2e::Secrets::generate()?.master_key_b64;
    stack.secrets.master_key_id = "k2".to_owned();
    // Forgetting the retired key is refused at start, naming what is missing.
    let (code, _, err) = stack.origin_cli(&["cleanup"])?;
    ensure!(code != 0 && err.contains("ORIGIN_PREVIOUS_MASTER_KEYS") && err.contains("\"k1\""), "{err}");
    stack.secrets.previous_master_keys = old;
    stack.start_origin()?;

    // During the rotation everything works: the account is found through its retired index,
    // its data opens and re-seals, and its address stays taken.
    let token = api.login(&email, GOOD_PASSWORD)?;
    let renamed = api.put(&users(&id), &token, &json!({"display_name": "During Rotation"}), None)?;
    expect(&renamed, 200)?;
    assert_eq!(renamed.body["email"], json!(email));
    expect_problem(&api.signup(&email, GOOD_PASSWORD, Value::Null)?, 409, "conflict")?;
    let later = unique_email("rotate-later");
    expect(&api.signup(&later, GOOD_PASSWORD, Value::Null)?, 201)?;

    let (code, out, err) = stack.origin_cli(&["rewrap-keys"])?;
    ensure!(code == 0, "rewrap-keys failed: {err}");
    let summary: Value = serde_json::from_str(&out)?;
    assert_eq!(summary["current_key"], "k2");
    ensure!(summary["rewrapped"].as_u64().unwrap_or(0) >= 1, "{summary}");
    assert_eq!(summary["remaining"], 0, "{summary}");
    let (_, out, _) = stack.origin_cli(&["rewrap-keys"])?;
    let again: Value = serde_json::from_str(&out)?;
    assert_eq!(again["rewrapped"], 0, "a re-run has nothing to do: {again}");

    // The retired key leaves the configuration; nothing was lost.
    stack.stop_origin();
    stack.secrets.previous_master_keys.clear();
    stack.start_origin()?;
    let token = api.login(&email, GOOD_PASSWORD)?;
    let renamed = api.put(&users(&id), &token, &json!({"display_name": "After Rotation"}), None)?;
    expect(&renamed, 200)?;
    assert_eq!(renamed.body["display_name"], "After Rotation");
    api.login(&later, GOOD_PASSWORD)?;
    expect_problem(&api.signup(&email, GOOD_PASSWORD, Value::Null)?, 409, "conflict")?;
    Ok(())
}

fn a_sqlite_database_migrates_to_postgres_and_serves_from_there(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start()?;
    let api = Api::new(stack.edge_url());
    let email = unique_email("migrate");
    expect(&api.signup(&email, GOOD_PASSWORD, json!({"display_name": "Moved Over"}))?, 201)?;
    // A population with events and audit entries, a job run, a login and its security events.
    let (code, _, err) = stack.origin_cli(&["demo-data", "--users", "40", "--days", "5", "--seed", "3"])?;
    ensure!(code == 0, "demo-data failed: {err}");
    let (code, _, err) = stack.origin_cli(&["generate-analytics"])?;
    ensure!(code == 0, "generate-analytics failed: {err}");
    api.login(&email, GOOD_PASSWORD)?;
    // Writes stop first, as an operator stops them before moving the data (the edge's queue
    // keeps what arrives meanwhile for the origin that comes back on the copy).
    stack.stop_origin();

    let server = Postgres::start()?;
    let target = server.create_database("migrated")?;
    let from = stack.database_url.clone();
    let args = ["migrate-sqlite-to-postgres", "--from", from.as_str(), "--to", target.as_str()];
    let (code, out, err) = stack.origin_cli(&args)?;
    ensure!(code == 0, "the migration failed: {err}");
    let first: Value = serde_json::from_str(&out)?;
    eprintln!("migration: {}", first["tables"]);
    ensure!(first["ok"] == true, "{first}");
    let user_counts = &first["tables"]["users"];
    ensure!(
        user_counts["sqlite"] == user_counts["postgres"] && user_counts["sqlite"].as_u64() >= Some(41),
        "{user_counts}"
    );
    for table in ["events", "audit_log", "login_history", "security_events", "job_runs", "edge_nonces"] {
        ensure!(first["tables"][table]["postgres"].as_u64() > Some(0), "nothing in {table} to copy: {first}");
    }
    let sample = &first["sample"];
    ensure!(sample["users"].as_u64() > Some(0) && sample["decrypted"] == sample["users"], "{sample}");

    // Idempotent: a second run copies nothing and verifies the same.
    let (code, out, err) = stack.origin_cli(&args)?;
    ensure!(code == 0, "the second migration failed: {err}");
    let second: Value = serde_json::from_str(&out)?;
    for (table, counts) in second["tables"].as_object().into_iter().flatten() {
        ensure!(counts["copied_now"] == 0, "{table} copied rows again: {counts}");
    }
    let psql_users = server.psql("migrated", "SELECT COUNT(*) FROM users")?;
    ensure!(
        psql_users.parse::<u64>().ok() == user_counts["postgres"].as_u64(),
        "psql counts {psql_users} users"
    );

    // The origin restarted on the copy serves the account: the edge logs it in.
    stack.stop_origin();
    stack.database_url = target;
    stack.start_origin()?;
    let login = api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    expect(&login, 200)?;
    let id = login.str("user_id");
    let read = api.get(&users(&id), Some(&login.str("access_token")))?;
    expect(&read, 200)?;
    ensure!(read.str("display_name") == "Moved Over", "{}", read.body);
    // The origin goes before its database.
    drop(stack);
    drop(server);
    Ok(())
}

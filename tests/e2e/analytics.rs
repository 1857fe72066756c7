//! Events from the edge to the origin, and the insights computed from them.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use domain::wire::event::EventKind;
use e2e::api::{burst, unique_email, Api, GOOD_PASSWORD};
use e2e::Stack;
use serde_json::{json, Value};

use crate::accounts::{expect, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("analytics::requests_become_events_and_insights", requests_become_events_and_insights),
    ("analytics::an_origin_outage_loses_no_event", an_origin_outage_loses_no_event),
];

/// Polls the user's insights (as the admin, whose own requests do not count for the user)
/// until `api_request` events number `expected`.
fn wait_for_requests(api: &Api, admin: &str, id: &str, expected: u64, limit: Duration) -> Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let insights = api.get(&format!("{}/insights", users(id)), Some(admin))?;
        expect(&insights, 200)?;
        let seen = insights.body["activity_30d"][EventKind::ApiRequest.as_str()].as_u64().unwrap_or(0);
        if seen == expected {
            return Ok(insights.body);
        }
        ensure!(seen < expected, "more events than requests: {seen} > {expected}");
        if Instant::now() > deadline {
            bail!("only {seen} of {expected} events arrived within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn requests_become_events_and_insights(ctx: &Ctx) -> Result<()> {
    let email = unique_email("events");
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    let id = created.str("id");
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    let reads = burst(&ctx.api, &users(&id), &token, 12, 4)?;
    ensure!(reads.iter().all(|a| a.status == 200));
    expect(&ctx.api.put(&users(&id), &token, &json!({"language": "es"}), None)?, 200)?;
    let insights = wait_for_requests(&ctx.api, &ctx.admin_token, &id, 13, Duration::from_secs(30))?;
    assert_eq!(insights["activity_30d"][EventKind::LoginSuccess.as_str()], 1);
    // One active day, active now, two feature classes of five, all activity this week.
    assert_eq!(
        insights["engagement"]["components"],
        json!({"frequency": 0.03, "recency": 1.0, "breadth": 0.4, "trend": 1.0})
    );
    assert_eq!(insights["engagement"]["score"], 52);
    assert_eq!(insights["segment"], "new");
    assert_eq!(insights["churn"]["available"], false);
    assert_eq!(insights["tier_recommendation"]["tier"], Value::Null);
    // The same events give the same numbers.
    let again = ctx.api.get(&format!("{}/insights", users(&id)), Some(&ctx.admin_token))?;
    assert_eq!(again.body["engagement"], insights["engagement"]);
    Ok(())
}

fn an_origin_outage_loses_no_event(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start()?;
    let api = Api::new(stack.edge_url());
    let admin_email = unique_email("outage-admin");
    stack.create_admin(&admin_email, GOOD_PASSWORD)?;
    let admin = stack.login_with_email_code(&api, &admin_email, GOOD_PASSWORD)?;
    let email = unique_email("outage");
    let created = api.post(
        "/api/v1/users",
        Some(&admin),
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    let id = created.str("id");
    let token = api.login(&email, GOOD_PASSWORD)?;

    // The origin goes away; profile reads keep working from the gate and KV, and every one of
    // them is an event that cannot be delivered yet.
    stack.stop_origin();
    let reads = burst(&api, &users(&id), &token, 200, 10)?;
    ensure!(reads.iter().all(|a| a.status == 200), "reads served at the edge while the origin is down");
    std::thread::sleep(Duration::from_secs(3));
    stack.start_origin()?;

    let started = Instant::now();
    wait_for_requests(&api, &admin, &id, 200, Duration::from_secs(90))?;
    eprintln!(
        "outage: 200 events stored {:.1} s after the origin came back",
        started.elapsed().as_secs_f64()
    );
    // And only once: nothing more arrives later.
    std::thread::sleep(Duration::from_secs(4));
    wait_for_requests(&api, &admin, &id, 200, Duration::from_secs(1))?;
    Ok(())
}

//! Cron triggers: each schedule in `wrangler.toml` asks the origin to run its job
//! (`domain::wire::job::SCHEDULES`; the origin runs it in the background and records the run).
//! Provisioning every 6 hours, analytics daily at 02:00, cleanup weekly on Sunday.

use domain::identity::Actor;
use domain::wire::job;
use worker::{console_error, console_log, Env, Method};

use crate::http::forward;

/// The edge's own job: applying erasures' wipes the erasure call's answer did not (scheduled
/// erasures, or a wipe that failed), every 15 minutes.
pub const EDGE_WIPES: &str = "*/15 * * * *";

pub async fn run(cron: &str, env: &Env) {
    if cron == EDGE_WIPES {
        crate::rights::apply_pending_wipes(env).await;
        return;
    }
    let Some(job) = job::scheduled(cron) else {
        console_error!("no job is scheduled for cron {cron:?}");
        return;
    };
    match forward(env, &Actor::System, Method::Post, &format!("/internal/jobs/{job}"), None).await {
        Ok(_) => console_log!("cron {cron}: the origin started {job}"),
        // The next trigger tries again; a missed run of these jobs loses no data.
        Err(e) => console_error!("cron {cron}: the origin did not start {job}: {e:?}"),
    }
}

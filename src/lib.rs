//! The edge Worker: a thin adapter between the Workers runtime and the logic in `domain`.
//! Bindings come in through [`bindings`], requests are dispatched by [`routes`], and every
//! error leaves as RFC 9457 problem+json through [`problem`].

mod admin;
mod auth;
mod bindings;
mod entitlements;
mod events;
mod gate;
mod health;
mod http;
mod integrations;
mod limits;
mod metrics;
mod openapi;
mod orgs;
mod origin_client;
mod passkeys;
mod personalisation;
mod problem;
mod profile_cache;
mod rights;
mod routes;
mod schedule;
mod sessions;
mod users;

use worker::{event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    routes::dispatch(req, env, ctx).await
}

#[event(queue)]
async fn queue(batch: MessageBatch<events::QueuedEvent>, env: Env, _ctx: Context) -> Result<()> {
    events::consume(batch, &env).await;
    Ok(())
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    schedule::run(&event.cron(), &env).await;
}

//! `demo-data`: a realistic population for insights and reports: thousands of users who
//! signed up over months, of four kinds (power users, regulars, casual users, and churners
//! whose activity fades then stops), with their API requests and, for busy free users, the
//! days they hit the quota. A seeded generator makes the same population every time; running
//! it twice with one seed adds nothing the second time.
//!
//! Each user also listens: `track_played` events over a synthetic catalogue (`catalogue.rs`)
//! with a consistent taste per user, drawn from a generator of their own (seeded from the same
//! seed), so the population of users and API requests is the same as before listening existed.
//!
//! Demo users get no activation token: a token drawn from the seeded generator could be
//! recomputed by anyone who knows the seed (7 by default) and would let them set a demo
//! account's password. Without an activation row a demo account has no way to a password, and
//! the cleanup job (which removes unactivated accounts past their deadline) leaves it alone.

use domain::email::Email;
use domain::identity::Role;
use domain::profile;
use domain::tier::Tier;
use domain::time::UnixMillis;
use domain::wire::event::EventKind;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::JobOptions;
use crate::store::EventRow;
use crate::AppState;

const DAY_MS: u64 = 86_400_000;
const CLASSES: [&str; 5] = ["profile_read", "profile_read", "profile_write", "insights", "sessions"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Power,
    Regular,
    Casual,
    Churner,
}

pub async fn run(
    state: &AppState,
    users: usize,
    days: u64,
    seed: u64,
    options: &JobOptions,
    now: UnixMillis,
) -> anyhow::Result<Value> {
    let first = Email::parse(&format!("demo-{seed}-0@example.com")).map_err(|e| anyhow::anyhow!("{e}"))?;
    if state.accounts.find_by_email(first.as_str()).await?.is_some() {
        return Ok(
            json!({ "users": 0, "events": 0, "note": format!("the demo population of seed {seed} exists already") }),
        );
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let progress = options.progress(users as u64, "demo users");
    let today = now.0 / DAY_MS;
    let mut batch = Vec::new();
    let mut events = Vec::new();
    let (mut created, mut stored) = (0u64, 0u64);
    let mut kinds = [0u64; 4];
    let tracks = super::catalogue::catalogue(seed);
    let stored_tracks: Vec<domain::personalization::CatalogueTrack> = tracks
        .iter()
        .map(|t| domain::personalization::CatalogueTrack {
            id: format!("demo:{}", t.track.id),
            ..t.track.clone()
        })
        .collect();
    let catalogued = state.store.put_catalogue(&stored_tracks).await?;
    let mut listening_rng = StdRng::seed_from_u64(seed ^ 0x11_57E4);
    let mut plays = 0u64;
    for i in 0..users {
        let email =
            Email::parse(&format!("demo-{seed}-{i}@example.com")).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tier = match rng.gen_range(0..100) {
            0..=69 => Tier::Free,
            70..=91 => Tier::Premium,
            92..=97 => Tier::Enterprise,
            _ => Tier::Vip,
        };
        let kind = match rng.gen_range(0..100) {
            0..=14 => Kind::Power,
            15..=49 => Kind::Regular,
            50..=74 => Kind::Casual,
            _ => Kind::Churner,
        };
        if let Some(k) = kinds.get_mut(kind as usize) {
            *k += 1;
        }
        let signup_day = today - rng.gen_range(1..=days);
        let signup = UnixMillis(signup_day * DAY_MS + rng.gen_range(0..DAY_MS));
        let profile = profile::defaults(tier).map_err(|e| anyhow::anyhow!("{}", e.summary()))?;
        let account = state
            .accounts
            .new_account(&email, tier, Role::User, profile, None, signup)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = account.row.id.clone();
        batch.push((account.row, None));

        let churn_day =
            if kind == Kind::Churner { signup_day + rng.gen_range(7..=days.max(8)) } else { u64::MAX };
        for day in signup_day..=today {
            let mut p = match kind {
                Kind::Power => 0.9,
                Kind::Regular => 0.5,
                Kind::Casual => 0.15,
                Kind::Churner => 0.55,
            };
            if day >= churn_day {
                break;
            }
            if kind == Kind::Churner && churn_day - day <= 14 {
                p *= 0.4; // fading before leaving
            }
            if !rng.gen_bool(p) {
                continue;
            }
            let n = match kind {
                Kind::Power => rng.gen_range(8..=20),
                Kind::Regular => rng.gen_range(2..=8),
                Kind::Casual => rng.gen_range(1..=3),
                Kind::Churner => rng.gen_range(1..=6),
            };
            for _ in 0..n {
                let class = *CLASSES.choose(&mut rng).unwrap_or(&"profile_read");
                events.push(EventRow {
                    id: format!("demo-{seed}-{:016x}", rng.gen::<u64>()),
                    kind: EventKind::ApiRequest,
                    user_id: Some(id.clone()),
                    class: Some(class.into()),
                    at: day * DAY_MS + rng.gen_range(0..DAY_MS),
                    data: json!({ "status": 200, "demo": true }),
                });
            }
            if kind == Kind::Power && tier == Tier::Free && rng.gen_bool(0.4) {
                events.push(EventRow {
                    id: format!("demo-{seed}-{:016x}", rng.gen::<u64>()),
                    kind: EventKind::RateLimited,
                    user_id: Some(id.clone()),
                    class: Some("profile_read".into()),
                    at: day * DAY_MS + rng.gen_range(0..DAY_MS),
                    data: json!({ "tier": "free", "demo": true }),
                });
            }
        }
        // Listening: how much follows the kind of user; a churner stops when they leave.
        let listener = super::catalogue::listener(&mut listening_rng);
        let count = match kind {
            Kind::Power => 200,
            Kind::Regular => 80,
            Kind::Casual => 25,
            Kind::Churner => 40,
        };
        let until = if churn_day == u64::MAX { now.0 } else { (churn_day * DAY_MS).min(now.0) };
        for (at, play) in
            super::catalogue::plays(&mut listening_rng, &listener, &tracks, count, signup, UnixMillis(until))
        {
            events.push(EventRow {
                id: domain::listening::event_id("demo", &id, &play.provider_track_id, at),
                kind: EventKind::TrackPlayed,
                user_id: Some(id.clone()),
                class: Some(domain::listening::CLASS.into()),
                at: at.0,
                data: serde_json::to_value(&play)?,
            });
            plays += 1;
        }
        if batch.len() >= 500 {
            // Users first: events refer to them.
            created += state.store.insert_provisioned(&batch, "system:demo-data", now).await?.len() as u64;
            stored += state.store.insert_events(&events, now).await?;
            progress.inc(batch.len() as u64);
            batch.clear();
            events.clear();
        }
    }
    created += state.store.insert_provisioned(&batch, "system:demo-data", now).await?.len() as u64;
    stored += state.store.insert_events(&events, now).await?;
    progress.inc(batch.len() as u64);
    progress.finish();
    Ok(json!({
        "users": created,
        "events": stored,
        "seed": seed,
        "days": days,
        "track_plays": plays,
        "catalogue_tracks": catalogued,
        "kinds": { "power_users": kinds.first(), "regulars": kinds.get(1), "casual": kinds.get(2), "churners": kinds.get(3) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestOrigin;

    #[tokio::test]
    async fn demo_users_get_no_activation_token_to_guess() {
        let origin = TestOrigin::start().await;
        let now = UnixMillis(1_700_000_000_000);
        let summary = run(&origin.state, 40, 30, 7, &origin.options(), now).await.unwrap();
        assert_eq!(summary["users"], 40, "{summary}");
        let db = origin.sqlite().await;
        let activations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM activations").fetch_one(db.pool()).await.unwrap();
        assert_eq!(activations, 0, "no demo user can be activated");
        let with_password: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(with_password, 0);
        // The activation a seed-derived token would have named does not exist.
        let guessed = crate::jobs::provision::token_hash("demo-7-0-0");
        assert!(origin.state.store.activation_user(&guessed, now).await.unwrap().is_none());
        // And the cleanup job does not take the demo population for abandoned signups.
        let later = now.saturating_add_ms(400 * DAY_MS);
        assert_eq!(origin.state.store.purge_unactivated(later).await.unwrap(), 0);
    }
}

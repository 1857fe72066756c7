//! The personalisation engine (issue 17): listening events reach the origin the way the
//! integration sync and the edge's queue deliver them (a signed `POST /internal/events` as the
//! system), the profile job runs through the origin's CLI, and everything is read through the
//! edge as the user.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use e2e::api::{unique_email, GOOD_PASSWORD};
use e2e::http::SignedCall;
use serde_json::{json, Value};

use crate::accounts::{expect, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "personalization::listening_events_move_the_profile_at_the_learning_rate",
        listening_events_move_the_profile_at_the_learning_rate,
    ),
    (
        "personalization::turning_mood_off_or_withdrawing_consent_removes_the_mood_at_once",
        turning_mood_off_or_withdrawing_consent_removes_the_mood_at_once,
    ),
    (
        "personalization::only_tiers_that_allow_it_train_a_custom_model",
        only_tiers_that_allow_it_train_a_custom_model,
    ),
    ("personalization::bias_mitigation_lowers_both_measures", bias_mitigation_lowers_both_measures),
    (
        "personalization::a_federated_round_with_too_few_clients_does_not_aggregate",
        a_federated_round_with_too_few_clients_does_not_aggregate,
    ),
    ("personalization::the_federated_simulation_converges", the_federated_simulation_converges),
];

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A play as the integration sync writes it (`domain::listening::TrackPlayed`).
struct Play<'a> {
    track: &'a str,
    genre: &'a str,
    artist: &'a str,
    energy: f64,
    valence: f64,
    popularity: u8,
    skipped: bool,
}

impl Play<'_> {
    fn data(&self) -> Value {
        json!({
            "provider": "spotify",
            "provider_track_id": self.track,
            "title": format!("Track {}", self.track),
            "artist": self.artist,
            "genres": [self.genre],
            "duration_ms": 200_000,
            "played_ms": if self.skipped { 8_000 } else { 200_000 },
            "features": { "energy": self.energy, "valence": self.valence, "danceability": 0.5,
                          "tempo": 120.0, "acousticness": 1.0 - self.energy },
            "popularity": self.popularity,
            "source": "recently_played",
        })
    }
}

fn play<'a>(track: &'a str, genre: &'a str, popularity: u8) -> Play<'a> {
    Play { track, genre, artist: "Artist", energy: 0.6, valence: 0.6, popularity, skipped: false }
}

/// Stores plays for `user`, one second apart, as the system (the sync's path into the events).
fn listen(ctx: &Ctx, user: &str, plays: &[Play<'_>]) -> Result<()> {
    let start = now_ms() - plays.len() as u64 * 1_000;
    let events: Vec<Value> = plays
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({ "id": format!("lp-e2e-{user}-{}-{i}", start), "kind": "track_played", "user_id": user,
                    "class": "listening", "at": start + i as u64 * 1_000, "data": p.data() })
        })
        .collect();
    let body = json!({ "events": events }).to_string();
    let answer = SignedCall::new("POST", "/internal/events", body.as_bytes())
        .send(&ctx.stack.origin_url(), &ctx.stack.secrets.shared_secret()?)?;
    ensure!(answer.status().is_success(), "events: {}", answer.status());
    let stored: Value = answer.json()?;
    ensure!(stored["stored"] == plays.len(), "{stored}");
    Ok(())
}

/// Runs the profile job through the origin's CLI (on the stack's database).
fn learn(ctx: &Ctx) -> Result<Value> {
    let (code, out, err) = ctx.stack.origin_cli(&["update-personalization"])?;
    ensure!(code == 0, "update-personalization: {err}");
    Ok(serde_json::from_str(&out)?)
}

/// A user the admin creates with `tier` and `ai_preferences`, logged in: (id, token).
fn user(ctx: &Ctx, tier: &str, ai: Value) -> Result<(String, String)> {
    let email = unique_email("perso");
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({ "email": email, "password": GOOD_PASSWORD, "tier": tier, "profile": { "ai_preferences": ai } }),
    )?;
    expect(&created, 201)?;
    // Enterprise and vip accounts must use a second factor: the emailed code.
    let token = ctx.stack.login_with_email_code(&ctx.api, &email, GOOD_PASSWORD)?;
    Ok((created.str("id"), token))
}

fn context(ctx: &Ctx, id: &str, token: &str) -> Result<Value> {
    let answer = ctx.api.get(&format!("{}/personalization", users(id)), Some(token))?;
    expect(&answer, 200)?;
    Ok(answer.body)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn listening_events_move_the_profile_at_the_learning_rate(ctx: &Ctx) -> Result<()> {
    let (id, token) = user(ctx, "free", json!({ "learning_rate": 0.4 }))?;
    listen(ctx, &id, &[play("j1", "jazz", 50), play("r1", "rock", 50)])?;
    learn(ctx)?;
    let c = context(ctx, &id, &token)?;
    let taste = &c["taste"];
    // η_eff = η·k/(k+n): 0.4 for the first play, 0.4·20/21 for the second.
    let second = 0.4 * 20.0 / 21.0;
    ensure!(taste["plays"] == 2, "{c}");
    ensure!(close(taste["genre_affinities"]["rock"].as_f64().context("rock")?, second), "{taste}");
    ensure!(
        close(taste["genre_affinities"]["jazz"].as_f64().context("jazz")?, 0.4 * (1.0 - second)),
        "{taste}"
    );
    ensure!(close(taste["last_step"].as_f64().unwrap_or(0.0), second), "{taste}");
    // Basic (the free tier's level) learns genres only.
    ensure!(taste["audio_features"].is_null() && taste["artists"] == json!([]), "{taste}");
    ensure!(c["allowed"]["level"] == "basic" && c["allowed"]["learning_rate"] == 0.4, "{c}");

    // A lower setting moves the profile less: the third play at 0.1·20/22.
    expect(
        &ctx.api.put(&users(&id), &token, &json!({ "ai_preferences": { "learning_rate": 0.1 } }), None)?,
        200,
    )?;
    listen(ctx, &id, &[play("p1", "pop", 50)])?;
    learn(ctx)?;
    let taste = context(ctx, &id, &token)?["taste"].clone();
    let third = 0.1 * 20.0 / 22.0;
    ensure!(taste["plays"] == 3, "{taste}");
    ensure!(close(taste["genre_affinities"]["pop"].as_f64().context("pop")?, third), "{taste}");
    ensure!(
        close(taste["genre_affinities"]["rock"].as_f64().context("rock")?, second * (1.0 - third)),
        "{taste}"
    );
    // The job learns each event once: running it again changes nothing.
    let again = learn(ctx)?;
    ensure!(context(ctx, &id, &token)?["taste"]["plays"] == 3, "{again}");
    Ok(())
}

fn sad(track: &str) -> Play<'_> {
    Play {
        track,
        genre: "blues",
        artist: "Sad Artist",
        energy: 0.2,
        valence: 0.15,
        popularity: 40,
        skipped: false,
    }
}

fn turning_mood_off_or_withdrawing_consent_removes_the_mood_at_once(ctx: &Ctx) -> Result<()> {
    let (id, token) =
        user(ctx, "premium", json!({ "mood_detection_enabled": true, "personalization_level": "standard" }))?;
    let plays: Vec<Play<'_>> = ["s1", "s2", "s3", "s4", "s5", "s6"].into_iter().map(sad).collect();
    listen(ctx, &id, &plays)?;
    learn(ctx)?;
    let c = context(ctx, &id, &token)?;
    ensure!(c["mood"]["mood"] == "sad_melancholic", "{c}");
    ensure!(c["mood"]["confidence"] == 1.0 && c["mood"]["tracks"].as_array().map_or(0, Vec::len) == 3, "{c}");
    // Served from KV while nothing changed.
    let cached = ctx.api.get(&format!("{}/personalization", users(&id)), Some(&token))?;
    ensure!(cached.header("x-personalization-source").as_deref() == Some("cache"), "a cache hit");

    // Off: the next read (the very next request) has no mood, and the stored one is gone.
    let off = json!({ "ai_preferences": { "mood_detection_enabled": false } });
    expect(&ctx.api.put(&users(&id), &token, &off, None)?, 200)?;
    let c = context(ctx, &id, &token)?;
    ensure!(c["mood"].is_null() && c["allowed"]["mood_detection"] == false, "{c}");
    let on = json!({ "ai_preferences": { "mood_detection_enabled": true } });
    expect(&ctx.api.put(&users(&id), &token, &on, None)?, 200)?;
    ensure!(context(ctx, &id, &token)?["mood"].is_null(), "deleted, not hidden");

    // Detected again from new plays, then the consent withdrawn: gone at once too.
    listen(ctx, &id, &[sad("s7")])?;
    learn(ctx)?;
    // The job's work reaches the edge once the cached context is older than its 5 s freshness.
    std::thread::sleep(std::time::Duration::from_millis(5_500));
    ensure!(context(ctx, &id, &token)?["mood"]["mood"] == "sad_melancholic", "detected again");
    let consents = format!("{}/consents", users(&id));
    expect(
        &ctx.api.put(&consents, &token, &json!({ "consents": { "personalization": false } }), None)?,
        200,
    )?;
    let c = context(ctx, &id, &token)?;
    ensure!(c["mood"].is_null() && c["taste"].is_null() && c["allowed"]["personalization"] == false, "{c}");
    expect(&ctx.api.put(&consents, &token, &json!({ "consents": { "personalization": true } }), None)?, 200)?;
    ensure!(context(ctx, &id, &token)?["mood"].is_null(), "deleted with the consent");
    // Without the consent nothing is learnt: recommendations are refused meanwhile.
    expect(
        &ctx.api.put(&consents, &token, &json!({ "consents": { "personalization": false } }), None)?,
        200,
    )?;
    let refused = ctx.api.get(&format!("{}/recommendations", users(&id)), Some(&token))?;
    expect(&refused, 403)?;
    ensure!(refused.body["rule"] == "consent:personalization", "{}", refused.body);
    Ok(())
}

fn only_tiers_that_allow_it_train_a_custom_model(ctx: &Ctx) -> Result<()> {
    let (free, free_token) = user(ctx, "free", json!({}))?;
    let answer = ctx.api.post(&format!("{}/custom-model", users(&free)), Some(&free_token), &Value::Null)?;
    expect(&answer, 403)?;
    ensure!(answer.body["rule"] == "tier_feature:custom_model_training", "{}", answer.body);
    ensure!(answer.body["detail"].as_str().is_some_and(|d| d.contains("free tier")), "{}", answer.body);

    // An enterprise user who allows it: trained on their skips (they skip calm tracks).
    let (id, token) = user(
        ctx,
        "enterprise",
        json!({ "custom_model_training": true, "personalization_level": "advanced" }),
    )?;
    let names: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    let plays: Vec<Play<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let energy = (i % 7) as f64 / 7.0 + 0.05;
            Play {
                track: name,
                genre: "electronic",
                artist: "E",
                energy,
                valence: 0.5,
                popularity: 50,
                skipped: energy < 0.45,
            }
        })
        .collect();
    listen(ctx, &id, &plays)?;
    let trained = ctx.api.post(&format!("{}/custom-model", users(&id)), Some(&token), &Value::Null)?;
    expect(&trained, 201)?;
    let auc = trained.body["held_out_auc"].as_f64().context("auc")?;
    eprintln!("custom model: held-out AUC {auc} on {} plays", trained.body["held_out"]);
    ensure!(auc > 0.9 && trained.body["trained_on"] == 48, "{}", trained.body);
    learn(ctx)?;
    ensure!(context(ctx, &id, &token)?["custom_model"]["held_out_auc"] == auc, "in the context");
    Ok(())
}

fn bias_mitigation_lowers_both_measures(ctx: &Ctx) -> Result<()> {
    // A catalogue of this run's own genres: popular tracks of one, long-tail tracks of another.
    let tag = format!("{:x}", now_ms());
    let (pop, folk) = (format!("pop-{tag}"), format!("folk-{tag}"));
    let (seeder, _) = user(ctx, "free", json!({}))?;
    let ids: Vec<(String, bool, u8)> = (0..15)
        .map(|i| (format!("{tag}-p{i}"), true, 70 + i as u8))
        .chain((0..15).map(|i| (format!("{tag}-f{i}"), false, 5 + i as u8)))
        .collect();
    let seeded: Vec<Play<'_>> =
        ids.iter().map(|(t, is_pop, p)| play(t, if *is_pop { &pop } else { &folk }, *p)).collect();
    listen(ctx, &seeder, &seeded)?;
    // The listener: 70% popular genre, 30% long-tail genre.
    let (id, token) = user(
        ctx,
        "premium",
        json!({ "personalization_level": "standard", "bias_mitigation_enabled": false }),
    )?;
    let mut mine: Vec<Play<'_>> = (0..7).map(|i| play(&ids[i % 3].0, &pop, ids[i % 3].2)).collect();
    mine.extend((0..3).map(|_| play(&ids[15].0, &folk, ids[15].2)));
    listen(ctx, &id, &mine)?;
    learn(ctx)?;
    let recommendations = format!("{}/recommendations?limit=10", users(&id));
    let plain = ctx.api.get(&recommendations, Some(&token))?;
    expect(&plain, 200)?;
    expect(
        &ctx.api.put(
            &users(&id),
            &token,
            &json!({ "ai_preferences": { "bias_mitigation_enabled": true } }),
            None,
        )?,
        200,
    )?;
    let fair = ctx.api.get(&recommendations, Some(&token))?;
    expect(&fair, 200)?;
    let measure = |a: &Value, m: &str| a["measures"][m].as_f64().unwrap_or(f64::NAN);
    let (kl0, kl1) = (measure(&plain.body, "calibration_kl"), measure(&fair.body, "calibration_kl"));
    let (pop0, pop1) = (
        measure(&plain.body, "mean_popularity_percentile"),
        measure(&fair.body, "mean_popularity_percentile"),
    );
    eprintln!("bias mitigation: calibration KL {kl0} → {kl1}, mean popularity percentile {pop0} → {pop1}");
    ensure!(kl1 < kl0 && pop1 < pop0, "{}\n{}", plain.body, fair.body);
    ensure!(plain.body["bias_mitigation"] == false && fair.body["bias_mitigation"] == true);
    // Recent plays are never recommended, and every item says why.
    let items = fair.body["items"].as_array().context("items")?;
    ensure!(items.len() == 10, "{}", fair.body);
    for item in items {
        let track = item["track_id"].as_str().unwrap_or_default();
        ensure!(
            !mine.iter().any(|p| track.ends_with(&format!(":{}", p.track))),
            "{track} was played recently"
        );
        ensure!(item["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{item}");
    }
    ensure!(
        items.iter().filter(|i| i["genre"] == folk.as_str()).count() == 3,
        "the 70/30 mix: {}",
        fair.body
    );
    Ok(())
}

fn federated(ctx: &Ctx, token: &str) -> Result<Value> {
    let answer = ctx.api.get("/api/v1/federated/model", Some(token))?;
    expect(&answer, 200)?;
    Ok(answer.body)
}

fn a_federated_round_with_too_few_clients_does_not_aggregate(ctx: &Ctx) -> Result<()> {
    let (id, token) = user(ctx, "premium", json!({ "federated_learning_opt_in": true }))?;
    let model = federated(ctx, &token)?;
    let round = model["round"].as_u64().context("round")?;
    let update = json!({ "delta": [0.5, -0.2, 0.1, 0.0, 0.3, 0.05] });
    let path = format!("/api/v1/federated/rounds/{round}/updates");
    // The opt-in alone is not enough: the consent is an opt-in too.
    let refused = ctx.api.post(&path, Some(&token), &update)?;
    expect(&refused, 403)?;
    ensure!(refused.body["rule"] == "consent:federated_learning", "{}", refused.body);
    let consents = format!("{}/consents", users(&id));
    expect(
        &ctx.api.put(&consents, &token, &json!({ "consents": { "federated_learning": true } }), None)?,
        200,
    )?;
    let bad = ctx.api.post(&path, Some(&token), &json!({ "delta": [1.0, 2.0] }))?;
    expect(&bad, 400)?;
    expect(&ctx.api.post(&path, Some(&token), &update)?, 202)?;
    expect(&ctx.api.post(&path, Some(&token), &update)?, 409)?;

    // One client of the five a round needs: closing it aggregates nothing.
    let (code, out, err) = ctx.stack.origin_cli(&["close-federated-round"])?;
    ensure!(code == 0, "close-federated-round: {err}");
    let closed: Value = serde_json::from_str(&out)?;
    ensure!(
        closed["round"] == round && closed["clients"] == 1 && closed["outcome"] == "too_few_clients",
        "{closed}"
    );
    let after = federated(ctx, &token)?;
    ensure!(after["round"] == round + 1, "the next round opened: {after}");
    ensure!(after["weights"] == model["weights"], "unchanged weights: {after}");
    ensure!(
        after["privacy"]["rounds_aggregated"] == model["privacy"]["rounds_aggregated"],
        "no privacy spent"
    );
    // The closed round takes no more updates; the open one does (the old update is gone).
    let stale = ctx.api.post(&path, Some(&token), &update)?;
    expect(&stale, 409)?;
    ensure!(stale.body["open_round"] == round + 1, "{}", stale.body);
    expect(
        &ctx.api.post(&format!("/api/v1/federated/rounds/{}/updates", round + 1), Some(&token), &update)?,
        202,
    )?;
    Ok(())
}

fn the_federated_simulation_converges(ctx: &Ctx) -> Result<()> {
    let (code, out, err) = ctx.stack.origin_cli(&["federated-sim", "--clients", "300", "--rounds", "150"])?;
    ensure!(code == 0, "federated-sim: {err}");
    let sim: Value = serde_json::from_str(&out)?;
    eprintln!(
        "federated-sim: central AUC {}, federated AUC {}, ε = {} (δ = {})",
        sim["central_auc"], sim["federated_auc"], sim["epsilon"], sim["delta"]
    );
    ensure!(sim["converged"] == true, "{sim}");
    let eps = sim["epsilon"].as_f64().unwrap_or(0.0);
    ensure!(eps > 0.0 && eps.is_finite(), "{sim}");
    ensure!(sim["rounds_aggregated"].as_u64() > Some(100), "{sim}");
    Ok(())
}

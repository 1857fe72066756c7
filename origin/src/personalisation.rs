//! Personalisation at the origin (issue 17): the job that learns taste profiles from new
//! listening events (a cursor per user) and detects moods, the personalisation context the
//! edge caches, recommendations, personal model training, and the federated rounds of the
//! shared skip predictor. The rules are `domain::personalization` and `domain::federated`; this
//! module gathers the facts (settings, consents, tier, events), applies them and stores.
//!
//! What the user did not allow is not computed: without the `personalization` consent nothing
//! is learnt and no mood is kept; without `mood_detection_enabled` the mood is deleted; the
//! personal model needs a tier whose template allows it; a federated update needs the opt-in
//! and the `federated_learning` consent.

use std::collections::BTreeSet;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::federated::{self, Accountant, RoundOutcome, DEFAULT_POLICY, DIM};
use domain::identity::{Actor, UserId};
use domain::listening::{AudioFeatures, TrackPlayed};
use domain::personalization::{
    self as rules, CatalogueTrack, MoodReading, PersonalModel, RankingInput, RecentTrack, TasteProfile,
    TrainingRefusal,
};
use domain::problem::{Problem, ProblemKind};
use domain::profile::{PersonalizationLevel, Profile};
use domain::rights::{self, Purpose};
use domain::tier::Tier;
use domain::time::UnixMillis;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use domain::wire::personalization::{
    self as wire, AllowedFactors, ArtistAffinity, FederatedModel, FederatedUpdate, GenreShare, Measures,
    MoodView, PersonalizationContext, Privacy, RecommendationList, TasteFactors, TasteView, TrainedModel,
    UpdateAccepted,
};

use crate::errors::ApiError;
use crate::extract::ApiJson;
use crate::store::{FederatedRow, MoodWrite, RoundClose, Store, TasteRow, UpdateAdded};
use crate::users::{authorize, not_found, rfc3339, Account};
use crate::AppState;

/// The routes, merged into the signed `/internal` router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/personalization", get(context))
        .route("/users/{id}/recommendations", get(recommendations))
        .route("/users/{id}/custom-model", post(train))
        .route("/federated/model", get(federated_model))
        .route("/federated/rounds/{round}/updates", post(federated_update))
}

/// Listening events learnt per read of the store.
const BATCH: u32 = 500;
/// How many recent plays are never recommended.
const RECENT_EXCLUDED: u32 = 50;
/// The privacy budget's δ.
const DELTA: f64 = 1e-5;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no user {raw}")))
}

fn refused(detail: impl Into<String>, rule: &str) -> ApiError {
    ApiError::Client(Problem::new(ProblemKind::Forbidden, detail).with("rule", rule))
}

fn tier_of(account: &Account) -> Result<Tier, ApiError> {
    account.row.tier.parse().map_err(|_| ApiError::Internal(format!("stored tier {:?}", account.row.tier)))
}

/// The key a played track is known by in the catalogue.
fn track_key(play: &TrackPlayed) -> String {
    format!("{}:{}", play.provider, play.provider_track_id)
}

fn plays(events: &[crate::store::EventRow]) -> Vec<(UnixMillis, TrackPlayed)> {
    events
        .iter()
        .filter_map(|e| Some((UnixMillis(e.at), serde_json::from_value::<TrackPlayed>(e.data.clone()).ok()?)))
        .collect()
}

/// What the user allowed, from their settings, consents and tier.
struct Allowed {
    personalization: bool,
    mood: bool,
    custom_model: bool,
    federated: bool,
    level: PersonalizationLevel,
}

async fn allowed(store: &dyn Store, account: &Account) -> Result<Allowed, ApiError> {
    let consents = rights::effective(&store.consents(&account.row.id).await?, account.row.created_at, false);
    let granted = |p: Purpose| consents.iter().any(|c| c.purpose == p && c.granted);
    let ai = &account.profile.ai_preferences;
    let tier = tier_of(account)?;
    let personalization = granted(Purpose::Personalization);
    Ok(Allowed {
        personalization,
        mood: personalization && ai.mood_detection_enabled,
        custom_model: personalization
            && rules::may_train(tier, ai.custom_model_training).is_ok()
            && ai.personalization_level == PersonalizationLevel::Advanced,
        federated: ai.federated_learning_opt_in && granted(Purpose::FederatedLearning),
        level: ai.personalization_level,
    })
}

impl crate::users::Accounts {
    /// Deletes the user's mood at once when mood detection or the personalisation consent is
    /// off (after a settings change or a consent change).
    pub(crate) async fn forget_mood_unless_allowed(&self, id: &UserId) -> Result<(), ApiError> {
        let account = self.load(id).await?;
        if !allowed(self.store.as_ref(), &account).await?.mood {
            self.store.delete_mood(id.as_str()).await?;
        }
        Ok(())
    }
}

/// The `personalization` job: for each user with listening events, learns the events after
/// their cursor (at their learning rate and level), refreshes or deletes their mood, and adds
/// the tracks seen to the catalogue. A user without the personalisation consent is skipped
/// (their mood deleted).
pub async fn update_profiles(state: &AppState, now: UnixMillis) -> anyhow::Result<Value> {
    let store = state.store.as_ref();
    let (mut users, mut learnt, mut moods, mut without_consent, mut raced) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for id in store.listeners_since(UnixMillis(0)).await? {
        let Ok(uid) = id.parse::<UserId>() else { continue };
        let account = match state.accounts.load(&uid).await {
            Ok(a) => a,
            Err(_) => continue,
        };
        let allowed = allowed(store, &account).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if !allowed.personalization {
            store.delete_mood(&id).await?;
            without_consent += 1;
            continue;
        }
        let stored = store.taste(&id).await?;
        let mut profile: TasteProfile = match &stored {
            Some(row) => serde_json::from_str(&row.profile)?,
            None => TasteProfile::default(),
        };
        let mut cursor = stored.as_ref().map_or((0, String::new()), |r| (r.cursor_at, r.cursor_id.clone()));
        let rate = account.profile.ai_preferences.learning_rate;
        let mut seen = std::collections::BTreeMap::new();
        let mut new_events = 0u64;
        loop {
            let events = store.listening_after(&id, (cursor.0, &cursor.1), BATCH).await?;
            let Some(last) = events.last() else { break };
            cursor = (last.at, last.id.clone());
            for (at, play) in plays(&events) {
                profile.learn(&play, at, rate, allowed.level);
                if let (Some(features), Some(genre)) = (play.features, play.genres.first()) {
                    seen.insert(
                        track_key(&play),
                        CatalogueTrack {
                            id: track_key(&play),
                            title: play.title.clone(),
                            artist: play.artist.clone(),
                            genre: genre.clone(),
                            features,
                            popularity: play.popularity.unwrap_or(50),
                        },
                    );
                }
            }
            new_events += events.len() as u64;
            if events.len() < BATCH as usize {
                break;
            }
        }
        let mood = if !allowed.mood {
            MoodWrite::Delete
        } else if new_events == 0 {
            MoodWrite::Keep
        } else {
            match detect(store, &id).await? {
                Some(reading) => {
                    moods += 1;
                    MoodWrite::Set(serde_json::to_string(&reading)?)
                }
                None => MoodWrite::Keep,
            }
        };
        if new_events == 0 && mood == MoodWrite::Keep {
            continue;
        }
        let row = TasteRow {
            profile: serde_json::to_string(&profile)?,
            cursor_at: cursor.0,
            cursor_id: cursor.1,
            updated_at: now,
        };
        let expected = stored.as_ref().map(|r| (r.cursor_at, r.cursor_id.as_str()));
        if store.save_taste(&id, &row, expected, &mood).await? {
            let tracks: Vec<CatalogueTrack> = seen.into_values().collect();
            store.put_catalogue(&tracks).await?;
            users += 1;
            learnt += new_events;
        } else {
            // Another origin's job learnt these events first.
            raced += 1;
        }
    }
    Ok(
        json!({ "users": users, "events": learnt, "moods": moods, "without_consent": without_consent, "raced": raced }),
    )
}

/// The mood of the user's latest full plays.
async fn detect(store: &dyn Store, id: &str) -> Result<Option<MoodReading>, crate::store::StoreError> {
    let mut recent: Vec<RecentTrack> = plays(&store.recent_listening(id, 30).await?)
        .into_iter()
        .filter(|(_, p)| !p.skipped())
        .filter_map(|(_, p)| Some(RecentTrack { title: p.title, artist: p.artist, features: p.features? }))
        .collect();
    // Newest first from the store; the rule reads oldest first.
    recent.reverse();
    Ok(rules::detect_mood(&recent))
}

async fn load_profile(store: &dyn Store, id: &str) -> Result<(TasteProfile, Option<UnixMillis>), ApiError> {
    match store.taste(id).await? {
        Some(row) => Ok((
            serde_json::from_str(&row.profile).map_err(|e| ApiError::Internal(e.to_string()))?,
            Some(row.updated_at),
        )),
        None => Ok((TasteProfile::default(), None)),
    }
}

/// The personalisation context: what the platform's AI may do for the user, and why; the
/// taste profile with the factors behind each number; the current mood if allowed.
async fn context(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<PersonalizationContext>, ApiError> {
    let id = user_id(&id)?;
    authorize(&actor, &id)?;
    let account = state.accounts.load(&id).await?;
    let store = state.store.as_ref();
    let allowed = allowed(store, &account).await?;
    let ai = &account.profile.ai_preferences;
    let tier = tier_of(&account)?;
    let (profile, updated_at) = load_profile(store, id.as_str()).await?;
    let taste = allowed.personalization.then(|| taste_view(&profile, &account.profile, updated_at));
    let mood = if allowed.mood { store.mood(id.as_str()).await? } else { None };
    let mood = match mood {
        Some((reading, at)) => Some(MoodView {
            reading: serde_json::from_str::<MoodReading>(&reading)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            detected_at: rfc3339(at),
            factors: vec![
                "the recency-weighted mean valence and energy of the last 10 full plays".into(),
                "the share of them in the same quadrant".into(),
            ],
        }),
        None => None,
    };
    let custom_model = match store.custom_model(id.as_str()).await? {
        Some(m) if allowed.custom_model => serde_json::from_str::<PersonalModel>(&m).ok(),
        _ => None,
    };
    let rules_of_tier = tier.rules();
    Ok(Json(PersonalizationContext {
        user_id: id.to_string(),
        tier,
        profile_version: u64::try_from(account.row.version).unwrap_or(0),
        allowed: wire::Allowed {
            personalization: allowed.personalization,
            level: allowed.level,
            learning_rate: ai.learning_rate,
            mood_detection: allowed.mood,
            bias_mitigation: ai.bias_mitigation_enabled,
            custom_model: allowed.custom_model,
            federated_learning: allowed.federated,
        },
        factors: AllowedFactors {
            personalization: format!(
                "consent personalization: {}",
                if allowed.personalization { "granted" } else { "withdrawn" }
            ),
            level: format!(
                "ai_preferences.personalization_level = {} (the {tier} tier allows {})",
                allowed.level.as_str(),
                rules_of_tier.features.personalization_levels.join(", ")
            ),
            mood_detection: format!(
                "ai_preferences.mood_detection_enabled = {} and the personalization consent",
                ai.mood_detection_enabled
            ),
            custom_model: format!(
                "the {tier} tier's template {} custom models; ai_preferences.custom_model_training = {}; level advanced needed",
                if rules_of_tier.features.custom_model_training { "allows" } else { "does not allow" },
                ai.custom_model_training
            ),
            federated_learning: format!(
                "ai_preferences.federated_learning_opt_in = {} and the federated_learning consent",
                ai.federated_learning_opt_in
            ),
        },
        taste,
        mood,
        custom_model,
    }))
}

/// The taste profile for reading: top genres and artists with their shares, the features, and
/// the step the next play would be learnt with, each with the factors behind it.
fn taste_view(p: &TasteProfile, settings: &Profile, updated_at: Option<UnixMillis>) -> TasteView {
    let mut genres: Vec<(String, f64)> = p.genre_mix().into_iter().collect();
    genres.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut artists: Vec<(&String, &f64)> = p.artists.iter().collect();
    artists.sort_by(|a, b| b.1.total_cmp(a.1));
    let rate = settings.ai_preferences.learning_rate;
    let next_step = if p.drifting {
        rules::effective_step(rate, p.evidence / 2.0)
    } else {
        rules::effective_step(rate, p.evidence)
    };
    TasteView {
        genres: genres
            .iter()
            .take(10)
            .map(|(g, s)| GenreShare { genre: g.clone(), share: round3(*s) })
            .collect(),
        genre_affinities: p.genres.clone(),
        artists: artists
            .iter()
            .take(10)
            .map(|(a, s)| ArtistAffinity { artist: (*a).clone(), affinity: round3(**s) })
            .collect(),
        audio_features: p
            .features
            .map(|f| rules::FEATURE_NAMES.iter().zip(f).map(|(n, v)| ((*n).to_owned(), round3(v))).collect()),
        dayparts: p.dayparts.clone(),
        plays: p.plays,
        skips: p.skips,
        evidence: p.evidence,
        last_step: p.last_step,
        drifting: p.drifting,
        drifts: p.drifts,
        next_step,
        factors: TasteFactors {
            step: format!(
                "η_eff = max(η·k/(k+n), min(floor, η)) with η = {rate}, k = {}, n = {}, floor = {}",
                rules::EVIDENCE_HALF,
                p.evidence,
                rules::STEP_FLOOR
            ),
            drift: format!(
                "recent novelty {:.3} against baseline {:.3}: drifting when recent > 1.5·baseline + 0.05",
                p.novelty_recent, p.novelty_baseline
            ),
        },
        updated_at: updated_at.map(rfc3339),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How many recommendations: `limit` from 1 to 100 (20 when absent); anything else is a 400
/// naming the parameter, never a silent clamp.
fn recommendation_limit(query: &std::collections::HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(20),
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            crate::users::invalid_field("limit", "range", format!("an integer from 1 to 100, not {raw:?}"))
        }),
    }
}

async fn recommendations(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<RecommendationList>, ApiError> {
    let n = recommendation_limit(&query)?;
    let id = user_id(&id)?;
    authorize(&actor, &id)?;
    let account = state.accounts.load(&id).await?;
    let store = state.store.as_ref();
    let allowed = allowed(store, &account).await?;
    if !allowed.personalization {
        return Err(refused("the personalization consent is withdrawn", "consent:personalization"));
    }
    let (profile, _) = load_profile(store, id.as_str()).await?;
    let catalogue = store.catalogue().await?;
    let recent: BTreeSet<String> = plays(&store.recent_listening(id.as_str(), RECENT_EXCLUDED).await?)
        .iter()
        .map(|(_, p)| track_key(p))
        .collect();
    let model: Option<PersonalModel> = if allowed.custom_model {
        store.custom_model(id.as_str()).await?.and_then(|m| serde_json::from_str(&m).ok())
    } else {
        None
    };
    let mitigation =
        account.profile.ai_preferences.bias_mitigation_enabled.then_some(rules::DEFAULT_MITIGATION);
    let recs = rules::recommend(&RankingInput {
        profile: &profile,
        level: allowed.level,
        catalogue: &catalogue,
        recent: &recent,
        model: model.as_ref(),
        mitigation,
        n,
    });
    Ok(Json(RecommendationList {
        user_id: id.to_string(),
        items: recs.items,
        measures: Measures {
            calibration_kl: recs.calibration_kl,
            mean_popularity_percentile: recs.mean_popularity_percentile,
            factors: [
                (
                    "calibration_kl",
                    "KL(history's genre mix ‖ the list's), q̃ = 0.99q + 0.01p (Steck 2018); 0 is perfectly calibrated",
                ),
                (
                    "mean_popularity_percentile",
                    "the mean of the listed tracks' popularity percentiles in the catalogue; 0.5 is the median track",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        },
        bias_mitigation: recs.bias_mitigation,
        personal_model: model.is_some(),
        excluded_recent_plays: recent.len(),
        catalogue_size: catalogue.len(),
    }))
}

/// Trains the personal re-ranking model on the user's own plays and skips: 201 with the
/// held-out AUC; 403 naming the rule for a tier whose template does not allow it.
async fn train(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TrainedModel>), ApiError> {
    let id = user_id(&id)?;
    authorize(&actor, &id)?;
    let account = state.accounts.load(&id).await?;
    let tier = tier_of(&account)?;
    let ai = &account.profile.ai_preferences;
    let store = state.store.as_ref();
    match rules::may_train(tier, ai.custom_model_training) {
        Err(e @ TrainingRefusal::TierFeature { .. }) => {
            return Err(refused(e.to_string(), "tier_feature:custom_model_training"))
        }
        Err(e) => return Err(refused(e.to_string(), "ai_preferences.custom_model_training")),
        Ok(()) => {}
    }
    if !allowed(store, &account).await?.personalization {
        return Err(refused("the personalization consent is withdrawn", "consent:personalization"));
    }
    let mut samples: Vec<(AudioFeatures, bool)> = plays(&store.recent_listening(id.as_str(), 5_000).await?)
        .into_iter()
        .filter_map(|(_, p)| Some((p.features.filter(AudioFeatures::is_valid)?, !p.skipped())))
        .collect();
    samples.reverse();
    let model = rules::train_personal(&samples)
        .map_err(|e| ApiError::client(ProblemKind::Conflict, e.to_string()))?;
    let now = state.clock.now();
    let text = serde_json::to_string(&model).map_err(|e| ApiError::Internal(e.to_string()))?;
    store.put_custom_model(id.as_str(), &text, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(TrainedModel {
            user_id: id.to_string(),
            held_out_auc: model.held_out_auc,
            trained_on: model.trained_on,
            held_out: model.held_out,
            weights: rules::FEATURE_NAMES
                .iter()
                .zip(model.weights)
                .map(|(n, w)| ((*n).to_owned(), round3(w)))
                .collect(),
            trained_at: rfc3339(now),
            used_in_recommendations: ai.personalization_level == PersonalizationLevel::Advanced,
        }),
    ))
}

fn initial_state(now: UnixMillis) -> Result<FederatedRow, ApiError> {
    Ok(FederatedRow {
        round: 1,
        weights: serde_json::to_string(&vec![0.0; DIM]).map_err(|e| ApiError::Internal(e.to_string()))?,
        accountant: serde_json::to_string(&Accountant::default())
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        opened_at: now,
    })
}

fn model_view(row: &FederatedRow) -> Result<FederatedModel, ApiError> {
    let weights: Vec<f64> =
        serde_json::from_str(&row.weights).map_err(|e| ApiError::Internal(e.to_string()))?;
    let accountant: Accountant =
        serde_json::from_str(&row.accountant).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (epsilon, order) = accountant.epsilon(DELTA);
    Ok(FederatedModel {
        round: row.round,
        round_opened_at: rfc3339(row.opened_at),
        features: rules::FEATURE_NAMES.iter().map(|n| (*n).to_owned()).collect(),
        weights,
        policy: DEFAULT_POLICY,
        privacy: Privacy {
            epsilon: if accountant.rounds == 0 { 0.0 } else { round3(epsilon) },
            delta: DELTA,
            rounds_aggregated: accountant.rounds,
            rdp_order: order,
            accountant: "Rényi DP of the sampled Gaussian mechanism (Mironov et al. 2019)".into(),
        },
    })
}

/// The shared skip predictor: the current global weights and the open round.
async fn federated_model(State(state): State<AppState>) -> Result<Json<FederatedModel>, ApiError> {
    let row = state.store.federated(&initial_state(state.clock.now())?).await?;
    Ok(Json(model_view(&row)?))
}

/// A client's weight delta for the open round: once per client, only with the opt-in and the
/// consent; kept until the round closes.
async fn federated_update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(round): Path<String>,
    ApiJson(update): ApiJson<FederatedUpdate>,
) -> Result<(StatusCode, Json<UpdateAccepted>), ApiError> {
    let round: u64 =
        round.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no round {round}")))?;
    let Some(id) = actor.user_id().cloned() else {
        return Err(ApiError::client(ProblemKind::Forbidden, "updates come from users' devices"));
    };
    if !federated::valid_update(&update.delta) {
        return Err(ApiError::Client(
            Problem::new(ProblemKind::ValidationFailed, format!("delta must be {DIM} finite numbers"))
                .with("errors", json!([{ "field": "delta", "kind": "invalid", "rule": "shape" }])),
        ));
    }
    let account = state.accounts.load(&id).await.map_err(|_| not_found(id.as_str()))?;
    let store = state.store.as_ref();
    if !account.profile.ai_preferences.federated_learning_opt_in {
        return Err(refused(
            "federated learning is off in ai_preferences.federated_learning_opt_in",
            "ai_preferences.federated_learning_opt_in",
        ));
    }
    if !allowed(store, &account).await?.federated {
        return Err(refused("the federated_learning consent is not granted", "consent:federated_learning"));
    }
    let now = state.clock.now();
    store.federated(&initial_state(now)?).await?;
    let delta = serde_json::to_string(&update.delta).map_err(|e| ApiError::Internal(e.to_string()))?;
    match store.add_federated_update(round, id.as_str(), &delta, now).await? {
        UpdateAdded::Added => Ok((StatusCode::ACCEPTED, Json(UpdateAccepted { round, accepted: true }))),
        UpdateAdded::Duplicate => Err(ApiError::client(
            ProblemKind::Conflict,
            format!("an update for round {round} was sent already"),
        )),
        UpdateAdded::WrongRound(open) => Err(ApiError::Client(
            Problem::new(ProblemKind::Conflict, format!("round {round} is not open; round {open} is"))
                .with("open_round", open),
        )),
    }
}

/// The `federated-round` job: closes the open round. With at least K clients their clipped
/// updates are averaged with Gaussian noise (σ·C) and applied, and the accountant adds the
/// round at sampling rate clients/eligible; with fewer nothing is aggregated. Either way the
/// round's updates are deleted and the next round opens.
pub async fn close_round(state: &AppState, now: UnixMillis) -> anyhow::Result<Value> {
    let store = state.store.as_ref();
    store.federated(&initial_state(now).map_err(|e| anyhow::anyhow!("{e:?}"))?).await?;
    let eligible = store.federated_eligible().await?;
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&crate::crypto::random_16());
    seed[16..].copy_from_slice(&crate::crypto::random_16());
    let mut rng = StdRng::from_seed(seed);
    let noise: Vec<f64> =
        (0..DIM).map(|_| federated::standard_normal(1.0 - rng.gen::<f64>(), rng.gen::<f64>())).collect();
    let close = move |state: &FederatedRow, updates: &[String]| -> RoundClose {
        let deltas: Vec<Vec<f64>> = updates.iter().filter_map(|u| serde_json::from_str(u).ok()).collect();
        match federated::aggregate(&deltas, &DEFAULT_POLICY, &noise) {
            RoundOutcome::TooFewClients { .. } => RoundClose {
                weights: state.weights.clone(),
                accountant: state.accountant.clone(),
                outcome: "too_few_clients".into(),
            },
            RoundOutcome::Aggregated { delta, clients } => {
                let mut weights: Vec<f64> =
                    serde_json::from_str(&state.weights).unwrap_or_else(|_| vec![0.0; DIM]);
                for (w, d) in weights.iter_mut().zip(delta) {
                    *w += d;
                }
                let mut accountant: Accountant = serde_json::from_str(&state.accountant).unwrap_or_default();
                let q = clients as f64 / (eligible.max(clients as u64)) as f64;
                accountant.compose(q, DEFAULT_POLICY.noise_multiplier, 1);
                RoundClose {
                    weights: serde_json::to_string(&weights).unwrap_or_else(|_| state.weights.clone()),
                    accountant: serde_json::to_string(&accountant)
                        .unwrap_or_else(|_| state.accountant.clone()),
                    outcome: "aggregated".into(),
                }
            }
        }
    };
    let (round, clients, next) = store.close_federated_round(eligible, now, &close).await?;
    let outcome = if clients >= DEFAULT_POLICY.min_clients { "aggregated" } else { "too_few_clients" };
    Ok(json!({
        "round": round,
        "clients": clients,
        "needed": DEFAULT_POLICY.min_clients,
        "eligible": eligible,
        "outcome": outcome,
        "model": model_view(&next).map_err(|e| anyhow::anyhow!("{e:?}"))?,
    }))
}

/// The user's personalisation data for their export.
pub(crate) async fn export_section(store: &dyn Store, id: &str) -> Result<Value, crate::store::StoreError> {
    let taste = store.taste(id).await?;
    Ok(json!({
        "taste_profile": taste.as_ref().and_then(|t| serde_json::from_str::<Value>(&t.profile).ok()),
        "taste_profile_updated_at": taste.map(|t| rfc3339(t.updated_at)),
        "mood": store.mood(id).await?.and_then(|(m, _)| serde_json::from_str::<Value>(&m).ok()),
        "custom_model": store.custom_model(id).await?.and_then(|m| serde_json::from_str::<Value>(&m).ok()),
    }))
}

//! Personalisation: a user's taste profile learnt from their listening events, the mood of their
//! recent tracks, recommendations ranked with their reasons (calibrated and debiased for
//! popularity when the user asks), and the personal re-ranking model. Pure functions of their
//! inputs; the origin stores profiles and runs the job, the edge serves the result.
//!
//! The formulas, one line each (the README repeats them):
//! - step: `η_eff = max(η·k/(k+n), min(floor, η))`, η the user's `learning_rate`, n the
//!   evidence (plays learnt from), k = [`EVIDENCE_HALF`], floor = [`STEP_FLOOR`];
//! - update: `a ← (1−η_eff)·a + η_eff·e` for genre and artist affinities (e: the play's share)
//!   and for the audio-feature profile (e: the track's features);
//! - drift: novelty `d = 1 − share(genres of the play)`; recent `r ← 0.8r + 0.2d`, baseline
//!   `b ← 0.98b + 0.02d`; drifting when `r > 1.5b + 0.05` after 10 plays, and each drifting
//!   play halves n, so the step grows back towards η;
//! - mood: the recency-weighted mean (valence, energy) of the last 10 full plays, its quadrant
//!   of the circumplex around (0.5, 0.5), confidence = weight share of the tracks in that
//!   quadrant × min(1, tracks/5);
//! - calibration (Steck 2018): `KL(p‖q̃) = Σ p(g)·ln(p(g)/q̃(g))`, `q̃ = 0.99q + 0.01p`, p the
//!   history's genre mix, q the list's; greedy re-rank maximising
//!   `(1−λ)·mean(rel − γ·pop) − λ·KL` (the mean, so λ does not depend on the list's length);
//! - popularity: a track's percentile among the catalogue's popularities (ties half), the
//!   list's mean reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::analytics;
use crate::listening::{AudioFeatures, TrackPlayed};
use crate::profile::PersonalizationLevel;
use crate::tier::Tier;
use crate::time::UnixMillis;

/// k: the evidence at which the step has halved.
pub const EVIDENCE_HALF: f64 = 20.0;
/// The least the step decays to (or η itself when the setting is lower).
pub const STEP_FLOOR: f64 = 0.02;
const DRIFT_FAST: f64 = 0.2;
const DRIFT_SLOW: f64 = 0.02;
const DRIFT_RATIO: f64 = 1.5;
const DRIFT_MARGIN: f64 = 0.05;
const DRIFT_MIN_PLAYS: u64 = 10;
/// Affinities below this are forgotten, so a profile's size stays bounded.
const FORGET_BELOW: f64 = 1e-3;
/// Tempo is scaled by this to lie in [0, 1] like the other features.
const TEMPO_SCALE: f64 = 250.0;
/// The names of [`feature_vector`]'s components.
pub const FEATURE_NAMES: [&str; 5] = ["energy", "valence", "danceability", "tempo", "acousticness"];
/// The parts of the day (UTC hours 0–6, 6–12, 12–18, 18–24).
pub const DAYPARTS: [&str; 4] = ["night", "morning", "afternoon", "evening"];

/// The effective step: `max(η·k/(k+n), min(floor, η))`.
pub fn effective_step(rate: f64, evidence: f64) -> f64 {
    let decayed = rate * EVIDENCE_HALF / (EVIDENCE_HALF + evidence.max(0.0));
    decayed.max(STEP_FLOOR.min(rate))
}

/// A track's features as a vector in [0, 1]⁵ (tempo divided by 250 bpm, capped).
pub fn feature_vector(f: &AudioFeatures) -> [f64; 5] {
    [f.energy, f.valence, f.danceability, (f.tempo / TEMPO_SCALE).clamp(0.0, 1.0), f.acousticness]
}

/// What levels compute: `basic` genres only; `standard` adds artists, audio features and the
/// time of day; `advanced` adds the personal model (where the tier allows it).
pub fn computes_details(level: PersonalizationLevel) -> bool {
    level >= PersonalizationLevel::Standard
}

/// A user's taste, learnt one play at a time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TasteProfile {
    /// Genre affinities: an exponentially weighted share of plays (see [`Self::genre_mix`]).
    pub genres: BTreeMap<String, f64>,
    /// Artist affinities (standard and advanced levels).
    #[serde(default)]
    pub artists: BTreeMap<String, f64>,
    /// The audio-feature profile, [`FEATURE_NAMES`] order (standard and advanced levels).
    #[serde(default)]
    pub features: Option<[f64; 5]>,
    /// Plays per genre per part of the day ([`DAYPARTS`]; standard and advanced levels).
    #[serde(default)]
    pub dayparts: BTreeMap<String, [u32; 4]>,
    /// n: the evidence the step decays with (halved by each drifting play).
    pub evidence: f64,
    pub plays: u64,
    pub skips: u64,
    pub novelty_recent: f64,
    pub novelty_baseline: f64,
    pub drifting: bool,
    pub drifts: u64,
    /// The step the last play was learnt with.
    pub last_step: f64,
}

/// What learning one play did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learnt {
    pub step: f64,
    pub novelty: f64,
    pub drifting: bool,
}

impl TasteProfile {
    /// The genre affinities normalised to sum to 1.
    pub fn genre_mix(&self) -> BTreeMap<String, f64> {
        let total: f64 = self.genres.values().sum();
        if total <= 0.0 {
            return BTreeMap::new();
        }
        self.genres.iter().map(|(g, a)| (g.clone(), a / total)).collect()
    }

    /// Learns one play with the user's `learning_rate` at their level. A skip is counted (the
    /// personal model learns from skips) but moves no affinity; a play without genres moves
    /// only the artists and features.
    pub fn learn(
        &mut self,
        play: &TrackPlayed,
        at: UnixMillis,
        rate: f64,
        level: PersonalizationLevel,
    ) -> Option<Learnt> {
        if play.skipped() {
            self.skips += 1;
            return None;
        }
        let genres: Vec<&String> = play.genres.iter().collect();
        let mix = self.genre_mix();
        let novelty = if genres.is_empty() {
            0.0
        } else {
            1.0 - genres.iter().map(|g| mix.get(*g).copied().unwrap_or(0.0)).sum::<f64>()
                / genres.len() as f64
        };
        if self.plays == 0 {
            self.novelty_recent = novelty;
            self.novelty_baseline = novelty;
        } else {
            self.novelty_recent = (1.0 - DRIFT_FAST) * self.novelty_recent + DRIFT_FAST * novelty;
            self.novelty_baseline = (1.0 - DRIFT_SLOW) * self.novelty_baseline + DRIFT_SLOW * novelty;
        }
        self.drifting = self.plays >= DRIFT_MIN_PLAYS
            && self.novelty_recent > DRIFT_RATIO * self.novelty_baseline + DRIFT_MARGIN;
        if self.drifting {
            self.evidence /= 2.0;
            self.drifts += 1;
        }
        let step = effective_step(rate, self.evidence);
        if !genres.is_empty() {
            let share = 1.0 / genres.len() as f64;
            let targets: BTreeMap<&str, f64> = genres.iter().map(|g| (g.as_str(), share)).collect();
            ema_towards(&mut self.genres, &targets, step);
        }
        if computes_details(level) {
            let artist: BTreeMap<&str, f64> = [(play.artist.as_str(), 1.0)].into_iter().collect();
            ema_towards(&mut self.artists, &artist, step);
            if let Some(f) = play.features.filter(AudioFeatures::is_valid) {
                let x = feature_vector(&f);
                self.features = Some(match self.features {
                    None => x,
                    Some(mut p) => {
                        for (pi, xi) in p.iter_mut().zip(x) {
                            *pi += step * (xi - *pi);
                        }
                        p
                    }
                });
            }
            if let Some(first) = play.genres.first() {
                let part = daypart(at);
                if let Some(slot) = self.dayparts.entry(first.clone()).or_default().get_mut(part) {
                    *slot += 1;
                }
            }
        }
        self.evidence += 1.0;
        self.plays += 1;
        self.last_step = step;
        Some(Learnt { step, novelty, drifting: self.drifting })
    }
}

/// `a ← (1−η)·a + η·e` over the union of keys; keys whose affinity falls below
/// [`FORGET_BELOW`] are dropped.
fn ema_towards(affinities: &mut BTreeMap<String, f64>, targets: &BTreeMap<&str, f64>, step: f64) {
    for a in affinities.values_mut() {
        *a *= 1.0 - step;
    }
    for (key, e) in targets {
        *affinities.entry((*key).to_owned()).or_insert(0.0) += step * e;
    }
    affinities.retain(|_, a| *a >= FORGET_BELOW);
}

/// The part of the day of a time (UTC), an index into [`DAYPARTS`].
pub fn daypart(at: UnixMillis) -> usize {
    ((at.0 / 3_600_000) % 24 / 6) as usize
}

/// The four quadrants of the valence/energy circumplex (Russell 1980).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Mood {
    EnergeticHappy,
    CalmContent,
    SadMelancholic,
    TenseAngry,
}

impl Mood {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnergeticHappy => "energetic_happy",
            Self::CalmContent => "calm_content",
            Self::SadMelancholic => "sad_melancholic",
            Self::TenseAngry => "tense_angry",
        }
    }
}

/// The quadrant of a point: valence decides pleasant or not, energy aroused or not (0.5 splits).
pub fn quadrant(valence: f64, energy: f64) -> Mood {
    match (valence >= 0.5, energy >= 0.5) {
        (true, true) => Mood::EnergeticHappy,
        (true, false) => Mood::CalmContent,
        (false, false) => Mood::SadMelancholic,
        (false, true) => Mood::TenseAngry,
    }
}

/// How many recent full plays the mood reads.
pub const MOOD_WINDOW: usize = 10;

/// A recent play as the mood reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentTrack {
    pub title: String,
    pub artist: String,
    pub features: AudioFeatures,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoodReading {
    pub mood: Mood,
    pub valence: f64,
    pub energy: f64,
    pub confidence: f64,
    /// The tracks that explain it: those in its quadrant furthest from the centre, at most 3.
    pub tracks: Vec<String>,
    pub from_tracks: usize,
}

/// The mood of the recent tracks (oldest first; only the last [`MOOD_WINDOW`] count, weighted
/// 1, 2, … by recency). `None` without any track.
pub fn detect_mood(recent: &[RecentTrack]) -> Option<MoodReading> {
    let window = recent.get(recent.len().saturating_sub(MOOD_WINDOW)..).unwrap_or(&[]);
    if window.is_empty() {
        return None;
    }
    let weights: Vec<f64> = (1..=window.len()).map(|w| w as f64).collect();
    let total: f64 = weights.iter().sum();
    let valence = window.iter().zip(&weights).map(|(t, w)| w * t.features.valence).sum::<f64>() / total;
    let energy = window.iter().zip(&weights).map(|(t, w)| w * t.features.energy).sum::<f64>() / total;
    let mood = quadrant(valence, energy);
    let inside: Vec<(&RecentTrack, f64)> = window
        .iter()
        .zip(&weights)
        .filter(|(t, _)| quadrant(t.features.valence, t.features.energy) == mood)
        .map(|(t, w)| (t, *w))
        .collect();
    let agreement = inside.iter().map(|(_, w)| w).sum::<f64>() / total;
    let confidence = round3(agreement * (window.len() as f64 / 5.0).min(1.0));
    let mut explaining: Vec<&RecentTrack> = inside.iter().map(|(t, _)| *t).collect();
    let far = |t: &RecentTrack| (t.features.valence - 0.5).hypot(t.features.energy - 0.5);
    explaining.sort_by(|a, b| far(b).total_cmp(&far(a)));
    let tracks = explaining.iter().take(3).map(|t| format!("{} – {}", t.artist, t.title)).collect();
    Some(MoodReading {
        mood,
        valence: round3(valence),
        energy: round3(energy),
        confidence,
        tracks,
        from_tracks: window.len(),
    })
}

/// A track of the catalogue recommendations come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueTrack {
    pub id: String,
    pub title: String,
    pub artist: String,
    pub genre: String,
    pub features: AudioFeatures,
    /// 0–100, as the music services give it.
    pub popularity: u8,
}

/// The personal re-ranking model: logistic regression of "played in full" on the audio
/// features, trained on the user's own plays and skips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonalModel {
    pub weights: [f64; 5],
    pub bias: f64,
    pub trained_on: usize,
    pub held_out: usize,
    /// The AUC on the held-out plays (every fifth), which the model never saw.
    pub held_out_auc: f64,
}

impl PersonalModel {
    /// The probability that the user plays a track with these features in full.
    pub fn full_play(&self, f: &AudioFeatures) -> f64 {
        let x = feature_vector(f);
        let z = self.bias + self.weights.iter().zip(x).map(|(w, xi)| w * xi).sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }
}

/// Why a model could not be trained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainingRefusal {
    #[error("the {tier} tier's template does not allow custom model training (rule: tier_feature custom_model_training)")]
    TierFeature { tier: Tier },
    #[error("custom model training is off in ai_preferences.custom_model_training")]
    PreferenceOff,
    #[error(
        "{plays} plays with audio features; training needs at least {needed} with both skips and full plays"
    )]
    TooFewPlays { plays: usize, needed: usize },
}

/// The fewest plays a personal model trains on.
pub const MIN_TRAINING_PLAYS: usize = 20;

/// Whether the tier and the preference allow training.
pub fn may_train(tier: Tier, preference_on: bool) -> Result<(), TrainingRefusal> {
    if !tier.rules().features.custom_model_training {
        return Err(TrainingRefusal::TierFeature { tier });
    }
    if !preference_on {
        return Err(TrainingRefusal::PreferenceOff);
    }
    Ok(())
}

/// Trains the personal model on `(features, played in full)`: every fifth sample is held out
/// and scores the AUC; the rest train `domain::analytics`' logistic regression.
pub fn train_personal(samples: &[(AudioFeatures, bool)]) -> Result<PersonalModel, TrainingRefusal> {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, (f, full)) in samples.iter().enumerate() {
        let row = (feature_vector(f), *full);
        if i % 5 == 4 {
            test.push(row);
        } else {
            train.push(row);
        }
    }
    let both = |rows: &[([f64; 5], bool)]| rows.iter().any(|r| r.1) && rows.iter().any(|r| !r.1);
    if samples.len() < MIN_TRAINING_PLAYS || !both(&train) || !both(&test) {
        return Err(TrainingRefusal::TooFewPlays { plays: samples.len(), needed: MIN_TRAINING_PLAYS });
    }
    let fitted = analytics::train_churn(&train, 400, 1.0);
    let model = PersonalModel {
        weights: fitted.weights,
        bias: fitted.bias,
        trained_on: train.len(),
        held_out: test.len(),
        held_out_auc: 0.0,
    };
    let scored: Vec<(f64, bool)> = test
        .iter()
        .map(|(x, y)| {
            let z = model.bias + model.weights.iter().zip(x).map(|(w, xi)| w * xi).sum::<f64>();
            (z, *y)
        })
        .collect();
    Ok(PersonalModel { held_out_auc: round3(analytics::auc(&scored)), ..model })
}

/// The knobs of bias mitigation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mitigation {
    /// λ: weight of calibration against relevance.
    pub lambda: f64,
    /// γ: the relevance a track loses per unit of popularity percentile.
    pub gamma: f64,
}

pub const DEFAULT_MITIGATION: Mitigation = Mitigation { lambda: 0.8, gamma: 0.1 };

/// One recommended track with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recommended {
    pub track_id: String,
    pub title: String,
    pub artist: String,
    pub genre: String,
    pub score: f64,
    pub popularity_percentile: f64,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub items: Vec<Recommended>,
    /// KL(history's genre mix ‖ the list's), smaller is better calibrated.
    pub calibration_kl: f64,
    /// The list's mean popularity percentile (0.5 = the catalogue's median).
    pub mean_popularity_percentile: f64,
    pub bias_mitigation: bool,
}

/// Each track's popularity percentile in the catalogue: the share of tracks less popular, ties
/// counting half.
pub fn popularity_percentiles(catalogue: &[CatalogueTrack]) -> Vec<f64> {
    let mut counts = [0u64; 101];
    for t in catalogue {
        if let Some(c) = counts.get_mut(usize::from(t.popularity.min(100))) {
            *c += 1;
        }
    }
    let n = catalogue.len().max(1) as f64;
    let mut below = [0u64; 101];
    let mut run = 0;
    for (b, c) in below.iter_mut().zip(counts) {
        *b = run;
        run += c;
    }
    catalogue
        .iter()
        .map(|t| {
            let p = usize::from(t.popularity.min(100));
            let less = below.get(p).copied().unwrap_or(0) as f64;
            let same = counts.get(p).copied().unwrap_or(0) as f64;
            (less + (same - 1.0).max(0.0) / 2.0) / n
        })
        .collect()
}

/// Steck's calibration measure `KL(p‖q̃)` with `q̃ = (1−α)q + αp`, α = 0.01, so a genre the
/// list lacks costs much but not infinitely.
pub fn calibration_kl(history: &BTreeMap<String, f64>, list: &BTreeMap<String, f64>) -> f64 {
    const ALPHA: f64 = 0.01;
    history
        .iter()
        .filter(|(_, p)| **p > 0.0)
        .map(|(g, p)| {
            let q = (1.0 - ALPHA) * list.get(g).copied().unwrap_or(0.0) + ALPHA * p;
            p * (p / q).ln()
        })
        .sum()
}

fn list_mix<'a>(genres: impl Iterator<Item = &'a str>) -> BTreeMap<String, f64> {
    let mut mix: BTreeMap<String, f64> = BTreeMap::new();
    let mut n = 0.0;
    for g in genres {
        *mix.entry(g.to_owned()).or_insert(0.0) += 1.0;
        n += 1.0;
    }
    for v in mix.values_mut() {
        *v /= n;
    }
    mix
}

/// The inputs of a ranking.
pub struct RankingInput<'a> {
    pub profile: &'a TasteProfile,
    pub level: PersonalizationLevel,
    pub catalogue: &'a [CatalogueTrack],
    /// Tracks played recently: never recommended.
    pub recent: &'a BTreeSet<String>,
    pub model: Option<&'a PersonalModel>,
    /// `Some` when the user enabled bias mitigation.
    pub mitigation: Option<Mitigation>,
    pub n: usize,
}

/// Ranks the catalogue for the user. Relevance (in [0, 1]) is the genre's share relative to the
/// user's top genre; at standard level and above it is `0.6·genre + 0.2·artist + 0.2·feature
/// similarity`; with a personal model `0.7·that + 0.3·P(full play)`. Without mitigation the list
/// is the top `n` by relevance; with it, the greedy calibrated, debiased re-rank.
pub fn recommend(input: &RankingInput<'_>) -> Recommendations {
    let mix = input.profile.genre_mix();
    let top_genre = mix.values().copied().fold(0.0, f64::max);
    let top_artist = input.profile.artists.values().copied().fold(0.0, f64::max);
    let details = computes_details(input.level);
    let percentiles = popularity_percentiles(input.catalogue);
    let mut candidates: Vec<(usize, f64)> = input
        .catalogue
        .iter()
        .enumerate()
        .filter(|(_, t)| !input.recent.contains(&t.id))
        .map(|(i, t)| {
            let genre =
                if top_genre > 0.0 { mix.get(&t.genre).copied().unwrap_or(0.0) / top_genre } else { 0.0 };
            let mut rel = genre;
            if details {
                let artist = if top_artist > 0.0 {
                    input.profile.artists.get(&t.artist).copied().unwrap_or(0.0) / top_artist
                } else {
                    0.0
                };
                rel = 0.6 * genre + 0.2 * artist + 0.2 * feature_similarity(input.profile, &t.features);
            }
            if let Some(model) = input.model {
                rel = 0.7 * rel + 0.3 * model.full_play(&t.features);
            }
            (i, rel)
        })
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen: Vec<(usize, f64)> = match input.mitigation {
        None => candidates.into_iter().take(input.n).collect(),
        Some(m) => calibrated(&candidates, input.catalogue, &percentiles, &mix, m, input.n),
    };
    let list = list_mix(chosen.iter().filter_map(|(i, _)| input.catalogue.get(*i)).map(|t| t.genre.as_str()));
    let items: Vec<Recommended> = chosen
        .iter()
        .filter_map(|(i, rel)| {
            let t = input.catalogue.get(*i)?;
            Some(Recommended {
                track_id: t.id.clone(),
                title: t.title.clone(),
                artist: t.artist.clone(),
                genre: t.genre.clone(),
                score: round3(*rel),
                popularity_percentile: round3(percentiles.get(*i).copied().unwrap_or(0.0)),
                reasons: reasons(input, t, &mix),
            })
        })
        .collect();
    let mean_pop = if items.is_empty() {
        0.0
    } else {
        chosen.iter().map(|(i, _)| percentiles.get(*i).copied().unwrap_or(0.0)).sum::<f64>()
            / items.len() as f64
    };
    Recommendations {
        items,
        calibration_kl: round3(calibration_kl(&mix, &list)),
        mean_popularity_percentile: round3(mean_pop),
        bias_mitigation: input.mitigation.is_some(),
    }
}

/// `1 − ‖x − profile‖ / √5`; 0.5 without a feature profile.
fn feature_similarity(profile: &TasteProfile, f: &AudioFeatures) -> f64 {
    match profile.features {
        None => 0.5,
        Some(p) => {
            let x = feature_vector(f);
            let d = p.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            1.0 - d / 5f64.sqrt()
        }
    }
}

/// Greedy re-rank (Steck 2018, with a popularity penalty): each step adds the candidate that
/// maximises `(1−λ)·mean(rel − γ·pop) − λ·KL(p‖q̃(list))` over the list so far plus it.
fn calibrated(
    candidates: &[(usize, f64)],
    catalogue: &[CatalogueTrack],
    percentiles: &[f64],
    history: &BTreeMap<String, f64>,
    m: Mitigation,
    n: usize,
) -> Vec<(usize, f64)> {
    let mut chosen: Vec<(usize, f64)> = Vec::new();
    let mut taken = vec![false; candidates.len()];
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut utility = 0.0;
    while chosen.len() < n {
        let mut best: Option<(usize, f64)> = None;
        for (c, (i, rel)) in candidates.iter().enumerate() {
            if taken.get(c).copied().unwrap_or(true) {
                continue;
            }
            let Some(track) = catalogue.get(*i) else { continue };
            let pop = percentiles.get(*i).copied().unwrap_or(0.0);
            let size = (chosen.len() + 1) as f64;
            let mut list: BTreeMap<String, f64> = counts.iter().map(|(g, k)| (g.clone(), k / size)).collect();
            *list.entry(track.genre.clone()).or_insert(0.0) += 1.0 / size;
            let value = (1.0 - m.lambda) * (utility + rel - m.gamma * pop) / size
                - m.lambda * calibration_kl(history, &list);
            if best.is_none_or(|(_, v)| value > v) {
                best = Some((c, value));
            }
        }
        let Some((c, _)) = best else { break };
        let Some((i, rel)) = candidates.get(c).copied() else { break };
        if let Some(t) = taken.get_mut(c) {
            *t = true;
        }
        let pop = percentiles.get(i).copied().unwrap_or(0.0);
        utility += rel - m.gamma * pop;
        if let Some(track) = catalogue.get(i) {
            *counts.entry(track.genre.clone()).or_insert(0.0) += 1.0;
        }
        chosen.push((i, rel));
    }
    chosen
}

/// The factors behind a recommendation, in words.
fn reasons(input: &RankingInput<'_>, t: &CatalogueTrack, mix: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out = Vec::new();
    let share = mix.get(&t.genre).copied().unwrap_or(0.0);
    if share > 0.0 {
        let busiest = input
            .profile
            .dayparts
            .get(&t.genre)
            .and_then(|parts| parts.iter().enumerate().max_by_key(|(_, c)| **c).filter(|(_, c)| **c > 0))
            .and_then(|(p, _)| DAYPARTS.get(p));
        match busiest {
            Some(part) if computes_details(input.level) => out.push(format!(
                "you play a lot of {} in the {part} ({:.0}% of your listening)",
                t.genre,
                share * 100.0
            )),
            _ => out.push(format!("{} is {:.0}% of your listening", t.genre, share * 100.0)),
        }
    }
    if computes_details(input.level) && input.profile.artists.contains_key(&t.artist) {
        out.push(format!("you listen to {}", t.artist));
    }
    if let (true, Some(p)) = (computes_details(input.level), input.profile.features) {
        let x = feature_vector(&t.features);
        let close: Vec<&str> = FEATURE_NAMES
            .iter()
            .zip(p.iter().zip(x))
            .filter(|(_, (a, b))| (*a - b).abs() < 0.1)
            .map(|(name, _)| *name)
            .collect();
        if !close.is_empty() {
            out.push(format!("its {} match your profile", close.join(", ")));
        }
    }
    if let Some(model) = input.model {
        out.push(format!(
            "your personal model gives it a {:.0}% chance of a full play",
            model.full_play(&t.features) * 100.0
        ));
    }
    if input.mitigation.is_some() && t.popularity < 50 {
        out.push("a less-played track, for variety (bias mitigation)".into());
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(genre: &str, artist: &str, energy: f64, valence: f64, played_ms: Option<u64>) -> TrackPlayed {
        TrackPlayed {
            provider: "demo".into(),
            provider_track_id: format!("{artist}-{genre}-{energy}"),
            title: format!("{genre} song"),
            artist: artist.into(),
            artist_id: None,
            genres: vec![genre.into()],
            duration_ms: 200_000,
            played_ms,
            features: Some(AudioFeatures {
                energy,
                valence,
                danceability: 0.5,
                tempo: 125.0,
                acousticness: 0.2,
            }),
            popularity: Some(50),
            source: "recently_played".into(),
        }
    }

    /// 2025-11-24 20:00 UTC.
    const EVENING: UnixMillis = UnixMillis(1_763_942_400_000 + 20 * 3_600_000);

    #[test]
    fn the_step_starts_at_the_setting_decays_with_evidence_and_stops_at_the_floor() {
        assert_eq!(effective_step(0.1, 0.0), 0.1);
        assert!((effective_step(0.1, 20.0) - 0.05).abs() < 1e-12, "halved at n = k");
        assert!((effective_step(0.5, 60.0) - 0.125).abs() < 1e-12);
        assert_eq!(effective_step(0.1, 10_000.0), STEP_FLOOR);
        // A setting below the floor is never raised by it.
        assert_eq!(effective_step(0.01, 10_000.0), 0.01);
    }

    #[test]
    fn each_play_moves_the_affinities_by_the_effective_step() {
        let mut p = TasteProfile::default();
        let first = p.learn(&play("jazz", "A", 0.3, 0.6, None), EVENING, 0.2, PersonalizationLevel::Basic);
        assert_eq!(first.map(|l| l.step), Some(0.2));
        assert!((p.genres["jazz"] - 0.2).abs() < 1e-12);
        p.learn(&play("rock", "B", 0.8, 0.4, None), EVENING, 0.2, PersonalizationLevel::Basic);
        let step = 0.2 * 20.0 / 21.0;
        assert!((p.genres["rock"] - step).abs() < 1e-12);
        assert!((p.genres["jazz"] - 0.2 * (1.0 - step)).abs() < 1e-12);
        // Basic computes genres only.
        assert!(p.artists.is_empty() && p.features.is_none() && p.dayparts.is_empty());
        assert_eq!((p.plays, p.evidence), (2, 2.0));
    }

    #[test]
    fn a_skip_is_counted_and_moves_nothing() {
        let mut p = TasteProfile::default();
        assert!(p
            .learn(&play("jazz", "A", 0.3, 0.6, Some(5_000)), EVENING, 0.2, PersonalizationLevel::Advanced)
            .is_none());
        assert_eq!((p.skips, p.plays), (1, 0));
        assert!(p.genres.is_empty());
    }

    #[test]
    fn standard_level_learns_artists_features_and_the_time_of_day() {
        let mut p = TasteProfile::default();
        p.learn(&play("jazz", "A", 0.2, 0.6, None), EVENING, 0.5, PersonalizationLevel::Standard);
        p.learn(&play("jazz", "A", 0.4, 0.6, None), EVENING, 0.5, PersonalizationLevel::Standard);
        let step = 0.5 * 20.0 / 21.0;
        let energy = p.features.map(|f| f[0]).unwrap_or(0.0);
        assert!((energy - (0.2 + step * 0.2)).abs() < 1e-12);
        assert_eq!(p.dayparts["jazz"], [0, 0, 0, 2], "20:00 UTC is evening");
        assert!(p.artists["A"] > 0.7);
    }

    #[test]
    fn listening_that_drifts_away_grows_the_step_back() {
        let mut p = TasteProfile::default();
        for _ in 0..100 {
            p.learn(&play("jazz", "A", 0.3, 0.6, None), EVENING, 0.3, PersonalizationLevel::Basic);
        }
        let settled = p.last_step;
        assert!((settled - effective_step(0.3, 99.0)).abs() < 1e-12 && !p.drifting);
        let mut grew = false;
        for _ in 0..10 {
            p.learn(&play("metal", "M", 0.9, 0.2, None), EVENING, 0.3, PersonalizationLevel::Basic);
            grew |= p.drifting && p.last_step > 2.0 * settled;
        }
        assert!(grew, "the step grew back: {} vs {settled}", p.last_step);
        assert!(p.drifts >= 1);
        // Once the new taste is learnt the drift ends and the step decays again.
        for _ in 0..200 {
            p.learn(&play("metal", "M", 0.9, 0.2, None), EVENING, 0.3, PersonalizationLevel::Basic);
        }
        assert!(!p.drifting);
        assert!(p.genre_mix()["metal"] > 0.9);
    }

    #[test]
    fn the_circumplex_has_four_quadrants() {
        assert_eq!(quadrant(0.8, 0.9), Mood::EnergeticHappy);
        assert_eq!(quadrant(0.8, 0.1), Mood::CalmContent);
        assert_eq!(quadrant(0.2, 0.1), Mood::SadMelancholic);
        assert_eq!(quadrant(0.2, 0.9), Mood::TenseAngry);
        assert_eq!(quadrant(0.5, 0.5), Mood::EnergeticHappy, "the centre belongs to the first");
    }

    fn recent(valence: f64, energy: f64, title: &str) -> RecentTrack {
        RecentTrack {
            title: title.into(),
            artist: "X".into(),
            features: AudioFeatures { energy, valence, danceability: 0.5, tempo: 100.0, acousticness: 0.5 },
        }
    }

    #[test]
    fn the_mood_weighs_recent_tracks_more_and_names_the_tracks_behind_it() {
        assert_eq!(detect_mood(&[]), None);
        let tracks = [
            recent(0.9, 0.9, "old happy"),
            recent(0.2, 0.2, "sad 1"),
            recent(0.1, 0.3, "sad 2"),
            recent(0.3, 0.05, "sad 3"),
        ];
        let m = detect_mood(&tracks).unwrap();
        assert_eq!(m.mood, Mood::SadMelancholic);
        // weights 1..4: valence (0.9 + 0.4 + 0.3 + 1.2)/10 = 0.28, energy (0.9 + 0.4 + 0.9 + 0.2)/10 = 0.24
        assert_eq!((m.valence, m.energy), (0.28, 0.24));
        // 9/10 of the weight agrees, 4 tracks of the 5 full confidence needs.
        assert_eq!(m.confidence, 0.72);
        assert_eq!(m.tracks, vec!["X – sad 3", "X – sad 2", "X – sad 1"], "furthest from the centre first");
        // Only the last ten count.
        let mut many: Vec<RecentTrack> = (0..20).map(|_| recent(0.1, 0.1, "sad")).collect();
        many.extend((0..10).map(|_| recent(0.9, 0.9, "joy")));
        let m = detect_mood(&many).unwrap();
        assert_eq!((m.mood, m.confidence, m.from_tracks), (Mood::EnergeticHappy, 1.0, 10));
    }

    #[test]
    fn calibration_kl_is_zero_for_the_same_mix_and_grows_with_a_missing_genre() {
        let p: BTreeMap<String, f64> = [("a".to_owned(), 0.5), ("b".to_owned(), 0.5)].into();
        assert!(calibration_kl(&p, &p).abs() < 1e-12);
        let q: BTreeMap<String, f64> = [("a".to_owned(), 1.0)].into();
        // q̃ = 0.99·q + 0.01·p: 0.5·ln(0.5/0.995) + 0.5·ln(0.5/0.005)
        let expected = 0.5 * (0.5f64 / 0.995).ln() + 0.5 * (0.5f64 / 0.005).ln();
        assert!((calibration_kl(&p, &q) - expected).abs() < 1e-12);
    }

    fn track(id: &str, genre: &str, popularity: u8) -> CatalogueTrack {
        CatalogueTrack {
            id: id.into(),
            title: id.into(),
            artist: format!("artist of {id}"),
            genre: genre.into(),
            features: AudioFeatures {
                energy: 0.5,
                valence: 0.5,
                danceability: 0.5,
                tempo: 120.0,
                acousticness: 0.5,
            },
            popularity,
        }
    }

    #[test]
    fn popularity_percentiles_count_ties_half() {
        let c = [track("a", "g", 10), track("b", "g", 50), track("c", "g", 50), track("d", "g", 90)];
        assert_eq!(popularity_percentiles(&c), vec![0.0, 0.375, 0.375, 0.75]);
    }

    #[test]
    fn mitigation_calibrates_the_list_and_reaches_into_the_long_tail() {
        // 70% pop, 30% folk in the history; the catalogue's pop tracks are the popular ones.
        let mut profile = TasteProfile::default();
        profile.genres.insert("pop".into(), 0.7);
        profile.genres.insert("folk".into(), 0.3);
        let mut catalogue: Vec<CatalogueTrack> =
            (0..20).map(|i| track(&format!("p{i}"), "pop", 80 + i as u8)).collect();
        catalogue.extend((0..20).map(|i| track(&format!("f{i}"), "folk", 5 + i as u8)));
        let recent: BTreeSet<String> = ["p19".to_owned()].into();
        let mut input = RankingInput {
            profile: &profile,
            level: PersonalizationLevel::Basic,
            catalogue: &catalogue,
            recent: &recent,
            model: None,
            mitigation: None,
            n: 10,
        };
        let plain = recommend(&input);
        assert!(plain.items.iter().all(|r| r.genre == "pop" && r.track_id != "p19"));
        assert!(plain.items.iter().all(|r| !r.reasons.is_empty()));
        input.mitigation = Some(DEFAULT_MITIGATION);
        let fair = recommend(&input);
        assert_eq!(fair.items.len(), 10);
        assert_eq!(fair.items.iter().filter(|r| r.genre == "folk").count(), 3, "the 70/30 mix");
        assert!(
            fair.calibration_kl < plain.calibration_kl,
            "{} vs {}",
            fair.calibration_kl,
            plain.calibration_kl
        );
        assert!(fair.mean_popularity_percentile < plain.mean_popularity_percentile);
        assert!(fair.calibration_kl < 0.01);
    }

    #[test]
    fn only_tiers_whose_template_allows_it_train_a_personal_model() {
        assert_eq!(may_train(Tier::Free, true), Err(TrainingRefusal::TierFeature { tier: Tier::Free }));
        assert_eq!(may_train(Tier::Premium, true), Err(TrainingRefusal::TierFeature { tier: Tier::Premium }));
        assert_eq!(may_train(Tier::Enterprise, false), Err(TrainingRefusal::PreferenceOff));
        assert_eq!(may_train(Tier::Enterprise, true), Ok(()));
        assert!(TrainingRefusal::TierFeature { tier: Tier::Free }
            .to_string()
            .contains("custom_model_training"));
    }

    #[test]
    fn the_personal_model_learns_which_tracks_are_skipped() {
        // This listener skips calm tracks: full plays have high energy.
        let samples: Vec<(AudioFeatures, bool)> = (0..100)
            .map(|i| {
                let energy = (i % 10) as f64 / 10.0 + 0.05;
                let full = energy > 0.45 || i % 7 == 0;
                (
                    AudioFeatures {
                        energy,
                        valence: 0.5,
                        danceability: 0.5,
                        tempo: 120.0,
                        acousticness: 1.0 - energy,
                    },
                    full,
                )
            })
            .collect();
        let model = train_personal(&samples).unwrap();
        assert_eq!((model.trained_on, model.held_out), (80, 20));
        assert!(model.held_out_auc > 0.85, "{}", model.held_out_auc);
        assert!(model.weights[0] > 0.0, "energy raises the chance of a full play");
        assert_eq!(
            train_personal(&samples[..10]),
            Err(TrainingRefusal::TooFewPlays { plays: 10, needed: MIN_TRAINING_PLAYS })
        );
    }
}

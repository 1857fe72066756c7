//! The personalisation operations' answers and bodies: the context the platform's AI services
//! read, recommendations, the personal model, and federated learning's model and updates.
//! The origin builds these; the edge reads [`ContextVersion`] of a context (to cache it for
//! read-your-writes) and checks a [`FederatedUpdate`] before forwarding it; the rest it relays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::federated::RoundPolicy;
use crate::personalization::{MoodReading, PersonalModel, Recommended};
use crate::profile::PersonalizationLevel;
use crate::tier::Tier;

/// What the platform's AI may do for the user (from preferences, consents and tier) with the
/// factors behind each answer, the taste profile (null without the personalization consent),
/// the current mood (null unless mood detection and the consent hold) and the personal model
/// (null unless the tier, the preferences and the level allow it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonalizationContext {
    pub user_id: String,
    pub tier: Tier,
    /// The profile version the context was built at (the edge caches it for read-your-writes).
    pub profile_version: u64,
    pub allowed: Allowed,
    pub factors: AllowedFactors,
    pub taste: Option<TasteView>,
    pub mood: Option<MoodView>,
    pub custom_model: Option<PersonalModel>,
}

/// The one field of a context the edge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ContextVersion {
    pub profile_version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Allowed {
    pub personalization: bool,
    pub level: PersonalizationLevel,
    pub learning_rate: f64,
    pub mood_detection: bool,
    pub bias_mitigation: bool,
    pub custom_model: bool,
    pub federated_learning: bool,
}

/// Why each of [`Allowed`]'s answers is what it is, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowedFactors {
    pub personalization: String,
    pub level: String,
    pub mood_detection: String,
    pub custom_model: String,
    pub federated_learning: String,
}

/// The taste profile for reading: genre shares and affinities, top artists, the audio-feature
/// profile, plays per genre and part of the day, and the learning state with its factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TasteView {
    /// The top 10 genres by share of the genre mix.
    pub genres: Vec<GenreShare>,
    pub genre_affinities: BTreeMap<String, f64>,
    /// The top 10 artists by affinity.
    pub artists: Vec<ArtistAffinity>,
    /// Feature name → the profile's value, once a play with features was learnt.
    pub audio_features: Option<BTreeMap<String, f64>>,
    /// Genre → plays in each part of the day (00–06, 06–12, 12–18, 18–24 UTC).
    pub dayparts: BTreeMap<String, [u32; 4]>,
    pub plays: u64,
    pub skips: u64,
    /// n, the evidence the adaptive step reads.
    pub evidence: f64,
    pub last_step: f64,
    pub drifting: bool,
    pub drifts: u64,
    /// η_eff for the next play.
    pub next_step: f64,
    pub factors: TasteFactors,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenreShare {
    pub genre: String,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtistAffinity {
    pub artist: String,
    pub affinity: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TasteFactors {
    /// The adaptive step's formula with the profile's numbers.
    pub step: String,
    /// The drift test with the profile's numbers.
    pub drift: String,
}

/// The current mood with when it was detected and what it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoodView {
    #[serde(flatten)]
    pub reading: MoodReading,
    pub detected_at: String,
    pub factors: Vec<String>,
}

/// Recommended tracks with their reasons and both bias measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendationList {
    pub user_id: String,
    pub items: Vec<Recommended>,
    pub measures: Measures,
    pub bias_mitigation: bool,
    pub personal_model: bool,
    /// The recent plays left out of the candidates.
    pub excluded_recent_plays: usize,
    pub catalogue_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Measures {
    /// KL(history's genre mix ‖ the list's), q̃ = 0.99q + 0.01p (Steck 2018); 0 is calibrated.
    pub calibration_kl: f64,
    /// The mean of the listed tracks' popularity percentiles; 0.5 is the median track.
    pub mean_popularity_percentile: f64,
    pub factors: BTreeMap<String, String>,
}

/// A personal model just trained, with its held-out AUC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainedModel {
    pub user_id: String,
    pub held_out_auc: f64,
    pub trained_on: usize,
    pub held_out: usize,
    /// Feature name → weight.
    pub weights: BTreeMap<String, f64>,
    pub trained_at: String,
    /// Whether recommendations use it (personalization level advanced).
    pub used_in_recommendations: bool,
}

/// The shared skip predictor of federated learning: the open round, the global weights and
/// the privacy spent so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FederatedModel {
    /// The open round.
    pub round: u64,
    pub round_opened_at: String,
    pub features: Vec<String>,
    /// Five feature weights, then the bias.
    pub weights: Vec<f64>,
    pub policy: RoundPolicy,
    pub privacy: Privacy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Privacy {
    /// ε at [`Privacy::delta`], 0 before any round was aggregated.
    pub epsilon: f64,
    pub delta: f64,
    pub rounds_aggregated: u64,
    /// The Rényi order the ε was found at.
    pub rdp_order: u32,
    pub accountant: String,
}

/// A client's weight delta for the open round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FederatedUpdate {
    /// Five feature weights, then the bias; clipped to the L2 bound at aggregation.
    pub delta: Vec<f64>,
}

/// An update taken for its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateAccepted {
    pub round: u64,
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mood_view_is_the_reading_with_its_time_and_factors_side_by_side() {
        let view = MoodView {
            reading: MoodReading {
                mood: crate::personalization::Mood::CalmContent,
                valence: 0.7,
                energy: 0.2,
                confidence: 0.9,
                tracks: vec!["A – B".into()],
                from_tracks: 10,
            },
            detected_at: "2026-12-04T00:00:00Z".into(),
            factors: vec!["why".into()],
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["mood"], "calm_content");
        assert_eq!(json["detected_at"], "2026-12-04T00:00:00Z");
        assert_eq!(serde_json::from_value::<MoodView>(json).unwrap(), view);
    }

    #[test]
    fn an_update_with_an_unknown_field_is_refused() {
        assert!(serde_json::from_str::<FederatedUpdate>(r#"{"delta":[0.1],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<FederatedUpdate>(r#"{"delta":[0.1]}"#).is_ok());
    }
}

//! The personalization operations: the context the platform's AI services read, recommendations,
//! the personal model, and federated learning. Every operation is the caller's own (or an
//! admin's); the edge admits it through the user's gate (429) and forwards it to the origin
//! (502/503).

use domain::federated::RoundPolicy;
use domain::personalization::{Mood, MoodReading, PersonalModel, Recommended};
use domain::problem::Problem;
use domain::profile::PersonalizationLevel;
use domain::wire::personalization::{
    Allowed, AllowedFactors, ArtistAffinity, FederatedModel, FederatedUpdate, GenreShare, Measures, MoodView,
    PersonalizationContext, Privacy, RecommendationList, TasteFactors, TasteView, TrainedModel,
    UpdateAccepted,
};
use utoipa::OpenApi;

use crate::common;

#[derive(OpenApi)]
#[openapi(
    paths(context, recommendations, train_custom_model, federated_model, federated_update),
    components(schemas(
        PersonalizationContext,
        Allowed,
        AllowedFactors,
        TasteView,
        GenreShare,
        ArtistAffinity,
        TasteFactors,
        MoodView,
        MoodReading,
        Mood,
        PersonalModel,
        PersonalizationLevel,
        RecommendationList,
        Recommended,
        Measures,
        TrainedModel,
        FederatedModel,
        RoundPolicy,
        Privacy,
        FederatedUpdate,
        UpdateAccepted,
    ))
)]
pub struct Api;

/// The personalisation context the AI services read (from KV, read-your-writes)
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/personalization",
    operation_id = "userPersonalization",
    tag = "personalization",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    responses(
        (status = 200, description = "The personalisation context (the x-personalization-source header says cache or origin)", body = PersonalizationContext),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, response = common::NotFound),
    )
)]
pub fn context() {}

/// Recommendations from the catalogue, excluding recent plays; calibrated and debiased with bias_mitigation_enabled
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/recommendations",
    operation_id = "userRecommendations",
    tag = "personalization",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many tracks (default 20)"),
    ),
    responses(
        (status = 200, description = "Recommended tracks with their reasons and both bias measures", body = RecommendationList),
        (status = 400, response = common::BadRequest),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Not your account, or the personalization consent is withdrawn (the problem's rule names it)", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
    )
)]
pub fn recommendations() {}

/// Train the personal re-ranking model on the user's own skips and full plays
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/custom-model",
    operation_id = "trainCustomModel",
    tag = "personalization",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    responses(
        (status = 201, description = "The trained model and its held-out AUC", body = TrainedModel),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Not your account, or a rule refuses: tier_feature:custom_model_training (the tier's template does not allow it), ai_preferences.custom_model_training, consent:personalization", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
        (status = 409, description = "Too few plays with audio features, skips and full plays to train and score", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn train_custom_model() {}

/// The shared skip predictor of federated learning
#[utoipa::path(
    get,
    path = "/api/v1/federated/model",
    operation_id = "federatedModel",
    tag = "personalization",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The global weights, the open round and the privacy spent", body = FederatedModel),
        (status = 401, response = common::Unauthenticated),
    )
)]
pub fn federated_model() {}

/// Send a client's weight delta for the open round (DP-FedAvg: clipped, noised, aggregated only with at least K clients)
#[utoipa::path(
    post,
    path = "/api/v1/federated/rounds/{round}/updates",
    operation_id = "federatedUpdate",
    tag = "personalization",
    security(("bearerAuth" = [])),
    params(("round" = u64, Path, minimum = 1, description = "The open round")),
    request_body(content = FederatedUpdate, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted for the round", body = UpdateAccepted),
        (status = 400, response = common::BadRequest),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Federated learning is not allowed: ai_preferences.federated_learning_opt_in or consent:federated_learning (the problem's rule names it)", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
        (status = 409, description = "The round is not the open one (open_round says which), or this client sent an update for it already", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn federated_update() {}

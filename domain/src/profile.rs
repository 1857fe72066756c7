//! The profile a user edits: display name, language, time zone, AI preferences and security
//! settings. A profile starts from its tier's defaults (see `tier`), changes only through JSON
//! merge patches (RFC 7396) validated here, and always fits its tier.
//!
//! Every error found is reported, each naming its field, its kind and the rule it broke:
//! `forbidden` (a field the caller may not change) and `tier_feature` (a feature the tier lacks)
//! are refusals of the request (403); `unknown` and `invalid` are malformed requests (400).

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tier::Tier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub display_name: Option<String>,
    pub language: String,
    pub timezone: String,
    pub ai_preferences: AiPreferences,
    pub security_settings: SecuritySettings,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiPreferences {
    pub personalization_level: PersonalizationLevel,
    pub learning_rate: f64,
    pub custom_model_training: bool,
    pub bias_mitigation_enabled: bool,
    pub mood_detection_enabled: bool,
    pub federated_learning_opt_in: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PersonalizationLevel {
    Basic,
    Standard,
    Advanced,
}

impl PersonalizationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Standard => "standard",
            Self::Advanced => "advanced",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub require_mfa: bool,
    pub mfa_methods: Vec<MfaMethod>,
    pub session_timeout_minutes: u32,
    pub risk_score_threshold: f64,
    pub anomaly_detection_enabled: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaMethod {
    Email,
    Sms,
    Authenticator,
}

/// Bounds of the session timeout: five minutes to thirty days.
pub const SESSION_TIMEOUT_MINUTES: std::ops::RangeInclusive<u32> = 5..=43_200;
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;

/// Fields of the user view that are not the user's to change here.
pub const READ_ONLY_FIELDS: [&str; 9] =
    ["id", "email", "email_verified", "role", "tier", "limits", "version", "created_at", "updated_at"];
const TOP_FIELDS: [&str; 5] = ["display_name", "language", "timezone", "ai_preferences", "security_settings"];
const AI_FIELDS: [&str; 6] = [
    "personalization_level",
    "learning_rate",
    "custom_model_training",
    "bias_mitigation_enabled",
    "mood_detection_enabled",
    "federated_learning_opt_in",
];
const SECURITY_FIELDS: [&str; 5] = [
    "require_mfa",
    "mfa_methods",
    "session_timeout_minutes",
    "risk_score_threshold",
    "anomaly_detection_enabled",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Forbidden,
    TierFeature,
    Unknown,
    Invalid,
}

/// One thing wrong with a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub kind: ErrorKind,
    pub rule: String,
    pub detail: String,
}

impl FieldError {
    fn new(field: &str, kind: ErrorKind, rule: &str, detail: impl Into<String>) -> Self {
        Self { field: field.to_owned(), kind, rule: rule.to_owned(), detail: detail.into() }
    }
}

/// Everything wrong with a patch, in field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileErrors(pub Vec<FieldError>);

impl ProfileErrors {
    /// Whether the request is refused rather than malformed: it touches a read-only field or a
    /// feature the tier lacks.
    pub fn is_forbidden(&self) -> bool {
        self.0.iter().any(|e| matches!(e.kind, ErrorKind::Forbidden | ErrorKind::TierFeature))
    }

    /// One line naming every error, for the problem's `detail`.
    pub fn summary(&self) -> String {
        self.0.iter().map(|e| format!("{}: {}", e.field, e.detail)).collect::<Vec<_>>().join("; ")
    }
}

/// The defaults of `tier`, as a profile.
pub fn defaults(tier: Tier) -> Result<Profile, ProfileErrors> {
    serde_json::from_value(tier.rules().defaults.clone()).map_err(|e| {
        ProfileErrors(vec![FieldError::new(
            "",
            ErrorKind::Invalid,
            "template",
            format!("the {tier} template: {e}"),
        )])
    })
}

/// A new account's profile: the tier's defaults with `input` (a signup's profile data, or
/// `null`) applied as a merge patch.
pub fn new_profile(tier: Tier, input: &Value) -> Result<Profile, ProfileErrors> {
    let base = defaults(tier)?;
    if input.is_null() {
        return Ok(base);
    }
    apply_merge_patch(&base, input, tier)
}

/// Applies a JSON merge patch to `current` under `tier`'s rules. A `null` resets a field (or a
/// whole section) to the tier's default.
pub fn apply_merge_patch(current: &Profile, patch: &Value, tier: Tier) -> Result<Profile, ProfileErrors> {
    let defaults = serde_json::to_value(defaults(tier)?).unwrap_or(Value::Null);
    let mut merged = serde_json::to_value(current).unwrap_or(Value::Null);
    let mut errors = Vec::new();

    let Value::Object(patch) = patch else {
        return Err(ProfileErrors(vec![FieldError::new(
            "",
            ErrorKind::Invalid,
            "object",
            "the body must be a JSON object of profile fields",
        )]));
    };
    for (key, value) in patch {
        if READ_ONLY_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                ErrorKind::Forbidden,
                "read_only",
                if key == "email" {
                    "email is changed through POST /api/v1/users/{id}/email, which confirms the new address"
                        .to_owned()
                } else {
                    format!("{key} cannot be changed here")
                },
            ));
        } else if !TOP_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                ErrorKind::Unknown,
                "unknown_field",
                format!("{key} is not a profile field"),
            ));
        } else if key == "ai_preferences" || key == "security_settings" {
            let fields: &[&str] = if key == "ai_preferences" { &AI_FIELDS } else { &SECURITY_FIELDS };
            merge_section(&mut merged, &defaults, key, value, fields, &mut errors);
        } else {
            let new = if value.is_null() {
                defaults.get(key).cloned().unwrap_or(Value::Null)
            } else {
                value.clone()
            };
            if let Some(slot) = merged.get_mut(key) {
                *slot = new;
            }
        }
    }
    if !errors.is_empty() {
        // Structural errors first: validating values of a patch that also names unknown or
        // forbidden fields would only add noise.
        return Err(ProfileErrors(errors));
    }
    validate(&merged, tier)
}

fn merge_section(
    merged: &mut Value,
    defaults: &Value,
    section: &str,
    patch: &Value,
    fields: &[&str],
    errors: &mut Vec<FieldError>,
) {
    let default_section = defaults.get(section).cloned().unwrap_or(Value::Null);
    match patch {
        Value::Null => {
            if let Some(slot) = merged.get_mut(section) {
                *slot = default_section;
            }
        }
        Value::Object(entries) => {
            for (key, value) in entries {
                let path = format!("{section}.{key}");
                if !fields.contains(&key.as_str()) {
                    errors.push(FieldError::new(
                        &path,
                        ErrorKind::Unknown,
                        "unknown_field",
                        format!("{path} is not a profile field"),
                    ));
                    continue;
                }
                let new = if value.is_null() {
                    default_section.get(key).cloned().unwrap_or(Value::Null)
                } else {
                    value.clone()
                };
                if let Some(Value::Object(target)) = merged.get_mut(section) {
                    target.insert(key.clone(), new);
                }
            }
        }
        _ => errors.push(FieldError::new(
            section,
            ErrorKind::Invalid,
            "object",
            format!("{section} must be an object"),
        )),
    }
}

/// Checks every field of a merged profile and builds it, or lists what is wrong.
fn validate(merged: &Value, tier: Tier) -> Result<Profile, ProfileErrors> {
    let mut errors = Vec::new();
    let empty = Map::new();
    let top = merged.as_object().unwrap_or(&empty);
    let ai = top.get("ai_preferences").and_then(Value::as_object).unwrap_or(&empty);
    let security = top.get("security_settings").and_then(Value::as_object).unwrap_or(&empty);
    let mut v = Check { errors: &mut errors };

    let display_name = v.display_name(top.get("display_name"));
    let language = v.language(top.get("language"));
    let timezone = v.timezone(top.get("timezone"));
    let level = v.level(ai.get("personalization_level"), tier);
    let learning_rate = v.number(
        "ai_preferences.learning_rate",
        ai.get("learning_rate"),
        |x| x > 0.0 && x <= 1.0,
        "must be in (0, 1]",
    );
    let custom_model_training =
        v.boolean("ai_preferences.custom_model_training", ai.get("custom_model_training"));
    if custom_model_training == Some(true) && !tier.rules().features.custom_model_training {
        v.errors.push(FieldError::new(
            "ai_preferences.custom_model_training",
            ErrorKind::TierFeature,
            "tier_feature",
            format!("custom model training is not part of the {tier} tier (enterprise and vip have it)"),
        ));
    }
    let bias = v.boolean("ai_preferences.bias_mitigation_enabled", ai.get("bias_mitigation_enabled"));
    let mood = v.boolean("ai_preferences.mood_detection_enabled", ai.get("mood_detection_enabled"));
    let federated =
        v.boolean("ai_preferences.federated_learning_opt_in", ai.get("federated_learning_opt_in"));
    let require_mfa = v.boolean("security_settings.require_mfa", security.get("require_mfa"));
    let mfa_methods = v.mfa_methods(security.get("mfa_methods"));
    let timeout = v.session_timeout(security.get("session_timeout_minutes"));
    let threshold = v.number(
        "security_settings.risk_score_threshold",
        security.get("risk_score_threshold"),
        |x| (0.0..=1.0).contains(&x),
        "must be in [0, 1]",
    );
    let anomaly =
        v.boolean("security_settings.anomaly_detection_enabled", security.get("anomaly_detection_enabled"));

    match (
        (language, timezone, level, learning_rate, custom_model_training, bias, mood, federated),
        (require_mfa, mfa_methods, timeout, threshold, anomaly),
    ) {
        (
            (
                Some(language),
                Some(timezone),
                Some(personalization_level),
                Some(learning_rate),
                Some(cmt),
                Some(bias),
                Some(mood),
                Some(fed),
            ),
            (
                Some(require_mfa),
                Some(mfa_methods),
                Some(session_timeout_minutes),
                Some(risk_score_threshold),
                Some(anomaly),
            ),
        ) if errors.is_empty() => Ok(Profile {
            display_name: display_name.flatten(),
            language,
            timezone,
            ai_preferences: AiPreferences {
                personalization_level,
                learning_rate,
                custom_model_training: cmt,
                bias_mitigation_enabled: bias,
                mood_detection_enabled: mood,
                federated_learning_opt_in: fed,
            },
            security_settings: SecuritySettings {
                require_mfa,
                mfa_methods,
                session_timeout_minutes,
                risk_score_threshold,
                anomaly_detection_enabled: anomaly,
            },
        }),
        _ => Err(ProfileErrors(errors)),
    }
}

/// Field checks that record what fails and return the parsed value when it passes.
struct Check<'a> {
    errors: &'a mut Vec<FieldError>,
}

impl Check<'_> {
    fn invalid<T>(&mut self, field: &str, rule: &str, detail: impl Into<String>) -> Option<T> {
        self.errors.push(FieldError::new(field, ErrorKind::Invalid, rule, detail));
        None
    }

    fn string<'v>(&mut self, field: &str, value: Option<&'v Value>) -> Option<&'v str> {
        match value {
            Some(Value::String(s)) => Some(s),
            _ => self.invalid(field, "type", "must be a string"),
        }
    }

    fn boolean(&mut self, field: &str, value: Option<&Value>) -> Option<bool> {
        match value {
            Some(Value::Bool(b)) => Some(*b),
            _ => self.invalid(field, "type", "must be true or false"),
        }
    }

    fn number(
        &mut self,
        field: &str,
        value: Option<&Value>,
        ok: impl Fn(f64) -> bool,
        range: &str,
    ) -> Option<f64> {
        match value.and_then(Value::as_f64) {
            Some(x) if ok(x) => Some(x),
            Some(_) => self.invalid(field, "range", range),
            None => self.invalid(field, "type", "must be a number"),
        }
    }

    /// `Some(None)`: no display name; `None`: invalid.
    fn display_name(&mut self, value: Option<&Value>) -> Option<Option<String>> {
        match value {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => {
                let trimmed = s.trim();
                let chars = trimmed.chars().count();
                if trimmed.chars().any(char::is_control) {
                    self.invalid(
                        "display_name",
                        "no_control_characters",
                        "must not contain control characters",
                    )
                } else if chars == 0 || chars > DISPLAY_NAME_MAX_CHARS {
                    self.invalid(
                        "display_name",
                        "length",
                        format!("must have 1 to {DISPLAY_NAME_MAX_CHARS} characters"),
                    )
                } else {
                    Some(Some(trimmed.to_owned()))
                }
            }
            Some(_) => self.invalid("display_name", "type", "must be a string or null"),
        }
    }

    fn language(&mut self, value: Option<&Value>) -> Option<String> {
        let s = self.string("language", value)?;
        match language_tags::LanguageTag::parse(s) {
            Ok(tag) if tag.is_valid() => Some(s.to_owned()),
            _ => self.invalid(
                "language",
                "bcp47",
                format!("{s:?} is not a BCP 47 language tag (like \"fr\" or \"en-US\")"),
            ),
        }
    }

    fn timezone(&mut self, value: Option<&Value>) -> Option<String> {
        let s = self.string("timezone", value)?;
        match chrono_tz::Tz::from_str(s) {
            Ok(_) => Some(s.to_owned()),
            Err(_) => self.invalid(
                "timezone",
                "iana_zone",
                format!("{s:?} is not an IANA time zone (like \"Europe/Paris\")"),
            ),
        }
    }

    fn level(&mut self, value: Option<&Value>, tier: Tier) -> Option<PersonalizationLevel> {
        let field = "ai_preferences.personalization_level";
        let level: PersonalizationLevel = match value.cloned().map(serde_json::from_value) {
            Some(Ok(level)) => level,
            _ => return self.invalid(field, "enum", "must be basic, standard or advanced"),
        };
        if !tier.rules().features.personalization_levels.iter().any(|l| l == level.as_str()) {
            self.errors.push(FieldError::new(
                field,
                ErrorKind::TierFeature,
                "tier_feature",
                format!("{} personalization is not part of the {tier} tier", level.as_str()),
            ));
            return None;
        }
        Some(level)
    }

    fn mfa_methods(&mut self, value: Option<&Value>) -> Option<Vec<MfaMethod>> {
        let field = "security_settings.mfa_methods";
        let methods: Vec<MfaMethod> = match value.cloned().map(serde_json::from_value) {
            Some(Ok(m)) => m,
            _ => return self.invalid(field, "enum", "must be a list of email, sms, authenticator"),
        };
        let mut sorted = methods.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != methods.len() {
            return self.invalid(field, "unique", "must not list a method twice");
        }
        Some(methods)
    }

    fn session_timeout(&mut self, value: Option<&Value>) -> Option<u32> {
        let field = "security_settings.session_timeout_minutes";
        match value.and_then(Value::as_u64) {
            Some(m) => match u32::try_from(m) {
                Ok(m) if SESSION_TIMEOUT_MINUTES.contains(&m) => Some(m),
                _ => self.invalid(field, "range", "must be 5 to 43200 minutes (30 days)"),
            },
            None => self.invalid(field, "type", "must be a whole number of minutes"),
        }
    }
}

/// The profile brought within `tier`: settings the tier lacks are switched off or lowered to
/// the best the tier allows. Used when the tier changes.
pub fn fit_to_tier(profile: &Profile, tier: Tier) -> Profile {
    let features = &tier.rules().features;
    let mut fitted = profile.clone();
    if !features.custom_model_training {
        fitted.ai_preferences.custom_model_training = false;
    }
    let allowed = |l: PersonalizationLevel| features.personalization_levels.iter().any(|a| a == l.as_str());
    if !allowed(fitted.ai_preferences.personalization_level) {
        fitted.ai_preferences.personalization_level =
            [PersonalizationLevel::Advanced, PersonalizationLevel::Standard, PersonalizationLevel::Basic]
                .into_iter()
                .find(|l| allowed(*l))
                .unwrap_or(PersonalizationLevel::Basic);
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(result: Result<Profile, ProfileErrors>) -> Vec<(String, ErrorKind, String)> {
        result.unwrap_err().0.into_iter().map(|e| (e.field, e.kind, e.rule)).collect()
    }

    #[test]
    fn every_tier_has_valid_defaults() {
        for tier in crate::tier::ALL_TIERS {
            let p = defaults(tier).unwrap();
            assert_eq!(validate(&serde_json::to_value(&p).unwrap(), tier).unwrap(), p);
        }
    }

    #[test]
    fn the_product_example_signup_and_update() {
        let p = new_profile(
            Tier::Premium,
            &json!({"display_name": "Jean Dupont", "language": "fr", "timezone": "Europe/Paris"}),
        )
        .unwrap();
        assert_eq!(p.display_name.as_deref(), Some("Jean Dupont"));
        assert_eq!(p.language, "fr");
        assert_eq!(p.timezone, "Europe/Paris");
        assert_eq!(p.ai_preferences.personalization_level, PersonalizationLevel::Standard);

        let patch = json!({"display_name": "Jeanne Dupont", "ai_preferences": {"personalization_level": "advanced", "mood_detection_enabled": true}});
        let updated = apply_merge_patch(&p, &patch, Tier::Premium).unwrap();
        assert_eq!(updated.display_name.as_deref(), Some("Jeanne Dupont"));
        assert_eq!(updated.ai_preferences.personalization_level, PersonalizationLevel::Advanced);
        assert!(updated.ai_preferences.mood_detection_enabled);
        assert_eq!(updated.ai_preferences.learning_rate, p.ai_preferences.learning_rate);

        let free = new_profile(Tier::Free, &Value::Null).unwrap();
        assert_eq!(
            errors_of(apply_merge_patch(&free, &patch, Tier::Free)),
            vec![(
                "ai_preferences.personalization_level".into(),
                ErrorKind::TierFeature,
                "tier_feature".into()
            )]
        );
    }

    #[test]
    fn read_only_and_unknown_fields_are_named() {
        let p = defaults(Tier::Free).unwrap();
        let patch =
            json!({"role": "admin", "tier": "vip", "nickname": "x", "ai_preferences": {"volume": 11}});
        let result = apply_merge_patch(&p, &patch, Tier::Free);
        assert!(result.as_ref().unwrap_err().is_forbidden());
        assert_eq!(
            errors_of(result),
            vec![
                ("ai_preferences.volume".into(), ErrorKind::Unknown, "unknown_field".into()),
                ("nickname".into(), ErrorKind::Unknown, "unknown_field".into()),
                ("role".into(), ErrorKind::Forbidden, "read_only".into()),
                ("tier".into(), ErrorKind::Forbidden, "read_only".into()),
            ]
        );
        let unknown_only = apply_merge_patch(&p, &json!({"nickname": "x"}), Tier::Free);
        assert!(!unknown_only.unwrap_err().is_forbidden());
    }

    #[test]
    fn each_bad_value_names_its_rule() {
        let p = defaults(Tier::Enterprise).unwrap();
        let patch = json!({
            "display_name": "",
            "language": "not a tag!",
            "timezone": "Mars/Olympus_Mons",
            "ai_preferences": {"learning_rate": 0, "personalization_level": "extreme", "mood_detection_enabled": "yes"},
            "security_settings": {"mfa_methods": ["sms", "sms"], "session_timeout_minutes": 1, "risk_score_threshold": 1.5}
        });
        assert_eq!(
            errors_of(apply_merge_patch(&p, &patch, Tier::Enterprise)),
            vec![
                ("display_name".into(), ErrorKind::Invalid, "length".into()),
                ("language".into(), ErrorKind::Invalid, "bcp47".into()),
                ("timezone".into(), ErrorKind::Invalid, "iana_zone".into()),
                ("ai_preferences.personalization_level".into(), ErrorKind::Invalid, "enum".into()),
                ("ai_preferences.learning_rate".into(), ErrorKind::Invalid, "range".into()),
                ("ai_preferences.mood_detection_enabled".into(), ErrorKind::Invalid, "type".into()),
                ("security_settings.mfa_methods".into(), ErrorKind::Invalid, "unique".into()),
                ("security_settings.session_timeout_minutes".into(), ErrorKind::Invalid, "range".into()),
                ("security_settings.risk_score_threshold".into(), ErrorKind::Invalid, "range".into()),
            ]
        );
    }

    #[test]
    fn null_resets_to_the_tier_default() {
        let p = new_profile(
            Tier::Premium,
            &json!({"display_name": "Jean", "security_settings": {"session_timeout_minutes": 60}}),
        )
        .unwrap();
        let reset = apply_merge_patch(
            &p,
            &json!({"display_name": null, "security_settings": {"session_timeout_minutes": null}}),
            Tier::Premium,
        )
        .unwrap();
        assert_eq!(reset.display_name, None);
        assert_eq!(reset.security_settings.session_timeout_minutes, 1440);
        let whole = apply_merge_patch(&p, &json!({"security_settings": null}), Tier::Premium).unwrap();
        assert_eq!(whole.security_settings, defaults(Tier::Premium).unwrap().security_settings);
    }

    #[test]
    fn custom_models_are_an_enterprise_feature_and_downgrades_fit() {
        let patch = json!({"ai_preferences": {"custom_model_training": true}});
        let premium = defaults(Tier::Premium).unwrap();
        assert_eq!(
            errors_of(apply_merge_patch(&premium, &patch, Tier::Premium)),
            vec![(
                "ai_preferences.custom_model_training".into(),
                ErrorKind::TierFeature,
                "tier_feature".into()
            )]
        );
        let enterprise =
            apply_merge_patch(&defaults(Tier::Enterprise).unwrap(), &patch, Tier::Enterprise).unwrap();
        assert!(enterprise.ai_preferences.custom_model_training);
        let downgraded = fit_to_tier(&enterprise, Tier::Free);
        assert!(!downgraded.ai_preferences.custom_model_training);
        assert_eq!(downgraded.ai_preferences.personalization_level, PersonalizationLevel::Standard);
    }
}

//! WebAuthn (passkeys and security keys) rules: a tier's policy on which authenticators may be
//! registered, the checks a credential's use must pass beside the signature (its counter never
//! goes backwards, its backup-eligible flag never changes), the limits of a label, and the
//! AAGUID read out of a registration's attestation object.
//!
//! The ceremonies themselves (challenges, signatures, attestation chains) are `webauthn-rs`'s,
//! at the origin; these are the decisions around them, as pure functions.

use serde::{Deserialize, Serialize};

/// How long a WebAuthn ceremony (its challenge and state) stays open.
pub const CEREMONY_TTL_MS: u64 = 5 * 60 * 1000;
/// The longest label a user may give a passkey, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// How many passkeys an account may hold.
pub const MAX_PASSKEYS: usize = 20;

/// A tier's rules for the authenticators its accounts may register (the templates'
/// `passkey_policy`). User verification (a fingerprint, a face, a device PIN) is required of
/// every ceremony on every tier; the policy narrows which authenticators are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyPolicy {
    /// Only hardware keys whose attestation chains to a CA the operator configured.
    pub attested_keys_only: bool,
    /// When set, only these AAGUIDs (authenticator models) may be registered.
    #[serde(default)]
    pub aaguid_allow: Option<Vec<String>>,
    /// AAGUIDs that may never be registered.
    #[serde(default)]
    pub aaguid_block: Vec<String>,
}

/// Why a registration or a use of a credential is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this authenticator model ({0}) is not allowed on this tier")]
    AaguidNotAllowed(String),
    #[error("this authenticator model ({0}) is blocked on this tier")]
    AaguidBlocked(String),
    #[error("the credential's signature counter did not move past {stored}: it may have been cloned")]
    CounterWentBackwards { stored: u32, seen: u32 },
    #[error("the credential's backup-eligible flag changed since it was registered")]
    BackupEligibilityChanged,
}

impl Refusal {
    /// The security event a refused use is recorded as.
    pub fn event_kind(&self) -> &'static str {
        match self {
            Refusal::AaguidNotAllowed(_) | Refusal::AaguidBlocked(_) => "passkey_refused_model",
            Refusal::CounterWentBackwards { .. } => "passkey_counter_regressed",
            Refusal::BackupEligibilityChanged => "passkey_backup_eligibility_changed",
        }
    }
}

/// Normalises an AAGUID to lower-case hyphenated form for comparison.
fn normal_aaguid(aaguid: &str) -> String {
    aaguid.trim().to_ascii_lowercase()
}

impl PasskeyPolicy {
    /// Whether an authenticator of model `aaguid` may be registered.
    pub fn admits(&self, aaguid: &str) -> Result<(), Refusal> {
        let id = normal_aaguid(aaguid);
        if self.aaguid_block.iter().any(|b| normal_aaguid(b) == id) {
            return Err(Refusal::AaguidBlocked(id));
        }
        if let Some(allow) = &self.aaguid_allow {
            if !allow.iter().any(|a| normal_aaguid(a) == id) {
                return Err(Refusal::AaguidNotAllowed(id));
            }
        }
        Ok(())
    }
}

/// What is stored of a credential that a use is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredUse {
    pub counter: u32,
    pub backup_eligible: bool,
}

/// What an assertion showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenUse {
    pub counter: u32,
    pub backup_eligible: bool,
}

/// Checks a use of a credential beside its signature (WebAuthn §6.1.1, §7.2 step 21): an
/// authenticator that counts must show a counter above the stored one (equal or lower means a
/// clone may exist); one that does not count shows 0 on both sides. The backup-eligible flag
/// is fixed at creation: a change means another authenticator holds the key.
pub fn check_use(stored: StoredUse, seen: SeenUse) -> Result<(), Refusal> {
    if stored.backup_eligible != seen.backup_eligible {
        return Err(Refusal::BackupEligibilityChanged);
    }
    if (stored.counter > 0 || seen.counter > 0) && seen.counter <= stored.counter {
        return Err(Refusal::CounterWentBackwards { stored: stored.counter, seen: seen.counter });
    }
    Ok(())
}

/// Which kind of authenticator a credential is, or a registration asks for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasskeyKind {
    /// A discoverable credential (on the device or in a password manager): passwordless
    /// sign-in, and a second factor.
    #[default]
    Passkey,
    /// A roaming security key (FIDO2 over USB/NFC), used as a second factor.
    SecurityKey,
}

impl PasskeyKind {
    /// The kind of a stored credential: a discoverable one is a passkey.
    pub fn of(discoverable: bool) -> Self {
        if discoverable {
            Self::Passkey
        } else {
            Self::SecurityKey
        }
    }

    /// Whether a credential of this kind is created discoverable (resident): it signs in
    /// without an email.
    pub fn discoverable(self) -> bool {
        self == Self::Passkey
    }

    /// The label of a credential registered without one.
    pub fn default_label(self) -> &'static str {
        match self {
            Self::Passkey => "Passkey",
            Self::SecurityKey => "Security key",
        }
    }
}

/// A passkey's label as given, trimmed; `None` when empty or too long.
pub fn label(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let ok = !trimmed.is_empty()
        && trimmed.chars().count() <= MAX_LABEL_CHARS
        && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_owned())
}

/// The AAGUID (authenticator model) in a registration's attestation object (CBOR: a map with
/// `fmt`, `attStmt` and `authData`), as a hyphenated lower-case UUID. The authenticator data
/// holds the RP id hash (32 bytes), flags (1), the counter (4), then the attested credential
/// data starting with the AAGUID (16). Without attestation it is only the authenticator's
/// claim. `None` when the object has no attested credential data.
pub fn aaguid_of(attestation_object: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\x68authData";
    let start = attestation_object.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = attestation_object.get(start..)?;
    let (&header, rest) = rest.split_first()?;
    let (len, body) = match header {
        0x40..=0x57 => (usize::from(header - 0x40), rest),
        0x58 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x59 => (usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])), rest.get(2..)?),
        _ => return None,
    };
    let auth_data = body.get(..len)?;
    let flags = *auth_data.get(32)?;
    if flags & 0x40 == 0 {
        return None; // no attested credential data
    }
    let id = auth_data.get(37..53)?;
    let hex = hex::encode(id);
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8)?,
        hex.get(8..12)?,
        hex.get(12..16)?,
        hex.get(16..20)?,
        hex.get(20..32)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRTUAL: &str = "01020304-0506-0708-0102-030405060708";

    #[test]
    fn a_credential_kind_follows_discoverability_and_names_an_unlabelled_credential() {
        assert_eq!(PasskeyKind::of(true), PasskeyKind::Passkey);
        assert_eq!(PasskeyKind::of(false), PasskeyKind::SecurityKey);
        for kind in [PasskeyKind::Passkey, PasskeyKind::SecurityKey] {
            assert_eq!(PasskeyKind::of(kind.discoverable()), kind);
        }
        assert_eq!(PasskeyKind::Passkey.default_label(), "Passkey");
        assert_eq!(PasskeyKind::SecurityKey.default_label(), "Security key");
        assert_eq!(PasskeyKind::default(), PasskeyKind::Passkey);
    }

    #[test]
    fn a_counter_must_move_forward_unless_the_authenticator_does_not_count() {
        let stored = |counter| StoredUse { counter, backup_eligible: false };
        let seen = |counter| SeenUse { counter, backup_eligible: false };
        assert_eq!(check_use(stored(1), seen(2)), Ok(()));
        assert_eq!(check_use(stored(0), seen(0)), Ok(()), "a passkey that does not count");
        assert_eq!(check_use(stored(0), seen(5)), Ok(()));
        assert_eq!(check_use(stored(5), seen(5)), Err(Refusal::CounterWentBackwards { stored: 5, seen: 5 }));
        assert_eq!(check_use(stored(5), seen(0)), Err(Refusal::CounterWentBackwards { stored: 5, seen: 0 }));
        assert_eq!(
            check_use(stored(9), seen(3)).map_err(|r| r.event_kind()),
            Err("passkey_counter_regressed")
        );
    }

    #[test]
    fn a_change_of_the_backup_eligible_flag_is_refused_either_way() {
        for (was, is) in [(false, true), (true, false)] {
            let refusal = check_use(
                StoredUse { counter: 0, backup_eligible: was },
                SeenUse { counter: 0, backup_eligible: is },
            );
            assert_eq!(refusal, Err(Refusal::BackupEligibilityChanged));
        }
        assert_eq!(Refusal::BackupEligibilityChanged.event_kind(), "passkey_backup_eligibility_changed");
    }

    #[test]
    fn the_policy_blocks_then_allows_by_aaguid() {
        let open = PasskeyPolicy::default();
        assert_eq!(open.admits(VIRTUAL), Ok(()));
        let blocked = PasskeyPolicy { aaguid_block: vec![VIRTUAL.to_uppercase()], ..open.clone() };
        assert_eq!(blocked.admits(VIRTUAL), Err(Refusal::AaguidBlocked(VIRTUAL.into())));
        let allow_other = PasskeyPolicy {
            aaguid_allow: Some(vec!["cb69481e-8ff7-4039-93ec-0a2729a154a8".into()]),
            ..open.clone()
        };
        assert_eq!(allow_other.admits(VIRTUAL), Err(Refusal::AaguidNotAllowed(VIRTUAL.into())));
        let allow_it = PasskeyPolicy { aaguid_allow: Some(vec![VIRTUAL.into()]), ..open };
        assert_eq!(allow_it.admits(VIRTUAL), Ok(()));
    }

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(label("  Laptop  "), Some("Laptop".into()));
        assert_eq!(label("   "), None);
        assert_eq!(label(&"é".repeat(MAX_LABEL_CHARS)), Some("é".repeat(MAX_LABEL_CHARS)));
        assert_eq!(label(&"a".repeat(MAX_LABEL_CHARS + 1)), None);
        assert_eq!(label("tab\there"), None);
    }

    fn attestation_object(flags: u8) -> Vec<u8> {
        // {"fmt": "none", "attStmt": {}, "authData": <bytes>} in CTAP2 canonical CBOR.
        let mut auth = vec![0xAA; 32];
        auth.push(flags);
        auth.extend([0, 0, 0, 1]);
        auth.extend([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        auth.extend([0, 16]);
        auth.extend([0x55; 16]);
        let mut out = vec![0xA3, 0x63];
        out.extend(b"fmt");
        out.push(0x64);
        out.extend(b"none");
        out.push(0x67);
        out.extend(b"attStmt");
        out.push(0xA0);
        out.push(0x68);
        out.extend(b"authData");
        out.push(0x58);
        out.push(u8::try_from(auth.len()).unwrap());
        out.extend(auth);
        out
    }

    #[test]
    fn the_aaguid_is_read_from_the_attested_credential_data() {
        assert_eq!(aaguid_of(&attestation_object(0x45)).as_deref(), Some(VIRTUAL));
        assert_eq!(aaguid_of(&attestation_object(0x05)), None, "no attested credential data");
        assert_eq!(aaguid_of(b"garbage"), None);
        assert_eq!(aaguid_of(&attestation_object(0x45)[..60]), None, "truncated");
    }

    #[test]
    fn the_templates_hold_each_tiers_policy() {
        use crate::tier::Tier;
        for tier in [Tier::Free, Tier::Premium, Tier::Enterprise, Tier::Vip] {
            let policy = &tier.rules().passkey_policy;
            assert!(!policy.attested_keys_only, "{tier}: attestation is the operator's choice");
            assert_eq!(policy.aaguid_allow, None);
        }
        // The virtual test authenticator's model is blocked on the enterprise and VIP tiers:
        // it is software, not the hardware those tiers ask for.
        assert!(Tier::Enterprise.rules().passkey_policy.admits(VIRTUAL).is_err());
        assert!(Tier::Free.rules().passkey_policy.admits(VIRTUAL).is_ok());
    }
}

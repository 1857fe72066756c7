//! The password policy (NIST SP 800-63B style): length counted in Unicode code points after
//! NFKC normalisation, never truncated; no password from the 10,000 most common; no password
//! that contains the account's email local part. Each refusal names the rule it broke.

use std::collections::HashSet;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

use crate::email::Email;

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 128;
/// A local part shorter than this (`jo@…`) is too common a substring to forbid.
pub const MIN_LOCAL_PART_CHECKED: usize = 3;

const COMMON: &str = include_str!("../data/common-passwords.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must have at least {min} characters (it has {actual})")]
    TooShort { min: usize, actual: usize },
    #[error("the password must have at most {max} characters (it has {actual})")]
    TooLong { max: usize, actual: usize },
    #[error("the password is among the 10,000 most common passwords")]
    Common,
    #[error("the password must not contain the email address's local part")]
    ContainsEmail,
}

impl PasswordError {
    /// The rule's stable name, for the API's error entries.
    pub fn rule(&self) -> &'static str {
        match self {
            PasswordError::TooShort { .. } => "min_length",
            PasswordError::TooLong { .. } => "max_length",
            PasswordError::Common => "common_password",
            PasswordError::ContainsEmail => "contains_email",
        }
    }
}

/// The form a password is hashed and compared in.
pub fn normalize_password(raw: &str) -> String {
    raw.nfkc().collect()
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
}

pub fn check_password(raw: &str, email: &Email) -> Result<(), PasswordError> {
    let normalised = normalize_password(raw);
    let chars = normalised.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort { min: MIN_CHARS, actual: chars });
    }
    if chars > MAX_CHARS {
        return Err(PasswordError::TooLong { max: MAX_CHARS, actual: chars });
    }
    let lowered = normalised.to_lowercase();
    if common_passwords().contains(lowered.as_str()) {
        return Err(PasswordError::Common);
    }
    let local = email.local_part();
    if local.chars().count() >= MIN_LOCAL_PART_CHECKED && lowered.contains(local) {
        return Err(PasswordError::ContainsEmail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("jean.dupont@example.com").unwrap()
    }

    #[test]
    fn the_list_holds_ten_thousand_passwords() {
        assert_eq!(common_passwords().len(), 10_000);
    }

    #[test]
    fn each_rule_is_checked_and_named() {
        assert_eq!(check_password("mot de passe sécurisé", &email()), Ok(()));
        assert_eq!(check_password("short", &email()), Err(PasswordError::TooShort { min: 12, actual: 5 }));
        assert_eq!(
            check_password(&"x".repeat(129), &email()),
            Err(PasswordError::TooLong { max: 128, actual: 129 })
        );
        assert_eq!(check_password("1qaz2wsx3edc", &email()), Err(PasswordError::Common));
        assert_eq!(check_password("1QAZ2WSX3EDC", &email()), Err(PasswordError::Common));
        assert_eq!(check_password("my Jean.Dupont password", &email()), Err(PasswordError::ContainsEmail));
        assert_eq!(PasswordError::Common.rule(), "common_password");
    }

    #[test]
    fn length_counts_code_points_after_nfkc() {
        // Twelve accented letters: more than twelve bytes, exactly twelve characters.
        assert_eq!(check_password("éééééééééééé", &email()), Ok(()));
        // The ligature "ﬃ" becomes "ffi" under NFKC, so four of them make twelve characters.
        assert_eq!(normalize_password("ﬃﬃﬃﬃ"), "ffiffiffiffi");
        assert_eq!(check_password("ﬃﬃﬃﬃ", &Email::parse("a@example.com").unwrap()), Ok(()));
        // 128 characters are accepted whole, never truncated.
        assert_eq!(check_password(&"é".repeat(128), &email()), Ok(()));
    }
}

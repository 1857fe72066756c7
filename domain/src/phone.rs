//! Phone numbers for SMS codes, in E.164 form (`+` then 8 to 15 digits, no leading zero in the
//! country code). What people type (`+33 6 12-34-56-78`, `+1 (415) 555 0100`) is accepted and
//! normalised; numbers without a country code are refused, since an SMS provider needs one.
//! This checks the shape only: whether the number reaches a phone is what the confirmation
//! code proves.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneError {
    MissingCountryCode,
    InvalidCharacter(char),
    Length(usize),
}

impl PhoneError {
    /// The rule that failed, as named in problem details.
    pub fn rule(&self) -> &'static str {
        match self {
            PhoneError::MissingCountryCode => "country_code",
            PhoneError::InvalidCharacter(_) => "characters",
            PhoneError::Length(_) => "length",
        }
    }
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneError::MissingCountryCode => {
                f.write_str("a phone number must start with + and its country code (E.164)")
            }
            PhoneError::InvalidCharacter(c) => write!(f, "{c:?} is not allowed in a phone number"),
            PhoneError::Length(n) => write!(f, "a phone number has 8 to 15 digits, not {n}"),
        }
    }
}

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let trimmed = raw.trim();
        let Some(rest) = trimmed.strip_prefix('+') else { return Err(PhoneError::MissingCountryCode) };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(PhoneError::InvalidCharacter(other)),
            }
        }
        if digits.starts_with('0') {
            return Err(PhoneError::MissingCountryCode);
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::Length(digits.len()));
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+33612345678` → `+33 ••• ••• 78`-like: the last two digits, for the owner to recognise.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let tail: String = digits.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
        format!("+{}{tail}", "•".repeat(digits.len().saturating_sub(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_people_type_is_normalised_to_e164() {
        assert_eq!(Phone::parse("+33 6 12-34-56-78").unwrap().as_str(), "+33612345678");
        assert_eq!(Phone::parse(" +1 (415) 555.0100 ").unwrap().as_str(), "+14155550100");
        assert_eq!(Phone::parse("+33612345678").unwrap().masked(), "+•••••••••78");
    }

    #[test]
    fn refusals_name_their_rule() {
        for (raw, rule) in [
            ("06 12 34 56 78", "country_code"),
            ("+0612345678", "country_code"),
            ("+33 6 12 34 56 7x", "characters"),
            ("+331234", "length"),
            ("+1234567890123456", "length"),
        ] {
            assert_eq!(Phone::parse(raw).unwrap_err().rule(), rule, "{raw}");
        }
    }
}

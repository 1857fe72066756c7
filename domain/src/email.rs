//! Email addresses, normalised at the boundary: trimmed and lower-cased as a whole (the
//! product treats addresses case-insensitively, so `User@Example.com` and `user@example.com`
//! are one account), and checked against a practical syntax.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address is required")]
    Empty,
    #[error("an email address has at most 254 characters")]
    TooLong,
    #[error("an email address has exactly one @ with text on both sides")]
    Shape,
    #[error("the part before the @ has at most 64 characters")]
    LocalTooLong,
    #[error("the domain must be a host name with a dot, like example.com")]
    Domain,
    #[error("an email address has no spaces or control characters")]
    Whitespace,
}

impl EmailError {
    /// The rule's stable name, for the API's error entries.
    pub fn rule(&self) -> &'static str {
        match self {
            EmailError::Empty => "required",
            EmailError::TooLong => "max_length",
            EmailError::Shape => "shape",
            EmailError::LocalTooLong => "local_part_length",
            EmailError::Domain => "domain",
            EmailError::Whitespace => "no_whitespace",
        }
    }
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Whitespace);
        }
        let (local, domain) = email.split_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(EmailError::Shape);
        }
        if local.chars().count() > 64 {
            return Err(EmailError::LocalTooLong);
        }
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err(EmailError::Domain);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        let e = Email::parse("  Jean.Dupont@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "jean.dupont@example.com");
        assert_eq!(e.local_part(), "jean.dupont");
    }

    #[test]
    fn each_rule_is_named() {
        let cases = [
            ("", EmailError::Empty),
            ("no-at-sign", EmailError::Shape),
            ("@example.com", EmailError::Shape),
            ("a@b@example.com", EmailError::Shape),
            ("user@localhost", EmailError::Domain),
            ("user@exa_mple.com", EmailError::Domain),
            ("user@.com", EmailError::Domain),
            ("us er@example.com", EmailError::Whitespace),
        ];
        for (raw, expected) in cases {
            assert_eq!(Email::parse(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(Email::parse(&format!("{}@example.com", "a".repeat(65))), Err(EmailError::LocalTooLong));
        assert_eq!(Email::parse(&format!("a@{}.com", "b".repeat(260))), Err(EmailError::TooLong));
    }
}

//! Email addresses, normalised at the boundary so that one mailbox is one account, however it
//! is typed:
//!
//! - Unicode NFKC first, so compatibility look-alikes become the characters they stand for
//!   (fullwidth `ｕｓｅｒ＠ｅｘａｍｐｌｅ．ｃｏｍ` is `user@example.com`, a ligature `ﬁ` is `fi`);
//! - the local part lower-cased (the product treats addresses case-insensitively, so
//!   `User@Example.com` and `user@example.com` are one account);
//! - the domain through IDNA (UTS #46 mapping, then Punycode), so `Bücher.example`,
//!   `bücher.example` and `xn--bcher-kva.example` are one domain, stored in its ASCII form;
//! - then checked against a practical syntax.
//!
//! For an all-ASCII address this is exactly the earlier trim-and-lower-case, so the blind index
//! of every such stored address is unchanged; `rewrap-keys` re-normalises the others.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

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
        // NFKC before anything else, so that the checks below see what the address means (a
        // fullwidth `＠` is an `@`, an ideographic space is a space); lower-casing can leave a
        // string that is not NFKC, hence the second pass.
        let email: String = raw.nfkc().collect::<String>().trim().to_lowercase().nfkc().collect();
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
        // UTS #46 processing (non-transitional, as browsers do): maps the domain (case, width,
        // the ideographic full stop as a dot) and encodes each Unicode label in Punycode.
        let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Domain)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err(EmailError::Domain);
        }
        let email = format!("{local}@{domain}");
        if email.chars().count() > 254 {
            return Err(EmailError::TooLong);
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
    fn ascii_addresses_normalise_as_before() {
        // The blind index of stored addresses depends on this form: for ASCII input it must stay
        // the earlier trim-and-lower-case.
        for raw in
            ["  Jean.Dupont@Example.COM ", "a+tag@sub.example.co.uk", "x_y-z@EXAMPLE-1.org", "=1@example.com"]
        {
            assert_eq!(Email::parse(raw).unwrap().as_str(), raw.trim().to_lowercase(), "{raw:?}");
        }
    }

    #[test]
    fn fullwidth_and_compatibility_forms_are_the_plain_address() {
        let plain = Email::parse("user@example.com").unwrap();
        for raw in [
            "ｕｓｅｒ@example.com",
            "ＵＳＥＲ＠ＥＸＡＭＰＬＥ．ＣＯＭ",
            "user@ｅｘａｍｐｌｅ.com",
            "user@example。com",
            "\u{3000}user@example.com\u{3000}",
        ] {
            assert_eq!(Email::parse(raw).as_ref(), Ok(&plain), "{raw:?}");
        }
        assert_eq!(Email::parse("ﬁle@example.com").unwrap().as_str(), "file@example.com");
    }

    #[test]
    fn unicode_domains_and_their_punycode_are_one_address() {
        let ascii = Email::parse("user@xn--bcher-kva.example").unwrap();
        assert_eq!(ascii.as_str(), "user@xn--bcher-kva.example");
        for raw in [
            "user@bücher.example",
            "user@BÜCHER.example",
            "User@Bu\u{308}cher.EXAMPLE",
            "user@XN--BCHER-KVA.example",
        ] {
            assert_eq!(Email::parse(raw).as_ref(), Ok(&ascii), "{raw:?}");
        }
        // The local part keeps its (lower-cased, NFKC) Unicode: only the domain has an ASCII form.
        assert_eq!(Email::parse("Jérôme@example.com").unwrap().as_str(), "jérôme@example.com");
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
            ("us\u{3000}er@example.com", EmailError::Whitespace),
            ("user＠＠example.com", EmailError::Shape),
            ("user@exa mple.com", EmailError::Whitespace),
            ("user@xn--a.example", EmailError::Domain),
        ];
        for (raw, expected) in cases {
            assert_eq!(Email::parse(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(Email::parse(&format!("{}@example.com", "a".repeat(65))), Err(EmailError::LocalTooLong));
        assert_eq!(Email::parse(&format!("a@{}.com", "b".repeat(260))), Err(EmailError::TooLong));
    }
}

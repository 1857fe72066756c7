//! TOTP (RFC 6238): HMAC-SHA-1 over the 30-second time step, 6 digits, accepted one step
//! either side of now. A code is accepted once only: verification returns the step it matched,
//! which the caller stores, and a step at or before the last one used is refused.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::time::UnixMillis;

pub const STEP_SECS: u64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted either side of now, for clock drift between phone and server.
pub const SKEW_STEPS: u64 = 1;
/// 160-bit secrets, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// The time step of `now`.
pub fn step_of(now: UnixMillis) -> u64 {
    now.as_secs() / STEP_SECS
}

/// The code of `step` with `digits` digits (RFC 4226 dynamic truncation).
pub fn code_at_step(secret: &[u8], step: u64, digits: u32) -> String {
    // HMAC accepts keys of any length; an empty code would never match a user's.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else { return String::new() };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest.last().copied().unwrap_or(0) & 0x0f);
    let word: [u8; 4] = match digest.get(offset..offset + 4).and_then(|s| s.try_into().ok()) {
        Some(w) => w,
        None => return String::new(),
    };
    let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", binary % modulus, width = digits as usize)
}

/// The six-digit code at `now`.
pub fn code_at(secret: &[u8], now: UnixMillis) -> String {
    code_at_step(secret, step_of(now), DIGITS)
}

/// The step `code` matches at `now` (±1 step), if it is later than `last_used_step`.
pub fn verify(secret: &[u8], code: &str, now: UnixMillis, last_used_step: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let first = current.saturating_sub(SKEW_STEPS);
    (first..=current.saturating_add(SKEW_STEPS))
        .filter(|step| last_used_step.is_none_or(|last| *step > last))
        .find(|step| constant_time_eq(code_at_step(secret, *step, DIGITS).as_bytes(), code.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The secret as authenticator apps take it (RFC 4648 base32, no padding).
pub fn secret_base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI of a secret, for a QR code.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        secret_base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (secs, expected) in vectors {
            assert_eq!(code_at_step(RFC_SECRET, secs / STEP_SECS, 8), expected, "T = {secs}");
        }
        // The six-digit codes are the last six digits.
        assert_eq!(code_at(RFC_SECRET, UnixMillis::from_secs(59)), "287082");
    }

    #[test]
    fn codes_are_accepted_within_one_step_and_once() {
        let now = UnixMillis::from_secs(1_111_111_111);
        let code = code_at(RFC_SECRET, now);
        let step = step_of(now);
        assert_eq!(verify(RFC_SECRET, &code, now, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, UnixMillis::from_secs(1_111_111_111 + 30), None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, UnixMillis::from_secs(1_111_111_111 + 60), None), None);
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None, "a code is accepted once only");
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, None), None);
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        assert_eq!(secret_base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            otpauth_uri(RFC_SECRET, "Music AI", "jean@example.com"),
            "otpauth://totp/Music%20AI:jean%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Music%20AI&algorithm=SHA1&digits=6&period=30"
        );
    }
}

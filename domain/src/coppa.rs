//! Children's privacy (COPPA): the age a signup declares, read before anything else of the
//! request, decides whether a parent must consent first (under 13) and whether the account is a
//! minor's (under the configured age, 16 by default), whose personalisation and marketing
//! start off.

use crate::time::UnixMillis;

/// Under this age a parent's verifiable consent comes before the account can be used.
pub const PARENTAL_CONSENT_UNDER: u32 = 13;
/// The default age under which an account is a minor's.
pub const DEFAULT_MINOR_UNDER: u32 = 16;
/// How long a parent's consent link works.
pub const PARENTAL_LINK_TTL_MS: u64 = 72 * 60 * 60 * 1000;

/// What the signup declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeGroup {
    /// Under 13: a parent must consent.
    Child,
    /// From 13 to under the minor age.
    Minor,
    Adult,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    #[error("birth_date must be a date YYYY-MM-DD")]
    Malformed,
    #[error("birth_date is in the future")]
    Future,
}

impl AgeError {
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Malformed => "date",
            Self::Future => "past",
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// A `YYYY-MM-DD` date, checked (a 30th of February is refused).
pub fn parse_date(raw: &str) -> Result<(i64, u32, u32), AgeError> {
    let mut parts = raw.trim().splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AgeError::Malformed);
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(AgeError::Malformed);
    }
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| AgeError::Malformed)?,
        m.parse().map_err(|_| AgeError::Malformed)?,
        d.parse().map_err(|_| AgeError::Malformed)?,
    );
    if !(1..=12).contains(&m) || d == 0 || civil_from_days(days_from_civil(y, m, d)) != (y, m, d) {
        return Err(AgeError::Malformed);
    }
    Ok((y, m, d))
}

/// Full years between a birth date and `now` (UTC).
pub fn age_on(birth: (i64, u32, u32), now: UnixMillis) -> Result<u32, AgeError> {
    let today = civil_from_days(i64::try_from(now.0 / 86_400_000).unwrap_or(0));
    if days_from_civil(birth.0, birth.1, birth.2) > days_from_civil(today.0, today.1, today.2) {
        return Err(AgeError::Future);
    }
    let mut years = today.0 - birth.0;
    if (today.1, today.2) < (birth.1, birth.2) {
        years -= 1;
    }
    Ok(u32::try_from(years.max(0)).unwrap_or(u32::MAX))
}

/// The group a declared birth date puts a signup in.
pub fn group(birth_date: &str, now: UnixMillis, minor_under: u32) -> Result<AgeGroup, AgeError> {
    let age = age_on(parse_date(birth_date)?, now)?;
    Ok(if age < PARENTAL_CONSENT_UNDER {
        AgeGroup::Child
    } else if age < minor_under {
        AgeGroup::Minor
    } else {
        AgeGroup::Adult
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Midday UTC of a date.
    fn at(y: i64, m: u32, d: u32) -> UnixMillis {
        UnixMillis(u64::try_from(days_from_civil(y, m, d)).unwrap() * 86_400_000 + 43_200_000)
    }

    #[test]
    fn dates_round_trip_and_impossible_ones_are_refused() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(parse_date("2012-06-30"), Ok((2012, 6, 30)));
        for bad in ["2012-02-30", "2011-02-29", "2012-13-01", "12-06-30", "2012/06/30", "", "2012-6-3"] {
            assert_eq!(parse_date(bad), Err(AgeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_thirteenth_birthday_ends_childhood_and_the_sixteenth_minority() {
        assert_eq!(group("2013-11-25", at(2026, 11, 24), 16), Ok(AgeGroup::Child));
        assert_eq!(group("2013-11-25", at(2026, 11, 25), 16), Ok(AgeGroup::Minor));
        assert_eq!(group("2010-11-25", at(2026, 11, 24), 16), Ok(AgeGroup::Minor));
        assert_eq!(group("2010-11-25", at(2026, 11, 25), 16), Ok(AgeGroup::Adult));
        assert_eq!(group("2010-11-25", at(2026, 11, 25), 18), Ok(AgeGroup::Minor));
        assert_eq!(group("2030-01-01", at(2026, 11, 25), 16), Err(AgeError::Future));
    }
}

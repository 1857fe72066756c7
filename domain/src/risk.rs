//! Risk-based authentication: a login's context against the user's history gives a score in
//! [0, 1] and the signals that fired, each with its documented weight. At or above the user's
//! `risk_score_threshold` a login needs a second factor; with no factor enrolled, a score at or
//! above [`EXTREME`] is refused outright.
//!
//! | signal | weight | fires when |
//! | --- | --- | --- |
//! | `new_device` | 0.30 | the device id never logged in successfully for this user |
//! | `new_network` | 0.20 | the address's network (IPv4 /24, IPv6 /48) was never used |
//! | `new_country` | 0.15 | the country (from the request's `cf` object) was never used |
//! | `user_agent_changed` | 0.10 | the user agent differs from this device's last login's (or the account's last, for a new device) |
//! | `recent_failures` | 0.05 each, at most 0.25 | failed attempts on the account in the last 24 h |
//! | `unusual_hour` | 0.10 | with 10+ past logins, none within an hour of this one's UTC hour |
//! | `impossible_travel` | 0.40 | the last successful login, under 2 h ago, was from another country |
//!
//! A user with no successful login yet has no baseline: the novelty signals (device, network,
//! country, user agent, hour, travel) stay silent until the first login establishes one.

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// At or above this score, a login without an enrolled second factor is refused.
pub const EXTREME: f64 = 0.9;

pub const W_NEW_DEVICE: f64 = 0.30;
pub const W_NEW_NETWORK: f64 = 0.20;
pub const W_NEW_COUNTRY: f64 = 0.15;
pub const W_USER_AGENT: f64 = 0.10;
pub const W_FAILURE: f64 = 0.05;
pub const W_FAILURES_MAX: f64 = 0.25;
pub const W_UNUSUAL_HOUR: f64 = 0.10;
pub const W_IMPOSSIBLE_TRAVEL: f64 = 0.40;
const TRAVEL_WINDOW_MS: u64 = 2 * 3600 * 1000;
const HOUR_BASELINE: usize = 10;

/// Where a login comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginContext {
    pub device_id: Option<String>,
    /// The address's network ([`network_of`]).
    pub network: Option<String>,
    pub country: Option<String>,
    pub user_agent: Option<String>,
}

/// A past successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastLogin {
    pub context: LoginContext,
    pub at: UnixMillis,
}

/// One signal that fired, with its weight and what it saw.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub signal: String,
    pub weight: f64,
    pub detail: String,
}

/// A login's risk: its score in [0, 1] and the signals that fired.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Risk))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub score: f64,
    pub signals: Vec<Signal>,
}

/// The network of an address: its /24 for IPv4, its /48 for IPv6, else the text itself.
pub fn network_of(ip: &str) -> String {
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        let [a, b, c, _] = v4.octets();
        format!("{a}.{b}.{c}.0/24")
    } else if let Ok(v6) = ip.parse::<std::net::Ipv6Addr>() {
        let s = v6.segments();
        format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
    } else {
        ip.to_owned()
    }
}

fn hour_of(t: UnixMillis) -> u64 {
    (t.as_secs() / 3600) % 24
}

/// Scores `context` at `now` against the successful logins in `history` (newest last) and the
/// account's failures of the last 24 hours.
pub fn assess(
    context: &LoginContext,
    history: &[PastLogin],
    recent_failures: u32,
    now: UnixMillis,
) -> Assessment {
    let mut signals = Vec::new();
    let mut fire = |signal: &str, weight: f64, detail: String| {
        signals.push(Signal { signal: signal.to_owned(), weight, detail });
    };
    if recent_failures > 0 {
        let weight = (f64::from(recent_failures) * W_FAILURE).min(W_FAILURES_MAX);
        fire("recent_failures", weight, format!("{recent_failures} failed attempts in the last 24 h"));
    }
    if let Some(last) = history.last() {
        let seen = |pick: fn(&LoginContext) -> Option<&String>, value: &Option<String>| match value {
            Some(v) => history.iter().any(|h| pick(&h.context) == Some(v)),
            None => true,
        };
        if !seen(|c| c.device_id.as_ref(), &context.device_id) || context.device_id.is_none() {
            fire("new_device", W_NEW_DEVICE, "a device never used for this account".into());
        }
        if !seen(|c| c.network.as_ref(), &context.network) {
            fire(
                "new_network",
                W_NEW_NETWORK,
                format!("network {} never used", context.network.clone().unwrap_or_default()),
            );
        }
        if !seen(|c| c.country.as_ref(), &context.country) {
            fire(
                "new_country",
                W_NEW_COUNTRY,
                format!("country {} never used", context.country.clone().unwrap_or_default()),
            );
        }
        // The agent is compared with this device's last login when the device is known (a
        // phone and a laptop legitimately differ), else with the account's last login.
        let reference = history
            .iter()
            .rev()
            .find(|h| context.device_id.is_some() && h.context.device_id == context.device_id)
            .unwrap_or(last);
        if context.user_agent.is_some()
            && reference.context.user_agent.is_some()
            && context.user_agent != reference.context.user_agent
        {
            fire(
                "user_agent_changed",
                W_USER_AGENT,
                "the browser or app differs from the last login's".into(),
            );
        }
        if history.len() >= HOUR_BASELINE {
            let hour = hour_of(now);
            let usual = history.iter().any(|h| {
                let d = hour_of(h.at).abs_diff(hour);
                d <= 1 || d == 23
            });
            if !usual {
                fire("unusual_hour", W_UNUSUAL_HOUR, format!("no earlier login near {hour:02}:00 UTC"));
            }
        }
        if let (Some(here), Some(there)) = (&context.country, &last.context.country) {
            if here != there && now.0.saturating_sub(last.at.0) < TRAVEL_WINDOW_MS {
                let minutes = now.0.saturating_sub(last.at.0) / 60_000;
                fire(
                    "impossible_travel",
                    W_IMPOSSIBLE_TRAVEL,
                    format!("from {there} to {here} in {minutes} min"),
                );
            }
        }
    }
    let score = signals.iter().map(|s| s.weight).sum::<f64>().min(1.0);
    // Two decimals: the weights are two-decimal numbers, and float sums should not show noise.
    Assessment { score: (score * 100.0).round() / 100.0, signals }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

    fn ctx(device: &str, network: &str, ua: &str) -> LoginContext {
        LoginContext {
            device_id: Some(device.into()),
            network: Some(network.into()),
            country: None,
            user_agent: Some(ua.into()),
        }
    }

    fn names(a: &Assessment) -> Vec<&str> {
        a.signals.iter().map(|s| s.signal.as_str()).collect()
    }

    #[test]
    fn the_first_login_sets_the_baseline() {
        let a = assess(&ctx("d1", "10.0.0.0/24", "ua"), &[], 0, NOW);
        assert_eq!(a.score, 0.0);
        assert!(a.signals.is_empty());
    }

    #[test]
    fn a_new_device_on_a_new_network_after_failures_needs_a_second_factor() {
        let history =
            [PastLogin { context: ctx("d1", "10.0.0.0/24", "ua-1"), at: NOW.saturating_sub_ms(86_400_000) }];
        let a = assess(&ctx("d2", "192.0.2.0/24", "ua-2"), &history, 3, NOW);
        assert_eq!(names(&a), vec!["recent_failures", "new_device", "new_network", "user_agent_changed"]);
        assert_eq!(a.score, 0.75);
        let known = assess(&ctx("d1", "10.0.0.0/24", "ua-1"), &history, 0, NOW);
        assert_eq!(known.score, 0.0);
        // After a login from another device with another agent, the first device's own agent
        // is still the reference for it.
        let mut two = history.to_vec();
        two.push(PastLogin { context: ctx("d2", "10.0.0.0/24", "ua-2"), at: NOW.saturating_sub_ms(1000) });
        assert_eq!(assess(&ctx("d1", "10.0.0.0/24", "ua-1"), &two, 0, NOW).score, 0.0);
    }

    #[test]
    fn impossible_travel_and_the_cap() {
        let mut here = ctx("d1", "10.0.0.0/24", "ua");
        here.country = Some("FR".into());
        let history = [PastLogin { context: here.clone(), at: NOW.saturating_sub_ms(30 * 60_000) }];
        let mut there = ctx("d9", "203.0.113.0/24", "other");
        there.country = Some("JP".into());
        let a = assess(&there, &history, 10, NOW);
        assert_eq!(
            names(&a),
            vec![
                "recent_failures",
                "new_device",
                "new_network",
                "new_country",
                "user_agent_changed",
                "impossible_travel"
            ]
        );
        assert_eq!(a.score, 1.0);
        assert_eq!(a.signals.last().unwrap().detail, "from FR to JP in 30 min");
    }

    #[test]
    fn networks_are_prefixes() {
        assert_eq!(network_of("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(network_of("2001:db8:1:2::1"), "2001:db8:1::/48");
        assert_eq!(network_of("unknown"), "unknown");
    }

    #[test]
    fn unusual_hours_need_a_baseline() {
        let at = |h: u64| UnixMillis(NOW.0 - NOW.0 % 86_400_000 + h * 3_600_000);
        let history: Vec<PastLogin> = (0..10)
            .map(|i| PastLogin { context: ctx("d1", "n", "ua"), at: at(9).saturating_sub_ms(i * 86_400_000) })
            .collect();
        assert_eq!(names(&assess(&ctx("d1", "n", "ua"), &history, 0, at(10))), Vec::<&str>::new());
        assert_eq!(names(&assess(&ctx("d1", "n", "ua"), &history, 0, at(3))), vec!["unusual_hour"]);
    }
}

//! Network addresses as the edge's rules see them: the key a client is rate-limited under, and
//! whether a URL may carry the edge → origin channel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The key under which a client address is limited: an IPv4 address as it is, an IPv6
/// address as its /64 prefix (`2001:db8:1:2::/64`), anything unparsable as `unknown`.
///
/// One IPv6 subscriber commonly holds a whole /64 and can pick any address in it, so limiting
/// per address would give them 2^64 quotas. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`)
/// is the IPv4 client it maps.
pub fn client_key(address: &str) -> String {
    match address.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
        Err(_) => "unknown".to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("must be an http(s) URL")]
    NotHttp,
    #[error(
        "must use https:// (plain http:// is allowed only for a loopback host: 127.0.0.0/8, ::1, localhost)"
    )]
    PlainHttpToNonLoopback,
}

/// Whether `url` may carry the signed edge → origin channel: `https://` anywhere, `http://`
/// only to a loopback host (local development and tests), where no network lies in between.
/// The requests are signed either way, but their bodies (passwords at login) and the answers
/// are not encrypted by the signature.
pub fn check_origin_url(url: &str) -> Result<(), ChannelError> {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else { return Err(ChannelError::NotHttp) };
    // The authority ends at the first `/`, `?` or `#`; user information (`user@`) is dropped.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(ChannelError::PlainHttpToNonLoopback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_are_their_own_key() {
        assert_eq!(client_key("192.0.2.17"), "192.0.2.17");
        assert_eq!(client_key(" 198.51.100.1 "), "198.51.100.1");
        assert_eq!(client_key("::ffff:192.0.2.17"), "192.0.2.17");
    }

    #[test]
    fn ipv6_addresses_are_limited_per_64() {
        let a = client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        let b = client_key("2001:0db8:0001:0002::1");
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(client_key("2001:db8:1:3::1"), a);
        assert_eq!(client_key("::1"), "::/64");
    }

    #[test]
    fn unparsable_addresses_share_one_key() {
        assert_eq!(client_key(""), "unknown");
        assert_eq!(client_key("unknown"), "unknown");
        assert_eq!(client_key("192.0.2.1:443"), "unknown");
        assert_eq!(client_key("ip:../../x"), "unknown");
    }

    #[test]
    fn the_origin_url_must_be_https_unless_loopback() {
        assert_eq!(check_origin_url("https://origin.example.com"), Ok(()));
        assert_eq!(check_origin_url("HTTPS://origin.example.com/base"), Ok(()));
        for local in [
            "http://127.0.0.1:8787",
            "http://127.1.2.3",
            "http://localhost:3000/",
            "http://[::1]:8080",
            "http://user@127.0.0.1:80",
        ] {
            assert_eq!(check_origin_url(local), Ok(()), "{local}");
        }
        for remote in [
            "http://origin.example.com",
            "http://10.0.0.1:8080",
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://[::2]:80",
            "http://127.0.0.1@evil.example.com",
        ] {
            assert_eq!(check_origin_url(remote), Err(ChannelError::PlainHttpToNonLoopback), "{remote}");
        }
        assert_eq!(check_origin_url("ftp://127.0.0.1"), Err(ChannelError::NotHttp));
        assert_eq!(check_origin_url("127.0.0.1:80"), Err(ChannelError::NotHttp));
    }
}

//! Who is asking: bearer and basic credentials checked in constant time, the client address
//! behind trusted proxies (for rate limits), and which signal key signed a batch — all from
//! headers, before any body is read.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use prewarm_shared::Secret;
use prewarm_shared::signals::{KEY_ID_HEADER, key_id, tokens_match};

use super::AppError;
use crate::config::{Cidr, TrainerConfig};

/// The bearer token, or the password of HTTP Basic credentials (what a browser prompts for and
/// Prometheus' `basic_auth` sends; the user name is ignored).
pub fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_owned())
}

/// Checks `presented` against `expected`, in constant time.
pub fn matches(presented: Option<&str>, expected: &Secret) -> bool {
    presented.is_some_and(|p| tokens_match(p.as_bytes(), expected.as_bytes()))
}

/// A write endpoint's token: unset disables the endpoint (503), a wrong one is 401.
pub fn require(headers: &HeaderMap, expected: Option<&Secret>, name: &'static str) -> Result<(), AppError> {
    let expected = expected.ok_or(AppError::NotConfigured(name))?;
    if matches(presented(headers).as_deref(), expected) { Ok(()) } else { Err(AppError::Unauthorized) }
}

/// The read token, when one is configured (else reads are open).
pub fn require_read(headers: &HeaderMap, config: &TrainerConfig) -> Result<(), AppError> {
    match &config.read_token {
        None => Ok(()),
        Some(expected) if matches(presented(headers).as_deref(), expected) => Ok(()),
        Some(_) => Err(AppError::Unauthorized),
    }
}

/// The signal key the batch names by its id ([`KEY_ID_HEADER`]): the current one or the one
/// being rotated out. An unknown id is refused before the body is read.
pub fn signal_key<'a>(headers: &HeaderMap, config: &'a TrainerConfig) -> Result<&'a Secret, AppError> {
    if config.signal_key.is_none() {
        return Err(AppError::NotConfigured("signal_key (PREWARM_SIGNAL_KEY)"));
    }
    let id = headers.get(KEY_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).ok_or(AppError::Unauthorized)?;
    config
        .signal_keys()
        .find(|key| tokens_match(id.as_bytes(), key_id(key.as_bytes()).as_bytes()))
        .ok_or(AppError::Unauthorized)
}

/// The client a request comes from, for rate limits: the peer, or — when the peer is a
/// trusted proxy — the right-most `X-Forwarded-For` address that is not one (addresses to its
/// left could be anything the client wrote). IPv6 clients are keyed by their /64, the block
/// one subscriber is usually given, so rotating addresses within it gains nothing.
pub fn client_key(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer;
    if is_trusted(peer) {
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
    }
    rate_key(client)
}

/// IPv4 as is (also when mapped into IPv6); IPv6 masked to its /64.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn the_client_behind_trusted_proxies_is_the_right_most_untrusted_hop() {
        let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let proxy: SocketAddr = "10.0.0.5:443".parse().expect("addr");
        let stranger: SocketAddr = "203.0.113.9:443".parse().expect("addr");
        let headers = forwarded("198.51.100.1, 192.0.2.7, 10.0.0.9");
        assert_eq!(client_key(Some(proxy), &headers, &trusted), IpAddr::from([192, 0, 2, 7]));
        // An untrusted peer's header is ignored: it could write anything there.
        assert_eq!(client_key(Some(stranger), &headers, &trusted), IpAddr::from([203, 0, 113, 9]));
        // Nothing trusted configured: the peer.
        assert_eq!(client_key(Some(proxy), &headers, &[]), IpAddr::from([10, 0, 0, 5]));
        // Garbage stops the walk at the last hop that parsed.
        assert_eq!(client_key(Some(proxy), &forwarded("nonsense, 10.0.0.9"), &trusted), IpAddr::from([10, 0, 0, 9]));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:1".parse().expect("addr");
        let b: SocketAddr = "[2001:db8:1:2:bbbb::2]:1".parse().expect("addr");
        let c: SocketAddr = "[2001:db8:1:3::1]:1".parse().expect("addr");
        let key = |p| client_key(Some(p), &HeaderMap::new(), &[]);
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:1".parse().expect("addr");
        assert_eq!(key(mapped), IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn bearer_and_basic_credentials_are_read() {
        let secret = Secret::from("read-token-0123456789");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer read-token-0123456789"));
        assert!(matches(presented(&headers).as_deref(), &secret));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:read-token-0123456789");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {basic}")).expect("header"));
        assert!(matches(presented(&headers).as_deref(), &secret));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert!(!matches(presented(&headers).as_deref(), &secret));
    }
}

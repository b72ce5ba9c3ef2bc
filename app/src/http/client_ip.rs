//! The client's address: the TCP peer, or, when the peer is a trusted proxy (nginx, a load
//! balancer), the address it reports in `X-Forwarded-For`. Anyone can send that header, so
//! it is believed only from the proxies listed in `http.trusted_proxies`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, Extensions, HeaderMap},
};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// An address or a network in CIDR notation (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyNet {
    network: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 peers of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for ProxyNet {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an IP address or a network such as 10.0.0.0/8");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(address.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<ProxyNet> for String {
    fn from(net: ProxyNet) -> String {
        format!("{}/{}", net.network, net.prefix)
    }
}

/// The client's address, for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The peer is taken from the connection; without one (an app served some other way) the
/// unspecified address stands for every client.
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions, trusted: &[ProxyNet]) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| {
            canonical(info.0.ip())
        });
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Each proxy appends the address it received from: walk from the nearest hop back,
    // through trusted proxies, to the first address that is not one.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(client) {
                    break;
                }
            }
            // Garbage (or an obfuscated identifier): the last proxy's word is all we have.
            Err(_) => break,
        }
    }
    client
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(
            &parts.headers,
            &parts.extensions,
            &state.config.http.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn from(peer: &str, xff: Option<&str>, trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        }
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 4000)));
        let trusted: Vec<ProxyNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_ip(&headers, &extensions, &trusted).to_string()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        assert_eq!(
            from("198.51.100.7", Some("203.0.113.1"), &[]),
            "198.51.100.7"
        );
        assert_eq!(
            from("10.0.0.2", Some("203.0.113.1"), &["10.0.0.0/8"]),
            "203.0.113.1"
        );
        // A client's own forged entry sits left of what the trusted proxies appended.
        assert_eq!(
            from(
                "10.0.0.2",
                Some("1.2.3.4, 203.0.113.1, 10.0.0.9"),
                &["10.0.0.0/8"]
            ),
            "203.0.113.1"
        );
        assert_eq!(from("10.0.0.2", None, &["10.0.0.0/8"]), "10.0.0.2");
        assert_eq!(from("10.0.0.2", Some("junk"), &["10.0.0.2"]), "10.0.0.2");
        assert_eq!(
            from("::ffff:10.0.0.2", Some("2001:db8::1"), &["10.0.0.2"]),
            "2001:db8::1"
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net: ProxyNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains("192.168.4.5".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<ProxyNet>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("fd00::/8"
            .parse::<ProxyNet>()
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<ProxyNet>().is_err());
        assert!("nginx".parse::<ProxyNet>().is_err());
        assert_eq!(String::from("::1".parse::<ProxyNet>().unwrap()), "::1/128");
    }
}

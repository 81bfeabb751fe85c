//! The client's address behind reverse proxies: `X-Forwarded-For` is believed only when the
//! TCP peer is a configured trusted proxy (`http.trusted_proxies`), and then only up to the
//! first address that is not itself trusted, read from the right (the part of the header the
//! trusted proxies wrote). A client cannot spoof its address by sending the header itself: a
//! direct connection's header is ignored, and what a client prepends lies left of the address
//! the first trusted proxy appended. The address is what audit records and per-address login
//! throttling use.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client's address as determined for this request (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `http.trusted_proxies` entry that is neither an IP address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected IP addresses or CIDR ranges separated by commas, such as \"10.0.0.0/8, 192.0.2.7\""
)]
pub struct TrustedProxiesError;

impl TrustedProxies {
    /// Parses a comma-separated list of addresses (`192.0.2.7`, `::1`) and ranges
    /// (`10.0.0.0/8`). Empty means none: every connection's peer is the client.
    pub fn parse(list: &str) -> Result<TrustedProxies, TrustedProxiesError> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => IpNet::from(item.parse::<IpAddr>().map_err(|_| TrustedProxiesError)?),
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    /// No trusted proxies.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` carrying `forwarded_for` (every
    /// `X-Forwarded-For` value, in order).
    pub(crate) fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for part in forwarded_for.iter().rev().flat_map(|v| v.rsplit(',')) {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        break;
                    }
                }
                // A malformed entry: nothing left of it can be believed.
                Err(_) => break,
            }
        }
        client
    }
}

/// Middleware: records [`ClientAddr`] for the request.
pub(crate) async fn resolve(
    trusted: Arc<TrustedProxies>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    if let Some(peer) = peer {
        let values: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = trusted.client(peer, &values);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

impl crate::App {
    /// Believes `X-Forwarded-For` from `proxies` (see the module documentation).
    pub fn with_trusted_proxies(self, proxies: TrustedProxies) -> Self {
        let proxies = Arc::new(proxies);
        Self {
            router: self.router.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| resolve(Arc::clone(&proxies), req, next),
            )),
            routes: self.routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap_or_default();
        // A direct client's header is ignored.
        assert_eq!(
            t.client(ip("198.51.100.9"), &["203.0.113.5"]),
            ip("198.51.100.9")
        );
        // Through one trusted proxy.
        assert_eq!(
            t.client(ip("192.0.2.7"), &["203.0.113.5"]),
            ip("203.0.113.5")
        );
        // A client-forged prefix is skipped: the rightmost untrusted address wins.
        assert_eq!(
            t.client(ip("10.1.2.3"), &["6.6.6.6, 203.0.113.5, 10.9.9.9"]),
            ip("203.0.113.5")
        );
        // Several header lines read as one list.
        assert_eq!(
            t.client(ip("10.1.2.3"), &["6.6.6.6", "203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Malformed: stop at the last good address.
        assert_eq!(
            t.client(ip("10.1.2.3"), &["203.0.113.5, junk, 10.2.2.2"]),
            ip("10.2.2.2")
        );
        // No header through a proxy: the proxy is the client.
        assert_eq!(t.client(ip("10.1.2.3"), &[]), ip("10.1.2.3"));
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        assert_eq!(
            t.client(ip("::ffff:192.0.2.7"), &["203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Nothing trusted: the peer, always.
        let none = TrustedProxies::parse("").unwrap_or_default();
        assert!(none.is_empty());
        assert_eq!(
            none.client(ip("10.1.2.3"), &["203.0.113.5"]),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["10.0.0.0/33", "example.com", "10.0.0", "1.2.3.4/8/9"] {
            assert_eq!(
                TrustedProxies::parse(bad),
                Err(TrustedProxiesError),
                "{bad}"
            );
        }
        assert!(TrustedProxies::parse(" ::1 , fd00::/8 ,").is_ok());
    }
}

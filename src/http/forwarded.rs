//! The client's address behind trusted proxies (`server.trusted_proxies`).
//!
//! Every per-address limit — failed client authentications at `/token`, `/introspect` and
//! `/revoke` (TOK-14), admin sign-in, admin API tokens, registration — keys on the address the
//! request came from. Behind a TLS proxy that is the proxy's, so all clients would share one
//! budget and one attacker's failures would lock everyone out. When the TCP peer is a trusted
//! proxy, the client is the nearest address in `X-Forwarded-For` that is not itself a trusted
//! proxy, read from the right: each proxy appends the address it received the request from, so
//! only the entries our own proxies appended can be believed, and whatever a client wrote to
//! the left of them is ignored. The layer rewrites the connection's `ConnectInfo`, so every
//! handler that reads it sees the client without knowing about proxies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// Longest `X-Forwarded-For` chain examined; a longer one is cut at the proxy end.
const MAX_HOPS: usize = 20;

/// The networks of the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `server.trusted_proxies`: addresses (`127.0.0.1`, `::1`) or networks in CIDR
    /// notation (`10.0.0.0/8`). An error names the entry.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "`{entry}` is neither an IP address nor a network such as 10.0.0.0/8"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether no proxy is trusted (the header is then never read).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` carrying the `X-Forwarded-For` values
    /// `forwarded` (each header's value, in order). A peer that is not a trusted proxy is the
    /// client, whatever it claims. Otherwise the chain is read from the right, past trusted
    /// proxies, to the first other address; an entry that is not an address ends the walk at
    /// the last trusted hop, so garbage cannot choose the result.
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(address) = parse_hop(hop) else {
                return client;
            };
            client = canonical(address);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address (a dual-stack listener reports them).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// What a per-address limit counts `address` as: an IPv4 address itself, an IPv6 address its
/// /64 network. One IPv6 host is routinely given a whole /64 (RFC 6177, SLAAC privacy
/// addresses), so counting single IPv6 addresses would give an attacker 2^64 fresh budgets —
/// for admin password guesses, registrations, failed client authentications. Audit records keep
/// the full address; only the counting is coarser.
pub fn limit_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// [`limit_key`] of an address written as text (the admin page's limiters key on strings);
/// text that is not an address (`"unknown"`) is its own key.
pub fn limit_key_text(address: &str) -> String {
    address
        .parse::<IpAddr>()
        .map_or_else(|_| address.to_string(), |ip| limit_key(ip).to_string())
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// Middleware: replaces the connection's `ConnectInfo` with the client's address when the
/// request came through a trusted proxy. Installed only when proxies are configured.
pub async fn resolve_client(
    axum::extract::State(proxies): axum::extract::State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok());
        let client = proxies.client_address(peer.ip(), forwarded);
        if client != peer.ip() {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    }
    next.run(request).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        let parsed =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into(), "::1".into()])
                .unwrap();
        assert!(parsed.trusts(ip("10.1.2.3")));
        assert!(parsed.trusts(ip("127.0.0.1")));
        assert!(parsed.trusts(ip("::1")));
        assert!(parsed.trusts(ip("::ffff:10.9.9.9")));
        assert!(!parsed.trusts(ip("11.0.0.1")));
        for bad in ["proxy.example", "10.0.0.0/33", "", "10.0.0.1:80"] {
            let error = TrustedProxies::parse(&[bad.into()]).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
    }

    /// Limits count IPv4 addresses one by one, IPv6 addresses by their /64; an IPv4-mapped
    /// IPv6 address is its IPv4 address.
    #[test]
    fn limits_count_ipv6_addresses_by_their_64() {
        assert_eq!(limit_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::5"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::5")),
            limit_key(ip("2001:db8:1:2::5"))
        );
        assert_eq!(limit_key(ip("::1")), ip("::"));
    }

    /// The nearest untrusted address from the right; what the client wrote to the left of the
    /// proxies' entries never counts.
    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let client = |peer: &str, headers: &[&str]| {
            proxies
                .client_address(ip(peer), headers.iter().copied())
                .to_string()
        };
        // Not from a proxy: the peer, whatever it claims.
        assert_eq!(client("203.0.113.9", &["198.51.100.1"]), "203.0.113.9");
        // One proxy.
        assert_eq!(client("10.0.0.2", &["198.51.100.1"]), "198.51.100.1");
        // A spoofed entry to the left of the real one is ignored.
        assert_eq!(
            client("10.0.0.2", &["1.1.1.1, 198.51.100.1"]),
            "198.51.100.1"
        );
        // Two proxies, the chain split over two headers, ports and spaces.
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 198.51.100.1:4711", " 10.0.0.3 "]),
            "198.51.100.1"
        );
        assert_eq!(client("10.0.0.2", &["[2001:db8::7]:443"]), "2001:db8::7");
        // Garbage stops the walk at the last trusted hop; no header: the proxy.
        assert_eq!(client("10.0.0.2", &["198.51.100.1, bogus"]), "10.0.0.2");
        assert_eq!(
            client("10.0.0.2", &["198.51.100.1, bogus, 10.0.0.5"]),
            "10.0.0.5"
        );
        assert_eq!(client("10.0.0.2", &[]), "10.0.0.2");
        // Only trusted hops: the leftmost of them.
        assert_eq!(client("10.0.0.2", &["10.0.0.7, 10.0.0.3"]), "10.0.0.7");
    }
}

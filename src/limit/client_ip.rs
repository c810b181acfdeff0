//! The client address a `client_ip` limit counts by.
//!
//! It is the socket peer, unless the peer is one of the configured `trusted_proxies`; only then
//! is `X-Forwarded-For` read, from the right (the entry the nearest proxy appended) leftwards,
//! skipping proxies we trust, and the first address we do not trust is the client. Entries
//! further left were written by that client and are never believed, so a caller cannot choose
//! its own key by sending the header. An entry that is not an address ends the walk at the last
//! address a trusted proxy vouched for.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// Entries walked at most; a longer chain ends at the last trusted hop.
const MAX_HOPS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    #[error("trusted_proxies entry `{0}` is not an IP address or CIDR")]
    BadCidr(String),
}

/// `trusted_proxies`: the networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Box<[IpNet]>,
}

impl TrustedProxies {
    /// Trust no proxy: the client is always the socket peer.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(nets: Vec<IpNet>) -> Self {
        Self {
            nets: nets.into_boxed_slice(),
        }
    }

    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ClientIpError> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let s = entry.as_ref().trim();
            let net = match s.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => s
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| ClientIpError::BadCidr(s.to_owned()))?,
            };
            nets.push(net.trunc());
        }
        Ok(Self::new(nets))
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` values
    /// (in the order the header lines arrived).
    pub fn client_ip<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> IpAddr
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut nearest_trusted = peer;
        let mut hops = 0;
        for line in forwarded_for.into_iter().rev() {
            for entry in line.rsplit(|b| *b == b',') {
                let entry = entry.trim_ascii();
                if entry.is_empty() {
                    continue;
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return nearest_trusted;
                }
                let Some(ip) = parse_entry(entry) else {
                    return nearest_trusted;
                };
                if !self.is_trusted(ip) {
                    return ip;
                }
                nearest_trusted = ip;
            }
        }
        nearest_trusted
    }

    /// [`TrustedProxies::client_ip`] reading every `X-Forwarded-For` line of `headers`.
    pub fn client_ip_from_headers(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        self.client_ip(
            peer,
            headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
        )
    }

    /// A fixed-size, allocation-free limiter key for an address (IPv4 as IPv4-mapped IPv6).
    pub fn limit_key(ip: IpAddr) -> [u8; 16] {
        match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

/// `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:567`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical());
    }
    let (host, port) = s.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap()
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> IpAddr {
        t.client_ip(ip(peer), xff.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let t = proxies();
        assert_eq!(client(&t, "203.0.113.9", &["1.1.1.1"]), ip("203.0.113.9"));
        assert_eq!(
            client(&t, "203.0.113.9", &["10.0.0.1, 1.1.1.1", "8.8.8.8"]),
            ip("203.0.113.9")
        );
        // Without any trusted proxy configured, the header is never read.
        assert_eq!(
            client(&TrustedProxies::none(), "10.0.0.1", &["1.1.1.1"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_proxy_gives_the_rightmost_untrusted_entry() {
        let t = proxies();
        assert_eq!(
            client(&t, "10.1.2.3", &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        // The client prepended a fake address: the proxy's appended entry wins.
        assert_eq!(
            client(&t, "10.1.2.3", &["1.1.1.1, 198.51.100.4"]),
            ip("198.51.100.4")
        );
        // Two trusted proxies in a row, over two header lines.
        assert_eq!(
            client(&t, "10.1.2.3", &["6.6.6.6, 198.51.100.4", "192.168.1.7"]),
            ip("198.51.100.4")
        );
        // A client claiming to be a trusted proxy only hides behind its own real address.
        assert_eq!(
            client(&t, "10.1.2.3", &["10.9.9.9, 198.51.100.4"]),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_last_trusted_hop() {
        let t = proxies();
        assert_eq!(client(&t, "10.1.2.3", &["not-an-ip"]), ip("10.1.2.3"));
        assert_eq!(
            client(&t, "10.1.2.3", &["1.1.1.1, unknown, 10.0.0.5"]),
            ip("10.0.0.5")
        );
        assert_eq!(client(&t, "10.1.2.3", &[]), ip("10.1.2.3"));
        assert_eq!(client(&t, "10.1.2.3", &["10.0.0.5"]), ip("10.0.0.5"));
        let long = vec!["10.0.0.5"; 40].join(",");
        assert_eq!(
            client(&t, "10.1.2.3", &[&format!("1.1.1.1,{long}")]),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn parses_ports_brackets_and_mapped_addresses() {
        let t = proxies();
        assert_eq!(
            client(&t, "10.1.2.3", &["198.51.100.4:5555"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            client(&t, "10.1.2.3", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client(&t, "10.1.2.3", &["[2001:db8::1]"]),
            ip("2001:db8::1")
        );
        assert_eq!(client(&t, "10.1.2.3", &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(client(&t, "10.1.2.3", &["[2001:db8::1]x"]), ip("10.1.2.3"));
        // A proxy reached over IPv6 with a mapped IPv4 address is still trusted.
        assert_eq!(
            client(&t, "::ffff:10.1.2.3", &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            TrustedProxies::limit_key(ip("198.51.100.4")),
            TrustedProxies::limit_key(ip("::ffff:198.51.100.4"))
        );
    }

    #[test]
    fn reads_header_maps_and_refuses_bad_cidrs() {
        let t = proxies();
        let mut h = http::HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 198.51.100.4".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(
            t.client_ip_from_headers(ip("10.1.2.3"), &h),
            ip("198.51.100.4")
        );
        assert_eq!(t.client_ip_from_headers(ip("8.8.8.8"), &h), ip("8.8.8.8"));
        assert!(matches!(
            TrustedProxies::parse(&["10.0.0.0/33"]),
            Err(ClientIpError::BadCidr(_))
        ));
        assert!(matches!(
            TrustedProxies::parse(&["proxy.internal"]),
            Err(ClientIpError::BadCidr(_))
        ));
    }
}

//! CIDR lists for IP allow/deny and trusted proxies. IPv4 and IPv6; an IPv4-mapped IPv6 peer
//! (`::ffff:a.b.c.d`) matches IPv4 entries.

use std::net::IpAddr;

/// One `addr/prefix` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    mask: u128,
    v4: bool,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.trim().parse().map_err(|_| format!("\"{s}\" is not an IP address or CIDR block"))?;
        let (bits, v4, value) = match ip {
            IpAddr::V4(v) => (32u32, true, u128::from(u32::from(v))),
            IpAddr::V6(v) => (128u32, false, u128::from(v)),
        };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or_else(|| format!("\"{s}\": prefix must be 0-{bits}"))?,
            None => bits,
        };
        let mask = if prefix == 0 { 0 } else { (u128::MAX << (bits - prefix)) & (u128::MAX >> (128 - bits)) };
        if value & !mask != 0 {
            return Err(format!(
                "\"{s}\" has host bits set (did you mean {}?)",
                Self::fmt_net(value & mask, v4, prefix)
            ));
        }
        Ok(Self { net: value & mask, mask, v4 })
    }

    fn fmt_net(net: u128, v4: bool, prefix: u32) -> String {
        let ip: IpAddr = if v4 { IpAddr::V4((net as u32).into()) } else { IpAddr::V6(net.into()) };
        format!("{ip}/{prefix}")
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, value) = match ip {
            IpAddr::V4(v) => (true, u128::from(u32::from(v))),
            IpAddr::V6(v) => match v.to_ipv4_mapped() {
                Some(m) => (true, u128::from(u32::from(m))),
                None => (false, u128::from(v)),
            },
        };
        v4 == self.v4 && value & self.mask == self.net
    }
}

/// Allow and deny lists: deny wins; a non-empty allow list admits only its blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFilter {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl IpFilter {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// The client address behind trusted proxies: the right-most `X-Forwarded-For` entry that is not
/// a trusted proxy (the peer itself must be trusted for the header to count at all).
pub fn client_ip(peer: IpAddr, xff: Option<&[u8]>, trusted: &[Cidr]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(xff) = xff.and_then(|v| std::str::from_utf8(v).ok()) else {
        return peer;
    };
    for hop in xff.rsplit(',').map(str::trim) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.iter().any(|c| c.contains(ip)) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer, // a malformed hop: trust nothing beyond the peer
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_and_v6_blocks_match() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(c.contains(ip("203.0.113.7")) && !c.contains(ip("203.0.114.1")));
        assert!(c.contains(ip("::ffff:203.0.113.9")), "v4-mapped v6 peers match v4 blocks");
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:1::1")) && !c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("203.0.113.7")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
    }

    #[test]
    fn bad_blocks_are_explained() {
        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let f = IpFilter {
            allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            deny: vec![Cidr::parse("10.9.0.0/16").unwrap()],
        };
        assert!(f.permits(ip("10.1.1.1")));
        assert!(!f.permits(ip("10.9.1.1")));
        assert!(!f.permits(ip("192.0.2.1")));
    }

    #[test]
    fn forwarded_for_is_used_only_through_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = Some(&b"198.51.100.7, 203.0.113.1, 10.0.0.2"[..]);
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &trusted), ip("203.0.113.1"));
        assert_eq!(client_ip(ip("192.0.2.9"), xff, &trusted), ip("192.0.2.9"), "untrusted peer: header ignored");
        assert_eq!(client_ip(ip("10.0.0.1"), Some(b"garbage"), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &[]), ip("10.0.0.1"));
    }
}

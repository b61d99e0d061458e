//! Who a request counts against for the per-address limit: the socket's peer or, when
//! that peer is a trusted proxy (`TRUSTED_PROXIES`), the right-most `X-Forwarded-For`
//! entry that is not a trusted proxy itself. (IPv6 clients count per /64: see
//! `Keys::client_requests`.)

use std::net::IpAddr;
use std::str::FromStr;

/// A network in CIDR form, `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a network: {0:?}")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadCidr(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let network = network.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| bad())?,
            None => bits,
        };
        if prefix > bits {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => same_prefix(
                network.to_bits().into(),
                ip.to_bits().into(),
                32,
                self.prefix,
            ),
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                same_prefix(network.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of the `bits` low bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    prefix == 0 || (a >> shift) == (b >> shift)
}

/// The proxies allowed to name the client (`TRUSTED_PROXIES`); none by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl FromStr for TrustedProxies {
    type Err = BadCidr;

    /// A comma-separated list of networks; empty trusts nobody.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// Whether `ip` is one of the proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy; then the
    /// right-most entry of `forwarded_for` (the `X-Forwarded-For` values, in order)
    /// that is not a trusted proxy. An entry that is not an address ends the walk at
    /// the last trusted hop, never at something a client wrote further left.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for entry in forwarded_for
            .rev()
            .flat_map(|v| v.rsplit(','))
            .map(str::trim)
        {
            let Some(hop) = hop_address(entry) else {
                break;
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The address of one `X-Forwarded-For` entry: a bare address, or one with a port as
/// some proxies write it (`203.0.113.9:4711`, `[2001:db8::1]:4711`, `[2001:db8::1]`).
fn hop_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().expect("a list of networks")
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "v4-mapped v6 is v4");
        let net: Cidr = "fd00:1::/32".parse().expect("cidr");
        assert!(net.contains(ip("fd00:1:ffff::1")));
        assert!(!net.contains(ip("fd00:2::1")));
        assert!(!net.contains(ip("10.1.0.1")));
        let one: Cidr = "192.0.2.7".parse().expect("a bare address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("203.0.113.1")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!("10.0.0.0/8, fd00::/8".parse::<TrustedProxies>().is_ok());
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("198.51.100.4"), ["203.0.113.9"].into_iter()),
            ip("198.51.100.4")
        );
        let lan = proxies("10.0.0.0/8");
        assert_eq!(
            lan.client(ip("198.51.100.4"), ["203.0.113.9"].into_iter()),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let lan = proxies("10.0.0.0/8");
        // Our proxy at 10.0.0.1 appended the client; a forged entry sits left of it.
        assert_eq!(
            lan.client(ip("10.0.0.1"), ["6.6.6.6, 203.0.113.9"].into_iter()),
            ip("203.0.113.9")
        );
        // Two of our proxies in a row, headers split over two lines.
        assert_eq!(
            lan.client(
                ip("10.0.0.1"),
                ["6.6.6.6, 203.0.113.9", "10.0.0.2"].into_iter()
            ),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last trusted hop, not at what is left of it.
        assert_eq!(
            lan.client(ip("10.0.0.1"), ["203.0.113.9, junk"].into_iter()),
            ip("10.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            lan.client(ip("10.0.0.1"), std::iter::empty()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn entries_with_ports_name_their_client() {
        let lan = proxies("10.0.0.0/8");
        for (entry, client) in [
            ("203.0.113.9:4711", "203.0.113.9"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
        ] {
            // Before, such an entry ended the walk at the proxy: every client counted
            // as the proxy, and one client could use up everyone's budget.
            assert_eq!(
                lan.client(ip("10.0.0.1"), [entry].into_iter()),
                ip(client),
                "{entry}"
            );
        }
        assert_eq!(
            lan.client(ip("10.0.0.1"), ["203.0.113.9:x"].into_iter()),
            ip("10.0.0.1"),
            "not an address: the walk ends at the last trusted hop"
        );
    }
}

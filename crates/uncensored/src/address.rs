//! Where the client's requests may go.
//!
//! The API key goes to the base URL's origin and nowhere else: the API client
//! follows a redirect only within that origin. Image downloads go to public
//! addresses over https only: every hop's host is resolved by a resolver that
//! drops loopback, private, link-local, CGNAT, multicast, unspecified and
//! reserved addresses (IPv4 and IPv6, including IPv4 written inside IPv6), so
//! an image URL from the API (or from a rewritten journal) cannot reach a
//! cloud metadata address or an admin page on the machine. Redirects are
//! checked again at each hop and limited to five. A client whose base URL is
//! loopback (the emulator) is exempt; [`ClientBuilder::download_allow`]
//! names storage that is private on purpose.
//!
//! [`ClientBuilder::download_allow`]: crate::ClientBuilder::download_allow

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

use crate::error::DownloadError;

/// Most redirects a download follows.
pub const MAX_DOWNLOAD_REDIRECTS: usize = 5;

/// Whether `url`'s host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            domain == "localhost" || domain.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, shared (CGNAT), multicast, broadcast, unspecified,
/// documentation, benchmarking or reserved, nor such an IPv4 address inside
/// an IPv6 one (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                  // "this network", 0.0.0.0
        || a == 10                            // private
        || a == 127                           // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)             // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)     // documentation
        || (a == 192 && b == 88 && c == 99)   // 6to4 relay anycast
        || (a == 192 && b == 168)             // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)  // documentation
        || (a == 203 && b == 0 && c == 113)   // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |high: usize| {
        let octets = ip.octets();
        Ipv4Addr::new(
            octets[high],
            octets[high + 1],
            octets[high + 2],
            octets[high + 3],
        )
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match segments[0] {
        // IPv4-compatible (deprecated) ::a.b.c.d
        0 if segments[1..6].iter().all(|s| *s == 0) => is_public_v4(embedded_v4(12)),
        0x0064 if segments[1] == 0xff9b => is_public_v4(embedded_v4(12)), // NAT64
        0x0100 if segments[1..4].iter().all(|s| *s == 0) => false,        // discard
        0x2001 if segments[1] == 0 => false,                              // Teredo
        0x2001 if segments[1] == 0x0db8 => false,                         // documentation
        0x2002 => is_public_v4(embedded_v4(2)),                           // 6to4
        first if first & 0xfe00 == 0xfc00 => false,                       // unique local
        first if first & 0xffc0 == 0xfe80 => false,                       // link-local
        first if first & 0xffc0 == 0xfec0 => false,                       // site-local
        first if first & 0xff00 == 0xff00 => false,                       // multicast
        first => first & 0xe000 == 0x2000, // only global unicast is allocated
    }
}

/// One entry of the download allow-list: a host name, an address, or a
/// CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Host(String),
    Net(IpAddr, u8),
}

impl Allowed {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some((ip, bits)) = text.split_once('/') {
            let ip: IpAddr = ip.parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(Self::Net(ip, bits));
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Some(Self::Net(ip, bits));
        }
        let host = text.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        valid.then_some(Self::Host(host))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let Self::Net(net, bits) = self else {
            return false;
        };
        match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where downloads may go (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct DownloadPolicy {
    /// The base URL is loopback: any address, any scheme (the emulator).
    open: bool,
    /// Plain http is allowed (the user said so).
    insecure_http: bool,
    allowed: Arc<[Allowed]>,
}

/// A host refused because it is (or resolves only to) a non-public address.
#[derive(Debug, thiserror::Error)]
#[error("{host} is not a public address")]
pub(crate) struct Blocked {
    pub(crate) host: String,
}

impl DownloadPolicy {
    pub(crate) fn new(
        base_url: &Url,
        insecure_http: bool,
        allow: &[String],
    ) -> Result<Self, String> {
        let allowed = allow
            .iter()
            .map(|entry| {
                Allowed::parse(entry).ok_or_else(|| {
                    format!(
                        "download allow-list entry {entry:?} is not a host name, an IP address or a CIDR block"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            open: is_loopback_url(base_url),
            insecure_http,
            allowed: allowed.into(),
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed
            .iter()
            .any(|entry| matches!(entry, Allowed::Host(h) if *h == host))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|entry| entry.contains(ip))
    }

    /// Checks a URL before it is requested (the first one and each redirect):
    /// its scheme, and its host when the host is an address.
    pub(crate) fn check(&self, url: &Url) -> Result<(), DownloadError> {
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => self.open || self.insecure_http,
            _ => false,
        };
        if !scheme_ok {
            return Err(DownloadError::Scheme {
                scheme: url.scheme().to_string(),
            });
        }
        if self.open {
            return Ok(());
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) => return Ok(()), // checked by the resolver
            None => {
                return Err(DownloadError::Scheme {
                    scheme: url.scheme().to_string(),
                });
            }
        };
        if self.ip_allowed(ip) {
            Ok(())
        } else {
            Err(DownloadError::NotPublic {
                host: ip.to_string(),
            })
        }
    }

    /// The redirect policy of the download client: each hop checked, at most
    /// [`MAX_DOWNLOAD_REDIRECTS`].
    pub(crate) fn redirects(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_DOWNLOAD_REDIRECTS {
                return attempt.error(TooManyRedirects);
            }
            match policy.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        })
    }

    /// A resolver that drops non-public addresses (none when open).
    pub(crate) fn resolver(&self) -> Option<Arc<PublicResolver>> {
        (!self.open).then(|| Arc::new(PublicResolver(self.clone())))
    }
}

/// More than [`MAX_DOWNLOAD_REDIRECTS`] redirects.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_DOWNLOAD_REDIRECTS} redirects")]
pub(crate) struct TooManyRedirects;

/// Resolves with the system resolver, then keeps only the addresses the
/// policy allows: the connection goes to an address checked here, so a name
/// that resolves differently the second time (DNS rebinding) gains nothing.
#[derive(Debug)]
pub(crate) struct PublicResolver(DownloadPolicy);

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let trusted = policy.host_allowed(&host);
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| trusted || policy.ip_allowed(addr.ip()))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(Blocked { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The API client's redirect policy: within the base URL's origin only, so
/// the key (a default header, which reqwest would carry to another host)
/// never leaves it. A redirect elsewhere is not followed; the client reports
/// it as [`crate::Error::Redirected`].
pub(crate) fn same_origin_redirects(base: &Url) -> reqwest::redirect::Policy {
    let origin = base.origin();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_DOWNLOAD_REDIRECTS || attempt.url().origin() != origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!is_public(ip(blocked)), "{blocked} must not be public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn allow_list_entries_parse_and_match() {
        let net = Allowed::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.9.8.7")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(Allowed::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Allowed::parse("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        assert!(
            Allowed::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("10.0.0.1"))
        );
        assert_eq!(
            Allowed::parse("Minio.Internal."),
            Some(Allowed::Host("minio.internal".into()))
        );
        assert_eq!(Allowed::parse("10.0.0.0/33"), None);
        assert_eq!(Allowed::parse("a b"), None);
        assert_eq!(Allowed::parse(""), None);
    }

    #[test]
    fn loopback_base_urls() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:1",
            "http://api.localhost",
        ] {
            assert!(is_loopback_url(&Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "https://api.example.com",
            "http://localhost.example.com",
        ] {
            assert!(!is_loopback_url(&Url::parse(url).unwrap()), "{url}");
        }
    }
}

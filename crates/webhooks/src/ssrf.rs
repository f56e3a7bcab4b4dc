//! Which addresses a webhook may not reach unless private targets are
//! allowed, and the DNS resolver that enforces it at send time.
//!
//! The check runs on the addresses a name resolves to when the request is
//! made, not on the URL when it is stored: a name that pointed somewhere
//! public at creation can point to 127.0.0.1 later (DNS rebinding). IP
//! literals in URLs never reach a resolver, so the sender checks them itself
//! ([`check_url_host`]).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address refused because it is not public.
#[derive(Debug, Clone, thiserror::Error)]
#[error("address {ip} is {reason}; set CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1 to allow")]
pub struct Refused {
    pub ip: IpAddr,
    pub reason: &'static str,
}

/// Why `ip` is not a public unicast address, if it is not.
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "a cloud metadata address"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if a == 100 && (b & 0xc0) == 64 {
        "shared address space (CGNAT)"
    } else if a == 198 && (b & 0xfe) == 18 {
        "benchmarking (198.18.0.0/15)"
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "IETF protocol assignments (192.0.0.0/24)"
    } else if ip.is_multicast() {
        "multicast"
    } else if a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
    // (64:ff9b::a.b.c.d) addresses reach the embedded IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return v4_reason(Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32));
    }
    // SIIT (::ffff:0:a.b.c.d) also embeds the IPv4 address at the end.
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return v4_reason(Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32));
    }
    // 6to4 (2002:AABB:CCDD::/48) tunnels to the IPv4 address AA.BB.CC.DD.
    if seg[0] == 0x2002 {
        return v4_reason(Ipv4Addr::from(((seg[1] as u32) << 16) | seg[2] as u32));
    }
    // Teredo and local-use NAT64 reach IPv4 hosts we cannot name here.
    if seg[0] == 0x2001 && seg[1] == 0 {
        return Some("Teredo (2001::/32)");
    }
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    Some(
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            "a cloud metadata address"
        } else if ip.is_loopback() {
            "loopback"
        } else if ip.is_unspecified() {
            "unspecified"
        } else if (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfec0 {
            "private"
        } else if (seg[0] & 0xffc0) == 0xfe80 {
            "link-local"
        } else if ip.is_multicast() {
            "multicast"
        } else {
            return None;
        },
    )
}

fn check(ip: IpAddr) -> Result<(), Refused> {
    match refusal_reason(ip) {
        Some(reason) => Err(Refused { ip, reason }),
        None => Ok(()),
    }
}

/// Refuses a URL whose host is a non-public IP literal.
pub(crate) fn check_url_host(url: &url::Url) -> Result<(), Refused> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => check(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// Lookups of the system resolver running at once. Each holds a thread of
/// tokio's blocking pool (shared with SQLite readers) for as long as the
/// resolver takes, which an unresponsive DNS server makes seconds: without a
/// bound, many endpoints' names could pile up hundreds of such threads.
const MAX_LOOKUPS: usize = 16;
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);

/// Runs a blocking `f` on the blocking pool once `bound` lets it; the permit
/// is held until `f` returns, even if the caller stopped waiting (a timed-out
/// request), so the bound counts the threads really busy.
async fn bounded_blocking<T: Send + 'static>(
    bound: &'static tokio::sync::Semaphore,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let permit = bound
        .acquire()
        .await
        .map_err(|_| std::io::Error::other("resolver closed"))?;
    tokio::task::spawn_blocking(move || {
        let _held = permit;
        f()
    })
    .await
    .map_err(std::io::Error::other)
}

/// The system resolver, at most [`MAX_LOOKUPS`] lookups at once, keeping
/// only public addresses unless private ones are allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver {
    pub(crate) public_only: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let public_only = self.public_only;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = bounded_blocking(&LOOKUPS, move || {
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
                    .map(|a| a.collect::<Vec<_>>())
            })
            .await??;
            if !public_only {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let mut refused = None;
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match check(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            if kept.is_empty()
                && let Some(r) = refused
            {
                return Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_lookups_never_exceed_their_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static BOUND: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                tokio::spawn(bounded_blocking(&BOUND, || {
                    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("ran");
        }
        assert_eq!(MOST.load(Ordering::SeqCst), 3);
        assert_eq!(BOUND.available_permits(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_resolver_refuses_loopback_unless_allowed() {
        let name = || "localhost".parse::<Name>().expect("name");
        let refused = Resolver { public_only: true }.resolve(name()).await;
        assert!(refused.is_err());
        let allowed: Vec<SocketAddr> = Resolver { public_only: false }
            .resolve(name())
            .await
            .expect("resolves")
            .collect();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
        assert!(!allowed.is_empty());
    }

    fn reason(s: &str) -> Option<&'static str> {
        refusal_reason(s.parse().expect("ip"))
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "a cloud metadata address"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.254", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fd00:ec2::254", "a cloud metadata address"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "a cloud metadata address"),
            ("64:ff9b::a00:1", "private"),
            ("198.18.0.1", "benchmarking (198.18.0.0/15)"),
            ("192.0.0.8", "IETF protocol assignments (192.0.0.0/24)"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a00:1::1", "private"),
            ("::ffff:0:7f00:1", "loopback"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo (2001::/32)"),
            ("64:ff9b:1::a00:1", "local-use NAT64 (64:ff9b:1::/48)"),
        ] {
            assert_eq!(reason(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "100.128.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn url_literals_are_checked() {
        let u = |s: &str| url::Url::parse(s).expect("url");
        assert!(check_url_host(&u("http://127.0.0.1:8080/x")).is_err());
        assert!(check_url_host(&u("http://[::1]/x")).is_err());
        // The WHATWG parser turns a decimal host into an IPv4 literal.
        assert!(check_url_host(&u("http://2130706433/x")).is_err());
        assert!(check_url_host(&u("http://example.com/x")).is_ok());
        let e = check_url_host(&u("http://10.0.0.1/")).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "address 10.0.0.1 is private; set CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1 to allow"
        );
    }
}

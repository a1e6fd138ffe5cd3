//! Name resolution for the HTTP clients: an IP literal is its own address.
//!
//! ureq's `DefaultResolver` runs `getaddrinfo` on a new thread whenever a timeout is set (so a
//! slow DNS server cannot outlast it), and it does so for an IP literal too. Our peers are
//! mostly configured by address (`vrouter-ip`, `http://127.0.0.1:9091`), and the CNI host is a
//! fresh process per ADD: that thread, its stack and the malloc arena it creates cost ~1 ms of
//! an ADD's first request (docs/BENCHMARKS.md). A literal needs no lookup; names still go to
//! `DefaultResolver`, timeout and all.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Answers IP literals at once and hands host names to ureq's `DefaultResolver`.
#[derive(Debug, Default)]
pub struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match literal(uri) {
            Some(addr) => {
                let mut v = self.empty();
                v.push(addr);
                Ok(v)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The socket address of a URI whose host is an IP literal (`[...]` for IPv6), with the
/// scheme's default port when none is given.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let port = uri.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Option<SocketAddr> {
        literal(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn ip_literals_are_addresses_and_names_are_not() {
        assert_eq!(
            lit("http://127.0.0.1:9091/vm-cfg/x"),
            Some("127.0.0.1:9091".parse().unwrap())
        );
        assert_eq!(
            lit("https://10.0.0.1/"),
            Some("10.0.0.1:443".parse().unwrap())
        );
        assert_eq!(
            lit("http://10.0.0.1/"),
            Some("10.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            lit("http://[fd00::1]:8082/"),
            Some("[fd00::1]:8082".parse().unwrap())
        );
        assert_eq!(lit("http://localhost:8082/"), None);
        assert_eq!(lit("http://config.example:8082/"), None);
        // Not an address, whatever it looks like.
        assert_eq!(lit("http://1.2.3.4.example:80/"), None);
    }
}

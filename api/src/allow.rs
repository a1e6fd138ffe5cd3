//! The `allow-from` label: which other workloads may open connections to a container's network.
//! The label is outside the WIT record (it travels in `other`, untouched by the translator), so
//! this module is its one parser, used by the CNI host (on the plugin's answer) and by the
//! manager (which turns it into a Contrail `network-policy`).
//!
//! Grammar (entries separated by `,`; blanks around entries are ignored):
//!
//! ```text
//! allow-from = entry *("," entry)
//! entry      = source [" " protocol [":" ports]]
//! source     = "group:" marathon-path | "app:" marathon-path
//!            | "network:" name | "network:" domain ":" project ":" name
//! protocol   = "any" | "tcp" | "udp" | "icmp"          (default "any")
//! ports      = port | port "-" port                    (tcp and udp only; 1-65535)
//! ```
//!
//! e.g. `group:/team-b tcp:8080,app:/ops/monitor,network:blue udp:5000-5010`. Marathon paths
//! follow Marathon's `PathId` rule (lower-case segments of `[a-z0-9-.]`, no `_`; Marathon's
//! `docs/docs/application-basics.md`).

use std::fmt;

use crate::ValidationError;

/// The label's key.
pub const LABEL: &str = "allow-from";
/// At most this many entries in one label (each becomes a policy rule).
pub const MAX_ENTRIES: usize = 32;
/// At most this many bytes in one label value.
pub const MAX_LEN: usize = 4096;

/// Where allowed traffic comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The network of a Marathon group (`/team-b`).
    Group(String),
    /// The network of a Marathon app (`/team-b/web`).
    App(String),
    /// A network by name: 1 part (in the container's project) or 3 (domain, project, name).
    Network(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    /// Contrail's `PolicyRuleType.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Any => "any",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "any" => Protocol::Any,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => return None,
        })
    }
}

/// One entry of the label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    pub source: Source,
    pub protocol: Protocol,
    /// Destination port range; `None` = any port.
    pub ports: Option<(u16, u16)>,
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Group(p) => write!(f, "group:{p}")?,
            Source::App(p) => write!(f, "app:{p}")?,
            Source::Network(n) => write!(f, "network:{}", n.join(":"))?,
        }
        if self.protocol != Protocol::Any || self.ports.is_some() {
            write!(f, " {}", self.protocol.as_str())?;
        }
        match self.ports {
            Some((a, b)) if a == b => write!(f, ":{a}"),
            Some((a, b)) => write!(f, ":{a}-{b}"),
            None => Ok(()),
        }
    }
}

/// A Marathon path id (`/a/b.c`): absolute, segments of lower-case letters, digits, `-` and
/// `.`, each dot-part starting and ending with a letter or digit. No `_`, which is what makes
/// Marathon's task ids (`a_b.c.<uuid>`) reversible.
pub fn marathon_path_ok(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && p.len() <= 512
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg.split('.').all(|part| {
                    let b = part.as_bytes();
                    !b.is_empty()
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                        && b[0] != b'-'
                        && b[b.len() - 1] != b'-'
                })
        })
}

fn bad(reason: String) -> ValidationError {
    ValidationError {
        field: LABEL,
        reason,
    }
}

fn port(s: &str, entry: &str) -> Result<u16, ValidationError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(format!("{entry:?}: port {s:?} is not 1-65535"))),
    }
}

fn entry(e: &str) -> Result<Allow, ValidationError> {
    let mut words = e.split(' ').filter(|w| !w.is_empty());
    let src = words.next().unwrap_or_default();
    let proto = words.next();
    if words.next().is_some() {
        return Err(bad(format!(
            "{e:?}: an entry is a source and at most one protocol[:ports]"
        )));
    }
    let source = match src.split_once(':') {
        Some(("group", p)) | Some(("app", p)) if !marathon_path_ok(p) => {
            return Err(bad(format!("{e:?}: {p:?} is not a Marathon path (/a/b)")));
        }
        Some(("group", p)) => Source::Group(p.to_owned()),
        Some(("app", p)) => Source::App(p.to_owned()),
        Some(("network", n)) => {
            let parts: Vec<String> = n.split(':').map(str::to_owned).collect();
            if !crate::fq_ok(&parts, &[1, 3]) {
                return Err(bad(format!(
                    "{e:?}: network {n:?} is neither a name nor domain:project:name"
                )));
            }
            Source::Network(parts)
        }
        _ => {
            return Err(bad(format!(
                "{e:?}: the source must be group:/path, app:/path or network:name"
            )));
        }
    };
    let (protocol, ports) = match proto {
        None => (Protocol::Any, None),
        Some(p) => {
            let (name, range) = match p.split_once(':') {
                Some((n, r)) => (n, Some(r)),
                None => (p, None),
            };
            let protocol = Protocol::parse(name).ok_or_else(|| {
                bad(format!(
                    "{e:?}: protocol {name:?} is not any, tcp, udp or icmp"
                ))
            })?;
            let ports = match range {
                None => None,
                Some(_) if !matches!(protocol, Protocol::Tcp | Protocol::Udp) => {
                    return Err(bad(format!("{e:?}: ports are only for tcp and udp")));
                }
                Some(r) => {
                    let (a, b) = match r.split_once('-') {
                        Some((a, b)) => (port(a, e)?, port(b, e)?),
                        None => {
                            let a = port(r, e)?;
                            (a, a)
                        }
                    };
                    if a > b {
                        return Err(bad(format!("{e:?}: port range {a}-{b} is empty")));
                    }
                    Some((a, b))
                }
            };
            (protocol, ports)
        }
    };
    Ok(Allow {
        source,
        protocol,
        ports,
    })
}

/// Parses one label value. Duplicate entries are kept once; the order is the label's.
pub fn parse(value: &str) -> Result<Vec<Allow>, ValidationError> {
    if value.len() > MAX_LEN {
        return Err(bad(format!("longer than {MAX_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("contains control characters".to_owned()));
    }
    let mut out: Vec<Allow> = Vec::new();
    for e in value.split(',').map(str::trim) {
        if e.is_empty() {
            return Err(bad(format!("{value:?} has an empty entry")));
        }
        let a = entry(e)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.len() > MAX_ENTRIES {
        return Err(bad(format!("more than {MAX_ENTRIES} entries")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_into_sources_protocols_and_ports() {
        let v = parse("group:/team-b tcp:8080, app:/ops/monitor,network:blue udp:5000-5010,network:d:p:n icmp").unwrap();
        assert_eq!(
            v,
            vec![
                Allow {
                    source: Source::Group("/team-b".into()),
                    protocol: Protocol::Tcp,
                    ports: Some((8080, 8080))
                },
                Allow {
                    source: Source::App("/ops/monitor".into()),
                    protocol: Protocol::Any,
                    ports: None
                },
                Allow {
                    source: Source::Network(vec!["blue".into()]),
                    protocol: Protocol::Udp,
                    ports: Some((5000, 5010))
                },
                Allow {
                    source: Source::Network(vec!["d".into(), "p".into(), "n".into()]),
                    protocol: Protocol::Icmp,
                    ports: None
                },
            ]
        );
        // Display is the canonical form and parses back to the same entry.
        for a in &v {
            assert_eq!(parse(&a.to_string()).unwrap(), vec![a.clone()]);
        }
        assert_eq!(parse("app:/a,app:/a").unwrap().len(), 1);
    }

    #[test]
    fn bad_entries_name_the_label_and_the_entry() {
        for (v, why) in [
            ("", "empty entry"),
            ("group:/a,", "empty entry"),
            ("group:team", "Marathon path"),
            ("group:/Team", "Marathon path"),
            ("app:/a_b", "Marathon path"),
            ("app:/a//b", "Marathon path"),
            ("app:/-a", "Marathon path"),
            ("host:/a", "source must be"),
            ("/a", "source must be"),
            ("network:a:b", "neither a name"),
            ("network:", "neither a name"),
            ("group:/a sctp", "protocol"),
            ("group:/a tcp:0", "1-65535"),
            ("group:/a tcp:70000", "1-65535"),
            ("group:/a tcp:90-80", "empty"),
            ("group:/a icmp:8", "only for tcp and udp"),
            ("group:/a tcp:80 extra", "at most one"),
            ("group:/a\ttcp", "control"),
        ] {
            let e = parse(v).unwrap_err();
            assert_eq!(e.field, "allow-from", "{v}");
            assert!(e.reason.contains(why), "{v}: {}", e.reason);
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("app:/a{i}")).collect();
        assert!(parse(&many.join(",")).is_err());
        assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn marathon_paths_follow_marathons_rule() {
        for ok in ["/a", "/team-a/web", "/a.b/c-1", "/0"] {
            assert!(marathon_path_ok(ok), "{ok}");
        }
        for bad in ["", "/", "a", "/a/", "/A", "/a_b", "/a..b", "/a-", "/.a"] {
            assert!(!marathon_path_ok(bad), "{bad}");
        }
    }
}

//! Port mappings: what Mesos hands a CNI plugin in `args."org.apache.mesos".network_info.
//! port_mappings` (Marathon's `portMappings[].hostPort` → `containerPort`), forwarded on the
//! node with nftables DNAT, as Mesos' own `port_mapper` plugin does with iptables (Apache Mesos
//! `src/slave/containerizer/mesos/isolators/network/cni/plugins/port_mapper/`).
//!
//! One table of our own, `inet contrail_cni_portmap`, in the namespace the plugin runs in (the
//! node's):
//!
//! ```text
//! map hostports { type inet_proto . inet_service : verdict }   # (tcp|udp . hostPort) -> goto cni-…
//! chain prerouting { nat hook prerouting: fib daddr type local  meta l4proto . th dport vmap @hostports }
//! chain output     { nat hook output: the same, but not to 127.0.0.0/8 nor ::1 }
//! chain cni-<hash of (container id, ifname)> { meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.5:80 … }
//! ```
//!
//! A host port is a key of the map, so a second container asking for one already mapped fails
//! in the kernel (`create element` refuses an existing key) and, the whole ADD being one nft
//! transaction, leaves nothing. An attachment's rules are removed by identity: the map elements
//! whose verdict is its chain, then the chain. Locally originated traffic to the node's own
//! addresses is forwarded (the `output` hook) but not to loopback: a DNAT of 127.0.0.1 needs
//! `route_localnet` and a masquerade, node-wide changes the plugin does not make (Mesos'
//! `port_mapper` excludes `127.0.0.0/8` from its OUTPUT rule too). No hairpin masquerade
//! either: a container reaching its own host port through the node's address is not
//! forwarded back to itself.
//!
//! `nft` is exec'd by the absolute path of the network config (`contrail.nft-path`), never
//! found in `PATH` nor named by a label, the script on its stdin, bounded by
//! `contrail.nft-timeout`. (The `nftables` crate execs `nft` too, with no bound on its run
//! time; `rustables` 0.8 speaks netlink but its sets carry no data type, so no verdict map.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::{Error, Result, code};
use crate::cni::config::PortMapping;

/// The table's family and name.
pub const TABLE: &str = "inet contrail_cni_portmap";
/// The map from (protocol, host port) to an attachment's chain.
const MAP: &str = "hostports";
/// The most mappings one attachment may ask for (a bound on untrusted input).
pub const MAX_MAPPINGS: usize = 1024;
/// What we keep of `nft`'s output.
const OUTPUT_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub proto: Proto,
    pub host_port: u16,
    pub container_port: u16,
}

/// Mesos' mappings, checked: ports 1-65535, protocol `tcp` (also when absent, Mesos' default),
/// `udp`, or Marathon's `udp,tcp`; no host port twice.
pub fn from_mesos(pms: &[PortMapping]) -> Result<Vec<Mapping>> {
    let bad = |m: String| {
        Error::new(
            code::INVALID_CONFIG,
            format!("network_info.port_mappings: {m}"),
        )
    };
    if pms.len() > MAX_MAPPINGS {
        return Err(bad(format!(
            "{} mappings, at most {MAX_MAPPINGS}",
            pms.len()
        )));
    }
    let port = |p: u32, what: &str| {
        u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{what} {p} is not a port (1-65535)")))
    };
    let mut out: Vec<Mapping> = vec![];
    for pm in pms {
        let host_port = port(pm.host_port, "host_port")?;
        let container_port = port(pm.container_port, "container_port")?;
        let text = pm.protocol.as_deref().unwrap_or("").to_ascii_lowercase();
        let protos: &[Proto] = match text.as_str() {
            "" | "tcp" => &[Proto::Tcp],
            "udp" => &[Proto::Udp],
            "udp,tcp" | "tcp,udp" => &[Proto::Tcp, Proto::Udp],
            other => {
                return Err(bad(format!(
                    "protocol {other:?} of host_port {host_port} is not forwarded (tcp or udp)"
                )));
            }
        };
        for &proto in protos {
            if out
                .iter()
                .any(|m| m.proto == proto && m.host_port == host_port)
            {
                return Err(bad(format!(
                    "host_port {}/{host_port} is mapped twice",
                    proto.as_str()
                )));
            }
            out.push(Mapping {
                proto,
                host_port,
                container_port,
            });
        }
    }
    Ok(out)
}

/// The chain of one attachment: `cni-` and the 11 characters of its tap name's hash, so it is
/// derived from (container id, ifname) alone and a DEL without anything else finds it.
pub fn chain_name(container_id: &str, ifname: &str) -> String {
    let tap = super::naming::tap_name(container_id, ifname);
    format!("cni-{}", &tap[3..])
}

/// What one attachment's rules forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// One element of the map: (protocol, host port) → chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub proto: Proto,
    pub host_port: u16,
    pub chain: String,
}

/// The table as listed: the map's elements and the chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub chains: Vec<String>,
}

impl Listing {
    /// Parses `nft -j list table inet contrail_cni_portmap`. Elements of another shape (not a
    /// (tcp|udp . port) key with a jump or goto) are skipped: not ours to interpret.
    pub fn parse(json: &str) -> Result<Listing> {
        let v: Value = serde_json::from_str(json).map_err(|e| {
            Error::new(
                code::PORT_MAPPING,
                format!("nft -j list: unreadable answer: {e}"),
            )
        })?;
        let mut out = Listing::default();
        let items = v["nftables"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for it in items {
            if let Some(c) = it.get("chain") {
                if let Some(n) = c["name"].as_str() {
                    out.chains.push(n.to_owned());
                }
                continue;
            }
            let Some(m) = it.get("map").filter(|m| m["name"] == MAP) else {
                continue;
            };
            for e in m["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(entry) = parse_elem(e) {
                    out.entries.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// The host ports that lead to `chain`.
    pub fn keys_of(&self, chain: &str) -> Vec<(Proto, u16)> {
        self.entries
            .iter()
            .filter(|e| e.chain == chain)
            .map(|e| (e.proto, e.host_port))
            .collect()
    }

    /// What holds (proto, port), if anything.
    pub fn holder(&self, proto: Proto, port: u16) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.proto == proto && e.host_port == port)
            .map(|e| e.chain.as_str())
    }
}

/// `[{"concat": ["tcp", 8080]}, {"goto": {"target": "cni-…"}}]`
fn parse_elem(e: &Value) -> Option<Entry> {
    let pair = e.as_array().filter(|a| a.len() == 2)?;
    let key = pair[0]["concat"].as_array().filter(|k| k.len() == 2)?;
    let proto = match key[0].as_str()? {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let host_port = u16::try_from(key[1].as_u64()?).ok()?;
    let verdict = &pair[1];
    let chain = verdict["goto"]["target"]
        .as_str()
        .or_else(|| verdict["jump"]["target"].as_str())?;
    Some(Entry {
        proto,
        host_port,
        chain: chain.to_owned(),
    })
}

/// The table, its map and the hook chains, rewritten in every ADD's transaction (idempotent:
/// `add` of what exists is a no-op and the hook chains are flushed and refilled).
fn base_script() -> String {
    format!(
        "add table {TABLE}\n\
         add map {TABLE} {MAP} {{ type inet_proto . inet_service : verdict ; }}\n\
         add chain {TABLE} prerouting {{ type nat hook prerouting priority -100 ; policy accept ; }}\n\
         add chain {TABLE} output {{ type nat hook output priority -100 ; policy accept ; }}\n\
         flush chain {TABLE} prerouting\n\
         flush chain {TABLE} output\n\
         add rule {TABLE} prerouting fib daddr type local meta l4proto . th dport vmap @{MAP}\n\
         add rule {TABLE} output meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @{MAP}\n\
         add rule {TABLE} output meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local meta l4proto . th dport vmap @{MAP}\n"
    )
}

/// A comment names the attachment for an operator listing the ruleset; only characters that
/// cannot end the quoted string, and at most nft's 128 bytes.
fn comment(t: &Target) -> String {
    let mut c: String = format!("container {} ifname {}", t.container_id, t.ifname)
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || " ._-:=/".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .collect();
    c.truncate(127);
    c
}

/// The whole ADD, one transaction: the base, the attachment's chain with a DNAT per mapping
/// and family, and its map elements (`create`: an existing key fails everything).
pub fn install_script(t: &Target, maps: &[Mapping]) -> String {
    let chain = chain_name(t.container_id, t.ifname);
    let mut s = base_script();
    s.push_str(&format!(
        "add chain {TABLE} {chain} {{ comment \"{}\" ; }}\n",
        comment(t)
    ));
    for m in maps {
        let (p, hp, cp) = (m.proto.as_str(), m.host_port, m.container_port);
        if let Some(ip) = t.v4 {
            s.push_str(&format!(
                "add rule {TABLE} {chain} meta nfproto ipv4 {p} dport {hp} dnat ip to {ip}:{cp}\n"
            ));
        }
        if let Some(ip) = t.v6 {
            s.push_str(&format!(
                "add rule {TABLE} {chain} meta nfproto ipv6 {p} dport {hp} dnat ip6 to [{ip}]:{cp}\n"
            ));
        }
    }
    let elems: Vec<String> = maps
        .iter()
        .map(|m| format!("{} . {} : goto {chain}", m.proto.as_str(), m.host_port))
        .collect();
    s.push_str(&format!(
        "create element {TABLE} {MAP} {{ {} }}\n",
        elems.join(", ")
    ));
    s
}

/// Removes `chain` and the map elements leading to it, as `listing` shows them. None when
/// there is nothing of it.
pub fn remove_script(listing: &Listing, chain: &str) -> Option<String> {
    let keys = listing.keys_of(chain);
    let has_chain = listing.chains.iter().any(|c| c == chain);
    if keys.is_empty() && !has_chain {
        return None;
    }
    let mut s = String::new();
    if !keys.is_empty() {
        let k: Vec<String> = keys
            .iter()
            .map(|(p, port)| format!("{} . {port}", p.as_str()))
            .collect();
        s.push_str(&format!(
            "delete element {TABLE} {MAP} {{ {} }}\n",
            k.join(", ")
        ));
    }
    if has_chain {
        s.push_str(&format!("delete chain {TABLE} {chain}\n"));
    }
    Some(s)
}

/// Why an install failed.
#[derive(Debug)]
pub enum InstallError {
    /// A host port is already a key of the map (another attachment maps it).
    Conflict,
    Other(Error),
}

/// The node's port forwarding, behind a trait so the verbs run against a fake.
pub trait PortMap {
    /// Installs one attachment's rules, all or nothing.
    fn install(&self, t: &Target, maps: &[Mapping]) -> std::result::Result<(), InstallError>;
    /// The table as it is now (empty when there is no table).
    fn list(&self) -> Result<Listing>;
    /// Removes the rules of the attachment whose chain is `chain`; Ok(whether any were there).
    fn remove(&self, chain: &str) -> Result<bool>;
}

/// [`PortMap`] by exec'ing `nft`.
#[derive(Debug, Clone)]
pub struct Nft {
    pub path: std::path::PathBuf,
    pub timeout: Duration,
    /// `<state-dir>/.portmap-used`, made before the first install: until it exists no rule of
    /// ours can be on the node, so a DEL, GC or sweep there runs no `nft` at all (a DEL is
    /// ~4 ms; an `nft` run adds ~2).
    pub marker: Option<std::path::PathBuf>,
}

/// The marker's file name under `state-dir`.
pub const MARKER: &str = ".portmap-used";

/// What a finished `nft` said.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Nft {
    pub fn new(cfg: &super::ContrailConfig) -> Nft {
        Nft {
            path: cfg.nft_path.clone(),
            timeout: cfg.nft_timeout,
            marker: Some(cfg.state_dir.join(MARKER)),
        }
    }

    /// The binary must be a regular file only root can change: it runs as root with what we
    /// hand it.
    fn check_binary(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let bad = |m: String| {
            Error::new(
                code::INVALID_CONFIG,
                format!("contrail.nft-path {}: {m}", self.path.display()),
            )
        };
        let md = std::fs::metadata(&self.path).map_err(|e| bad(e.to_string()))?;
        if !md.is_file() || md.mode() & 0o111 == 0 {
            return Err(bad("not an executable file".into()));
        }
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            return Err(bad(
                "must be owned by root and not writable by group or others".into(),
            ));
        }
        Ok(())
    }

    /// Runs `nft <args>` with `stdin`, within the timeout (killed after it).
    fn run(&self, args: &[&str], stdin: &str) -> Result<Run> {
        self.check_binary()?;
        let fail = |m: String| Error::new(code::PORT_MAPPING, m);
        let mut child = Command::new(&self.path)
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.path.display())))?;
        let mut input = child.stdin.take();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let read = |p: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                if let Some(p) = p {
                    let _ = p.take(OUTPUT_MAX).read_to_end(&mut s);
                }
                String::from_utf8_lossy(&s).into_owned()
            })
        };
        let out = read(out.map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = read(err.map(|p| Box::new(p) as Box<dyn Read + Send>));
        let script = stdin.to_owned();
        let writer = std::thread::spawn(move || {
            if let Some(i) = input.as_mut() {
                let _ = i.write_all(script.as_bytes());
            }
            drop(input);
        });
        let t = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if t.elapsed() >= self.timeout => {
                    // Our own child, by its handle.
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(fail(format!(
                        "{} {} did not finish within {:?}; killed",
                        self.path.display(),
                        args.join(" "),
                        self.timeout
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => break Err(fail(format!("waiting for nft: {e}"))),
            }
        };
        let _ = writer.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let status = status?;
        Ok(Run {
            ok: status.success(),
            stdout,
            stderr,
        })
    }

    fn apply(&self, script: &str) -> Result<Run> {
        tracing::debug!(script, "nft -f -");
        self.run(&["-f", "-"], script)
    }
}

/// nft's message for a table (or map, chain) that does not exist.
fn absent(stderr: &str) -> bool {
    stderr.contains("No such file or directory")
}

/// The first line of nft's complaint, for an error message.
fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("Error"))
        .unwrap_or(stderr.trim())
        .trim()
        .chars()
        .take(300)
        .collect()
}

impl PortMap for Nft {
    fn install(&self, t: &Target, maps: &[Mapping]) -> std::result::Result<(), InstallError> {
        if let Some(m) = &self.marker {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(m)
                .map_err(|e| {
                    InstallError::Other(Error::new(
                        code::PORT_MAPPING,
                        format!("{}: {e}", m.display()),
                    ))
                })?;
        }
        let r = self
            .apply(&install_script(t, maps))
            .map_err(InstallError::Other)?;
        if r.ok {
            return Ok(());
        }
        if r.stderr.contains("File exists") && r.stderr.contains("create element") {
            return Err(InstallError::Conflict);
        }
        Err(InstallError::Other(Error::new(
            code::PORT_MAPPING,
            format!("nft refused the port mappings: {}", first_error(&r.stderr)),
        )))
    }

    fn list(&self) -> Result<Listing> {
        if self.marker.as_ref().is_some_and(|m| !m.exists()) {
            return Ok(Listing::default());
        }
        // Without the binary nothing was ever installed with it: a DEL on a node without
        // nftables has nothing to remove (an ADD with port mappings fails on the check).
        if std::fs::symlink_metadata(&self.path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            tracing::debug!(nft = %self.path.display(), "no nft binary: no port mappings");
            return Ok(Listing::default());
        }
        let table: Vec<&str> = TABLE.split(' ').collect();
        let mut args = vec!["-j", "list", "table"];
        args.extend(table);
        let r = self.run(&args, "")?;
        if !r.ok {
            if absent(&r.stderr) {
                return Ok(Listing::default());
            }
            return Err(Error::new(
                code::PORT_MAPPING,
                format!("nft list table {TABLE}: {}", first_error(&r.stderr)),
            ));
        }
        Listing::parse(&r.stdout)
    }

    fn remove(&self, chain: &str) -> Result<bool> {
        // A concurrent DEL of another attachment cannot touch our elements, but the listing
        // and the delete are two steps: a failed delete is listed and tried once more.
        let mut last = None;
        for _ in 0..2 {
            let listing = self.list()?;
            let Some(script) = remove_script(&listing, chain) else {
                return Ok(last.is_some());
            };
            let r = self.apply(&script)?;
            if r.ok {
                return Ok(true);
            }
            last = Some(first_error(&r.stderr));
        }
        Err(Error::new(
            code::PORT_MAPPING,
            format!(
                "nft could not remove chain {chain}: {}",
                last.unwrap_or_default()
            ),
        ))
    }
}

/// Whether `path` is usable as `contrail.nft-path` (checked when the config is read).
pub fn valid_nft_path(path: &Path) -> bool {
    path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(h: u32, c: u32, p: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: h,
            container_port: c,
            protocol: p.map(str::to_owned),
        }
    }

    #[test]
    fn mesos_mappings_are_checked() {
        let m = from_mesos(&[
            pm(8080, 80, None),
            pm(5353, 53, Some("UDP")),
            pm(9000, 9000, Some("udp,tcp")),
        ])
        .unwrap();
        assert_eq!(
            m.iter()
                .map(|m| (m.proto, m.host_port, m.container_port))
                .collect::<Vec<_>>(),
            [
                (Proto::Tcp, 8080, 80),
                (Proto::Udp, 5353, 53),
                (Proto::Tcp, 9000, 9000),
                (Proto::Udp, 9000, 9000)
            ]
        );
        // The same host port on both protocols is two ports.
        from_mesos(&[pm(53, 53, Some("tcp")), pm(53, 53, Some("udp"))]).unwrap();
        for (bad, want) in [
            (vec![pm(0, 80, None)], "host_port 0 is not a port"),
            (vec![pm(70000, 80, None)], "host_port 70000"),
            (vec![pm(80, 0, None)], "container_port 0"),
            (vec![pm(80, 80, Some("sctp"))], "protocol \"sctp\""),
            (
                vec![pm(80, 80, None), pm(80, 81, Some("tcp"))],
                "tcp/80 is mapped twice",
            ),
        ] {
            let e = from_mesos(&bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG);
            assert!(e.msg.contains(want), "{}", e.msg);
            assert!(e.msg.starts_with("network_info.port_mappings: "));
        }
        let many: Vec<_> = (1..=(MAX_MAPPINGS as u32 + 1))
            .map(|p| pm(p, p, None))
            .collect();
        assert!(from_mesos(&many).unwrap_err().msg.contains("at most"));
    }

    #[test]
    fn chains_are_named_for_the_attachment() {
        let a = chain_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("cni-"));
        assert_eq!(
            a,
            chain_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth0")
        );
        assert_ne!(
            a,
            chain_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth1")
        );
        assert_ne!(
            a,
            chain_name("5baff64c-d028-47ba-864e-a5ee679fc06a", "eth0")
        );
    }

    #[test]
    fn install_script_is_one_transaction_per_family_and_mapping() {
        let t = Target {
            container_id: "c\"1\n; flush ruleset",
            ifname: "eth0",
            v4: Some("10.0.0.5".parse().unwrap()),
            v6: Some("fd00::5".parse().unwrap()),
        };
        let maps = from_mesos(&[pm(8080, 80, None), pm(5353, 53, Some("udp"))]).unwrap();
        let s = install_script(&t, &maps);
        let chain = chain_name(t.container_id, "eth0");
        assert!(s.starts_with(&base_script()));
        let tail: Vec<&str> = s[base_script().len()..].lines().collect();
        assert_eq!(
            tail,
            [
                format!(
                    "add chain inet contrail_cni_portmap {chain} {{ comment \"container c_1__ flush ruleset ifname eth0\" ; }}"
                ),
                format!(
                    "add rule inet contrail_cni_portmap {chain} meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.5:80"
                ),
                format!(
                    "add rule inet contrail_cni_portmap {chain} meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00::5]:80"
                ),
                format!(
                    "add rule inet contrail_cni_portmap {chain} meta nfproto ipv4 udp dport 5353 dnat ip to 10.0.0.5:53"
                ),
                format!(
                    "add rule inet contrail_cni_portmap {chain} meta nfproto ipv6 udp dport 5353 dnat ip6 to [fd00::5]:53"
                ),
                format!(
                    "create element inet contrail_cni_portmap hostports {{ tcp . 8080 : goto {chain}, udp . 5353 : goto {chain} }}"
                ),
            ]
        );
        // Without an IPv6 address, no IPv6 rule; loopback is never a destination.
        let v4only = install_script(&Target { v6: None, ..t }, &maps);
        assert!(!v4only.contains("dnat ip6"));
        assert!(base_script().contains("ip daddr != 127.0.0.0/8"));
        assert!(base_script().contains("ip6 daddr != ::1"));
    }

    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "contrail_cni_portmap", "handle": 9}},
      {"map": {"family": "inet", "name": "hostports", "table": "contrail_cni_portmap", "type": ["inet_proto", "inet_service"], "handle": 1, "map": "verdict",
        "elem": [[{"concat": ["udp", 53]}, {"goto": {"target": "cni-aaa"}}],
                 [{"concat": ["tcp", 8080]}, {"goto": {"target": "cni-aaa"}}],
                 [{"concat": ["tcp", 9090]}, {"jump": {"target": "cni-bbb"}}],
                 [{"concat": ["sctp", 1]}, {"goto": {"target": "cni-ccc"}}],
                 [{"concat": ["tcp", 70000]}, {"goto": {"target": "cni-ccc"}}],
                 "garbage"]}},
      {"chain": {"family": "inet", "table": "contrail_cni_portmap", "name": "prerouting", "handle": 2, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
      {"chain": {"family": "inet", "table": "contrail_cni_portmap", "name": "cni-aaa", "handle": 7}},
      {"chain": {"family": "inet", "table": "contrail_cni_portmap", "name": "cni-ddd", "handle": 8}},
      {"rule": {"family": "inet", "table": "contrail_cni_portmap", "chain": "cni-aaa", "handle": 10, "expr": []}}]}"#;

    #[test]
    fn listing_parses_nfts_json_and_removal_goes_by_identity() {
        let l = Listing::parse(LISTING).unwrap();
        assert_eq!(l.chains, ["prerouting", "cni-aaa", "cni-ddd"]);
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.keys_of("cni-aaa"), [(Proto::Udp, 53), (Proto::Tcp, 8080)]);
        assert_eq!(l.holder(Proto::Tcp, 9090), Some("cni-bbb"));
        assert_eq!(l.holder(Proto::Udp, 9090), None);
        assert_eq!(
            remove_script(&l, "cni-aaa").unwrap(),
            "delete element inet contrail_cni_portmap hostports { udp . 53, tcp . 8080 }\n\
             delete chain inet contrail_cni_portmap cni-aaa\n"
        );
        // Elements without their chain, a chain without elements, nothing at all.
        assert_eq!(
            remove_script(&l, "cni-bbb").unwrap(),
            "delete element inet contrail_cni_portmap hostports { tcp . 9090 }\n"
        );
        assert_eq!(
            remove_script(&l, "cni-ddd").unwrap(),
            "delete chain inet contrail_cni_portmap cni-ddd\n"
        );
        assert_eq!(remove_script(&l, "cni-zzz"), None);
        assert!(Listing::parse("not json").is_err());
        assert_eq!(Listing::parse("{}").unwrap(), Listing::default());
    }

    #[test]
    fn nft_path_must_be_absolute() {
        assert!(valid_nft_path(Path::new("/usr/sbin/nft")));
        assert!(!valid_nft_path(Path::new("nft")));
        assert!(!valid_nft_path(Path::new("/usr/../tmp/nft")));
    }

    #[test]
    fn without_the_marker_nothing_is_run() {
        // Before any install under this state dir, a DEL's listing runs no binary at all (this
        // one would fail the check: not root's, writable by anyone).
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nft");
        std::fs::write(&p, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let mut nft = Nft {
            path: p,
            timeout: Duration::from_secs(1),
            marker: Some(tmp.path().join(MARKER)),
        };
        assert_eq!(nft.list().unwrap(), Listing::default());
        assert!(!nft.remove("cni-x").unwrap());
        nft.marker = None;
        assert_eq!(nft.list().unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn an_nft_that_hangs_is_killed_within_the_timeout() {
        // A root-owned binary that never exits: `sleep` (the check wants root's file).
        let sleep = Path::new("/usr/bin/sleep");
        let md = std::fs::metadata(sleep);
        if !md.is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
            eprintln!("SKIPPED: no root-owned /usr/bin/sleep");
            return;
        }
        let nft = Nft {
            path: sleep.into(),
            timeout: Duration::from_millis(100),
            marker: None,
        };
        let e = nft.run(&["30"], "").err().unwrap();
        assert_eq!(e.code, code::PORT_MAPPING);
        assert!(e.msg.contains("did not finish within"), "{}", e.msg);
        // A binary anyone may write is refused before it runs.
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nft");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let e = Nft {
            path: p,
            timeout: Duration::from_secs(1),
            marker: None,
        }
        .run(&[], "")
        .err()
        .unwrap();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("contrail.nft-path"), "{}", e.msg);
    }
}

//! The CNI result. One canonical form (the 1.1.0 shape) inside the host; [`CniResult::decode`]
//! reads a result of any version (e.g. a delegate's stdout) and [`CniResult::encode`] writes any
//! version with the rules of Go's `pkg/types` (`types020`, `types040`, `types100`):
//!
//! * 0.1.0/0.2.0: `ip4`/`ip6`/`dns`; the first IPv4 and the first IPv6 address are kept, routes
//!   are split by the family of their destination and kept only when that family has an
//!   address; no address at all is the error "cannot convert: no valid IP addresses".
//! * 0.3.0/0.3.1/0.4.0: `interfaces`/`ips`/`routes`/`dns`, each `ips[]` entry has `version`.
//! * 1.0.0: as 0.4.0 without `version`.
//! * 1.1.0: adds route `mtu`/`advmss`/`priority`/`table`/`scope` and interface
//!   `mtu`/`socketPath`/`pciID`; these are dropped when writing an older version.
//!
//! Empty lists and absent optionals are left out (Go's `omitempty`); `dns` is always written,
//! as Go does (a struct is never "empty" to `encoding/json`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::error::{CniError, DECODE_FAILURE, INTERNAL};
use super::version::{CniVersion, parse_loose};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// 1.1.0 only.
    pub mtu: Option<u32>,
    /// The netns path; absent for host-side interfaces.
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into `interfaces`.
    pub interface: Option<usize>,
    /// Address with prefix, e.g. 10.1.0.5/16 (host bits kept).
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// Short name used by callers.
pub type Ip = IpConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// The remaining fields are 1.1.0 only.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.nameservers.is_empty() {
            m.insert("nameservers".into(), json!(self.nameservers));
        }
        if let Some(d) = &self.domain {
            m.insert("domain".into(), json!(d));
        }
        if !self.search.is_empty() {
            m.insert("search".into(), json!(self.search));
        }
        if !self.options.is_empty() {
            m.insert("options".into(), json!(self.options));
        }
        Value::Object(m)
    }

    fn from_json(v: Option<&Value>) -> Result<Self, CniError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Dns::default());
        };
        let o = v.as_object().ok_or_else(|| bad("dns is not an object"))?;
        Ok(Dns {
            nameservers: str_list(o.get("nameservers"), "dns.nameservers")?,
            domain: opt_str(o.get("domain"), "dns.domain")?.filter(|s| !s.is_empty()),
            search: str_list(o.get("search"), "dns.search")?,
            options: str_list(o.get("options"), "dns.options")?,
        })
    }
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::new(
        DECODE_FAILURE,
        format!("invalid CNI result: {}", msg.into()),
    )
}

fn opt_str(v: Option<&Value>, what: &str) -> Result<Option<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{what} is not a string: {other}"))),
    }
}

fn opt_u32(v: Option<&Value>, what: &str) -> Result<Option<u32>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{what} is not a small non-negative integer: {n}"))),
    }
}

fn str_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{what} has a non-string")))
            })
            .collect(),
        Some(other) => Err(bad(format!("{what} is not a list: {other}"))),
    }
}

fn cidr(v: Option<&Value>, what: &str) -> Result<IpNet, CniError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{what} is missing")))?;
    s.parse()
        .map_err(|_| bad(format!("{what} is not an address with prefix: {s:?}")))
}

fn opt_ip(v: Option<&Value>, what: &str) -> Result<Option<IpAddr>, CniError> {
    match opt_str(v, what)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{what} is not an IP address: {s:?}"))),
    }
}

fn list<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(bad(format!("{key} is not a list: {other}"))),
    }
}

fn route_from_json(v: &Value, what: &str) -> Result<Route, CniError> {
    let o = v
        .as_object()
        .ok_or_else(|| bad(format!("{what} is not an object")))?;
    Ok(Route {
        dst: cidr(o.get("dst"), &format!("{what}.dst"))?,
        gw: opt_ip(o.get("gw"), &format!("{what}.gw"))?,
        mtu: opt_u32(o.get("mtu"), "route mtu")?,
        advmss: opt_u32(o.get("advmss"), "route advmss")?,
        priority: opt_u32(o.get("priority"), "route priority")?,
        table: opt_u32(o.get("table"), "route table")?,
        scope: opt_u32(o.get("scope"), "route scope")?,
    })
}

fn route_to_json(r: &Route, rich: bool) -> Value {
    let mut m = Map::new();
    m.insert("dst".into(), json!(r.dst.to_string()));
    if let Some(gw) = r.gw {
        m.insert("gw".into(), json!(gw.to_string()));
    }
    if rich {
        for (k, v) in [
            ("mtu", r.mtu),
            ("advmss", r.advmss),
            ("priority", r.priority),
            ("table", r.table),
            ("scope", r.scope),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
    }
    Value::Object(m)
}

impl CniResult {
    /// Parses a result printed by a plugin of any version. The shape is chosen by
    /// `cniVersion` (absent = 0.1.0; below 0.3 = `ip4`/`ip6`), falling back to the keys present
    /// when the version says otherwise (some plugins print "0.2.3" or get it wrong).
    /// Returns the result and the version it claimed.
    pub fn decode(v: &Value) -> Result<(CniResult, String), CniError> {
        let o = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let version = opt_str(o.get("cniVersion"), "cniVersion")?
            .unwrap_or_else(|| super::version::DEFAULT_VERSION.to_owned());
        let legacy_by_version = parse_loose(&version).is_some_and(|(ma, mi, _)| (ma, mi) < (0, 3));
        let has_legacy = o.contains_key("ip4") || o.contains_key("ip6");
        let has_rich = o.contains_key("ips") || o.contains_key("interfaces");
        let legacy = if legacy_by_version {
            !has_rich || has_legacy
        } else {
            has_legacy && !has_rich
        };
        let r = if legacy {
            Self::decode_legacy(o)?
        } else {
            Self::decode_rich(o)?
        };
        Ok((r, version))
    }

    /// [`CniResult::decode`] from text.
    pub fn parse(text: &[u8]) -> Result<(CniResult, String), CniError> {
        let v: Value = serde_json::from_slice(text)
            .map_err(|e| CniError::new(DECODE_FAILURE, format!("invalid CNI result JSON: {e}")))?;
        Self::decode(&v)
    }

    fn decode_legacy(o: &Map<String, Value>) -> Result<Self, CniError> {
        let mut r = CniResult {
            dns: Dns::from_json(o.get("dns"))?,
            ..Default::default()
        };
        for key in ["ip4", "ip6"] {
            let Some(ipc) = o.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let ipc = ipc
                .as_object()
                .ok_or_else(|| bad(format!("{key} is not an object")))?;
            r.ips.push(IpConfig {
                interface: None,
                address: cidr(ipc.get("ip"), &format!("{key}.ip"))?,
                gateway: opt_ip(ipc.get("gateway"), &format!("{key}.gateway"))?,
            });
            for (i, rt) in list(ipc, "routes")?.iter().enumerate() {
                r.routes
                    .push(route_from_json(rt, &format!("{key}.routes[{i}]"))?);
            }
        }
        Ok(r)
    }

    fn decode_rich(o: &Map<String, Value>) -> Result<Self, CniError> {
        let mut r = CniResult {
            dns: Dns::from_json(o.get("dns"))?,
            ..Default::default()
        };
        for (i, itf) in list(o, "interfaces")?.iter().enumerate() {
            let what = format!("interfaces[{i}]");
            let io = itf
                .as_object()
                .ok_or_else(|| bad(format!("{what} is not an object")))?;
            r.interfaces.push(Interface {
                name: opt_str(io.get("name"), &what)?.unwrap_or_default(),
                mac: opt_str(io.get("mac"), &what)?.filter(|s| !s.is_empty()),
                mtu: opt_u32(io.get("mtu"), &what)?.filter(|m| *m != 0),
                sandbox: opt_str(io.get("sandbox"), &what)?.filter(|s| !s.is_empty()),
                socket_path: opt_str(io.get("socketPath"), &what)?.filter(|s| !s.is_empty()),
                pci_id: opt_str(io.get("pciID"), &what)?.filter(|s| !s.is_empty()),
            });
        }
        for (i, ip) in list(o, "ips")?.iter().enumerate() {
            let what = format!("ips[{i}]");
            let io = ip
                .as_object()
                .ok_or_else(|| bad(format!("{what} is not an object")))?;
            let interface = match io.get("interface") {
                None | Some(Value::Null) => None,
                Some(n) => Some(
                    n.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad(format!("{what}.interface is not an index")))?,
                ),
            };
            r.ips.push(IpConfig {
                interface,
                address: cidr(io.get("address"), &format!("{what}.address"))?,
                gateway: opt_ip(io.get("gateway"), &format!("{what}.gateway"))?,
            });
        }
        for (i, rt) in list(o, "routes")?.iter().enumerate() {
            r.routes.push(route_from_json(rt, &format!("routes[{i}]"))?);
        }
        Ok(r)
    }

    /// Writes the result in `version`. Fails only for 0.1.0/0.2.0 without any address.
    pub fn encode(&self, version: CniVersion) -> Result<Value, CniError> {
        if version.is_legacy_result() {
            return self.encode_legacy(version);
        }
        let rich = version >= CniVersion::V1_1_0;
        let with_ip_version = version < CniVersion::V1_0_0;
        let mut m = Map::new();
        m.insert("cniVersion".into(), json!(version.as_str()));
        if !self.interfaces.is_empty() {
            let itfs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(i.name));
                    if let Some(mac) = &i.mac {
                        o.insert("mac".into(), json!(mac));
                    }
                    if rich && let Some(mtu) = i.mtu {
                        o.insert("mtu".into(), json!(mtu));
                    }
                    if let Some(s) = &i.sandbox {
                        o.insert("sandbox".into(), json!(s));
                    }
                    if rich {
                        if let Some(s) = &i.socket_path {
                            o.insert("socketPath".into(), json!(s));
                        }
                        if let Some(s) = &i.pci_id {
                            o.insert("pciID".into(), json!(s));
                        }
                    }
                    Value::Object(o)
                })
                .collect();
            m.insert("interfaces".into(), Value::Array(itfs));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = Map::new();
                    if with_ip_version {
                        let v = if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        };
                        o.insert("version".into(), json!(v));
                    }
                    if let Some(i) = ip.interface {
                        o.insert("interface".into(), json!(i));
                    }
                    o.insert("address".into(), json!(ip.address.to_string()));
                    if let Some(gw) = ip.gateway {
                        o.insert("gateway".into(), json!(gw.to_string()));
                    }
                    Value::Object(o)
                })
                .collect();
            m.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            let routes = self.routes.iter().map(|r| route_to_json(r, rich)).collect();
            m.insert("routes".into(), Value::Array(routes));
        }
        m.insert("dns".into(), self.dns.to_json());
        Ok(Value::Object(m))
    }

    fn encode_legacy(&self, version: CniVersion) -> Result<Value, CniError> {
        let first4 = self.ips.iter().find(|ip| ip.address.addr().is_ipv4());
        let first6 = self.ips.iter().find(|ip| ip.address.addr().is_ipv6());
        if first4.is_none() && first6.is_none() {
            return Err(
                CniError::new(INTERNAL, "cannot convert: no valid IP addresses")
                    .with_details(format!("to CNI version {version}")),
            );
        }
        let ipc = |ip: &IpConfig, v4: bool| {
            let mut o = Map::new();
            o.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                o.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() == v4)
                .map(|r| route_to_json(r, false))
                .collect();
            if !routes.is_empty() {
                o.insert("routes".into(), Value::Array(routes));
            }
            Value::Object(o)
        };
        let mut m = Map::new();
        m.insert("cniVersion".into(), json!(version.as_str()));
        if let Some(ip) = first4 {
            m.insert("ip4".into(), ipc(ip, true));
        }
        if let Some(ip) = first6 {
            m.insert("ip6".into(), ipc(ip, false));
        }
        m.insert("dns".into(), self.dns.to_json());
        Ok(Value::Object(m))
    }

    /// [`CniResult::encode`] as the one line printed on stdout.
    pub fn to_string(&self, version: CniVersion) -> Result<String, CniError> {
        Ok(self.encode(version)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "veth1".into(),
                    mac: Some("0a:58:0a:01:00:01".into()),
                    mtu: Some(1500),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("0a:58:0a:01:00:05".into()),
                    mtu: Some(1450),
                    sandbox: Some("/run/netns/c1".into()),
                    socket_path: Some("/tmp/s".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    interface: Some(1),
                    address: "10.1.0.5/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                },
                IpConfig {
                    interface: Some(1),
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                },
                IpConfig {
                    interface: Some(1),
                    address: "10.2.0.5/24".parse().unwrap(),
                    gateway: None,
                },
            ],
            routes: vec![
                Route {
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(10),
                    table: Some(100),
                    scope: Some(0),
                    ..Route::new(
                        "0.0.0.0/0".parse().unwrap(),
                        Some("10.1.0.1".parse().unwrap()),
                    )
                },
                Route::new("::/0".parse().unwrap(), Some("fd00::1".parse().unwrap())),
                Route::new("192.168.0.0/16".parse().unwrap(), None),
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.2".into()],
                domain: Some("example.com".into()),
                search: vec!["svc.example.com".into()],
                options: vec!["ndots:2".into()],
            },
        }
    }

    const DNS: &str = r#""dns":{"nameservers":["10.1.0.2"],"domain":"example.com","search":["svc.example.com"],"options":["ndots:2"]}"#;

    fn golden(version: CniVersion) -> String {
        let legacy = format!(
            r#"{{"cniVersion":"{version}","ip4":{{"ip":"10.1.0.5/16","gateway":"10.1.0.1","routes":[{{"dst":"0.0.0.0/0","gw":"10.1.0.1"}},{{"dst":"192.168.0.0/16"}}]}},"ip6":{{"ip":"fd00::5/64","routes":[{{"dst":"::/0","gw":"fd00::1"}}]}},{DNS}}}"#
        );
        let itf040 = r#""interfaces":[{"name":"veth1","mac":"0a:58:0a:01:00:01"},{"name":"eth0","mac":"0a:58:0a:01:00:05","sandbox":"/run/netns/c1"}]"#;
        let ips040 = r#""ips":[{"version":"4","interface":1,"address":"10.1.0.5/16","gateway":"10.1.0.1"},{"version":"6","interface":1,"address":"fd00::5/64"},{"version":"4","interface":1,"address":"10.2.0.5/24"}]"#;
        let routes_plain = r#""routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"::/0","gw":"fd00::1"},{"dst":"192.168.0.0/16"}]"#;
        let ips100 = r#""ips":[{"interface":1,"address":"10.1.0.5/16","gateway":"10.1.0.1"},{"interface":1,"address":"fd00::5/64"},{"interface":1,"address":"10.2.0.5/24"}]"#;
        match version {
            CniVersion::V0_1_0 | CniVersion::V0_2_0 => legacy,
            CniVersion::V0_3_0 | CniVersion::V0_3_1 | CniVersion::V0_4_0 => {
                format!(r#"{{"cniVersion":"{version}",{itf040},{ips040},{routes_plain},{DNS}}}"#)
            }
            CniVersion::V1_0_0 => {
                format!(r#"{{"cniVersion":"1.0.0",{itf040},{ips100},{routes_plain},{DNS}}}"#)
            }
            CniVersion::V1_1_0 => format!(
                r#"{{"cniVersion":"1.1.0","interfaces":[{{"name":"veth1","mac":"0a:58:0a:01:00:01","mtu":1500}},{{"name":"eth0","mac":"0a:58:0a:01:00:05","mtu":1450,"sandbox":"/run/netns/c1","socketPath":"/tmp/s","pciID":"0000:00:1f.6"}}],{ips100},"routes":[{{"dst":"0.0.0.0/0","gw":"10.1.0.1","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0}},{{"dst":"::/0","gw":"fd00::1"}},{{"dst":"192.168.0.0/16"}}],{DNS}}}"#
            ),
        }
    }

    #[test]
    fn golden_json_for_every_version() {
        for v in CniVersion::ALL {
            assert_eq!(sample().to_string(v).unwrap(), golden(v), "version {v}");
        }
    }

    #[test]
    fn every_version_round_trips_through_decode() {
        for v in CniVersion::ALL {
            let text = golden(v);
            let (r, claimed) = CniResult::parse(text.as_bytes()).unwrap();
            assert_eq!(claimed, v.as_str());
            // Re-encoding what we decoded must give the same text (nothing invented or lost).
            assert_eq!(r.to_string(v).unwrap(), text, "version {v}");
        }
    }

    #[test]
    fn full_result_survives_1_1_0() {
        let (r, _) = CniResult::parse(golden(CniVersion::V1_1_0).as_bytes()).unwrap();
        assert_eq!(r, sample());
    }

    #[test]
    fn legacy_up_conversion() {
        // What Mesos' own test plugins print (note "0.2.3").
        let (r, v) =
            CniResult::parse(br#"{"cniVersion": "0.2.3", "ip4": {"ip": "203.0.113.7/31"}}"#)
                .unwrap();
        assert_eq!(v, "0.2.3");
        assert_eq!(
            r.to_string(CniVersion::V1_0_0).unwrap(),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"203.0.113.7/31"}],"dns":{}}"#
        );
        assert_eq!(
            r.to_string(CniVersion::V0_4_0).unwrap(),
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"203.0.113.7/31"}],"dns":{}}"#
        );
        // No cniVersion at all = 0.1.0 shape.
        let (r, v) = CniResult::parse(
            br#"{"ip6": {"ip": "fd00::7/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]}}"#,
        )
        .unwrap();
        assert_eq!(v, "0.1.0");
        assert_eq!(r.ips[0].gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.routes, vec![Route::new("::/0".parse().unwrap(), None)]);
    }

    #[test]
    fn down_conversion_of_a_bridge_result() {
        // A real `bridge` 1.0.0 ADD result shape.
        let text = br#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth0","mac":"aa:bb:cc:dd:ee:02"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/x"}],"ips":[{"interface":2,"address":"10.22.0.5/24","gateway":"10.22.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
        let (r, _) = CniResult::parse(text).unwrap();
        assert_eq!(
            r.to_string(CniVersion::V0_2_0).unwrap(),
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.22.0.5/24","gateway":"10.22.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{}}"#
        );
    }

    #[test]
    fn routes_without_an_address_of_their_family_are_dropped_in_0_2() {
        let r = CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: "10.0.0.2/8".parse().unwrap(),
                gateway: None,
            }],
            routes: vec![Route::new("::/0".parse().unwrap(), None)],
            ..Default::default()
        };
        assert_eq!(
            r.to_string(CniVersion::V0_2_0).unwrap(),
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/8"},"dns":{}}"#
        );
    }

    #[test]
    fn no_address_cannot_go_to_0_2() {
        let r = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = r.encode(CniVersion::V0_2_0).unwrap_err();
        assert_eq!(e.msg, "cannot convert: no valid IP addresses");
        assert!(r.encode(CniVersion::V0_1_0).is_err());
        assert_eq!(
            r.to_string(CniVersion::V1_0_0).unwrap(),
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"dns":{}}"#
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for text in [
            &b"not json"[..],
            b"[]",
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
            br#"{"cniVersion":"0.2.0","ip4":{"ip":"banana/24"}}"#,
            br#"{"cniVersion":"1.0.0","ips":{}}"#,
            br#"{"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","gw":"x"}]}"#,
        ] {
            let e = CniResult::parse(text).unwrap_err();
            assert_eq!(e.code, DECODE_FAILURE, "{}", String::from_utf8_lossy(text));
        }
    }
}

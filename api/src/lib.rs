//! The attachment API between `contrail-cni-plugin` (client, on every agent node, `mode: mesos`)
//! and `contrail-mesos-manager` (server, on the master). The prose contract is
//! `docs/attachment-api.md`; these types are its only implementation and both sides use them,
//! so the JSON cannot drift. Field names are kebab-case like the rest of Contrail's JSON.

use serde::{Deserialize, Serialize};

pub mod allow;
pub mod config_problem;
#[cfg(feature = "tls")]
pub mod resolve;
#[cfg(feature = "tls")]
pub mod tls;

/// Version prefix of every path.
pub const API_PREFIX: &str = "/v1";
/// `POST` registers one attachment; `GET` lists them.
pub const ATTACHMENTS_PATH: &str = "/v1/attachments";

/// Path of one attachment: `DELETE` deregisters it, `GET` reads it.
pub fn attachment_path(container_id: &str, ifname: &str) -> String {
    format!("{ATTACHMENTS_PATH}/{container_id}/{ifname}")
}

/// A Mesos network label, as in `NetworkInfo.labels.labels[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub key: String,
    pub value: String,
}

/// A floating IP asked for by the `floating-ips` label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FloatingIpRequest {
    /// Pool fq-name: domain, project, virtual network, pool.
    pub pool: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The `isolation` label: how far a container's traffic may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Everything on the cluster's networks.
    Cluster,
    /// Containers of the same Marathon group.
    Group,
    /// Containers of the same app.
    App,
    /// Only what the request's security groups allow.
    UserDefined,
}

impl Isolation {
    pub const ALL: [Isolation; 4] = [
        Isolation::Cluster,
        Isolation::Group,
        Isolation::App,
        Isolation::UserDefined,
    ];

    /// The label's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Cluster => "cluster",
            Isolation::Group => "group",
            Isolation::App => "app",
            Isolation::UserDefined => "user-defined",
        }
    }

    pub fn parse(s: &str) -> Option<Isolation> {
        Isolation::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// The Contrail label vocabulary after translation by the `mesos-delegate` Wasm plugin
/// (`translate-contrail` in `wit/translator.wit`). Absent labels are `None`/empty; the manager
/// applies its configured defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContrailRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// 1 part (a name inside the project) or 3 parts (domain, project, name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Vec<String>>,
    /// CIDRs with no host bits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// The instance-ip address asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<FloatingIpRequest>,
    /// fq-names (3 parts, or 1 part = inside the project).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<Vec<String>>,
    /// `isolation`; absent in requests of older clients (the manager's default applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Labels outside the vocabulary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<Label>,
}

/// Why a [`ContrailRequest`] cannot be used: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ValidationError {}

pub(crate) fn fq_ok(parts: &[String], allowed: &[usize]) -> bool {
    allowed.contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(':') && !p.chars().any(char::is_control))
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(':') && !s.chars().any(char::is_control)
}

impl ContrailRequest {
    /// The `allow-from` entries (every `allow-from` label among `other`, in order, each entry
    /// once), or why one does not parse.
    pub fn allow_from(&self) -> Result<Vec<allow::Allow>, ValidationError> {
        let mut out: Vec<allow::Allow> = Vec::new();
        for l in self.other.iter().filter(|l| l.key == allow::LABEL) {
            for a in allow::parse(&l.value)? {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if out.len() > allow::MAX_ENTRIES {
            return Err(ValidationError {
                field: allow::LABEL,
                reason: format!("more than {} entries", allow::MAX_ENTRIES),
            });
        }
        Ok(out)
    }

    /// The one check of the vocabulary, for the CNI host (on a plugin's answer) and the
    /// manager (on a request it receives): fq-names of the right length with non-empty parts,
    /// CIDRs without host bits, addresses that parse, names without `:`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let err = |field, reason: String| Err(ValidationError { field, reason });
        for (field, v) in [("domain", &self.domain), ("project", &self.project)] {
            if let Some(v) = v
                && !name_ok(v)
            {
                return err(field, format!("{v:?} is not a name"));
            }
        }
        if let Some(n) = &self.network
            && !fq_ok(n, &[1, 3])
        {
            return err(
                "network",
                format!("fq-name {n:?} must have 1 or 3 non-empty parts"),
            );
        }
        for s in &self.subnets {
            let net: ipnet::IpNet = match s.parse() {
                Ok(n) => n,
                Err(_) => return err("subnets", format!("{s:?} is not a CIDR")),
            };
            if net.trunc() != net {
                return err("subnets", format!("{s:?} has host bits set"));
            }
        }
        if let Some(ip) = &self.ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return err("ip", format!("network-ip {ip:?} is not an IP address"));
        }
        for f in &self.floating_ips {
            if !fq_ok(&f.pool, &[4]) {
                return err(
                    "floating-ips",
                    format!("pool {:?} must have 4 non-empty parts", f.pool),
                );
            }
            if let Some(a) = &f.address
                && a.parse::<std::net::IpAddr>().is_err()
            {
                return err(
                    "floating-ips",
                    format!("address {a:?} is not an IP address"),
                );
            }
        }
        for sg in &self.security_groups {
            if !fq_ok(sg, &[1, 3]) {
                return err(
                    "security-groups",
                    format!("fq-name {sg:?} must have 1 or 3 non-empty parts"),
                );
            }
        }
        self.allow_from()?;
        if self.isolation == Some(Isolation::UserDefined) && self.security_groups.is_empty() {
            return err(
                "isolation",
                "user-defined isolation needs security-groups".to_owned(),
            );
        }
        Ok(())
    }
}

/// The interface index of a VMI, Contrail's `index` annotation `i/N`: interface `i` of the
/// container's `N` (0-based, `i < N`). One type so the host, the manager and the API do not
/// each parse the string. Serialised as the annotation's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceIndex {
    pub index: u32,
    pub count: u32,
}

impl InterfaceIndex {
    /// The only interface of a single-interface container (`0/1`).
    pub const SOLE: InterfaceIndex = InterfaceIndex { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Self, ValidationError> {
        let i = InterfaceIndex { index, count };
        i.validate()?;
        Ok(i)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.count == 0 || self.index >= self.count {
            return Err(ValidationError {
                field: "index",
                reason: format!("{self} is not an interface index (i/N with i < N)"),
            });
        }
        Ok(())
    }

    /// True for the container's primary interface (which gets the default routes).
    pub fn is_primary(&self) -> bool {
        self.index == 0
    }
}

impl std::fmt::Display for InterfaceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for InterfaceIndex {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValidationError {
            field: "index",
            reason: format!("{s:?} is not an interface index (i/N)"),
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return Err(bad());
        }
        InterfaceIndex::new(i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?)
    }
}

impl Serialize for InterfaceIndex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InterfaceIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The node the container runs on: the vRouter is found by `ip` first, then by `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Node {
    /// The CNI config's `contrail.cluster-name` (Contrail's convention: the vrouter's hostname).
    pub name: String,
    /// The CNI config's `contrail.vrouter-ip`.
    pub ip: String,
}

/// `POST /v1/attachments`: one container interface on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AttachRequest {
    /// `CNI_CONTAINERID` (the Mesos ContainerID).
    pub container_id: String,
    /// `CNI_IFNAME` (`eth0`, `eth1`, ...). (container-id, ifname) is the idempotency key.
    pub ifname: String,
    /// `CNI_NETNS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub node: Node,
    /// The CNI network's `name` (e.g. `contrail-cni-plugin`).
    pub network_name: String,
    /// The translated labels.
    pub request: ContrailRequest,
    /// The raw labels, as Mesos passed them.
    #[serde(default)]
    pub labels: Vec<Label>,
}

/// A VNC object reference in answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectRef {
    pub uuid: String,
    pub fq_name: Vec<String>,
}

/// The answer to a registration (200 when it already existed, 201 when created). Sent only
/// once every VNC object exists, including the `virtual-router -> virtual-machine` ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// VM uuid: the container id when it is a UUID, else a name-based (v5) UUID of it.
    pub vm_uuid: String,
    /// VM name: the container id. The CNI polls the agent's `/vm-cfg/<vm-name>`.
    pub vm_name: String,
    pub vmi_uuid: String,
    /// Shared: every attachment on a network refers to the same one, so a manager holding
    /// 100,000 attachments on 50 networks holds 50 of these, not 100,000 (the JSON is the
    /// object's, as if it were not shared).
    #[serde(with = "shared")]
    pub vn: std::sync::Arc<ObjectRef>,
    /// The instance-ip address VNC allocated (or the one asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The VMI's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The `index` annotation: interface `i` of the container's `N` (`"i/N"` on the wire).
    pub index: InterfaceIndex,
    /// Floating IP addresses bound to the VMI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<String>,
}

/// Serde of an `Arc<T>` field as the `T` itself (what serde's `rc` feature does, for one field).
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// Answer to `DELETE /v1/attachments/<container-id>/<ifname>`: always 200 when the request was
/// valid, so a repeated DEL succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DetachResponse {
    /// False when nothing was registered (already gone).
    pub found: bool,
}

/// Machine-readable error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The body is not a valid request (400).
    BadRequest,
    /// A label names something invalid or missing (unknown security group, unknown pool,
    /// malformed floating IP, subnet clash, address outside the subnet...) (422).
    BadLabel,
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// Not found (404), for GET of one attachment.
    NotFound,
    /// A conflicting registration exists (409).
    Conflict,
    /// The VNC API failed after retries; try again later (503).
    Unavailable,
    /// Anything else (500).
    Internal,
}

/// Every non-2xx answer has this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ApiError {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorBody {
    pub kind: ErrorKind,
    /// The label at fault, for `bad-label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, label: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            error: ErrorBody {
                kind,
                label: label.map(str::to_owned),
                message: message.into(),
            },
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        match self.error.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::BadLabel => 422,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }
}

/// The deterministic VM uuid for a container id: the id itself when it is a lowercase canonical
/// UUID (top-level Mesos ContainerIDs are; the agent's `/vm/<uuid>` routes only match that form),
/// else a stable UUID derived from it (nested ids look like `parent.child`). Both sides compute
/// it, so a DEL finds the VM even when the manager was never reached.
pub fn vm_uuid_for(container_id: &str) -> String {
    if is_canonical_uuid(container_id) {
        return container_id.to_owned();
    }
    // Two independent 64-bit FNV-1a hashes give 128 bits; version nibble 8 ("custom", RFC 9562)
    // and the RFC variant bits mark it as derived, never colliding with a real v4 container id.
    let h1 = fnv1a(0xcbf2_9ce4_8422_2325, container_id.as_bytes());
    let h2 = fnv1a(0x8422_2325_cbf2_9ce4, container_id.as_bytes());
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&h1.to_be_bytes());
    b[8..].copy_from_slice(&h2.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    data.iter().fold(seed, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn interface_index_is_one_type() {
        let i: InterfaceIndex = "1/2".parse().unwrap();
        assert_eq!(i, InterfaceIndex { index: 1, count: 2 });
        assert!(!i.is_primary() && InterfaceIndex::SOLE.is_primary());
        assert_eq!(i.to_string(), "1/2");
        assert_eq!(serde_json::to_value(i).unwrap(), "1/2");
        assert_eq!(
            serde_json::from_str::<InterfaceIndex>("\"0/1\"").unwrap(),
            InterfaceIndex::SOLE
        );
        for bad in ["", "1", "2/2", "0/0", "-1/2", "+1/2", "a/b", "1/2/3", " / "] {
            assert!(bad.parse::<InterfaceIndex>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn isolation_is_optional_on_the_wire_and_validated() {
        // Old clients send no isolation; old managers ignore it.
        let r: ContrailRequest = serde_json::from_str(r#"{"network":["blue"]}"#).unwrap();
        assert_eq!(r.isolation, None);
        assert!(!serde_json::to_string(&r).unwrap().contains("isolation"));
        let r: ContrailRequest = serde_json::from_str(
            r#"{"network":["blue"],"isolation":"user-defined","security-groups":[["sg"]]}"#,
        )
        .unwrap();
        assert_eq!(r.isolation, Some(Isolation::UserDefined));
        assert!(r.validate().is_ok());
        assert_eq!(
            serde_json::to_value(&r).unwrap()["isolation"],
            "user-defined"
        );
        let no_sg = ContrailRequest {
            isolation: Some(Isolation::UserDefined),
            ..Default::default()
        };
        assert_eq!(no_sg.validate().unwrap_err().field, "isolation");
        assert!(serde_json::from_str::<ContrailRequest>(r#"{"isolation":"galaxy"}"#).is_err());
        for i in Isolation::ALL {
            assert_eq!(Isolation::parse(i.as_str()), Some(i));
        }
    }

    #[test]
    fn validate_checks_the_vocabulary() {
        let ok = ContrailRequest {
            network: Some(vec!["d".into(), "p".into(), "n".into()]),
            subnets: vec!["5.5.5.0/24".into()],
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (
                ContrailRequest {
                    network: Some(vec!["a".into(), "b".into()]),
                    ..ok.clone()
                },
                "network",
            ),
            (
                ContrailRequest {
                    subnets: vec!["5.5.5.1/24".into()],
                    ..ok.clone()
                },
                "subnets",
            ),
            (
                ContrailRequest {
                    ip: Some("x".into()),
                    ..ok.clone()
                },
                "ip",
            ),
            (
                ContrailRequest {
                    project: Some("a:b".into()),
                    ..ok.clone()
                },
                "project",
            ),
            (
                ContrailRequest {
                    security_groups: vec![vec![String::new()]],
                    ..ok.clone()
                },
                "security-groups",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().field, field);
        }
    }

    use super::*;

    #[test]
    fn uuid_container_ids_are_used_as_is() {
        let id = "5baff64c-d028-47ba-864e-a5ee679fc069";
        assert_eq!(vm_uuid_for(id), id);
        assert!(!is_canonical_uuid("5BAFF64C-D028-47BA-864E-A5EE679FC069"));
    }

    #[test]
    fn nested_container_ids_get_a_stable_derived_uuid() {
        let u = vm_uuid_for("5baff64c-d028-47ba-864e-a5ee679fc069.child");
        assert!(is_canonical_uuid(&u), "{u}");
        assert_eq!(u, vm_uuid_for("5baff64c-d028-47ba-864e-a5ee679fc069.child"));
        assert_ne!(u, vm_uuid_for("5baff64c-d028-47ba-864e-a5ee679fc069.other"));
        assert_eq!(&u[14..15], "8");
    }

    #[test]
    fn request_json_is_kebab_case_and_round_trips() {
        let req = AttachRequest {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/mesos/isolators/network/cni/c1/ns".into()),
            node: Node {
                name: "agent-1".into(),
                ip: "10.0.0.5".into(),
            },
            network_name: "contrail-cni-plugin".into(),
            request: ContrailRequest {
                network: Some(vec!["blue-network".into()]),
                floating_ips: vec![FloatingIpRequest {
                    pool: vec!["d".into(), "p".into(), "pub".into(), "pool".into()],
                    address: Some("10.66.77.123".into()),
                }],
                ..Default::default()
            },
            labels: vec![Label {
                key: "networks".into(),
                value: "blue-network".into(),
            }],
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["container-id"], "c1");
        assert_eq!(v["network-name"], "contrail-cni-plugin");
        assert_eq!(v["request"]["floating-ips"][0]["address"], "10.66.77.123");
        assert!(v["request"].get("subnets").is_none());
        let back: AttachRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn errors_carry_status_and_label() {
        let e = ApiError::new(
            ErrorKind::BadLabel,
            Some("security-groups"),
            "unknown group",
        );
        assert_eq!(e.status(), 422);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["error"]["kind"], "bad-label");
        assert_eq!(v["error"]["label"], "security-groups");
    }
}

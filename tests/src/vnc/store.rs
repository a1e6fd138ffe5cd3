//! The in-memory object store behind the VNC stand-in: typed objects with fq_name uniqueness,
//! parents and children, refs and back-refs (delete rules), and the per-network address
//! allocators. Behaviour and error texts are the real server's, as recorded in
//! `tests/fixtures/vnc/`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::alloc::SubnetAlloc;

/// An error answer: status and plain-text body, exactly as the real server writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncErr {
    pub status: u16,
    pub text: String,
}

fn err(status: u16, text: impl Into<String>) -> VncErr {
    VncErr {
        status,
        text: text.into(),
    }
}

/// Python `repr()` of a list of strings (the form upstream puts in error texts).
pub fn py_list(v: &[String]) -> String {
    let parts: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", parts.join(", "))
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(py_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", py_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The parent type of each type we model (None: parentless, fq_name `[name]`).
/// True for a body key that is stored as a property; identity keys (fq_name, uuid, parent...)
/// and refs (`*_refs`) are handled separately by create and update.
fn is_property(key: &str) -> bool {
    !(key.ends_with("_refs")
        || matches!(
            key,
            "fq_name" | "parent_type" | "uuid" | "name" | "parent_uuid" | "href" | "parent_href"
        ))
}

pub fn parent_type_of(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "domain" => "config-root",
        "project" => "domain",
        "network-ipam"
        | "application-policy-set"
        | "virtual-network"
        | "virtual-machine-interface"
        | "security-group"
        | "network-policy" => "project",
        "floating-ip-pool" | "routing-instance" => "virtual-network",
        "floating-ip" => "floating-ip-pool",
        "loadbalancer"
        | "loadbalancer-listener"
        | "loadbalancer-healthmonitor"
        | "loadbalancer-pool" => "project",
        "loadbalancer-member" => "loadbalancer-pool",
        "virtual-DNS" => "domain",
        "virtual-DNS-record" => "virtual-DNS",
        "virtual-router" | "global-vrouter-config" => "global-system-config",
        "global-system-config" => "config-root",
        _ => return None,
    })
}

/// Types the stand-in serves (`/<type>s` collections and `/<type>/<uuid>` items).
pub const TYPES: &[&str] = &[
    "domain",
    "project",
    "network-ipam",
    "virtual-network",
    "routing-instance",
    "virtual-machine",
    "virtual-machine-interface",
    "instance-ip",
    "floating-ip-pool",
    "floating-ip",
    "security-group",
    "network-policy",
    "virtual-router",
    "global-system-config",
    "global-vrouter-config",
    "application-policy-set",
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-healthmonitor",
    "loadbalancer-pool",
    "loadbalancer-member",
    "virtual-DNS",
    "virtual-DNS-record",
];

#[derive(Debug, Clone)]
pub struct Ref {
    pub to_uuid: String,
    pub attr: Value,
}

#[derive(Debug, Clone)]
pub struct Obj {
    pub ty: String,
    pub uuid: String,
    pub fq_name: Vec<String>,
    /// (parent type, parent uuid).
    pub parent: Option<(String, String)>,
    /// Every property other than identity, parent and refs.
    pub props: Map<String, Value>,
    /// Ref type (dashed) -> refs, in insertion order.
    pub refs: BTreeMap<String, Vec<Ref>>,
    pub created: String,
    seq: u64,
    /// Made at boot by the server itself: such objects carry no `display_name`.
    boot: bool,
}

impl Obj {
    pub fn name(&self) -> &str {
        self.fq_name.last().map(String::as_str).unwrap_or("")
    }
    pub fn prop_str(&self, k: &str) -> Option<&str> {
        self.props.get(k).and_then(Value::as_str)
    }
    pub fn ref_uuids(&self, ty: &str) -> Vec<String> {
        self.refs
            .get(ty)
            .map(|v| v.iter().map(|r| r.to_uuid.clone()).collect())
            .unwrap_or_default()
    }
}

/// The store. `base` is the href prefix, e.g. `http://127.0.0.1:18082`.
pub struct Store {
    pub base: String,
    objs: HashMap<String, Obj>,
    fq: HashMap<(String, Vec<String>), String>,
    by_type: HashMap<String, BTreeMap<u64, String>>,
    /// Per type, `"<fq:name>:<uuid>"` -> uuid: the fq-name index an unscoped list walks (the
    /// real server keeps this index, so a page costs the page, not the whole type).
    by_index: HashMap<String, BTreeMap<String, String>>,
    children: HashMap<String, BTreeSet<(String, String)>>,
    back_refs: HashMap<String, BTreeSet<(String, String)>>,
    /// VN uuid (flat-subnet IPAM uuid) -> subnets with allocation state.
    allocs: HashMap<String, Vec<SubnetAlloc>>,
    /// VN uuid -> (its flat-subnet IPAM's uuid, the per-VN `subnet_uuid` the server made):
    /// every VN on one flat IPAM draws from the IPAM's allocation space.
    flat: HashMap<String, (String, String)>,
    vn_ids: BTreeSet<u64>,
    /// `security_group_id`s in use; a new SG gets the lowest free one from 8000002.
    sg_ids: BTreeSet<u64>,
    seq: u64,
}

fn now_str() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// The key of an object in its type's fq-name index, as the real server's list markers are.
pub fn index_key(o: &Obj) -> String {
    format!("{}:{}", o.fq_name.join(":"), o.uuid)
}

fn us(ty: &str) -> String {
    ty.replace('-', "_")
}

impl Store {
    /// A store with what a fresh upstream server has at boot: `default-domain`,
    /// `default-domain:default-project` with its four VNs and `default-network-ipam`,
    /// `default-global-system-config`.
    pub fn new(base: &str) -> Store {
        let mut s = Store {
            base: base.trim_end_matches('/').to_owned(),
            objs: HashMap::new(),
            fq: HashMap::new(),
            by_type: HashMap::new(),
            by_index: HashMap::new(),
            children: HashMap::new(),
            back_refs: HashMap::new(),
            allocs: HashMap::new(),
            flat: HashMap::new(),
            vn_ids: BTreeSet::new(),
            sg_ids: BTreeSet::new(),
            seq: 0,
        };
        let boot = [
            ("domain", json!({"fq_name": ["default-domain"]})),
            (
                "global-system-config",
                json!({"fq_name": ["default-global-system-config"]}),
            ),
            (
                "project",
                json!({"fq_name": ["default-domain", "default-project"]}),
            ),
            (
                "network-ipam",
                json!({"fq_name": ["default-domain", "default-project", "default-network-ipam"]}),
            ),
        ];
        for (ty, body) in boot {
            s.create(ty, body).expect("boot object");
        }
        // ip-fabric is network id 2 and a provider network, as recorded.
        for vn in [
            "default-virtual-network",
            "ip-fabric",
            "__link_local__",
            "dci-network",
        ] {
            let mut body = json!({"fq_name": ["default-domain", "default-project", vn]});
            if vn == "ip-fabric" {
                body = json!({"fq_name": ["default-domain", "default-project", vn],
                    "is_provider_network": true, "mac_ip_learning_enable": false,
                    "virtual_network_category": "tenant", "mac_learning_enabled": false,
                    "fabric_snat": false, "pbb_evpn_enable": false, "port_security_enabled": true,
                    "layer2_control_word": false, "igmp_enable": false,
                    "flood_unknown_unicast": false, "mac_aging_time": 300, "pbb_etree_enable": false});
            }
            let u = s.create("virtual-network", body).expect("boot vn");
            if vn == "ip-fabric" {
                s.create(
                    "routing-instance",
                    json!({"fq_name": ["default-domain", "default-project", vn, "__default__"], "parent_type": "virtual-network"}),
                )
                .expect("boot ri");
            }
            let _ = u;
        }
        let boot: Vec<String> = s.objs.keys().cloned().collect();
        for u in boot {
            if let Some(o) = s.objs.get_mut(&u) {
                o.boot = true;
            }
        }
        s
    }

    pub fn href(&self, ty: &str, uuid: &str) -> String {
        format!("{}/{}/{}", self.base, ty, uuid)
    }

    pub fn get(&self, uuid: &str) -> Option<&Obj> {
        self.objs.get(uuid)
    }

    /// The uuid of the object of any type with this fq_name (`parent_fq_name_str`).
    pub fn uuid_of_any(&self, fq: &[String]) -> Option<String> {
        self.fq
            .iter()
            .find(|((_, f), _)| f.as_slice() == fq)
            .map(|(_, u)| u.clone())
    }

    pub fn uuid_of(&self, ty: &str, fq: &[String]) -> Option<String> {
        self.fq.get(&(ty.to_owned(), fq.to_vec())).cloned()
    }

    /// Objects of a type, in creation order.
    pub fn list_type(&self, ty: &str) -> Vec<&Obj> {
        self.by_type
            .get(ty)
            .map(|m| m.values().filter_map(|u| self.objs.get(u)).collect())
            .unwrap_or_default()
    }

    /// Objects of a type in the order of the fq-name index (`"<fq:name>:<uuid>"`), from
    /// just after `after` when given.
    pub fn walk_index<'a>(
        &'a self,
        ty: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Obj> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(m) => Bound::Excluded(m.to_owned()),
            None => Bound::Unbounded,
        };
        self.by_index
            .get(ty)
            .into_iter()
            .flat_map(move |m| m.range((start.clone(), Bound::Unbounded)))
            .filter_map(|(_, u)| self.objs.get(u))
    }
    pub fn count(&self, ty: &str) -> usize {
        self.by_type.get(ty).map(BTreeMap::len).unwrap_or(0)
    }

    pub fn back_refs_of(&self, uuid: &str) -> Vec<(String, String)> {
        self.back_refs
            .get(uuid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The subnets a VN allocates from (its flat-subnet IPAM's for a VN on one).
    pub fn vn_subnets(&self, vn_uuid: &str) -> &[SubnetAlloc] {
        self.allocs
            .get(self.alloc_key(vn_uuid))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Where a VN's allocation state lives: the VN, or its flat-subnet IPAM.
    fn alloc_key<'a>(&'a self, vn_uuid: &'a str) -> &'a str {
        self.flat
            .get(vn_uuid)
            .map(|(ipam, _)| ipam.as_str())
            .unwrap_or(vn_uuid)
    }

    /// Resolves the refs of a body (`<type>_refs: [{to, attr, uuid?}]`).
    fn resolve_refs(
        &self,
        body: &Map<String, Value>,
    ) -> Result<BTreeMap<String, Vec<Ref>>, Option<String>> {
        let mut out = BTreeMap::new();
        for (k, v) in body {
            let Some(base) = k.strip_suffix("_refs") else {
                continue;
            };
            let rty = base.replace('_', "-");
            let mut refs = Vec::new();
            for r in v.as_array().into_iter().flatten() {
                let by_uuid = r
                    .get("uuid")
                    .and_then(Value::as_str)
                    .filter(|u| self.objs.contains_key(*u));
                let uuid = match by_uuid {
                    Some(u) => Some(u.to_owned()),
                    None => {
                        let to: Vec<String> = r
                            .get("to")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default();
                        self.uuid_of(&rty, &to)
                    }
                };
                match uuid {
                    Some(u) => refs.push(Ref {
                        to_uuid: u,
                        attr: r.get("attr").cloned().unwrap_or(Value::Null),
                    }),
                    None => return Err(Some(rty)),
                }
            }
            out.insert(rty, refs);
        }
        Ok(out)
    }

    fn index_refs(&mut self, ty: &str, uuid: &str, refs: &BTreeMap<String, Vec<Ref>>, add: bool) {
        for rs in refs.values() {
            for r in rs {
                let e = self.back_refs.entry(r.to_uuid.clone()).or_default();
                if add {
                    e.insert((ty.to_owned(), uuid.to_owned()));
                } else {
                    e.remove(&(ty.to_owned(), uuid.to_owned()));
                }
            }
        }
    }

    /// `POST /<type>s`. Returns the new object's uuid.
    pub fn create(&mut self, ty: &str, body: Value) -> Result<String, VncErr> {
        let Value::Object(mut body) = body else {
            return Err(err(400, "Bad Request"));
        };
        let fq_name: Vec<String> = match body.get("fq_name").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            None => match (body.get("name").and_then(Value::as_str), parent_type_of(ty)) {
                (Some(n), None) => vec![n.to_owned()],
                _ => return Err(err(400, "Bad Request: fq_name required")),
            },
        };
        if fq_name.is_empty() {
            return Err(err(400, "Bad Request: empty fq_name"));
        }
        if let Some(u) = self.uuid_of(ty, &fq_name) {
            return Err(err(
                409,
                format!("{} already exists with uuid: {u}", py_list(&fq_name)),
            ));
        }
        // Parent.
        let parent = match parent_type_of(ty) {
            Some("config-root") => None,
            Some(pty) if fq_name.len() > 1 => {
                let pty = body
                    .get("parent_type")
                    .and_then(Value::as_str)
                    .unwrap_or(pty)
                    .to_owned();
                let pfq = fq_name[..fq_name.len() - 1].to_vec();
                match self.uuid_of(&pty, &pfq) {
                    Some(pu) => Some((pty, pu)),
                    // Upstream checks a domain parent before the generic name lookup.
                    None if pty == "domain" => {
                        return Err(err(
                            400,
                            format!("Parent {} type domain does not exist", py_list(&pfq)),
                        ));
                    }
                    None => return Err(err(404, format!("Name{} not found", py_list(&pfq)))),
                }
            }
            Some(_) => return Err(err(400, "Bad Request: fq_name lacks a parent")),
            None => None,
        };
        match ty {
            "virtual-DNS" => {
                if fq_name.last().is_some_and(|n| n.contains('_')) {
                    return Err(err(
                        403,
                        "Special characters are not allowed in Virtual DNS server name",
                    ));
                }
                for k in ["record_order", "default_ttl_seconds"] {
                    if body
                        .get("virtual_DNS_data")
                        .and_then(|d| d.get(k))
                        .is_none()
                    {
                        return Err(err(500, format!("KeyError: '{k}'")));
                    }
                }
            }
            "virtual-DNS-record" => {
                let d = body.get("virtual_DNS_record_data").unwrap_or(&Value::Null);
                if d["record_type"] == "A"
                    && d["record_data"]
                        .as_str()
                        .is_none_or(|a| a.parse::<std::net::Ipv4Addr>().is_err())
                {
                    return Err(err(403, "Invalid IP address"));
                }
            }
            "network-policy" => {
                for r in body["network_policy_entries"]["policy_rule"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let p = r["protocol"].as_str().unwrap_or("any");
                    let known = matches!(p, "any" | "icmp" | "tcp" | "udp" | "icmp6")
                        || p.parse::<u8>().is_ok();
                    if !known {
                        return Err(err(400, format!("Rule with invalid protocol : {p}")));
                    }
                }
            }
            _ => {}
        }
        // A VMI's network is read by the uuid the client sent (when it sent one): a deleted
        // network's uuid is 404 even when `to` names a network that exists again. Other refs
        // are re-resolved by `to`.
        if ty == "virtual-machine-interface" {
            for r in body
                .get("virtual_network_refs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(u) = r.get("uuid").and_then(Value::as_str)
                    && !self.objs.contains_key(u)
                {
                    return Err(err(404, format!("Unknown id: {u}")));
                }
            }
        }
        let refs = match self.resolve_refs(&body) {
            Ok(r) => r,
            Err(_) => {
                let mut shown = body.clone();
                shown.insert(
                    "id_perms".into(),
                    json!({"permissions": {"owner": "cloud-admin", "owner_access": 7, "group": "cloud-admin-group", "group_access": 7, "other_access": 7}, "uuid": null, "enable": true, "created": null, "last_modified": null, "description": null, "user_visible": true, "creator": null}),
                );
                shown.insert(
                    "perms2".into(),
                    json!({"owner": "cloud-admin", "owner_access": 7, "global_access": 0, "share": []}),
                );
                shown.insert("display_name".into(), json!(fq_name.last()));
                if let Some((_, pu)) = &parent {
                    shown.insert("parent_uuid".into(), json!(pu));
                }
                return Err(err(
                    400,
                    format!(
                        "Unknown reference in resource create {}.",
                        py_value(&Value::Object(shown))
                    ),
                ));
            }
        };
        let vmi_refs_uuid = body
            .get("virtual_machine_interface_refs")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().all(|r| r.get("uuid").is_some()));
        let uuid = match body.get("uuid").and_then(Value::as_str) {
            Some(u) if uuid::Uuid::parse_str(u).is_ok() => {
                if self.objs.contains_key(u) {
                    return Err(err(409, format!("uuid {u} already in use")));
                }
                u.to_owned()
            }
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let mut props = Map::new();
        for (k, v) in std::mem::take(&mut body) {
            if !is_property(&k) {
                continue;
            }
            props.insert(k, v);
        }
        let mut obj = Obj {
            ty: ty.to_owned(),
            uuid: uuid.clone(),
            fq_name: fq_name.clone(),
            parent,
            props,
            refs,
            created: now_str(),
            seq: 0,
            boot: false,
        };
        let mut post: Vec<(String, Value)> = Vec::new();
        let mut new_allocs: Option<Vec<SubnetAlloc>> = None;
        let mut new_flat: Option<(String, String)> = None;
        match ty {
            "network-ipam" => new_allocs = Some(self.ipam_prepare(&mut obj)?),
            "virtual-network" => {
                // A VN may refer only to a provider VN (ip-fabric forwarding).
                let targets = obj.ref_uuids("virtual-network");
                if targets.iter().any(|t| {
                    self.objs
                        .get(t)
                        .is_none_or(|o| o.props.get("is_provider_network") != Some(&json!(true)))
                }) {
                    return Err(err(
                        400,
                        format!(
                            "Non Provider VN ({uuid}) can connect only to one provider VN but not ({})",
                            py_list(&targets)
                        ),
                    ));
                }
                let (subnets, flat) = self.vn_prepare(&mut obj)?;
                new_flat = flat;
                let id = (1..).find(|i| !self.vn_ids.contains(i)).unwrap_or(1);
                obj.props
                    .insert("virtual_network_network_id".into(), json!(id));
                obj.props.entry("is_shared").or_insert(json!(false));
                self.vn_ids.insert(id);
                new_allocs = Some(subnets);
                let mut ri = fq_name.clone();
                ri.push(obj.name().to_owned());
                post.push((
                    "routing-instance".into(),
                    json!({"fq_name": ri, "parent_type": "virtual-network"}),
                ));
            }
            "virtual-machine-interface" => {
                let vns = obj.ref_uuids("virtual-network");
                if !obj.refs.contains_key("virtual-network") {
                    return Err(err(500, "KeyError: 'virtual_network_refs'"));
                }
                if !obj
                    .props
                    .contains_key("virtual_machine_interface_mac_addresses")
                {
                    let h: String = uuid.replace('-', "");
                    let mac = format!(
                        "02:{}:{}:{}:{}:{}",
                        &h[0..2],
                        &h[2..4],
                        &h[4..6],
                        &h[6..8],
                        &h[8..10]
                    );
                    obj.props.insert(
                        "virtual_machine_interface_mac_addresses".into(),
                        json!({"mac_address": [mac]}),
                    );
                }
                let mut ri_refs = Vec::new();
                for vn in vns {
                    if let Some(ri) = self.children_of(&vn, "routing-instance").first() {
                        ri_refs.push(Ref {
                            to_uuid: ri.clone(),
                            attr: json!({"direction": "both", "vlan_tag": null, "src_mac": null, "dst_mac": null, "mpls_label": null, "service_chain_address": null, "ipv6_service_chain_address": null, "protocol": null}),
                        });
                    }
                }
                if !ri_refs.is_empty() {
                    obj.refs.insert("routing-instance".into(), ri_refs);
                }
            }
            "instance-ip" => self.iip_allocate(&mut obj, &vmi_refs_uuid)?,
            "floating-ip" => self.fip_allocate(&mut obj)?,
            "network-policy" => {
                if let Some(rules) = obj
                    .props
                    .get_mut("network_policy_entries")
                    .and_then(|e| e.get_mut("policy_rule"))
                    .and_then(Value::as_array_mut)
                {
                    for r in rules {
                        if let Some(m) = r.as_object_mut() {
                            m.entry("rule_uuid")
                                .or_insert(json!(uuid::Uuid::new_v4().to_string()));
                        }
                    }
                }
            }
            "security-group" => {
                obj.props
                    .insert("security_group_id".into(), json!(self.next_sg_id()));
                if let Some(rules) = obj
                    .props
                    .get_mut("security_group_entries")
                    .and_then(|e| e.get_mut("policy_rule"))
                    .and_then(Value::as_array_mut)
                {
                    for r in rules {
                        if let Some(m) = r.as_object_mut() {
                            m.entry("rule_uuid")
                                .or_insert(json!(uuid::Uuid::new_v4().to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
        self.seq += 1;
        obj.seq = self.seq;
        self.index_refs(ty, &uuid, &obj.refs.clone(), true);
        if let Some((_, pu)) = &obj.parent {
            self.children
                .entry(pu.clone())
                .or_default()
                .insert((ty.to_owned(), uuid.clone()));
        }
        self.fq.insert((ty.to_owned(), fq_name), uuid.clone());
        self.by_type
            .entry(ty.to_owned())
            .or_default()
            .insert(obj.seq, uuid.clone());
        self.by_index
            .entry(ty.to_owned())
            .or_default()
            .insert(index_key(&obj), uuid.clone());
        self.objs.insert(uuid.clone(), obj);
        if let Some(a) = new_allocs
            && !a.is_empty()
        {
            self.allocs.insert(uuid.clone(), a);
        }
        if let Some(f) = new_flat {
            self.flat.insert(uuid.clone(), f);
        }
        for (cty, cbody) in post {
            self.create(&cty, cbody)?;
        }
        if ty == "project" {
            // Every project gets a default application-policy-set child, and a ref to it.
            let mut aps_fq = self.objs[&uuid].fq_name.clone();
            aps_fq.push("default-application-policy-set".into());
            let aps = self.create(
                "application-policy-set",
                json!({"fq_name": aps_fq, "parent_type": "project"}),
            )?;
            if let Some(o) = self.objs.get_mut(&uuid) {
                o.refs
                    .entry("application-policy-set".into())
                    .or_default()
                    .push(Ref {
                        to_uuid: aps.clone(),
                        attr: Value::Null,
                    });
            }
            self.back_refs
                .entry(aps)
                .or_default()
                .insert((ty.to_owned(), uuid.clone()));
        }
        Ok(uuid)
    }

    fn next_sg_id(&mut self) -> u64 {
        let id = (8_000_002..)
            .find(|i| !self.sg_ids.contains(i))
            .unwrap_or(8_000_002);
        self.sg_ids.insert(id);
        id
    }

    fn children_of(&self, uuid: &str, cty: &str) -> Vec<String> {
        self.children
            .get(uuid)
            .map(|s| {
                s.iter()
                    .filter(|(t, _)| t == cty)
                    .map(|(_, u)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A flat-subnet IPAM (`ipam_subnet_method: flat-subnet`) holds its subnets itself
    /// (`ipam_subnets.subnets`): the server fills each one's gateway and DNS address, but gives
    /// it no `subnet_uuid`.
    fn ipam_prepare(&self, obj: &mut Obj) -> Result<Vec<SubnetAlloc>, VncErr> {
        if obj.prop_str("ipam_subnet_method") != Some("flat-subnet") {
            return Ok(Vec::new());
        }
        let owner = obj.fq_name.join(":");
        let mut allocs = Vec::new();
        for s in obj
            .props
            .get_mut("ipam_subnets")
            .and_then(|v| v.get_mut("subnets"))
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let a = SubnetAlloc::from_ipam_subnet(s, String::new(), &owner)
                .map_err(|(st, t)| err(st, t))?;
            if let Some(m) = s.as_object_mut() {
                m.entry("default_gateway")
                    .or_insert(json!(a.gateway_addr().to_string()));
                m.entry("dns_server_address")
                    .or_insert(json!(a.dns_addr().to_string()));
            }
            allocs.push(a);
        }
        Ok(allocs)
    }

    /// Validates and fills the VN's `network_ipam_refs[].attr.ipam_subnets`. A ref to a
    /// flat-subnet IPAM gets `[{"subnet_uuid": <new>}]` (whatever the client sent) and needs
    /// `virtual_network_properties.forwarding_mode: l3`; the VN then allocates from the IPAM.
    #[allow(clippy::type_complexity)]
    fn vn_prepare(
        &self,
        obj: &mut Obj,
    ) -> Result<(Vec<SubnetAlloc>, Option<(String, String)>), VncErr> {
        let owner = obj.fq_name.join(":");
        let l3 = obj
            .props
            .get("virtual_network_properties")
            .and_then(|p| p.get("forwarding_mode"))
            .and_then(Value::as_str)
            == Some("l3");
        let mut allocs: Vec<SubnetAlloc> = Vec::new();
        let mut flat = None;
        for r in obj.refs.get_mut("network-ipam").into_iter().flatten() {
            let is_flat = self
                .objs
                .get(&r.to_uuid)
                .is_some_and(|i| i.prop_str("ipam_subnet_method") == Some("flat-subnet"));
            if is_flat {
                if !l3 {
                    return Err(err(400, "flat-subnet is allowed only with l3 network"));
                }
                let su = uuid::Uuid::new_v4().to_string();
                r.attr = json!({"ipam_subnets": [{"subnet_uuid": su}]});
                flat = Some((r.to_uuid.clone(), su));
                continue;
            }
            let Some(subs) = r.attr.get_mut("ipam_subnets").and_then(Value::as_array_mut) else {
                continue;
            };
            for s in subs.iter_mut() {
                let su = s
                    .get("subnet_uuid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let a = SubnetAlloc::from_ipam_subnet(s, su.clone(), &owner)
                    .map_err(|(st, t)| err(st, t))?;
                for other in &allocs {
                    if other.net.contains(&a.net.network()) || a.net.contains(&other.net.network())
                    {
                        return Err(err(
                            400,
                            format!(
                                "Overlapping addresses: [IPNetwork('{}'), IPNetwork('{}')]",
                                other.net, a.net
                            ),
                        ));
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    m.insert("subnet_uuid".into(), json!(su));
                    m.entry("default_gateway")
                        .or_insert(json!(a.gateway_addr().to_string()));
                    m.entry("dns_server_address")
                        .or_insert(json!(a.dns_addr().to_string()));
                }
                allocs.push(a);
            }
        }
        Ok((allocs, flat))
    }

    fn exhausted(&self, vn_uuid: &str) -> VncErr {
        let fq = self
            .objs
            .get(vn_uuid)
            .map(|o| o.fq_name.clone())
            .unwrap_or_default();
        err(
            400,
            format!("Virtual-Network({}) has exhausted subnet([])", py_list(&fq)),
        )
    }

    /// Picks the address of an instance-ip (requested or allocated) in its VN.
    fn iip_allocate(&mut self, obj: &mut Obj, vmi_refs_have_uuid: &bool) -> Result<(), VncErr> {
        let Some(vn) = obj.ref_uuids("virtual-network").first().cloned() else {
            return Err(err(400, "can only join an iterable"));
        };
        let family = obj.prop_str("instance_ip_family").map(str::to_owned);
        let (addr, su) = self.take_address(
            &vn,
            obj.prop_str("instance_ip_address").map(str::to_owned),
            family.as_deref(),
            false,
            || {
                // The gateway check upstream needs the VMI ref uuids, and it is only reached
                // when a VMI with a VM ref is attached.
                Some(*vmi_refs_have_uuid)
            },
            &obj.ref_uuids("virtual-machine-interface"),
        )?;
        obj.props.insert("instance_ip_address".into(), json!(addr));
        obj.props.insert("subnet_uuid".into(), json!(su));
        Ok(())
    }

    fn fip_allocate(&mut self, obj: &mut Obj) -> Result<(), VncErr> {
        let pool = obj.parent.as_ref().map(|p| p.1.clone()).unwrap_or_default();
        let vn = self
            .objs
            .get(&pool)
            .and_then(|p| p.parent.as_ref())
            .map(|p| p.1.clone())
            .unwrap_or_default();
        // The floating-ip path raises the allocator's "exhausted" as a 500 (an address outside
        // the pool's network, or no address left), where an instance-ip gets 400.
        let (addr, _) = self
            .take_address(
                &vn,
                obj.prop_str("floating_ip_address").map(str::to_owned),
                None,
                true,
                || None,
                &[],
            )
            .map_err(|e| {
                if e.text.ends_with("has exhausted subnet([])") {
                    err(500, e.text)
                } else {
                    e
                }
            })?;
        obj.props.insert("floating_ip_address".into(), json!(addr));
        Ok(())
    }

    /// `gateway_check`: None = no VM port (gateway may be taken); Some(has_uuid) = VM port.
    /// `family`: `instance_ip_family` when the client sent one ("v4"/"v6").
    fn take_address(
        &mut self,
        vn: &str,
        requested: Option<String>,
        family: Option<&str>,
        fip: bool,
        gateway_check: impl Fn() -> Option<bool>,
        vmis: &[String],
    ) -> Result<(String, String), VncErr> {
        let vm_port = vmis.iter().any(|v| {
            self.objs
                .get(v)
                .is_some_and(|o| o.refs.get("virtual-machine").is_some_and(|r| !r.is_empty()))
        });
        let exhausted = self.exhausted(vn);
        let flat_su = self.flat.get(vn).map(|(_, su)| su.clone());
        let no_subnets = {
            let fq = self
                .objs
                .get(vn)
                .map(|o| o.fq_name.clone())
                .unwrap_or_default();
            err(
                400,
                format!("Virtual-Network({}) has no defined subnets", py_list(&fq)),
            )
        };
        let key = self.alloc_key(vn).to_owned();
        let subs = self.allocs.entry(key).or_default();
        let of_family = |s: &SubnetAlloc| match family {
            Some("v4") => !s.is_v6(),
            Some("v6") => s.is_v6(),
            _ => true,
        };
        let su_of = |s: &SubnetAlloc| flat_su.clone().unwrap_or_else(|| s.subnet_uuid.clone());
        match requested {
            Some(r) => {
                let a: IpAddr = r.parse().map_err(|_| err(500, "</pre>"))?;
                let Some(s) = subs.iter_mut().find(|s| s.contains(a) && of_family(s)) else {
                    return Err(if flat_su.is_some() {
                        no_subnets
                    } else {
                        exhausted
                    });
                };
                if a == s.gateway_addr() && vm_port {
                    return Err(match gateway_check() {
                        Some(false) => err(500, "KeyError: 'uuid'"),
                        _ => err(400, "Gateway IP cannot be used by VM port"),
                    });
                }
                // The gateway is free to take only for an instance-ip without a VM port.
                match s.reserve(a, !fip) {
                    Ok(()) => Ok((r, su_of(s))),
                    Err(_) => Err(err(409, "IP address already in use")),
                }
            }
            None => {
                for s in subs.iter_mut().filter(|s| of_family(s)) {
                    if let Ok(a) = s.allocate() {
                        return Ok((a.to_string(), su_of(s)));
                    }
                }
                Err(exhausted)
            }
        }
    }

    fn free_address(&mut self, obj: &Obj) {
        let (vn, addr) = match obj.ty.as_str() {
            "instance-ip" => (
                obj.ref_uuids("virtual-network").first().cloned(),
                obj.prop_str("instance_ip_address"),
            ),
            "floating-ip" => {
                let pool = obj.parent.as_ref().map(|p| p.1.clone()).unwrap_or_default();
                (
                    self.objs
                        .get(&pool)
                        .and_then(|p| p.parent.as_ref())
                        .map(|p| p.1.clone()),
                    obj.prop_str("floating_ip_address"),
                )
            }
            _ => return,
        };
        if let (Some(vn), Some(Ok(a))) = (vn, addr.map(str::parse::<IpAddr>)) {
            let key = self.alloc_key(&vn).to_owned();
            for s in self.allocs.get_mut(&key).into_iter().flatten() {
                if s.contains(a) {
                    s.free(a);
                }
            }
        }
    }

    /// `DELETE /<type>/<uuid>`.
    pub fn delete(&mut self, ty: &str, uuid: &str) -> Result<(), VncErr> {
        match self.objs.get(uuid) {
            Some(o) if o.ty == ty => {}
            _ => return Err(err(404, format!("ID {uuid} does not exist"))),
        }
        let kids: Vec<String> = self
            .children
            .get(uuid)
            .map(|s| {
                s.iter()
                    .filter(|(t, _)| t != "routing-instance" && t != "application-policy-set")
                    .map(|(t, u)| self.href(t, u))
                    .collect()
            })
            .unwrap_or_default();
        if !kids.is_empty() {
            return Err(err(
                409,
                format!("Delete when children still present: {}", py_list(&kids)),
            ));
        }
        let referrers: Vec<String> = self
            .back_refs
            .get(uuid)
            .map(|s| {
                s.iter()
                    .filter(|(t, _)| t != "routing-instance")
                    .map(|(t, u)| self.href(t, u))
                    .collect()
            })
            .unwrap_or_default();
        if !referrers.is_empty() {
            return Err(err(
                409,
                format!(
                    "Delete when resource still referred: {}",
                    py_list(&referrers)
                ),
            ));
        }
        if ty == "virtual-DNS" {
            let me = self.objs[uuid].fq_name.join(":");
            let forwarded = self.list_type("virtual-DNS").iter().any(|o| {
                o.uuid != uuid
                    && o.props
                        .get("virtual_DNS_data")
                        .and_then(|d| d.get("next_virtual_DNS"))
                        .and_then(Value::as_str)
                        == Some(me.as_str())
            });
            if forwarded {
                return Err(err(
                    403,
                    "Virtual DNS server is referred by other virtual DNS servers",
                ));
            }
        }
        // A project's default application-policy-set goes with it.
        for aps in self.children_of(uuid, "application-policy-set") {
            if let Some(o) = self.objs.get_mut(uuid) {
                o.refs.remove("application-policy-set");
            }
            self.back_refs.remove(&aps);
            self.remove(&aps);
        }
        for ri in self.children_of(uuid, "routing-instance") {
            // A VN's routing instance goes with it; VMIs that still point at it block the VN
            // delete above through their VN refs.
            let back: Vec<(String, String)> = self.back_refs_of(&ri);
            for (bt, bu) in back {
                if let Some(o) = self.objs.get_mut(&bu) {
                    o.refs.remove("routing-instance");
                }
                let _ = bt;
            }
            self.remove(&ri);
        }
        self.remove(uuid);
        Ok(())
    }

    fn remove(&mut self, uuid: &str) {
        let Some(obj) = self.objs.remove(uuid) else {
            return;
        };
        self.free_address(&obj);
        self.index_refs(&obj.ty.clone(), uuid, &obj.refs, false);
        if let Some((_, pu)) = &obj.parent
            && let Some(s) = self.children.get_mut(pu)
        {
            s.remove(&(obj.ty.clone(), uuid.to_owned()));
        }
        self.children.remove(uuid);
        self.back_refs.remove(uuid);
        self.fq.remove(&(obj.ty.clone(), obj.fq_name.clone()));
        if let Some(m) = self.by_type.get_mut(&obj.ty) {
            m.remove(&obj.seq);
        }
        if let Some(m) = self.by_index.get_mut(&obj.ty) {
            m.remove(&index_key(&obj));
        }
        if obj.ty == "network-ipam" {
            self.allocs.remove(uuid);
        }
        if let Some(id) = obj.props.get("security_group_id").and_then(Value::as_u64) {
            self.sg_ids.remove(&id);
        }
        if obj.ty == "virtual-network" {
            if self.flat.remove(uuid).is_none() {
                self.allocs.remove(uuid);
            }
            if let Some(id) = obj
                .props
                .get("virtual_network_network_id")
                .and_then(Value::as_u64)
            {
                self.vn_ids.remove(&id);
            }
        }
    }

    /// `PUT /<type>/<uuid>`: merges properties; a `<ref>_refs` key replaces that ref list.
    pub fn update(&mut self, ty: &str, uuid: &str, body: Value) -> Result<(), VncErr> {
        match self.objs.get(uuid) {
            Some(o) if o.ty == ty => {}
            _ => return Err(err(404, format!("Unknown id: {uuid}"))),
        }
        let Value::Object(body) = body else {
            return Err(err(400, "Bad Request"));
        };
        let new_refs = self.resolve_refs(&body).map_err(|_| {
            err(
                400,
                format!(
                    "Unknown reference in resource update {}",
                    py_value(&Value::Object(body.clone()))
                ),
            )
        })?;
        let old = self
            .objs
            .get(uuid)
            .map(|o| o.refs.clone())
            .unwrap_or_default();
        self.index_refs(ty, uuid, &old, false);
        let o = self.objs.get_mut(uuid).expect("checked");
        for (k, v) in body {
            if !is_property(&k) {
                continue;
            }
            o.props.insert(k, v);
        }
        for (k, v) in new_refs {
            o.refs.insert(k, v);
        }
        let refs = o.refs.clone();
        self.index_refs(ty, uuid, &refs, true);
        Ok(())
    }

    /// `POST /ref-update`.
    pub fn ref_update(&mut self, body: &Value) -> Result<String, VncErr> {
        let ty = body["type"].as_str().unwrap_or("");
        let uuid = body["uuid"].as_str().unwrap_or("");
        let rty = body["ref-type"].as_str().unwrap_or("");
        let op = body["operation"].as_str().unwrap_or("");
        let mut ruuid = body["ref-uuid"].as_str().map(str::to_owned);
        if ruuid.is_none()
            && let Some(fq) = body["ref-fq-name"].as_array()
        {
            let fq: Vec<String> = fq
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            ruuid = self.uuid_of(rty, &fq);
        }
        match self.objs.get(uuid) {
            Some(o) if o.ty == ty => {}
            _ => return Err(err(404, format!("Unknown id: {uuid}"))),
        }
        let Some(ruuid) = ruuid else {
            return Err(err(404, "Unknown id: None"));
        };
        match self.objs.get(&ruuid) {
            Some(o) if o.ty == rty => {}
            // Removing a ref that is not there is accepted as done.
            _ if op == "DELETE" => return Ok(uuid.to_owned()),
            _ => return Err(err(404, format!("Unknown id: {ruuid}"))),
        }
        let attr = body.get("attr").cloned().unwrap_or(Value::Null);
        // Only an object the back-ref index lists as referring to `ruuid` has a ref to it to
        // drop (the index follows every create, update, ref-update and delete), so the scan is
        // skipped otherwise: a virtual-router's list of VM refs grows with every container on
        // its node, and scanning it on each ADD was the stand-in's largest single cost under
        // the manager's benchmark. The list ends the same either way.
        let referred = self
            .back_refs
            .get(&ruuid)
            .is_some_and(|s| s.contains(&(ty.to_owned(), uuid.to_owned())));
        let o = self.objs.get_mut(uuid).expect("checked");
        let list = o.refs.entry(rty.to_owned()).or_default();
        if referred {
            list.retain(|r| r.to_uuid != ruuid);
        }
        match op {
            "ADD" => {
                list.push(Ref {
                    to_uuid: ruuid.clone(),
                    attr,
                });
                self.back_refs
                    .entry(ruuid)
                    .or_default()
                    .insert((ty.to_owned(), uuid.to_owned()));
            }
            "DELETE" => {
                if let Some(s) = self.back_refs.get_mut(&ruuid) {
                    s.remove(&(ty.to_owned(), uuid.to_owned()));
                }
            }
            _ => return Err(err(400, format!("Bad Request: operation {op}"))),
        }
        Ok(uuid.to_owned())
    }

    fn ref_json(&self, r: &Ref, with_href: bool) -> Value {
        let mut m = Map::new();
        if let Some(t) = self.objs.get(&r.to_uuid) {
            m.insert("to".into(), json!(t.fq_name));
            m.insert("attr".into(), r.attr.clone());
            m.insert("uuid".into(), json!(r.to_uuid));
            if with_href {
                m.insert("href".into(), json!(self.href(&t.ty, &r.to_uuid)));
            }
        }
        Value::Object(m)
    }

    /// The body of `GET /<type>/<uuid>` (inside `{"<type>": ...}`). `detail`: the list form
    /// (no children, back-refs or parent_href; refs without href), as the real server does.
    pub fn render(&self, o: &Obj, detail: bool) -> Value {
        self.render_only(o, detail, &|_| true)
    }

    /// `render`, keeping only the keys `want` accepts: for each of them exactly the value
    /// `render` has (the same inserts in the same order, the others skipped), without building
    /// what is not asked for (a short list with `fields` asks for one or two keys; children
    /// and back-refs are the costly part).
    pub fn render_only(&self, o: &Obj, detail: bool, want: &dyn Fn(&str) -> bool) -> Value {
        let mut m = Map::new();
        let put = |m: &mut Map<String, Value>, k: &str, v: &dyn Fn() -> Value| {
            if want(k) {
                m.insert(k.to_owned(), v());
            }
        };
        put(&mut m, "uuid", &|| json!(o.uuid));
        put(&mut m, "name", &|| json!(o.name()));
        if !o.props.contains_key("display_name") && !o.boot {
            put(&mut m, "display_name", &|| json!(o.name()));
        }
        if let Some((pt, _)) = &o.parent {
            put(&mut m, "parent_type", &|| json!(pt));
        }
        put(&mut m, "fq_name", &|| json!(o.fq_name));
        for (k, v) in &o.props {
            put(&mut m, k, &|| v.clone());
        }
        for (rty, refs) in &o.refs {
            if refs.is_empty() {
                continue;
            }
            put(&mut m, &format!("{}_refs", us(rty)), &|| {
                Value::Array(refs.iter().map(|r| self.ref_json(r, !detail)).collect())
            });
        }
        if !detail {
            let mut kids: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            // Children in creation order, as upstream lists them.
            let mut children: Vec<(String, &String, &String)> = self
                .children
                .get(&o.uuid)
                .into_iter()
                .flatten()
                .map(|(cty, cu)| (format!("{}s", us(cty)), cty, cu))
                .filter(|(k, _, _)| want(k))
                .collect();
            children.sort_by_key(|(_, _, cu)| self.objs.get(*cu).map(|c| c.seq));
            for (k, cty, cu) in children {
                if let Some(c) = self.objs.get(cu) {
                    kids.entry(k)
                        .or_default()
                        .push(json!({"to": c.fq_name, "uuid": cu, "href": self.href(cty, cu)}));
                }
            }
            for (k, v) in kids {
                m.insert(k, Value::Array(v));
            }
            let mut backs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (bty, bu) in self.back_refs.get(&o.uuid).into_iter().flatten() {
                if bty == "routing-instance" {
                    continue;
                }
                let k = format!("{}_back_refs", us(bty));
                if !want(&k) {
                    continue;
                }
                if let Some(b) = self.objs.get(bu) {
                    let attr = b
                        .refs
                        .get(&o.ty)
                        .and_then(|rs| rs.iter().find(|r| r.to_uuid == o.uuid))
                        .map(|r| r.attr.clone())
                        .unwrap_or(Value::Null);
                    backs.entry(k).or_default().push(
                        json!({"to": b.fq_name, "attr": attr, "uuid": bu, "href": self.href(bty, bu)}),
                    );
                }
            }
            for (k, v) in backs {
                m.insert(k, Value::Array(v));
            }
        }
        if let Some((_, pu)) = &o.parent {
            put(&mut m, "parent_uuid", &|| json!(pu));
        }
        put(&mut m, "id_perms", &|| id_perms(&o.created));
        put(&mut m, "perms2", &perms2);
        put(&mut m, "href", &|| json!(self.href(&o.ty, &o.uuid)));
        if !detail && let Some((pt, pu)) = &o.parent {
            put(&mut m, "parent_href", &|| json!(self.href(pt, pu)));
        }
        Value::Object(m)
    }

    /// `render(o, true)` as JSON text appended to `out`: byte for byte what
    /// `serde_json::to_string(&render(o, true))` gives (tested on every object of the replayed
    /// transcripts), written straight from the object. A 1,000-object detail page built as a
    /// `Value` tree first (clones, map inserts, frees) took ~30 ms of the store lock.
    pub fn write_detail(&self, o: &Obj, out: &mut Vec<u8>) {
        self.write_render(o, true, out);
    }

    /// `render(o, detail)` as JSON text appended to `out`, byte for byte (tested on every
    /// object of the replayed transcripts, in both forms). The answer to `GET /<type>/<uuid>`
    /// is written this way: under the manager's benchmark each attachment reads one object,
    /// and the `Value` tree (clones, map inserts, frees) was built under the store lock.
    pub fn write_render(&self, o: &Obj, detail: bool, out: &mut Vec<u8>) {
        // The children's keys (`<type>s`) are the only ones of the full form a property can
        // also have (back-refs end in `_refs`, which is never a property): `render` would then
        // put the children in the property's place. That object is rendered the slow way.
        let kids = (!detail).then(|| self.kids_of(o));
        if kids
            .as_ref()
            .is_some_and(|k| k.iter().any(|(key, _)| o.props.contains_key(key)))
        {
            write_json(out, &self.render(o, detail));
            return;
        }
        let mut m = JsonObj::open(out);
        m.str("uuid", &o.uuid);
        m.str("name", o.name());
        if !o.props.contains_key("display_name") && !o.boot {
            m.str("display_name", o.name());
        }
        if let Some((pt, _)) = &o.parent {
            m.str("parent_type", pt);
        }
        m.value("fq_name", &o.fq_name);
        // A property named like a key written after the properties (a client may send
        // `id_perms` or `perms2`) takes that later value in its own place, as a map insert of
        // an existing key does in `render`.
        let (mut perms_done, mut perms2_done) = (false, false);
        for (k, v) in &o.props {
            match k.as_str() {
                "id_perms" => {
                    m.key(k);
                    write_id_perms(m.out, &o.created);
                    perms_done = true;
                }
                "perms2" => {
                    m.key(k);
                    m.out.extend_from_slice(PERMS2);
                    perms2_done = true;
                }
                _ => m.value(k, v),
            }
        }
        for (rty, refs) in &o.refs {
            if refs.is_empty() {
                continue;
            }
            m.objects(&format!("{}_refs", us(rty)), refs, |e, r| {
                if let Some(t) = self.objs.get(&r.to_uuid) {
                    e.value("to", &t.fq_name);
                    e.value("attr", &r.attr);
                    e.str("uuid", &r.to_uuid);
                    if !detail {
                        e.str("href", &self.href(&t.ty, &r.to_uuid));
                    }
                }
            });
        }
        if let Some(kids) = kids {
            for (k, list) in kids {
                m.objects(&k, list, |e, (cty, c)| {
                    e.value("to", &c.fq_name);
                    e.str("uuid", &c.uuid);
                    e.str("href", &self.href(cty, &c.uuid));
                });
            }
            // Back-refs by key, each list in the index's order, as `render` has them.
            let mut backs: BTreeMap<String, Vec<(&str, &Obj)>> = BTreeMap::new();
            for (bty, bu) in self.back_refs.get(&o.uuid).into_iter().flatten() {
                if bty == "routing-instance" {
                    continue;
                }
                if let Some(b) = self.objs.get(bu) {
                    backs
                        .entry(format!("{}_back_refs", us(bty)))
                        .or_default()
                        .push((bty, b));
                }
            }
            for (k, list) in backs {
                m.objects(&k, list, |e, (bty, b)| {
                    write_back_ref(e, o, b);
                    e.str("href", &self.href(bty, &b.uuid));
                });
            }
        }
        if let Some((_, pu)) = &o.parent {
            m.str("parent_uuid", pu);
        }
        if !perms_done {
            m.key("id_perms");
            write_id_perms(m.out, &o.created);
        }
        if !perms2_done {
            m.key("perms2");
            m.out.extend_from_slice(PERMS2);
        }
        m.str("href", &self.href(&o.ty, &o.uuid));
        if !detail && let Some((pt, pu)) = &o.parent {
            m.str("parent_href", &self.href(pt, pu));
        }
        m.close();
    }

    /// The value `key` has in a short list entry asked for with `fields` (`list::entry`: the
    /// non-detail rendering's value, the items of an array without `href`), written as JSON
    /// text to `out`; false, with nothing written, when the rendering has no such key. When
    /// `render` puts a key twice (a property named like a later key), the later value is the
    /// one it keeps, so the sources are tried from the last `render` writes to the first.
    pub fn write_short_field(&self, o: &Obj, key: &str, out: &mut Vec<u8>) -> bool {
        let parent = o.parent.as_ref();
        match key {
            "parent_href" if let Some((pt, pu)) = parent => {
                write_json(out, &self.href(pt, pu));
                return true;
            }
            "href" => {
                write_json(out, &self.href(&o.ty, &o.uuid));
                return true;
            }
            "perms2" => {
                out.extend_from_slice(PERMS2);
                return true;
            }
            "id_perms" => {
                write_id_perms(out, &o.created);
                return true;
            }
            "parent_uuid" if let Some((_, pu)) = parent => {
                write_json(out, pu);
                return true;
            }
            _ => {}
        }
        if key.ends_with("_back_refs") {
            let backs: Vec<&Obj> = self
                .back_refs
                .get(&o.uuid)
                .into_iter()
                .flatten()
                .filter(|(bty, _)| {
                    bty != "routing-instance" && format!("{}_back_refs", us(bty)) == key
                })
                .filter_map(|(_, bu)| self.objs.get(bu))
                .collect();
            if !backs.is_empty() {
                write_items(out, backs, |e, b| write_back_ref(e, o, b));
                return true;
            }
        }
        if key.ends_with('s') {
            let mut kids: Vec<&Obj> = self
                .children
                .get(&o.uuid)
                .into_iter()
                .flatten()
                .filter(|(cty, _)| format!("{}s", us(cty)) == key)
                .filter_map(|(_, cu)| self.objs.get(cu))
                .collect();
            if !kids.is_empty() {
                kids.sort_by_key(|c| c.seq);
                write_items(out, kids, |e, c| {
                    e.value("to", &c.fq_name);
                    e.str("uuid", &c.uuid);
                });
                return true;
            }
        }
        if let Some(refs) = key.strip_suffix("_refs").and_then(|_| {
            o.refs
                .iter()
                .find(|(rty, refs)| !refs.is_empty() && format!("{}_refs", us(rty)) == key)
                .map(|(_, refs)| refs)
        }) {
            write_items(out, refs, |e, r| {
                if let Some(t) = self.objs.get(&r.to_uuid) {
                    e.value("to", &t.fq_name);
                    e.value("attr", &r.attr);
                    e.str("uuid", &r.to_uuid);
                }
            });
            return true;
        }
        if let Some(v) = o.props.get(key) {
            match v {
                // Items of an array are written without `href` when they are objects.
                Value::Array(items) if items.iter().any(|i| i.get("href").is_some()) => {
                    let items: Vec<Value> = items
                        .iter()
                        .map(|i| {
                            let mut i = i.clone();
                            if let Some(m) = i.as_object_mut() {
                                m.remove("href");
                            }
                            i
                        })
                        .collect();
                    write_json(out, &items);
                }
                v => write_json(out, v),
            }
            return true;
        }
        match key {
            "fq_name" => write_json(out, &o.fq_name),
            "parent_type" if let Some((pt, _)) = parent => write_json(out, pt),
            "display_name" if !o.boot => write_json(out, o.name()),
            "name" => write_json(out, o.name()),
            "uuid" => write_json(out, &o.uuid),
            _ => return false,
        }
        true
    }

    /// An object's children by key (`<type>s`, in key order), each list in creation order:
    /// as `render` lists them.
    fn kids_of<'a>(&'a self, o: &Obj) -> BTreeMap<String, Vec<(&'a str, &'a Obj)>> {
        let mut kids: BTreeMap<String, Vec<(&str, &Obj)>> = BTreeMap::new();
        for (cty, cu) in self.children.get(&o.uuid).into_iter().flatten() {
            if let Some(c) = self.objs.get(cu) {
                kids.entry(format!("{}s", us(cty)))
                    .or_default()
                    .push((cty, c));
            }
        }
        for list in kids.values_mut() {
            // Stable, as `render`'s sort by the same key is.
            list.sort_by_key(|(_, c)| c.seq);
        }
        kids
    }

    /// `render_created(uuid)` as JSON text (byte for byte, tested), for the create answers.
    pub fn write_created(&self, uuid: &str, out: &mut Vec<u8>) {
        let o = &self.objs[uuid];
        let mut top = JsonObj::open(out);
        top.key(&o.ty);
        let mut m = JsonObj::open(top.out);
        m.str("name", o.name());
        m.value("fq_name", &o.fq_name);
        m.str("uuid", &o.uuid);
        m.str("href", &self.href(&o.ty, &o.uuid));
        if let Some((pt, pu)) = &o.parent {
            m.str("parent_type", pt);
            m.str("parent_uuid", pu);
            m.str("parent_href", &self.href(pt, pu));
        }
        m.close();
        top.close();
    }

    /// The answer to a create: name, fq_name, uuid, href (+ parent_type/uuid/href).
    pub fn render_created(&self, uuid: &str) -> Value {
        let o = &self.objs[uuid];
        let mut m = Map::new();
        m.insert("name".into(), json!(o.name()));
        m.insert("fq_name".into(), json!(o.fq_name));
        m.insert("uuid".into(), json!(o.uuid));
        m.insert("href".into(), json!(self.href(&o.ty, &o.uuid)));
        if let Some((pt, pu)) = &o.parent {
            m.insert("parent_type".into(), json!(pt));
            m.insert("parent_uuid".into(), json!(pu));
            m.insert("parent_href".into(), json!(self.href(pt, pu)));
        }
        json!({ o.ty.clone(): Value::Object(m) })
    }
}

/// The `id_perms` every object is rendered with (RBAC is off on the recorded server).
fn id_perms(created: &str) -> Value {
    json!({"permissions": {"owner": "cloud-admin", "owner_access": 7, "group": "cloud-admin-group", "group_access": 7, "other_access": 7}, "uuid": {"uuid_mslong": 0, "uuid_lslong": 0}, "enable": true, "created": created, "last_modified": created, "description": null, "user_visible": true, "creator": null})
}

fn perms2() -> Value {
    json!({"owner": "cloud-admin", "owner_access": 7, "global_access": 0, "share": []})
}

/// `perms2()` as compact JSON text.
const PERMS2: &[u8] = br#"{"owner":"cloud-admin","owner_access":7,"global_access":0,"share":[]}"#;

/// `id_perms(created)` as compact JSON text.
fn write_id_perms(out: &mut Vec<u8>, created: &str) {
    out.extend_from_slice(br#"{"permissions":{"owner":"cloud-admin","owner_access":7,"group":"cloud-admin-group","group_access":7,"other_access":7},"uuid":{"uuid_mslong":0,"uuid_lslong":0},"enable":true,"created":"#);
    write_json(out, created);
    out.extend_from_slice(br#","last_modified":"#);
    write_json(out, created);
    out.extend_from_slice(br#","description":null,"user_visible":true,"creator":null}"#);
}

/// A back-ref item of `o` from `b`: `to`, `attr` (the attribute of `b`'s ref to `o`, null when
/// it has none) and `uuid`.
fn write_back_ref(e: &mut JsonObj<'_>, o: &Obj, b: &Obj) {
    e.value("to", &b.fq_name);
    e.key("attr");
    match b
        .refs
        .get(&o.ty)
        .and_then(|rs| rs.iter().find(|r| r.to_uuid == o.uuid))
    {
        Some(r) => write_json(e.out, &r.attr),
        None => e.out.extend_from_slice(b"null"),
    }
    e.str("uuid", &b.uuid);
}

/// `[{...},...]`, one object per item, its members written by `f`.
fn write_items<I: IntoIterator>(
    out: &mut Vec<u8>,
    items: I,
    mut f: impl FnMut(&mut JsonObj<'_>, I::Item),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut e = JsonObj::open(out);
        f(&mut e, item);
        e.close();
    }
    out.push(b']');
}

/// `v` as compact JSON text (strings escaped as serde_json escapes them).
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("JSON into memory");
}

/// A JSON object being written as text: `{`, then `"key":value` pairs comma-separated, `}`.
pub struct JsonObj<'a> {
    pub out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObj<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> JsonObj<'a> {
        out.push(b'{');
        JsonObj { out, first: true }
    }
    /// Writes `"k":` (after a comma unless it is the first key); the value is the caller's.
    pub fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_json(self.out, k);
        self.out.push(b':');
    }
    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        write_json(self.out, v);
    }
    pub fn value<T: serde::Serialize + ?Sized>(&mut self, k: &str, v: &T) {
        self.key(k);
        write_json(self.out, v);
    }
    /// Writes `"k":[{...},...]`, one object per item, its members written by `f`.
    pub fn objects<I: IntoIterator>(
        &mut self,
        k: &str,
        items: I,
        f: impl FnMut(&mut JsonObj<'_>, I::Item),
    ) {
        self.key(k);
        write_items(self.out, items, f);
    }
    pub fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ref-update` keeps a referrer's list as the server does (an ADD of a ref already there
    /// moves it to the end, a DELETE drops it), with the scan skipped for refs not there yet.
    #[test]
    fn ref_update_add_delete_and_re_add_keep_the_list_in_order() {
        let mut s = Store::new("http://127.0.0.1:8082");
        let r = s
            .create(
                "virtual-router",
                json!({"fq_name": ["default-global-system-config", "r1"], "parent_type": "global-system-config"}),
            )
            .unwrap();
        let vms: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                s.create("virtual-machine", json!({"fq_name": [n]}))
                    .unwrap()
            })
            .collect();
        let op = |s: &mut Store, vm: &str, op: &str| {
            s.ref_update(
                &json!({"type": "virtual-router", "uuid": r, "ref-type": "virtual-machine",
                "ref-uuid": vm, "operation": op, "attr": null}),
            )
            .unwrap();
        };
        for vm in &vms {
            op(&mut s, vm, "ADD");
        }
        op(&mut s, &vms[0], "ADD");
        let refs = |s: &Store| s.get(&r).unwrap().ref_uuids("virtual-machine");
        assert_eq!(
            refs(&s),
            vec![vms[1].clone(), vms[2].clone(), vms[0].clone()]
        );
        op(&mut s, &vms[1], "DELETE");
        op(&mut s, &vms[1], "DELETE");
        assert_eq!(refs(&s), vec![vms[2].clone(), vms[0].clone()]);
        op(&mut s, &vms[1], "ADD");
        assert_eq!(
            refs(&s),
            vec![vms[2].clone(), vms[0].clone(), vms[1].clone()]
        );
        // A referred VM cannot go; once its ref is dropped it can, and one made again with
        // the same uuid is referred to once after an ADD.
        assert_eq!(
            s.delete("virtual-machine", &vms[2]).unwrap_err().status,
            409
        );
        op(&mut s, &vms[2], "DELETE");
        s.delete("virtual-machine", &vms[2]).unwrap();
        s.create("virtual-machine", json!({"uuid": vms[2], "fq_name": ["c"]}))
            .unwrap();
        op(&mut s, &vms[2], "ADD");
        op(&mut s, &vms[2], "ADD");
        assert_eq!(
            refs(&s),
            vec![vms[0].clone(), vms[1].clone(), vms[2].clone()]
        );
    }
}

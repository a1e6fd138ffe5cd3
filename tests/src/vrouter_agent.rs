//! vRouter agent port-IPC stand-in, built from the agent's sources in tf-controller
//! (`src/vnsw/agent/port_ipc/`), not from our client: the routes of `rest_server.cc` that a CNI uses, the bodies of `port_ipc_handler.cc`,
//! the status codes and `{"error": ...}` bodies, plus knobs the tests need (answer `vm-cfg` only
//! after N polls, a delay, forced failures, hanging) and a record of every request.
//!
//! The agent's model: a VM is *configured* (IFMap config arrived, `add_vmi`) and a VMI is
//! *subscribed* (`POST /vm`). `GET /vm-cfg/<key>` answers from configuration alone (404 until
//! configured; the key is the VM name, R2008+, or its uuid, ≤R2005); `GET /vm/<uuid>[/<vmi>]`
//! answers only for VMIs that are both configured and subscribed (404 otherwise).
//!
//! Start it with [`AgentStandin::start`] (the calling thread's network namespace, 127.0.0.1) or
//! [`AgentStandin::start_in_netns`] (listening socket created inside the given namespace, so a
//! CNI run in that namespace reaches it on its own 127.0.0.1).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// One VMI as VNC configured it, and the IP configuration the agent reports once subscribed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmiSpec {
    pub vm_uuid: String,
    pub vm_name: String,
    pub vmi_uuid: String,
    pub vn_uuid: String,
    pub vn_name: String,
    pub mac: String,
    /// (key, value): sent as `"{key:value}"` strings.
    pub annotations: Vec<(String, String)>,
    pub ip: Option<String>,
    pub plen: Option<u32>,
    pub gateway: Option<String>,
    pub dns: Option<String>,
    pub v6_ip: Option<String>,
    pub v6_gateway: Option<String>,
    pub v6_dns: Option<String>,
    pub project_uuid: String,
    /// Nested mode: the VMI is a sub-interface of the VM's port on this VLAN (`vlan-id` in
    /// vm-cfg; `sub-interface: true`). The agent then knows the port from configuration: the
    /// parent port is plugged by Nova, so `GET /vm` answers without a `POST /vm`.
    pub vlan_id: Option<u16>,
}

impl VmiSpec {
    /// A typical Mesos VMI: VM uuid = name = container id, index `i/n`.
    pub fn mesos(
        container_id: &str,
        vmi_uuid: &str,
        index: u32,
        n: u32,
        ip: &str,
        plen: u32,
    ) -> Self {
        let gw = gateway_of(ip, plen);
        VmiSpec {
            vm_uuid: container_id.into(),
            vm_name: container_id.into(),
            vmi_uuid: vmi_uuid.into(),
            vn_uuid: "6e6f7276-6e00-4000-8000-000000000001".into(),
            vn_name: "default-domain:default-project:blue-network".into(),
            mac: mac_for(vmi_uuid),
            annotations: vec![
                ("cluster".into(), "mesos".into()),
                ("index".into(), format!("{index}/{n}")),
                ("kind".into(), "PodTask".into()),
                ("owner".into(), "mesos".into()),
            ],
            ip: Some(ip.into()),
            plen: Some(plen),
            gateway: Some(gw.0),
            dns: Some(gw.1),
            project_uuid: "70726f6a-0000-4000-8000-000000000001".into(),
            ..Default::default()
        }
    }
}

/// A stable locally administered MAC for a VMI uuid (like VNC's `02:xx:...`).
pub fn mac_for(vmi_uuid: &str) -> String {
    let h = vmi_uuid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// Contrail's service addresses: the subnet's last usable address is the gateway, the one
/// before it the DNS server (e.g. 10.47.255.254 / .253 in a /12).
pub fn gateway_of(ip: &str, plen: u32) -> (String, String) {
    let a: std::net::Ipv4Addr = ip.parse().expect("IPv4");
    let mask = if plen == 0 {
        0
    } else {
        u32::MAX << (32 - plen)
    };
    let bcast = (u32::from(a) & mask) | !mask;
    (
        std::net::Ipv4Addr::from(bcast - 1).to_string(),
        std::net::Ipv4Addr::from(bcast - 2).to_string(),
    )
}

/// A request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// A forced failure: the next `count` requests whose "METHOD path" starts with `prefix` get
/// `status` with an `{"error": ...}` body.
#[derive(Debug, Clone)]
struct Failure {
    prefix: String,
    status: u16,
    count: u32,
}

#[derive(Default)]
struct State {
    /// vmi uuid -> spec (configured).
    vmis: BTreeMap<String, VmiSpec>,
    /// (vm uuid, vmi uuid) -> POST body (subscribed).
    subs: BTreeMap<(String, String), Value>,
    requests: Vec<Recorded>,
    /// vm-cfg answers 404 for this many polls of each key before answering.
    cfg_after_polls: u32,
    cfg_polls: BTreeMap<String, u32>,
    delay: Duration,
    failures: Vec<Failure>,
    hang: bool,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

pub struct AgentStandin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

fn err_body(msg: &str) -> String {
    json!({ "error": msg }).to_string()
}

impl AgentStandin {
    /// Serves on 127.0.0.1:<random> in the calling thread's network namespace.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// Serves on `addr` (e.g. "127.0.0.1:9091").
    pub fn start_on(addr: &str) -> Self {
        Self::serve(TcpListener::bind(addr).expect("bind agent stand-in"))
    }

    /// Creates the listening socket inside the network namespace at `netns` (a thread joins it
    /// just for the bind; the socket keeps that namespace), then serves from here.
    pub fn start_in_netns(netns: &Path) -> Self {
        let f = std::fs::File::open(netns).expect("open netns");
        let listener = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                TcpListener::bind("127.0.0.1:0").expect("bind agent stand-in in netns")
            })
            .join()
            .expect("bind thread")
        });
        Self::serve(listener)
    }

    /// A minimal HTTP/1.1 server: one thread per connection, keep-alive, the whole answer in
    /// one write. (tiny_http hands each request through three threads and writes head and
    /// body separately; on a loaded 2-core machine that added ~4 ms per request, a latency
    /// the real agent does not have and that would swamp the CNI's own timings.)
    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::spawn(move || {
            let fd = listener.as_raw_fd();
            loop {
                // Wake up regularly to notice Drop (the listener may live in another netns,
                // where Drop could not connect to it).
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, 50) };
                if sh.state.lock().unwrap().stopping {
                    return;
                }
                if n <= 0 {
                    continue;
                }
                let Ok((stream, _)) = listener.accept() else {
                    continue;
                };
                let sh = sh.clone();
                std::thread::spawn(move || serve_connection(&sh, stream));
            }
        });
        AgentStandin {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Configures a VMI (VNC created it and the config reached the agent).
    pub fn add_vmi(&self, spec: VmiSpec) {
        self.state().vmis.insert(spec.vmi_uuid.clone(), spec);
    }

    /// Removes a VMI from the configuration (its subscription stays, as in the agent).
    pub fn remove_vmi(&self, vmi_uuid: &str) {
        self.state().vmis.remove(vmi_uuid);
    }

    /// `GET /vm-cfg/<key>` answers 404 for the first `n` polls of each key.
    pub fn set_cfg_after_polls(&self, n: u32) {
        self.state().cfg_after_polls = n;
    }

    /// Every answer is delayed by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.state().delay = d;
    }

    /// The next `count` requests starting with "METHOD /path-prefix" fail with `status`.
    pub fn fail_next(&self, method_and_prefix: &str, status: u16, count: u32) {
        self.state().failures.push(Failure {
            prefix: method_and_prefix.into(),
            status,
            count,
        });
    }

    /// While true, requests get no answer (the connection stays open).
    pub fn set_hang(&self, hang: bool) {
        self.state().hang = hang;
        self.shared.wake.notify_all();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn requests_matching(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Current subscriptions: (vm uuid, vmi uuid) -> the POST /vm body.
    pub fn subscriptions(&self) -> BTreeMap<(String, String), Value> {
        self.state().subs.clone()
    }
}

impl Drop for AgentStandin {
    fn drop(&mut self) {
        self.state().stopping = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads requests off one connection until it closes.
fn serve_connection(sh: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut it = line.split_whitespace();
        let (Some(method), Some(target)) = (it.next(), it.next()) else {
            return;
        };
        let method = method.to_uppercase();
        let path = target.split('?').next().unwrap_or("").to_owned();
        let mut len = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let Some((status, text)) = handle(sh, method, path, body) else {
            return;
        };
        // The agent's reason phrase is always "OK" (`rest_server.cc`); clients must not care.
        let raw = format!(
            "HTTP/1.1 {status} OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(raw.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// One request: record, knobs, route. None when the stand-in stopped while hanging.
fn handle(sh: &Shared, method: String, path: String, body: Vec<u8>) -> Option<(u16, String)> {
    let (delay, forced) = {
        let mut st = sh.state.lock().unwrap();
        st.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let key = format!("{method} {path}");
        let mut forced = None;
        if let Some(f) = st
            .failures
            .iter_mut()
            .find(|f| f.count > 0 && key.starts_with(&f.prefix))
        {
            f.count -= 1;
            forced = Some(f.status);
        }
        st.failures.retain(|f| f.count > 0);
        // Hang: hold the request until released or the stand-in stops.
        while st.hang && !st.stopping {
            st = sh.wake.wait(st).unwrap();
        }
        if st.stopping {
            return None;
        }
        (st.delay, forced)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    Some(match forced {
        Some(s) => (s, err_body("{ Internal Error }")),
        None => route(sh, &method, &path, &body),
    })
}

fn not_found() -> (u16, String) {
    (404, err_body("{ Not Found }"))
}

fn vmi_cfg_json(v: &VmiSpec) -> Value {
    let mut o = json!({
        "id": v.vmi_uuid,
        "vm-uuid": v.vm_uuid,
        "vn-id": v.vn_uuid,
        "vn-name": v.vn_name,
        "mac-address": v.mac,
        "sub-interface": v.vlan_id.is_some(),
        // The agent's "no VLAN" is 0xffff (`VmInterface::kInvalidVlanId`).
        "vlan-id": v.vlan_id.map_or(65535, u32::from),
    });
    if !v.annotations.is_empty() {
        o["annotations"] = v
            .annotations
            .iter()
            .map(|(k, val)| Value::from(format!("{{{k}:{val}}}")))
            .collect();
    }
    o
}

fn vmi_oper_json(v: &VmiSpec, sub: &Value) -> Value {
    let mut o = json!({
        "id": v.vmi_uuid,
        "instance-id": v.vm_uuid,
        "vn-id": v.vn_uuid,
        "vm-project-id": v.project_uuid,
        "mac-address": v.mac,
        "system-name": sub.get("host-ifname").cloned().unwrap_or(Value::Null),
        "rx-vlan-id": v.vlan_id.map_or(65535, u32::from),
        "tx-vlan-id": v.vlan_id.map_or(65535, u32::from),
        "vhostuser-mode": 0,
        "author": "/usr/bin/contrail-vrouter-agent",
        "time": "2026-01-01 00:00:00.000000",
    });
    // IPv4/IPv6 fields only when the VMI has such an address (`port_ipc_handler.cc`).
    if let (Some(ip), Some(plen)) = (&v.ip, v.plen) {
        o["ip-address"] = json!(ip);
        o["plen"] = json!(plen);
        o["dns-server"] = json!(v.dns.clone().unwrap_or_default());
        o["gateway"] = json!(v.gateway.clone().unwrap_or_default());
    }
    if let Some(ip6) = &v.v6_ip {
        o["v6-ip-address"] = json!(ip6);
        o["v6-dns-server"] = json!(v.v6_dns.clone().unwrap_or_default());
        o["v6-gateway"] = json!(v.v6_gateway.clone().unwrap_or_default());
    }
    o
}

fn route(sh: &Shared, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut st = sh.state.lock().unwrap();
    match (method, parts.as_slice()) {
        // R2008+: `/vm-cfg/(.*)`, the key is the VM name (uuid also accepted, ≤R2005).
        ("GET", ["vm-cfg", rest @ ..]) if !rest.is_empty() => {
            let key = rest.join("/");
            let polls = st.cfg_polls.entry(key.clone()).or_insert(0);
            *polls += 1;
            if *polls <= st.cfg_after_polls {
                return not_found();
            }
            let vmis: Vec<Value> = st
                .vmis
                .values()
                .filter(|v| v.vm_name == key || v.vm_uuid == key)
                .map(vmi_cfg_json)
                .collect();
            if vmis.is_empty() {
                not_found()
            } else {
                (200, Value::Array(vmis).to_string())
            }
        }
        ("POST", ["vm"]) => {
            let v: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return (500, err_body(&format!("{{ Invalid JSON: {e} }}"))),
            };
            let Some(o) = v.as_object() else {
                return (500, err_body("{ Arrays not supported }"));
            };
            let field = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            for k in ["vm-uuid", "host-ifname", "vm-name", "vn-uuid", "vmi-uuid"] {
                if field(k).is_none() {
                    return (500, err_body(&format!("{{ Missing field {k} }}")));
                }
            }
            let vm = field("vm-uuid").unwrap();
            if !is_uuid(vm) {
                return (500, err_body("{ Invalid vm-uuid }"));
            }
            let vmi = field("vmi-uuid").unwrap().to_owned();
            st.subs.insert((vm.to_owned(), vmi), v.clone());
            (200, "{}".into())
        }
        ("DELETE", ["vm", vm]) if is_uuid(vm) => {
            // Removes every subscription of the VM (`port_ipc_handler.cc`); always 200.
            st.subs.retain(|(v, _), _| v != vm);
            (200, "{}".into())
        }
        ("GET", ["vm", vm, tail @ ..])
            if is_uuid(vm) && tail.len() <= 1 && tail.iter().all(|t| is_uuid(t)) =>
        {
            let vmi = tail.first().copied();
            let mut out: Vec<Value> = st
                .subs
                .iter()
                .filter(|((v, i), _)| v == vm && vmi.is_none_or(|x| x == i))
                .filter_map(|((_, i), sub)| st.vmis.get(i).map(|spec| vmi_oper_json(spec, sub)))
                .collect();
            // Sub-interfaces of the VM's port: known without a subscription.
            out.extend(
                st.vmis
                    .values()
                    .filter(|s| s.vlan_id.is_some() && s.vm_uuid == *vm)
                    .filter(|s| vmi.is_none_or(|x| x == s.vmi_uuid))
                    .filter(|s| {
                        !st.subs
                            .contains_key(&(s.vm_uuid.clone(), s.vmi_uuid.clone()))
                    })
                    .map(|s| vmi_oper_json(s, &Value::Null)),
            );
            if out.is_empty() {
                not_found()
            } else {
                (200, Value::Array(out).to_string())
            }
        }
        _ => (404, err_body("Unknown Request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(a: &AgentStandin, method: &str, path: &str, body: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let url = format!("{}{path}", a.url());
        let mut r = match method {
            "GET" => agent.get(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            _ => agent.post(&url).send(body),
        }
        .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    const CID: &str = "5baff64c-d028-47ba-864e-a5ee679fc069";
    const VMI: &str = "a1b2c3d4-0000-4000-8000-000000000001";

    #[test]
    fn agent_routes_bodies_and_codes() {
        let a = AgentStandin::start();
        assert_eq!(
            call(&a, "GET", &format!("/vm-cfg/{CID}"), ""),
            (404, r#"{"error":"{ Not Found }"}"#.into())
        );
        assert_eq!(
            call(&a, "GET", "/nope", ""),
            (404, r#"{"error":"Unknown Request"}"#.into())
        );
        assert_eq!(call(&a, "DELETE", "/vm/NOT-A-UUID", "").0, 404);
        a.add_vmi(VmiSpec::mesos(CID, VMI, 0, 1, "10.47.255.250", 12));
        let (s, b) = call(&a, "GET", &format!("/vm-cfg/{CID}"), "");
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v[0]["id"], VMI);
        assert!(
            v[0]["annotations"]
                .as_array()
                .unwrap()
                .contains(&json!("{index:0/1}"))
        );
        // Not subscribed yet.
        assert_eq!(call(&a, "GET", &format!("/vm/{CID}/{VMI}"), "").0, 404);
        assert_eq!(call(&a, "POST", "/vm", "[]").0, 500);
        assert_eq!(call(&a, "POST", "/vm", r#"{"vm-uuid":"x"}"#).0, 500);
        let post = json!({"vm-uuid": CID, "vm-name": CID, "host-ifname": "tapx", "vn-uuid": "n", "vmi-uuid": VMI});
        assert_eq!(
            call(&a, "POST", "/vm", &post.to_string()),
            (200, "{}".into())
        );
        let (s, b) = call(&a, "GET", &format!("/vm/{CID}/{VMI}"), "");
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v[0]["ip-address"], "10.47.255.250");
        assert_eq!(v[0]["gateway"], "10.47.255.254");
        assert_eq!(v[0]["dns-server"], "10.47.255.253");
        assert_eq!(v[0]["system-name"], "tapx");
        assert_eq!(
            call(&a, "DELETE", &format!("/vm/{CID}"), ""),
            (200, "{}".into())
        );
        assert_eq!(call(&a, "GET", &format!("/vm/{CID}"), "").0, 404);
        assert_eq!(a.requests().len(), 11);
    }

    #[test]
    fn knobs() {
        let a = AgentStandin::start();
        a.add_vmi(VmiSpec::mesos(CID, VMI, 0, 1, "10.0.0.5", 24));
        a.set_cfg_after_polls(2);
        assert_eq!(call(&a, "GET", &format!("/vm-cfg/{CID}"), "").0, 404);
        assert_eq!(call(&a, "GET", &format!("/vm-cfg/{CID}"), "").0, 404);
        assert_eq!(call(&a, "GET", &format!("/vm-cfg/{CID}"), "").0, 200);
        a.fail_next("POST /vm", 500, 1);
        assert_eq!(call(&a, "POST", "/vm", "{}").0, 500);
        assert_eq!(call(&a, "POST", "/vm", "{}").0, 500); // missing fields, real handler
        assert_eq!(a.requests_matching("POST", "/vm").len(), 2);
    }

    #[test]
    fn a_sub_interface_has_its_vlan_and_answers_without_a_post() {
        let a = AgentStandin::start();
        let mut spec = VmiSpec::mesos(CID, VMI, 0, 1, "10.0.0.5", 24);
        spec.vlan_id = Some(100);
        a.add_vmi(spec);
        let (s, b) = call(&a, "GET", &format!("/vm-cfg/{CID}"), "");
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v[0]["vlan-id"], 100);
        assert_eq!(v[0]["sub-interface"], true);
        let (s, b) = call(&a, "GET", &format!("/vm/{CID}/{VMI}"), "");
        assert_eq!(s, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v[0]["ip-address"], "10.0.0.5");
        assert_eq!(v[0]["rx-vlan-id"], 100);
        // A plain VMI still needs its POST.
        a.add_vmi(VmiSpec::mesos(
            CID,
            "a1b2c3d4-0000-4000-8000-000000000009",
            1,
            2,
            "10.0.0.6",
            24,
        ));
        let (s, _) = call(
            &a,
            "GET",
            &format!("/vm/{CID}/a1b2c3d4-0000-4000-8000-000000000009"),
            "",
        );
        assert_eq!(s, 404);
    }
}

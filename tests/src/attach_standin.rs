//! A minimal stand-in for the manager's attachment API (docs/attachment-api.md), for the CNI's
//! `mode: mesos` tests before (and independently of) the real manager. On `POST
//! /v1/attachments` it does what the manager promises to have done before answering: the VNC
//! objects exist, so it configures the [`AgentStandin`] as IFMap would (VM named by the
//! container id, a fresh VMI uuid, a MAC, an address from the requested subnet, `index`
//! annotation), then answers 201 (200 when already registered with the same request).
//! `DELETE /v1/attachments/<cid>/<ifname>` removes the VMI from the agent's config and answers
//! `{"found": ...}`. Errors use the API's `{"error": {kind, label, message}}` body.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use contrail_mesos_api::{
    ApiError, AttachRequest, Attachment, DetachResponse, ErrorKind, ObjectRef, vm_uuid_for,
};

use crate::vrouter_agent::{AgentStandin, Recorded, VmiSpec, gateway_of, mac_for};

#[derive(Default)]
struct State {
    /// (cid, ifname) -> (request, answer)
    attachments: BTreeMap<(String, String), (AttachRequest, Attachment)>,
    next_host: u32,
    requests: Vec<Recorded>,
    /// Next `n` POSTs answer this error.
    fail: Option<(ApiError, u32)>,
}

pub struct AttachStandin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Option<Arc<tiny_http::Server>>,
    thread: Option<JoinHandle<()>>,
    /// The namespace the listener lives in, when not the caller's.
    netns: Option<PathBuf>,
}

impl AttachStandin {
    pub fn start(agent: Arc<AgentStandin>) -> Self {
        Self::serve(
            tiny_http::Server::http("127.0.0.1:0").expect("bind"),
            agent,
            None,
        )
    }

    /// Listening socket created inside `netns` (see [`AgentStandin::start_in_netns`]).
    pub fn start_in_netns(netns: &Path, agent: Arc<AgentStandin>) -> Self {
        let f = std::fs::File::open(netns).expect("open netns");
        let server = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                tiny_http::Server::http("127.0.0.1:0").expect("bind in netns")
            })
            .join()
            .expect("bind thread")
        });
        Self::serve(server, agent, Some(netns.to_owned()))
    }

    fn serve(server: tiny_http::Server, agent: Arc<AgentStandin>, netns: Option<PathBuf>) -> Self {
        let addr = server.server_addr().to_ip().expect("ip listener");
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State {
            next_host: 2,
            ..Default::default()
        }));
        let (srv, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                let (st, agent) = (st.clone(), agent.clone());
                std::thread::spawn(move || handle(&st, &agent, req));
            }
        });
        AttachStandin {
            addr,
            state,
            server: Some(server),
            thread: Some(thread),
            netns,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        self.state
            .lock()
            .unwrap()
            .attachments
            .values()
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// The next `count` registrations fail with `kind` (status from the API).
    pub fn fail_next(&self, kind: ErrorKind, label: Option<&str>, message: &str, count: u32) {
        self.state.lock().unwrap().fail = Some((ApiError::new(kind, label, message), count));
    }
}

impl Drop for AttachStandin {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // tiny_http's Server closes its listener by connecting to itself from the dropping
        // thread; for a listener in another namespace that thread must be in it too, or the
        // port stays open (accepting, never answering) after the stand-in is gone.
        match &self.netns {
            None => drop(server),
            Some(ns) => {
                let Ok(f) = std::fs::File::open(ns) else {
                    return;
                };
                std::thread::scope(|s| {
                    s.spawn(move || {
                        if nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
                            drop(server);
                        }
                    });
                });
            }
        }
    }
}

fn respond(req: tiny_http::Request, status: u16, body: String) {
    let h = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let _ = req.respond(
        tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(h),
    );
}

fn error(req: tiny_http::Request, e: ApiError) {
    respond(req, e.status(), serde_json::to_string(&e).unwrap());
}

fn handle(st: &Mutex<State>, agent: &AgentStandin, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_uppercase();
    let path = req.url().to_owned();
    let mut body = Vec::new();
    let _ = req.as_reader().take(1 << 20).read_to_end(&mut body);
    let mut s = st.lock().unwrap();
    s.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["v1", "attachments"]) => {
            if let Some((e, n)) = s.fail.take() {
                if n > 1 {
                    s.fail = Some((e.clone(), n - 1));
                }
                return error(req, e);
            }
            let ar: AttachRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return error(
                        req,
                        ApiError::new(ErrorKind::BadRequest, None, e.to_string()),
                    );
                }
            };
            let key = (ar.container_id.clone(), ar.ifname.clone());
            if let Some((old, att)) = s.attachments.get(&key) {
                return if old.request == ar.request && old.network_name == ar.network_name {
                    respond(req, 200, serde_json::to_string(att).unwrap())
                } else {
                    error(
                        req,
                        ApiError::new(
                            ErrorKind::Conflict,
                            None,
                            "registered with a different network",
                        ),
                    )
                };
            }
            let subnet = ar
                .request
                .subnets
                .first()
                .cloned()
                .unwrap_or_else(|| "10.32.0.0/16".into());
            let Ok(net) = subnet.parse::<ipnet::Ipv4Net>() else {
                return error(
                    req,
                    ApiError::new(
                        ErrorKind::BadLabel,
                        Some("network-subnets"),
                        format!("bad subnet {subnet}"),
                    ),
                );
            };
            let ip = match &ar.request.ip {
                Some(ip) => ip.clone(),
                None => {
                    let h = s.next_host;
                    s.next_host += 1;
                    std::net::Ipv4Addr::from(u32::from(net.network()) + h).to_string()
                }
            };
            let n = s
                .attachments
                .keys()
                .filter(|(c, _)| *c == ar.container_id)
                .count() as u32
                + 1;
            let i = ar
                .ifname
                .strip_prefix("eth")
                .and_then(|x| x.parse::<u32>().ok())
                .unwrap_or(n - 1);
            let vmi_uuid = uuid::Uuid::new_v4().to_string();
            let vm_uuid = vm_uuid_for(&ar.container_id);
            let mut spec = VmiSpec::mesos(
                &ar.container_id,
                &vmi_uuid,
                i,
                n.max(i + 1),
                &ip,
                net.prefix_len() as u32,
            );
            spec.vm_uuid = vm_uuid.clone();
            let vn_name = ar
                .request
                .network
                .clone()
                .unwrap_or_else(|| vec!["default-network".into()]);
            spec.vn_name = vn_name.join(":");
            let (gw, _) = gateway_of(&ip, net.prefix_len() as u32);
            let _ = gw;
            let att = Attachment {
                container_id: ar.container_id.clone(),
                ifname: ar.ifname.clone(),
                vm_uuid,
                vm_name: ar.container_id.clone(),
                vmi_uuid: vmi_uuid.clone(),
                vn: ObjectRef {
                    uuid: spec.vn_uuid.clone(),
                    fq_name: vn_name,
                }
                .into(),
                ip: Some(ip),
                mac: Some(mac_for(&vmi_uuid)),
                index: contrail_mesos_api::InterfaceIndex {
                    index: i as u32,
                    count: n.max(i + 1) as u32,
                },
                floating_ips: vec![],
            };
            agent.add_vmi(spec);
            s.attachments.insert(key, (ar, att.clone()));
            respond(req, 201, serde_json::to_string(&att).unwrap());
        }
        ("DELETE", ["v1", "attachments", cid, ifname]) => {
            let found = s.attachments.remove(&(cid.to_string(), ifname.to_string()));
            if let Some((_, att)) = &found {
                agent.remove_vmi(&att.vmi_uuid);
            }
            respond(
                req,
                200,
                serde_json::to_string(&DetachResponse {
                    found: found.is_some(),
                })
                .unwrap(),
            );
        }
        _ => error(
            req,
            ApiError::new(
                ErrorKind::NotFound,
                None,
                format!("no route {method} {path}"),
            ),
        ),
    }
}

//! The devstack's stand-in for contrail-dns: a DNS server on the node (UDP 53, in the node
//! namespace only) answering A queries from the virtual DNS servers and records in the config
//! API, as the vRouter answers a task's queries to its network's DNS address from the virtual
//! DNS server its IPAM names. A name `<record_name>.<domain_name>` gets every A record of that
//! name (in random order: `record_order: random`); anything else is NXDOMAIN. DNS messages are
//! parsed and built with the `simple-dns` crate.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Name, Packet, QTYPE, RCODE, ResourceRecord, TYPE};

pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// `(domain_name, uuid)` of every virtual DNS server, then the A records of the one whose
/// domain ends `name`: the addresses of `name`, or None when no server has its domain.
fn lookup(vnc_url: &str, name: &str) -> Result<Option<Vec<Ipv4Addr>>, String> {
    let get = |path: &str| -> Result<Value, String> {
        ureq::get(format!("{vnc_url}{path}"))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call()
            .map_err(|e| e.to_string())?
            .body_mut()
            .read_json()
            .map_err(|e| e.to_string())
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let servers = get("/virtual-DNSs?detail=True")?;
    for s in servers["virtual-DNSs"].as_array().into_iter().flatten() {
        let s = &s["virtual-DNS"];
        let domain = s["virtual_DNS_data"]["domain_name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let Some(record) = name
            .strip_suffix(&domain)
            .and_then(|r| r.strip_suffix('.'))
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let uuid = s["uuid"].as_str().unwrap_or_default();
        let recs = get(&format!(
            "/virtual-DNS-records?detail=True&parent_id={uuid}"
        ))?;
        let mut out: Vec<Ipv4Addr> = recs["virtual-DNS-records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| &r["virtual-DNS-record"]["virtual_DNS_record_data"])
            .filter(|d| {
                d["record_type"] == "A"
                    && d["record_name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(record))
            })
            .filter_map(|d| d["record_data"].as_str()?.parse().ok())
            .collect();
        // `record_order: random`.
        let rot = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0))
            % out.len().max(1);
        out.rotate_left(rot);
        return Ok(Some(out));
    }
    Ok(None)
}

/// The answer to one query datagram, or None for what is not a query.
pub fn answer(query: &[u8], resolve: impl Fn(&str) -> Option<Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    let mut reply = Packet::new_reply(q.id());
    let mut known = false;
    let mut answers = Vec::new();
    for question in &q.questions {
        let name = question.qname.to_string();
        if let Some(addrs) = resolve(&name) {
            known = true;
            if question.qtype == QTYPE::TYPE(TYPE::A) {
                for a in addrs {
                    answers.push((question.qname.clone(), a));
                }
            }
        }
    }
    reply.questions = q.questions.clone();
    for (n, a) in answers {
        reply
            .answers
            .push(ResourceRecord::new(n, CLASS::IN, 60, RData::A(A::from(a))));
    }
    if !known {
        *reply.rcode_mut() = RCODE::NameError;
    }
    reply.build_bytes_vec().ok()
}

impl DnsServer {
    /// Serves on `bind` of the calling thread's namespace until dropped.
    pub fn start(vnc_url: &str, bind: SocketAddr) -> Result<DnsServer, String> {
        let sock = UdpSocket::bind(bind).map_err(|e| format!("dns {bind}: {e}"))?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (st, url) = (stop.clone(), vnc_url.to_owned());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let reply = answer(&buf[..n], |name| match lookup(&url, name) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("dns: reading the config API: {e}");
                        None
                    }
                });
                if let Some(r) = reply {
                    let _ = sock.send_to(&r, peer);
                }
            }
        });
        Ok(DnsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// From inside the namespace at `netns`, the A records `server` gives for `name` (None: no
/// answer within `timeout`; Some(empty): NXDOMAIN or no address).
pub fn resolve_in(
    netns: &std::path::Path,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Option<Vec<Ipv4Addr>> {
    crate::probe::in_netns(netns, || {
        let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
        sock.set_read_timeout(Some(timeout)).ok()?;
        let mut q = Packet::new_query(0x5eed);
        q.questions.push(simple_dns::Question::new(
            Name::new(name).ok()?,
            QTYPE::TYPE(TYPE::A),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        sock.send_to(&q.build_bytes_vec().ok()?, server).ok()?;
        let mut buf = [0u8; 1500];
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        let r = Packet::parse(&buf[..n]).ok()?;
        Some(
            r.answers
                .iter()
                .filter_map(|a| match &a.rdata {
                    RData::A(a) => Some(Ipv4Addr::from(a.address)),
                    _ => None,
                })
                .collect(),
        )
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, t: TYPE) -> Vec<u8> {
        let mut q = Packet::new_query(7);
        q.questions.push(simple_dns::Question::new(
            Name::new(name).unwrap(),
            QTYPE::TYPE(t),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        q.build_bytes_vec().unwrap()
    }

    #[test]
    fn known_names_get_every_address_and_others_nxdomain() {
        let table = |n: &str| {
            (n == "web-team-a.marathon.mesos")
                .then(|| vec![Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 2)])
        };
        let r = answer(&query("web-team-a.marathon.mesos", TYPE::A), table).unwrap();
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.id(), 7);
        assert_eq!(p.answers.len(), 2);
        assert_eq!(p.rcode(), RCODE::NoError);
        let r = answer(&query("nope.marathon.mesos", TYPE::A), table).unwrap();
        assert_eq!(Packet::parse(&r).unwrap().rcode(), RCODE::NameError);
        // A known name asked for another type: no answer, not an error.
        let r = answer(&query("web-team-a.marathon.mesos", TYPE::AAAA), table).unwrap();
        let p = Packet::parse(&r).unwrap();
        assert_eq!((p.answers.len(), p.rcode()), (0, RCODE::NoError));
        assert!(answer(b"garbage", table).is_none());
    }
}

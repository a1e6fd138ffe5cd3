//! Names for tasks on Contrail networks: a Contrail virtual DNS server (`virtual-DNS`, served
//! by contrail-dns on the control nodes) for the cluster's networks, and an A record per task
//! interface under the name Mesos-DNS gives a Marathon app (DC/OS' service naming: an app
//! `/group/app` is `app-group.marathon.mesos`), so tasks resolve apps by name; several tasks of
//! an app are several A records of one name. The pod IPAM points its networks at the server
//! (`network_ipam_mgmt.ipam_dns_method: virtual-dns-server`), so the vRouter answers the
//! tasks' queries from it. Shapes and rules as the API server has them (tf-api-client
//! `VirtualDnsType`, `VirtualDnsRecordType`): `record_order` and `default_ttl_seconds` are
//! required in practice, a server name must not contain `_`, an A record's data must be an
//! IPv4 address.

use serde_json::{Value, json};

use super::client::VncError;
use super::model::annotations;
use super::objects::ignore_404;
use super::writer::{AttachError, Writer};

/// `[dns]` resolved.
#[derive(Debug, Clone)]
pub struct Dns {
    /// `[domain, server]`.
    pub server_fq: Vec<String>,
    /// The server's `domain_name` (e.g. `marathon.mesos`).
    pub domain: String,
    /// Where names it does not know go (`next_virtual_DNS`), if anywhere.
    pub forwarder: Option<String>,
    pub ttl: u32,
}

/// The Mesos-DNS name of a Marathon app: its path segments, last first, joined by `-`
/// (`/team-a/web` -> `web-team-a`); a segment's dots become dashes, as a DNS label cannot hold
/// them.
pub fn app_record_name(app_id: &str) -> String {
    app_id
        .trim_start_matches('/')
        .split('/')
        .rev()
        .map(|s| s.replace('.', "-"))
        .collect::<Vec<_>>()
        .join("-")
}

impl Writer {
    /// The virtual DNS server (start-up; idempotent). Returns its uuid.
    pub(crate) fn ensure_dns_server(&self, d: &Dns) -> Result<String, AttachError> {
        if let Some(u) = self.lookup("virtual-DNS", &d.server_fq)? {
            return Ok(u);
        }
        let mut data = json!({"domain_name": d.domain, "record_order": "random",
            "default_ttl_seconds": d.ttl, "dynamic_records_from_client": false,
            "reverse_resolution": false, "external_visible": false});
        if let Some(f) = &d.forwarder {
            data["next_virtual_DNS"] = json!(f);
        }
        let body = json!({"fq_name": d.server_fq, "parent_type": "domain", "virtual_DNS_data": data,
            "annotations": annotations(&[("created-by", &self.cfg.owner), ("cluster", &self.cfg.cluster)])});
        let (u, _) = self.create_or_reuse("virtual-DNS", body)?;
        self.cache.put_name("virtual-DNS", &d.server_fq, &u);
        Ok(u)
    }

    /// What an IPAM needs to hand out the server: its management block and ref.
    pub(crate) fn ipam_dns_fields(d: &Dns, server_uuid: &str) -> (Value, Value) {
        (
            json!({"ipam_dns_method": "virtual-dns-server",
                "ipam_dns_server": {"virtual_dns_server_name": d.server_fq.join(":")}}),
            json!([{"to": d.server_fq, "uuid": server_uuid}]),
        )
    }

    /// The record of one port (named by the VMI's uuid, so a DEL finds it from the port).
    pub(crate) fn add_task_record(
        &self,
        d: &Dns,
        vmi_uuid: &str,
        app_id: &str,
        ip: &str,
        owner: &[(&str, &str)],
    ) -> Result<String, VncError> {
        let mut fq = d.server_fq.clone();
        fq.push(vmi_uuid.to_owned());
        let body = json!({"fq_name": fq, "parent_type": "virtual-DNS",
            "virtual_DNS_record_data": {"record_name": app_record_name(app_id), "record_type": "A",
                "record_class": "IN", "record_data": ip, "record_ttl_seconds": d.ttl},
            "annotations": annotations(owner)});
        self.create_or_reuse("virtual-DNS-record", body)
            .map(|(u, _)| u)
    }

    /// Removes the record of a port, when there is one and it is this manager's.
    pub(crate) fn remove_task_record(&self, vmi_uuid: &str) -> Result<(), VncError> {
        let Some(d) = &self.cfg.dns else {
            return Ok(());
        };
        let mut fq = d.server_fq.clone();
        fq.push(vmi_uuid.to_owned());
        let Some(u) = self.api.fqname_to_id("virtual-DNS-record", &fq)? else {
            return Ok(());
        };
        match self.api.read("virtual-DNS-record", &u) {
            Ok(o) if self.owns(&o) => ignore_404(self.api.delete("virtual-DNS-record", &u)),
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The server of named VIPs' names (DC/OS' `<name>.marathon.l4lb.<domain>`): a second
    /// virtual DNS server, `<server>-l4lb`, for `l4lb.<vip domain>`, as one server serves one
    /// domain.
    pub(crate) fn l4lb_server(d: &Dns, vip_domain: &str) -> Dns {
        Dns {
            server_fq: vec![d.server_fq[0].clone(), format!("{}-l4lb", d.server_fq[1])],
            domain: format!("l4lb.{vip_domain}"),
            forwarder: None,
            ttl: d.ttl,
        }
    }

    /// The A record of a named VIP (`<name>.marathon` on the l4lb server), named by its
    /// loadbalancer's uuid; made once.
    pub(crate) fn ensure_vip_record(
        &self,
        d: &Dns,
        lb_uuid: &str,
        name: &str,
        address: &str,
        owner: &[(&str, &str)],
    ) -> Result<(), AttachError> {
        self.ensure_dns_server(d)?;
        let mut fq = d.server_fq.clone();
        fq.push(lb_uuid.to_owned());
        if self.lookup("virtual-DNS-record", &fq)?.is_some() {
            return Ok(());
        }
        let body = json!({"fq_name": fq, "parent_type": "virtual-DNS",
            "virtual_DNS_record_data": {"record_name": format!("{name}.marathon"), "record_type": "A",
                "record_class": "IN", "record_data": address, "record_ttl_seconds": d.ttl},
            "annotations": annotations(owner)});
        let (u, _) = self.create_or_reuse("virtual-DNS-record", body)?;
        self.cache.put_name("virtual-DNS-record", &fq, &u);
        Ok(())
    }

    /// Removes a named VIP's record (before its loadbalancer goes); `d` is `[dns]`.
    pub(crate) fn remove_vip_record(&self, d: &Dns, lb_uuid: &str) -> Result<(), VncError> {
        let mut fq = Writer::l4lb_server(d, "").server_fq;
        fq.push(lb_uuid.to_owned());
        self.cache.forget_name("virtual-DNS-record", &fq);
        match self.api.fqname_to_id("virtual-DNS-record", &fq)? {
            Some(u) => ignore_404(self.api.delete("virtual-DNS-record", &u)),
            None => Ok(()),
        }
    }

    /// The leader's pass: records of ports that no longer exist (a registration that died
    /// half-way, a port deleted behind the manager's back) go. Returns how many. Run after the
    /// pass's scan has replaced the cache, whose ports it does not read again.
    pub fn collect_records(&self) -> Result<usize, AttachError> {
        let Some(d) = &self.cfg.dns else {
            return Ok(0);
        };
        let Some(server) = self.api.fqname_to_id("virtual-DNS", &d.server_fq)? else {
            return Ok(0);
        };
        let vdns = self.api.read("virtual-DNS", &server)?;
        // Only records whose port the cache does not hold are asked about (a pass would
        // otherwise read every port of the cluster); VNC confirms each before it goes.
        let cached: std::collections::HashSet<String> = self
            .cache
            .all_shared()
            .iter()
            .map(|o| o.attachment.vmi_uuid.clone())
            .collect();
        let mut n = 0;
        for r in &vdns.virtual_dns_records {
            let Some(vmi) = r.to.last() else { continue };
            if cached.contains(vmi) {
                continue;
            }
            match self.api.read("virtual-machine-interface", vmi) {
                Ok(_) => continue,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            match self.api.read("virtual-DNS-record", &r.uuid) {
                Ok(o) if self.owns(&o) => {
                    ignore_404(self.api.delete("virtual-DNS-record", &r.uuid))?;
                    n += 1;
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_named_as_mesos_dns_names_them() {
        assert_eq!(app_record_name("/web"), "web");
        assert_eq!(app_record_name("/team-a/web"), "web-team-a");
        assert_eq!(app_record_name("/prod/api.v2"), "api-v2-prod");
    }
}

//! Group and app networks (and group projects) this manager made, removed once nothing uses
//! them: no port on the network, no policy applied to it, and older than the grace (a
//! registration that just made one has its port a moment later). VNC itself refuses to delete
//! a network that still has ports (409 `Delete when resource still referred`) or a project
//! that still has children, so a registration racing the collector loses nothing: its port
//! creation gets a 404 for the network, and the registration looks the names up again and
//! re-creates it.

use super::model::VncObject;
use super::objects::ignore_404;
use super::writer::{AttachError, Writer};

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnusedStats {
    pub networks: usize,
    pub projects: usize,
}

impl Writer {
    /// Whether `o` was made by this manager for a group or an app (never the cluster network,
    /// never a network a label named).
    fn made_for_isolation(&self, o: &VncObject) -> bool {
        o.annotation("created-by") == Some(self.cfg.owner.as_str())
            && o.annotation("cluster") == Some(self.cfg.cluster.as_str())
            && matches!(o.annotation("isolation"), Some("group") | Some("app"))
    }

    fn old_enough(o: &VncObject, grace_secs: u64) -> bool {
        o.annotation_age_secs("created-at")
            .is_some_and(|age| age >= grace_secs)
    }

    /// One pass (the leader's, after its policies pass). Decisions are made from reads of each
    /// object in this pass.
    pub fn collect_unused(&self, grace_secs: u64) -> Result<UnusedStats, AttachError> {
        let mut st = UnusedStats::default();
        for listed in self.api.list("virtual-network")? {
            if !self.made_for_isolation(&listed) || !Self::old_enough(&listed, grace_secs) {
                continue;
            }
            let vn = match self.api.read("virtual-network", &listed.uuid) {
                Ok(o) => o,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !vn.virtual_machine_interface_back_refs.is_empty()
                || !vn.network_policy_refs.is_empty()
            {
                continue;
            }
            match self.api.delete("virtual-network", &vn.uuid) {
                Ok(()) => {
                    tracing::info!(network = %vn.fq_name.join(":"), made_for = vn.annotation("for").unwrap_or("?"),
                        "no task uses this network any more; deleted");
                    st.networks += 1;
                }
                Err(e) if e.is_not_found() => {}
                // Used again since the read.
                Err(e) if e.status() == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
            self.cache.forget_name("virtual-network", &vn.fq_name);
            self.cache.forget_subnets(&vn.uuid);
        }
        for listed in self.api.list("project")? {
            if !self.made_for_isolation(&listed) || !Self::old_enough(&listed, grace_secs) {
                continue;
            }
            let p = match self.api.read("project", &listed.uuid) {
                Ok(o) => o,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !p.virtual_networks.is_empty() {
                continue;
            }
            // Releases whose API server makes a security group named `default` in each new
            // project leave it as the project's last child: it goes first (the default
            // application-policy-set goes with the project, server-side). Any other child
            // makes the project's delete a 409 and the project stays.
            for sg in &p.security_groups {
                if sg.to.last().map(String::as_str) == Some("default") {
                    match ignore_404(self.api.delete("security-group", &sg.uuid)) {
                        Ok(()) => {}
                        Err(e) if e.status() == Some(409) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            match ignore_404(self.api.delete("project", &p.uuid)) {
                Ok(()) => {
                    tracing::info!(project = %p.fq_name.join(":"), "group project has no network left; deleted");
                    self.cache.forget_name("project", &p.fq_name);
                    st.projects += 1;
                }
                Err(e) if e.status() == Some(409) => {
                    tracing::debug!(project = %p.fq_name.join(":"), error = %e, "group project still has children; kept");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(st)
    }
}

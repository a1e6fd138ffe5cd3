//! [`NetOps`] over rtnetlink (the user's choice), on a current-thread tokio runtime owned by this
//! value. One netlink connection per namespace per invocation: the host connection is opened on
//! the calling thread, a container connection by the calling thread while it visits the
//! container's namespace (the socket keeps that namespace afterwards, see `NetNs::visit`), then
//! everything runs from the caller.
//! No `ip` subprocesses, no sleeps.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{
    Handle, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVlan, RouteMessageBuilder,
};
use tokio::runtime::Runtime;

use super::netns::NetNs;
use super::{
    IfaceState, MacvlanSpec, NetError, NetOps, RouteSpec, VLAN_OWNER_ALIAS, VethSpec, VlanSpec,
};

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

/// The rtnetlink-backed implementation. Connections are opened lazily and cached per namespace
/// for the lifetime of the value (one CNI invocation).
pub struct Netlink {
    rt: Runtime,
    host: Option<Handle>,
    ns: HashMap<PathBuf, (NetNs, Handle)>,
}

fn nl_err(op: impl Into<String>, e: rtnetlink::Error) -> NetError {
    let errno = match &e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    };
    let msg = match errno {
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    };
    NetError::Netlink {
        op: op.into(),
        errno,
        msg,
    }
}

fn io_err(op: &str, e: std::io::Error) -> NetError {
    NetError::Netlink {
        op: op.into(),
        errno: e.raw_os_error(),
        msg: e.to_string(),
    }
}

impl Netlink {
    pub fn new() -> Result<Netlink, NetError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io_err("tokio runtime", e))?;
        Ok(Netlink {
            rt,
            host: None,
            ns: HashMap::new(),
        })
    }

    /// Opens a connection on the current thread's namespace. Must run with the runtime entered
    /// (the socket registers with its reactor).
    fn connect(rt: &Runtime) -> Result<Handle, NetError> {
        let _guard = rt.enter();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| io_err("open netlink socket", e))?;
        rt.spawn(conn);
        Ok(handle)
    }

    fn host(&mut self) -> Result<Handle, NetError> {
        if self.host.is_none() {
            self.host = Some(Self::connect(&self.rt)?);
        }
        Ok(self.host.clone().expect("just set"))
    }

    /// The connection inside `path` (and the namespace fd, for `IFLA_NET_NS_FD`).
    fn in_ns(&mut self, path: &Path) -> Result<(&NetNs, Handle), NetError> {
        if !self.ns.contains_key(path) {
            let ns = NetNs::open(path)?;
            let rt = &self.rt;
            // The socket is made inside the namespace (and keeps it); the calling thread
            // visits it for that instead of starting one.
            let handle = if ns.is_current() {
                Self::connect(rt)?
            } else {
                ns.visit(|| Self::connect(rt))?
            };
            self.ns.insert(path.to_owned(), (ns, handle));
        }
        let (ns, h) = self.ns.get(path).expect("just inserted");
        Ok((ns, h.clone()))
    }

    async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
        match h.link().get().match_name(name).execute().try_next().await {
            Ok(m) => Ok(m),
            Err(e) => {
                let e = nl_err(format!("get link {name}"), e);
                if e.errno() == Some(ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Deletes link `index` of the caller's namespace from a detached grandchild process, so the
/// CNI process can exit while the kernel does its slow RCU wait (the runtime waits for our exit
/// and for EOF on our stdout, so the grandchild closes its stdio first). Deleting by index is
/// safe against a new ADD reusing the name: ifindexes are not reused soon (cyclic allocation).
/// The message is built before `fork`; the child only makes async-signal-safe syscalls.
fn spawn_deleter(index: u32) -> std::io::Result<()> {
    use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    use std::os::fd::AsRawFd;

    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelLink(msg));
    // No ACK wanted: nobody reads it, and the kernel does the work inside sendmsg anyway.
    req.header.flags = NLM_F_REQUEST;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    sock.bind_auto()?;
    let fd = sock.as_raw_fd();
    // SAFETY: between fork and _exit the children only call async-signal-safe functions
    // (fork, setsid, close, send, _exit) on memory prepared before the fork.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {
                // Child: detach and let a grandchild do the work, so nobody has to reap it.
                libc::setsid();
                if libc::fork() == 0 {
                    for std_fd in 0..3 {
                        libc::close(std_fd);
                    }
                    libc::send(fd, buf.as_ptr().cast(), buf.len(), 0);
                    libc::_exit(0);
                }
                libc::_exit(0);
            }
            child => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
            }
        }
    }
    drop(sock);
    Ok(())
}

fn build_veth(spec: &VethSpec, ns_fd: i32) -> LinkMessage {
    let mut peer = LinkMessage::default();
    // The peer is born named and in the container namespace: no rename, no move, so parallel
    // ADDs never see each other's temporary names. It cannot be born up: the kernel opens it
    // before the pair is linked and answers ENOTCONN (seen on 6.18, `ip` fails the same way),
    // so `up_container_link` sets it up by name, with its MAC, once that is known.
    peer.attributes
        .push(LinkAttribute::IfName(spec.container_name.clone()));
    peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
    peer.attributes.push(LinkAttribute::NetNsFd(ns_fd));
    LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(spec.host_name.clone())
        .mtu(spec.mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build()
}

/// (parent index, tag) when `m` is a VLAN link.
fn vlan_of(m: &LinkMessage) -> Option<(Option<u32>, Option<u16>)> {
    let infos = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(i) => Some(i),
        _ => None,
    })?;
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vlan)))
    {
        return None;
    }
    let id = infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Vlan(v)) => v.iter().find_map(|x| match x {
            InfoVlan::Id(id) => Some(*id),
            _ => None,
        }),
        _ => None,
    });
    let parent = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    });
    Some((parent, id))
}

fn build_macvlan(spec: &MacvlanSpec, lower_index: u32, ns_fd: i32) -> LinkMessage {
    // Born in the container namespace with its final name, like the veth peer: no rename, no
    // move (Contrail's `src/container/cni/common/macvlan.go` creates a temporary name and renames
    // it). Bridge mode, so the containers sharing one VLAN interface reach each other directly.
    LinkMacVlan::new(&spec.container_name, lower_index, MacVlanMode::Bridge)
        .mtu(spec.mtu)
        .address(spec.mac.to_vec())
        .setns_by_fd(ns_fd)
        .build()
}

fn route_message(index: u32, r: &RouteSpec, onlink: bool) -> Result<RouteMessage, NetError> {
    fn bad(r: &RouteSpec, e: impl std::fmt::Display) -> NetError {
        NetError::Netlink {
            op: format!("route {}", r.dst),
            errno: None,
            msg: e.to_string(),
        }
    }
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .map_err(|e| bad(r, e))?
        .output_interface(index);
    match r.gw {
        Some(gw) => {
            b = b.gateway(gw).map_err(|e| bad(r, e))?;
            if onlink {
                b = b.onlink();
            }
        }
        None => b = b.scope(RouteScope::Link),
    }
    Ok(b.build())
}

fn parse_route(m: &RouteMessage) -> Option<(u32, RouteSpec)> {
    let h: &RouteHeader = &m.header;
    let mut table = h.table as u32;
    let mut oif = None;
    let mut dst = None;
    let mut gw = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some(IpAddr::V6(*a)),
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gw = Some(IpAddr::V4(*a)),
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gw = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    if table != 254 {
        return None;
    }
    let dst = dst.unwrap_or(match h.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
    Some((oif?, RouteSpec { dst, gw }))
}

fn parse_addr(m: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, m.header.prefix_len).ok()
}

impl NetOps for Netlink {
    fn prepare(&mut self, netns: Option<&Path>) -> Result<(), NetError> {
        let t = std::time::Instant::now();
        self.host()?;
        if let Some(p) = netns {
            self.in_ns(p)?;
        }
        tracing::debug!(
            us = t.elapsed().as_micros() as u64,
            "netlink connections ready"
        );
        Ok(())
    }

    fn check_netns(&mut self, netns: &Path) -> Result<(), NetError> {
        if !self.ns.contains_key(netns) {
            NetNs::open(netns)?;
        }
        Ok(())
    }

    fn create_veth(&mut self, netns: &Path, spec: &VethSpec) -> Result<(), NetError> {
        let host = self.host()?;
        let (ns, cont) = self.in_ns(netns)?;
        let msg = build_veth(spec, std::os::fd::AsRawFd::as_raw_fd(&ns.fd()));
        let res = self.rt.block_on(host.link().add(msg).execute());
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = nl_err(format!("create veth {}", spec.host_name), e);
                if e.errno() != Some(EEXIST) {
                    return Err(e);
                }
                // EEXIST: say which side collided. The container side is the spec's
                // "interface already exists" error; the host side is reported as is.
                let exists = self
                    .rt
                    .block_on(Self::link_by_name(&cont, &spec.container_name))?
                    .is_some();
                if exists {
                    Err(NetError::IfnameExists {
                        name: spec.container_name.clone(),
                    })
                } else {
                    Err(e)
                }
            }
        }
    }

    fn up_container_link(
        &mut self,
        netns: &Path,
        ifname: &str,
        mac: [u8; 6],
    ) -> Result<(), NetError> {
        let (_, cont) = self.in_ns(netns)?;
        let up = LinkUnspec::new_with_name(ifname)
            .address(mac.to_vec())
            .up()
            .build();
        self.rt
            .block_on(cont.link().set(up).execute())
            .map_err(|e| nl_err(format!("set {ifname} up"), e))
    }

    fn configure(
        &mut self,
        netns: &Path,
        ifname: &str,
        addrs: &[IpNet],
        routes: &[RouteSpec],
    ) -> Result<(), NetError> {
        let (_, h) = self.in_ns(netns)?;
        self.rt.block_on(async {
            let link = Self::link_by_name(&h, ifname)
                .await?
                .ok_or_else(|| NetError::NotFound {
                    name: ifname.to_owned(),
                })?;
            let index = link.header.index;
            for a in addrs {
                let mut req = h.address().add(index, a.addr(), a.prefix_len());
                if a.addr().is_ipv6() {
                    // The address is the VMI's, unique by construction: skip DAD so the
                    // address is usable at once (DAD would delay it by ~1 s).
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
                req.execute()
                    .await
                    .map_err(|e| nl_err(format!("add address {a}"), e))?;
            }
            for r in routes {
                // A gateway outside every configured subnet needs `onlink`, or the kernel
                // refuses it (ENETUNREACH).
                let onlink =
                    r.gw.is_some_and(|gw| !addrs.iter().any(|a| a.contains(&gw)));
                let msg = route_message(index, r, onlink)?;
                h.route()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(|e| nl_err(format!("add route {}", r.dst), e))?;
            }
            Ok(())
        })
    }

    fn delete_host_link(&mut self, name: &str) -> Result<bool, NetError> {
        let h = self.host()?;
        self.rt.block_on(async {
            let Some(link) = Self::link_by_name(&h, name).await? else {
                return Ok(false);
            };
            match h.link().del(link.header.index).execute().await {
                Ok(()) => Ok(true),
                Err(e) => {
                    let e = nl_err(format!("delete link {name}"), e);
                    if e.errno() == Some(ENODEV) {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }
            }
        })
    }

    fn retire(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
        host_name: &str,
        background: bool,
    ) -> Result<bool, NetError> {
        if !background {
            return self.delete_host_link(host_name);
        }
        let host = self.host()?;
        let Some(tap) = self.rt.block_on(Self::link_by_name(&host, host_name))? else {
            return Ok(false);
        };
        let tap_index = tap.header.index;
        let peer_index = tap.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        });
        // Free the container-side name now, so a new ADD in this namespace never meets the
        // old interface: down (a rename needs it) and renamed to a name unique in the
        // namespace. Only when it really is our peer (its index is the tap's peer index and
        // it points back at the tap).
        if let (Some(path), Some(peer_index)) = (netns, peer_index) {
            // A namespace that is gone took the container end with it.
            if let Ok((_, cont)) = self.in_ns(path) {
                let link = self.rt.block_on(Self::link_by_name(&cont, ifname))?;
                let ours = link.is_some_and(|l| {
                    l.header.index == peer_index
                        && l.attributes.contains(&LinkAttribute::Link(tap_index))
                });
                tracing::debug!(ours, "container end of {host_name} checked");
                if ours {
                    let down = LinkUnspec::new_with_index(peer_index).down().build();
                    let rename = LinkUnspec::new_with_index(peer_index)
                        .name(format!("cnirm{peer_index}"))
                        .build();
                    self.rt
                        .block_on(async {
                            cont.link().set(down).execute().await?;
                            cont.link().set(rename).execute().await
                        })
                        .map_err(|e| nl_err(format!("retire {ifname}"), e))?;
                }
            }
        }
        let t = std::time::Instant::now();
        let spawned = spawn_deleter(tap_index);
        tracing::debug!(
            us = t.elapsed().as_micros() as u64,
            "background deleter spawned"
        );
        match spawned {
            Ok(()) => Ok(true),
            Err(e) => {
                // No background child: do it here, just slower.
                tracing::warn!(error = %e, "background veth delete unavailable, deleting inline");
                self.rt
                    .block_on(host.link().del(tap_index).execute())
                    .map(|()| true)
                    .or_else(|e| {
                        let e = nl_err(format!("delete link {host_name}"), e);
                        if e.errno() == Some(ENODEV) {
                            Ok(false)
                        } else {
                            Err(e)
                        }
                    })
            }
        }
    }

    fn ensure_vlan(&mut self, spec: &VlanSpec) -> Result<bool, NetError> {
        let h = self.host()?;
        self.rt.block_on(async {
            let parent = Self::link_by_name(&h, &spec.parent)
                .await?
                .ok_or_else(|| NetError::NotFound {
                    name: spec.parent.clone(),
                })?;
            let pidx = parent.header.index;
            let mismatch = |what: String| NetError::Netlink {
                op: format!("use VLAN interface {}", spec.name),
                errno: None,
                msg: what,
            };
            let check = |m: &LinkMessage| match vlan_of(m) {
                Some((Some(p), Some(id))) if p == pidx && id == spec.vlan => Ok(()),
                Some((p, id)) => Err(mismatch(format!(
                    "it exists as VLAN {id:?} on link index {p:?}, not VLAN {} on {} (index {pidx})",
                    spec.vlan, spec.parent
                ))),
                None => Err(mismatch("it exists and is not a VLAN interface".into())),
            };
            if let Some(m) = Self::link_by_name(&h, &spec.name).await? {
                check(&m)?;
                // A VLAN interface that is down carries nothing for its macvlans.
                if !m.header.flags.contains(LinkFlags::Up) {
                    let up = LinkUnspec::new_with_index(m.header.index).up().build();
                    h.link()
                        .set(up)
                        .execute()
                        .await
                        .map_err(|e| nl_err(format!("set {} up", spec.name), e))?;
                }
                return Ok(false);
            }
            let msg = LinkVlan::new(&spec.name, pidx, spec.vlan).up().build();
            if let Err(e) = h.link().add(msg).execute().await {
                let e = nl_err(format!("create VLAN interface {}", spec.name), e);
                if e.errno() != Some(EEXIST) {
                    return Err(e);
                }
                // Made meanwhile by someone else: use it if it is the same VLAN.
                let m = Self::link_by_name(&h, &spec.name).await?.ok_or(e)?;
                check(&m)?;
                return Ok(false);
            }
            // The alias marks it ours (the kernel ignores IFLA_IFALIAS on creation).
            let alias = LinkUnspec::new_with_name(&spec.name)
                .alias(VLAN_OWNER_ALIAS)
                .build();
            if let Err(e) = h.link().set(alias).execute().await {
                let e = nl_err(format!("set alias of {}", spec.name), e);
                if let Ok(Some(m)) = Self::link_by_name(&h, &spec.name).await {
                    let _ = h.link().del(m.header.index).execute().await;
                }
                return Err(e);
            }
            Ok(true)
        })
    }

    fn create_macvlan(&mut self, netns: &Path, spec: &MacvlanSpec) -> Result<(), NetError> {
        let host = self.host()?;
        let (ns, cont) = self.in_ns(netns)?;
        let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns.fd());
        self.rt.block_on(async {
            let lower = Self::link_by_name(&host, &spec.lower)
                .await?
                .ok_or_else(|| NetError::NotFound {
                    name: spec.lower.clone(),
                })?;
            // The kernel's answer to a macvlan larger than its lower device is a bare EINVAL:
            // say which MTUs disagree (a VM's interface is often below 1500).
            let lower_mtu = lower.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            });
            if let Some(m) = lower_mtu.filter(|m| spec.mtu > *m) {
                return Err(NetError::Netlink {
                    op: format!("create macvlan {}", spec.container_name),
                    errno: Some(libc::EINVAL),
                    msg: format!(
                        "MTU {} is larger than the MTU {m} of {} (set contrail.mtu)",
                        spec.mtu, spec.lower
                    ),
                });
            }
            let msg = build_macvlan(spec, lower.header.index, ns_fd);
            if let Err(e) = host.link().add(msg).execute().await {
                let e = nl_err(format!("create macvlan {}", spec.container_name), e);
                if e.errno() == Some(EEXIST)
                    && Self::link_by_name(&cont, &spec.container_name)
                        .await?
                        .is_some()
                {
                    return Err(NetError::IfnameExists {
                        name: spec.container_name.clone(),
                    });
                }
                return Err(e);
            }
            let up = LinkUnspec::new_with_name(&spec.container_name).up().build();
            cont.link()
                .set(up)
                .execute()
                .await
                .map_err(|e| nl_err(format!("set {} up", spec.container_name), e))
        })
    }

    fn delete_container_link(&mut self, netns: &Path, ifname: &str) -> Result<bool, NetError> {
        let h = match self.in_ns(netns) {
            Ok((_, h)) => h,
            // A namespace that is gone took its interfaces with it.
            Err(NetError::NetnsOpen { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(false);
            }
            // Its mount point is left but the namespace is not: no interface of ours there.
            Err(NetError::NotNetns { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.rt.block_on(async {
            let Some(link) = Self::link_by_name(&h, ifname).await? else {
                return Ok(false);
            };
            match h.link().del(link.header.index).execute().await {
                Ok(()) => Ok(true),
                Err(e) => {
                    let e = nl_err(format!("delete link {ifname}"), e);
                    if e.errno() == Some(ENODEV) {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }
            }
        })
    }

    fn host_link_alias(&mut self, name: &str) -> Result<Option<String>, NetError> {
        let h = self.host()?;
        let link = self.rt.block_on(Self::link_by_name(&h, name))?;
        Ok(link.map(|m| {
            m.attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfAlias(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        }))
    }

    fn host_link_exists(&mut self, name: &str) -> Result<bool, NetError> {
        let h = self.host()?;
        Ok(self.rt.block_on(Self::link_by_name(&h, name))?.is_some())
    }

    fn container_link_exists(&mut self, netns: &Path, ifname: &str) -> Result<bool, NetError> {
        let (_, h) = self.in_ns(netns)?;
        Ok(self.rt.block_on(Self::link_by_name(&h, ifname))?.is_some())
    }

    fn inspect(&mut self, netns: &Path, ifname: &str) -> Result<Option<IfaceState>, NetError> {
        let (_, h) = self.in_ns(netns)?;
        self.rt.block_on(async {
            let Some(link) = Self::link_by_name(&h, ifname).await? else {
                return Ok(None);
            };
            let index = link.header.index;
            let mut st = IfaceState {
                name: ifname.to_owned(),
                index,
                mac: None,
                mtu: None,
                up: link.header.flags.contains(LinkFlags::Up),
                addrs: vec![],
                routes: vec![],
            };
            for a in &link.attributes {
                match a {
                    LinkAttribute::Address(b) if b.len() == 6 => {
                        st.mac = Some(b.as_slice().try_into().expect("len 6"))
                    }
                    LinkAttribute::Mtu(m) => st.mtu = Some(*m),
                    _ => {}
                }
            }
            let mut addrs = h.address().get().set_link_index_filter(index).execute();
            while let Some(m) = addrs
                .try_next()
                .await
                .map_err(|e| nl_err("dump addresses", e))?
            {
                if m.header.index == index {
                    st.addrs.extend(parse_addr(&m));
                }
            }
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let mut q = RouteMessage::default();
                q.header.address_family = family;
                let mut routes = h.route().get(q).execute();
                while let Some(m) = routes
                    .try_next()
                    .await
                    .map_err(|e| nl_err("dump routes", e))?
                {
                    if let Some((oif, r)) = parse_route(&m)
                        && oif == index
                        && !m.header.flags.contains(RouteFlags::Cloned)
                    {
                        st.routes.push(r);
                    }
                }
            }
            Ok(Some(st))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_message_creates_the_peer_in_the_netns_with_its_mtu_and_no_mac_yet() {
        let spec = VethSpec {
            host_name: "tapabcdefghijk".into(),
            container_name: "eth0".into(),
            mtu: 1400,
        };
        let m = build_veth(&spec, 7);
        assert!(m.header.flags.contains(LinkFlags::Up));
        assert!(
            m.attributes
                .contains(&LinkAttribute::IfName("tapabcdefghijk".into()))
        );
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1400)));
        let info = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i),
                _ => None,
            })
            .expect("link info");
        let peer = info
            .iter()
            .find_map(|i| match i {
                netlink_packet_route::link::LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => {
                    Some(p)
                }
                _ => None,
            })
            .expect("peer");
        // Set up afterwards with its MAC (the kernel refuses an up peer at creation, and the
        // MAC is the VMI's, known later).
        assert!(!peer.header.flags.contains(LinkFlags::Up));
        assert!(
            peer.attributes
                .contains(&LinkAttribute::IfName("eth0".into()))
        );
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(7)));
        assert!(
            !peer
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(_)))
        );
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(1400)));
    }

    #[test]
    fn routes_without_gateway_are_link_scoped_and_foreign_gateways_onlink() {
        let r = RouteSpec {
            dst: "10.0.0.0/8".parse().unwrap(),
            gw: None,
        };
        let m = route_message(3, &r, false).unwrap();
        assert_eq!(m.header.scope, RouteScope::Link);
        let r = RouteSpec {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("1.2.3.4".parse().unwrap()),
        };
        let m = route_message(3, &r, true).unwrap();
        assert!(m.header.flags.contains(RouteFlags::Onlink));
        assert!(m.attributes.contains(&RouteAttribute::Oif(3)));
        let (oif, back) = parse_route(&m).unwrap();
        assert_eq!((oif, back), (3, r));
    }
}

//! The netlink layer alone, in real namespaces (root): veth pair with the peer born in the
//! container namespace, addresses/routes, inspect, delete. Runs on a thread inside a test
//! "node" namespace so the machine's own namespace is never touched.

use std::path::Path;

use contrail_cni_host::net::{
    MacvlanSpec, NetError, NetOps, Netlink, RouteSpec, VLAN_OWNER_ALIAS, VethSpec, VlanSpec,
};
use contrail_integration::netns::{TestNetns, require_root};

fn in_node<T: Send>(node: &TestNetns, f: impl FnOnce() -> T + Send) -> T {
    let fd = std::fs::File::open(node.path()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn contrail_net_veth_configure_inspect_delete() {
    if !require_root("contrail_net_veth_configure_inspect_delete") {
        return;
    }
    let node = TestNetns::new("n");
    let ct = TestNetns::new("c");
    let ctp = ct.path();
    in_node(&node, || {
        let mut nl = Netlink::new().unwrap();
        let spec = VethSpec {
            host_name: "tapabcdefghijk".into(),
            container_name: "eth0".into(),
            mtu: 1400,
        };
        nl.create_veth(&ctp, &spec).unwrap();
        assert!(nl.host_link_exists("tapabcdefghijk").unwrap());
        // Born down, with a kernel-chosen MAC; then up with the VMI's.
        let born = nl.inspect(&ctp, "eth0").unwrap().unwrap();
        assert!(!born.up && born.mac != Some([2, 1, 2, 3, 4, 5]), "{born:?}");
        nl.up_container_link(&ctp, "eth0", [2, 1, 2, 3, 4, 5])
            .unwrap();
        let again = nl.create_veth(
            Path::new(&ctp),
            &VethSpec {
                host_name: "tapother".into(),
                ..spec.clone()
            },
        );
        assert!(
            matches!(again, Err(NetError::IfnameExists { .. })),
            "{again:?}"
        );
        let addrs = ["10.1.2.3/24".parse().unwrap()];
        let routes = [
            RouteSpec {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.2.254".parse().unwrap()),
            },
            RouteSpec {
                dst: "192.168.0.0/16".parse().unwrap(),
                gw: Some("172.16.0.1".parse().unwrap()),
            },
        ];
        nl.configure(&ctp, "eth0", &addrs, &routes).unwrap();
        let st = nl.inspect(&ctp, "eth0").unwrap().unwrap();
        assert_eq!(st.mac, Some([2, 1, 2, 3, 4, 5]));
        assert_eq!(st.mtu, Some(1400));
        assert!(st.up);
        assert!(st.addrs.contains(&addrs[0]), "{st:?}");
        for r in &routes {
            assert!(st.routes.contains(r), "{r:?} not in {:?}", st.routes);
        }
        assert!(nl.inspect(&ctp, "eth9").unwrap().is_none());
        assert!(nl.delete_host_link("tapabcdefghijk").unwrap());
        assert!(!nl.delete_host_link("tapabcdefghijk").unwrap());
        assert!(nl.inspect(&ctp, "eth0").unwrap().is_none());
    });
}

#[test]
fn contrail_net_retire_frees_names_at_once_and_deletes_in_background() {
    if !require_root("contrail_net_retire_frees_names_at_once_and_deletes_in_background") {
        return;
    }
    let node = TestNetns::new("n");
    let ct = TestNetns::new("c");
    let ctp = ct.path();
    in_node(&node, || {
        let mut nl = Netlink::new().unwrap();
        let spec = VethSpec {
            host_name: "tapretire00001".into(),
            container_name: "eth0".into(),
            mtu: 1500,
        };
        nl.create_veth(&ctp, &spec).unwrap();
        assert!(
            nl.retire(Some(&ctp), "eth0", "tapretire00001", true)
                .unwrap()
        );
        // The container name is free immediately: the same ADD again works at once.
        assert!(nl.inspect(&ctp, "eth0").unwrap().is_none());
        let again = VethSpec {
            host_name: "tapretire00002".into(),
            ..spec.clone()
        };
        nl.create_veth(&ctp, &again).unwrap();
        // The old pair goes away in the background.
        let t = std::time::Instant::now();
        while nl.host_link_exists("tapretire00001").unwrap() {
            assert!(t.elapsed() < std::time::Duration::from_secs(3));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A retire whose container-side name is not our peer leaves that interface alone.
        ct.ip(&[
            "link", "add", "eth1", "type", "veth", "peer", "name", "other1",
        ]);
        let third = VethSpec {
            host_name: "tapretire00003".into(),
            container_name: "eth2".into(),
            mtu: 1500,
        };
        nl.create_veth(&ctp, &third).unwrap();
        assert!(
            nl.retire(Some(&ctp), "eth1", "tapretire00003", true)
                .unwrap()
        );
        assert!(nl.inspect(&ctp, "eth1").unwrap().is_some());
        assert!(!nl.retire(None, "eth0", "tapmissing0000", true).unwrap());
        nl.delete_host_link("tapretire00002").unwrap();
    });
}

/// Nested mode's links: a macvlan born inside the container on a lower device of the node (here
/// a veth end, so it runs on kernels without 802.1Q), and the VLAN sub-interface where the
/// kernel has VLAN support (its errors everywhere).
#[test]
fn contrail_net_macvlan_in_the_container_and_the_vlan_interface() {
    if !require_root("contrail_net_macvlan_in_the_container_and_the_vlan_interface") {
        return;
    }
    let node = TestNetns::new("n");
    let ct = TestNetns::new("c");
    let ctp = ct.path();
    node.ip(&[
        "link", "add", "low0", "type", "veth", "peer", "name", "low1",
    ]);
    node.ip(&["link", "set", "low0", "up"]);
    let low_index = {
        let v: serde_json::Value =
            serde_json::from_str(&node.ip(&["-j", "link", "show", "low0"])).unwrap();
        v[0]["ifindex"].clone()
    };
    in_node(&node, || {
        let mut nl = Netlink::new().unwrap();
        let spec = MacvlanSpec {
            lower: "low0".into(),
            container_name: "eth0".into(),
            mac: [2, 9, 8, 7, 6, 5],
            mtu: 1400,
        };
        nl.create_macvlan(&ctp, &spec).unwrap();
        let again = nl.create_macvlan(&ctp, &spec);
        assert!(
            matches!(again, Err(NetError::IfnameExists { .. })),
            "{again:?}"
        );
        let missing = nl.create_macvlan(
            &ctp,
            &MacvlanSpec {
                lower: "nope0".into(),
                container_name: "eth1".into(),
                ..spec.clone()
            },
        );
        assert!(
            matches!(missing, Err(NetError::NotFound { .. })),
            "{missing:?}"
        );
        let big = nl.create_macvlan(
            &ctp,
            &MacvlanSpec {
                container_name: "eth2".into(),
                mtu: 9000,
                ..spec.clone()
            },
        );
        assert!(
            big.as_ref()
                .is_err_and(|e| e.to_string().contains("larger than the MTU 1500 of low0")),
            "{big:?}"
        );
        let addrs = ["10.1.2.3/24".parse().unwrap()];
        let routes = [RouteSpec {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("10.1.2.254".parse().unwrap()),
        }];
        nl.configure(&ctp, "eth0", &addrs, &routes).unwrap();
        let st = nl.inspect(&ctp, "eth0").unwrap().unwrap();
        assert_eq!(st.mac, Some([2, 9, 8, 7, 6, 5]));
        assert_eq!(st.mtu, Some(1400));
        assert!(st.up);
        assert!(st.addrs.contains(&addrs[0]), "{st:?}");
        assert!(st.routes.contains(&routes[0]), "{:?}", st.routes);
        let d: serde_json::Value =
            serde_json::from_str(&ct.ip(&["-d", "-j", "link", "show", "eth0"])).unwrap();
        assert_eq!(d[0]["linkinfo"]["info_kind"], "macvlan", "{d}");
        assert_eq!(d[0]["linkinfo"]["info_data"]["mode"], "bridge", "{d}");
        assert_eq!(d[0]["link_index"], low_index, "{d}");

        // The parent must exist; a name taken by another kind of link is refused.
        let vlan = |parent: &str, name: &str, vlan| VlanSpec {
            parent: parent.into(),
            name: name.into(),
            vlan,
        };
        let e = nl.ensure_vlan(&vlan("nope0", "nope0.5", 5)).unwrap_err();
        assert!(matches!(e, NetError::NotFound { .. }), "{e:?}");
        let e = nl.ensure_vlan(&vlan("low0", "low1", 5)).unwrap_err();
        assert!(e.to_string().contains("not a VLAN"), "{e}");
        match nl.ensure_vlan(&vlan("low0", "low0.5", 5)) {
            Ok(created) => {
                assert!(created);
                assert_eq!(
                    nl.host_link_alias("low0.5").unwrap().as_deref(),
                    Some(VLAN_OWNER_ALIAS)
                );
                assert!(!nl.ensure_vlan(&vlan("low0", "low0.5", 5)).unwrap());
                // Found down: set up again.
                node.ip(&["link", "set", "low0.5", "down"]);
                assert!(!nl.ensure_vlan(&vlan("low0", "low0.5", 5)).unwrap());
                assert!(node.ip(&["link", "show", "low0.5"]).contains(",UP"));
                let e = nl.ensure_vlan(&vlan("low0", "low0.5", 6)).unwrap_err();
                assert!(e.to_string().contains("not VLAN 6"), "{e}");
                assert!(nl.delete_host_link("low0.5").unwrap());
            }
            // A kernel without 802.1Q: the kernel's answer, and nothing made.
            Err(e) => {
                assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e:?}");
                assert!(!nl.host_link_exists("low0.5").unwrap());
            }
        }
        assert_eq!(nl.host_link_alias("low0").unwrap().as_deref(), Some(""));
        assert_eq!(nl.host_link_alias("nope0").unwrap(), None);

        assert!(nl.delete_container_link(&ctp, "eth0").unwrap());
        assert!(!nl.delete_container_link(&ctp, "eth0").unwrap());
        // A namespace that is gone: nothing to delete, no error.
        assert!(
            !nl.delete_container_link(Path::new("/run/netns/contrail-no-such-ns"), "eth0")
                .unwrap()
        );
    });
    assert_eq!(ct.links().as_array().unwrap().len(), 1);
}

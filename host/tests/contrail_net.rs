//! The netlink layer alone, in real namespaces (root): veth pair with the peer born in the
//! container namespace, addresses/routes, inspect, delete. Runs on a thread inside a test
//! "node" namespace so the machine's own namespace is never touched.

use std::path::Path;

use contrail_cni_host::net::{NetError, NetOps, Netlink, RouteSpec, VethSpec};
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
            mac: Some([2, 1, 2, 3, 4, 5]),
            mtu: 1400,
        };
        nl.create_veth(&ctp, &spec).unwrap();
        assert!(nl.host_link_exists("tapabcdefghijk").unwrap());
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
            mac: None,
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
            mac: None,
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

//! Names derived from the invocation's ids, and the `CNI_ARGS` they come from.

use crate::cni::CniError;
use crate::cni::error::{INVALID_ENV, UNSUPPORTED_FIELD};

/// Host end of the veth: `tap` + 11 characters, 14 in all (IFNAMSIZ allows 15), Contrail's
/// convention. The 11 characters are a hash of (container id, ifname), lowercase base32, so:
/// unique per attachment (55 bits), stable (a DEL without state finds it), and different for
/// nested containers that share a parent prefix, unlike Contrail's `tap` + `eth0-<uuid>`[:11]
/// which collides for `parent.child` ids and for long ifnames.
pub fn tap_name(container_id: &str, ifname: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut h = blake3::Hasher::new();
    h.update(container_id.as_bytes());
    h.update(&[0]);
    h.update(ifname.as_bytes());
    let d = h.finalize();
    let mut bits = u64::from_be_bytes(d.as_bytes()[..8].try_into().expect("8 bytes"));
    let mut name = String::from("tap");
    for _ in 0..11 {
        name.push(ALPHABET[(bits >> 59) as usize] as char);
        bits <<= 5;
    }
    name
}

/// The Kubernetes VM name, as tf-controller's `src/container/cni/cni.go` builds it:
/// `<cluster-name>__<namespace>__<pod>`.
pub fn k8s_vm_name(cluster: &str, namespace: &str, pod: &str) -> String {
    format!("{cluster}__{namespace}__{pod}")
}

/// `K8S_POD_NAMESPACE` / `K8S_POD_NAME` from `CNI_ARGS` (`K=V;K=V`).
pub fn k8s_pod(cni_args: &str) -> Option<(String, String)> {
    let mut ns = None;
    let mut pod = None;
    for kv in cni_args.split(';') {
        match kv.split_once('=') {
            Some(("K8S_POD_NAMESPACE", v)) if !v.is_empty() => ns = Some(v.to_owned()),
            Some(("K8S_POD_NAME", v)) if !v.is_empty() => pod = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((ns?, pod?))
}

/// The `CNI_ARGS` keys the Contrail path knows (kubelet's, which it sends with
/// `IgnoreUnknown=1`).
const KNOWN_ARGS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// Checks `CNI_ARGS` (`K=V;K=V`) as libcni's `types.LoadArgs` does for a plugin: a pair without
/// `=` is refused, and so is a key the plugin does not know unless `IgnoreUnknown` is `1` or
/// `true`. A malformed pair is error 4, an unknown key 2 (CNI SPEC.md: "unsupported field",
/// the message naming key and value).
pub fn check_cni_args(cni_args: &str) -> Result<(), CniError> {
    let mut pairs = vec![];
    for kv in cni_args.split(';').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k, v)),
            _ => {
                return Err(CniError::new(
                    INVALID_ENV,
                    format!("CNI_ARGS: invalid pair {kv:?}"),
                ));
            }
        }
    }
    let ignore_unknown = pairs
        .iter()
        .any(|(k, v)| *k == "IgnoreUnknown" && (v.eq_ignore_ascii_case("true") || *v == "1"));
    if ignore_unknown {
        return Ok(());
    }
    match pairs.iter().find(|(k, _)| !KNOWN_ARGS.contains(k)) {
        Some((k, v)) => Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!("CNI_ARGS: unknown argument {k}={v} (set IgnoreUnknown=1 to ignore it)"),
        )),
        None => Ok(()),
    }
}

/// The `i` of `ethi`.
pub fn eth_index(ifname: &str) -> Option<u32> {
    ifname.strip_prefix("eth")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_14_chars_stable_and_distinct() {
        let a = tap_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth0");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("tap"));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(a, tap_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth0"));
        assert_ne!(a, tap_name("5baff64c-d028-47ba-864e-a5ee679fc069", "eth1"));
        assert_ne!(
            tap_name("5baff64c-d028-47ba-864e-a5ee679fc069.a", "eth0"),
            tap_name("5baff64c-d028-47ba-864e-a5ee679fc069.b", "eth0")
        );
        // No ambiguity between (c, "ab") and (c + "a", "b").
        assert_ne!(tap_name("ca", "b"), tap_name("c", "ab"));
        let names: std::collections::HashSet<_> = (0..10_000)
            .map(|i| tap_name(&format!("c{i}"), "eth0"))
            .collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    fn k8s_args() {
        assert_eq!(
            k8s_pod("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx-abc.1"),
            Some(("default".into(), "nginx-abc.1".into()))
        );
        assert_eq!(k8s_pod("K8S_POD_NAME=x"), None);
        assert_eq!(
            k8s_vm_name("k8s", "default", "nginx"),
            "k8s__default__nginx"
        );
        assert_eq!(eth_index("eth12"), Some(12));
        check_cni_args("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web").unwrap();
        check_cni_args("IgnoreUnknown=1;FOO=bar").unwrap();
        check_cni_args("IgnoreUnknown=true;FOO=bar").unwrap();
        check_cni_args("").unwrap();
        let e = check_cni_args("FOO=bar;K8S_POD_NAME=web").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("FOO=bar"), "{}", e.msg);
        assert_eq!(check_cni_args("IgnoreUnknown=0;FOO=1").unwrap_err().code, 2);
        assert_eq!(check_cni_args("K8S_POD_NAME").unwrap_err().code, 4);
        assert_eq!(eth_index("net1"), None);
    }
}

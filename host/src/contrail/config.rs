//! The `contrail` section of the network configuration, with Contrail's defaults where a key is
//! absent (the keys and defaults of tf-controller's `src/container/cni/contrail/contrail-cni.go`
//! and `vrouter.go`). Numbers are accepted as JSON numbers or strings (deployed configs have
//! `"mesos-port": "6991"`, `"log-level": "4"`). The section is decoded once into [`Section`]
//! (unknown keys kept in `extra`, reported by `crate::config_check`), then resolved into [`ContrailConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Error, Result, code};
use crate::cni::config::NetConf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kubernetes: VM name `<cluster>__<ns>__<pod>` from `CNI_ARGS`; no manager.
    K8s,
    /// Mesos: VM name = container id; registration with the manager when one is configured.
    Mesos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContrailConfig {
    pub vrouter_ip: String,
    pub vrouter_port: u16,
    pub cluster_name: String,
    pub config_dir: PathBuf,
    /// Contrail's sleep between polls; here the cap of the backoff step.
    pub poll_timeout: Duration,
    /// Contrail's number of polls; `poll_timeout * poll_retries` is the whole wait budget.
    pub poll_retries: u32,
    /// None when the config has no `mode`: decided per invocation (k8s when `CNI_ARGS` names a
    /// pod, Mesos otherwise).
    pub mode: Option<Mode>,
    pub mtu: u32,
    /// `vif-type`: `veth` (a tap for the node's own vRouter), or `macvlan` (nested mode: the
    /// node is a VM of a Contrail cloud and a container gets a macvlan on a VLAN sub-interface
    /// of `parent-interface`, tagged as the agent says).
    pub vif_type: String,
    /// `parent-interface`: the VM's interface the VLAN sub-interfaces of nested mode sit on.
    pub parent_interface: Option<String>,
    /// The manager instances' attachment API base URLs, tried in this order: `managers`, then
    /// `mesos-ip`:`mesos-port` (Contrail's keys) when set. Empty: no manager (k8s mode).
    pub managers: Vec<String>,
    pub mesos_token: Option<String>,
    /// CA bundle (PEM) for `https://` manager URLs (`manager-ca-file`); empty = the Mozilla
    /// roots built in.
    pub manager_ca_file: String,
    /// Reach the vRouter agent over `https://` (`vrouter-tls`, implied by `vrouter-ca-file`).
    pub vrouter_tls: bool,
    /// CA bundle (PEM) for the agent's certificate (`vrouter-ca-file`); empty = the Mozilla
    /// roots built in.
    pub vrouter_ca_file: String,
    /// Bounds each call to one manager instance (`mesos-timeout`).
    pub mesos_timeout: Duration,
    /// DEL frees the interface names at once and leaves the kernel's slow veth teardown to a
    /// detached child (`async-teardown`, default true).
    pub async_teardown: bool,
    /// Where this plugin records which network made each attachment (`state-dir`): never under
    /// `config-dir`, whose files are the vRouter agent's.
    pub state_dir: PathBuf,
    /// `nft-path`: the `nft` binary port mappings are installed with (absolute; only the
    /// network config names it).
    pub nft_path: PathBuf,
    /// `nft-timeout`: how long one `nft` run may take before it is killed.
    pub nft_timeout: Duration,
}

pub const VIF_MACVLAN: &str = "macvlan";

/// A Linux interface name: 1-15 bytes, no `/`, `:`, whitespace, not `.` or `..`.
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

pub const DEFAULT_CONFIG_DIR: &str = "/var/lib/contrail/ports/vm";
pub const DEFAULT_MESOS_PORT: u16 = 6991;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/contrail-cni/attachments";
/// Where Debian's `nftables` package installs `nft`.
pub const DEFAULT_NFT_PATH: &str = "/usr/sbin/nft";

impl Default for ContrailConfig {
    fn default() -> Self {
        ContrailConfig {
            vrouter_ip: "127.0.0.1".into(),
            vrouter_port: 9091,
            cluster_name: "k8s".into(),
            config_dir: DEFAULT_CONFIG_DIR.into(),
            poll_timeout: Duration::from_secs(3),
            poll_retries: 20,
            mode: None,
            mtu: 1500,
            vif_type: "veth".into(),
            parent_interface: None,
            managers: vec![],
            mesos_token: None,
            manager_ca_file: String::new(),
            vrouter_tls: false,
            vrouter_ca_file: String::new(),
            mesos_timeout: Duration::from_secs(30),
            async_teardown: true,
            state_dir: DEFAULT_STATE_DIR.into(),
            nft_path: DEFAULT_NFT_PATH.into(),
            nft_timeout: Duration::from_secs(5),
        }
    }
}

/// The `contrail` object as written. Every key is optional (`null` counts as absent).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Section {
    #[serde(deserialize_with = "de::string")]
    pub vrouter_ip: Option<String>,
    #[serde(deserialize_with = "de::port")]
    pub vrouter_port: Option<u16>,
    #[serde(deserialize_with = "de::string")]
    pub cluster_name: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pub config_dir: Option<String>,
    #[serde(deserialize_with = "de::seconds")]
    pub poll_timeout: Option<f64>,
    #[serde(deserialize_with = "de::count")]
    pub poll_retries: Option<u32>,
    #[serde(deserialize_with = "de::mode")]
    pub mode: Option<Mode>,
    #[serde(deserialize_with = "de::mtu")]
    pub mtu: Option<u32>,
    #[serde(deserialize_with = "de::string")]
    pub vif_type: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pub parent_interface: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pub mesos_ip: Option<String>,
    #[serde(deserialize_with = "de::port")]
    pub mesos_port: Option<u16>,
    #[serde(deserialize_with = "de::string")]
    pub mesos_token: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pub mesos_token_file: Option<String>,
    #[serde(deserialize_with = "de::seconds")]
    pub mesos_timeout: Option<f64>,
    /// CA bundle for `https://` managers.
    #[serde(deserialize_with = "de::string")]
    pub manager_ca_file: Option<String>,
    #[serde(deserialize_with = "de::boolean")]
    pub vrouter_tls: Option<bool>,
    #[serde(deserialize_with = "de::string")]
    pub vrouter_ca_file: Option<String>,
    /// Several manager instances (`["http://10.0.0.1:6991", "https://...", ...]`), tried in
    /// turn.
    #[serde(deserialize_with = "de::urls")]
    pub managers: Option<Vec<String>>,
    #[serde(deserialize_with = "de::boolean")]
    pub async_teardown: Option<bool>,
    #[serde(deserialize_with = "de::string")]
    pub state_dir: Option<String>,
    #[serde(deserialize_with = "de::string")]
    pub nft_path: Option<String>,
    #[serde(deserialize_with = "de::seconds")]
    pub nft_timeout: Option<f64>,
    /// Every other key: kept, and logged ([`IGNORED`] says why some known ones are unused).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Read by the logger (`crate::cni::config::LogSettings`) before anything else, never fatal: a
/// bad log setting must not break networking.
const LOGGER_KEYS: &[&str] = &["log-file", "log-level", "log-max-bytes", "log-keep"];

/// Keys of Contrail's CNI config that this plugin reads nowhere, and why.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "meta-plugin",
        "Contrail compares it with the parent process to detect multus; this plugin is always exec'd as the network's own plugin",
    ),
    (
        "network-name",
        "Contrail overwrites it with the top-level \"name\", and so does this plugin",
    ),
    ("log-dir", "logs go to log-file"),
];

/// Readers for the section's values: a string may be written as a number, a number as a
/// string; `null` is absent. The error names what was expected (the key is added by
/// [`Section::parse`]).
mod de {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::Mode;

    fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Ok(Some(Value::deserialize(d)?).filter(|v| !v.is_null()))
    }

    fn bad<E: serde::de::Error>(v: &Value, want: &str) -> E {
        E::custom(format!("expected {want}, got {v}"))
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        value(d)?
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                v => Err(bad(&v, "a string")),
            })
            .transpose()
    }

    fn number<E: serde::de::Error>(v: &Value) -> Result<f64, E> {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        n.filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| bad(v, "a non-negative number"))
    }

    fn integer<T: TryFrom<u64>, E: serde::de::Error>(v: &Value, want: &str) -> Result<T, E> {
        let n = number::<E>(v)?;
        if n.fract() != 0.0 {
            return Err(bad(v, want));
        }
        T::try_from(n as u64).map_err(|_| bad(v, want))
    }

    pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        value(d)?.map(|v| number(&v)).transpose()
    }

    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        value(d)?.map(|v| integer(&v, "a count")).transpose()
    }

    pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
        value(d)?
            .map(|v| match integer::<u16, D::Error>(&v, "a port number")? {
                0 => Err(bad(&v, "a port number")),
                p => Ok(p),
            })
            .transpose()
    }

    pub fn mtu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        value(d)?
            .map(|v| match integer::<u32, D::Error>(&v, "an MTU")? {
                m @ 68..=65535 => Ok(m),
                _ => Err(bad(&v, "an MTU between 68 and 65535")),
            })
            .transpose()
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        value(d)?
            .map(|v| v.as_bool().ok_or_else(|| bad(&v, "true or false")))
            .transpose()
    }

    /// `http://host:port` or `https://host:port` base URLs (no path, query or credentials; a
    /// trailing `/` dropped).
    pub fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let Some(v) = value(d)? else {
            return Ok(None);
        };
        let list = match &v {
            Value::Array(a) => a,
            _ => return Err(bad(&v, "a list of http(s)://host:port URLs")),
        };
        let mut out = vec![];
        for u in list {
            let s = u
                .as_str()
                .ok_or_else(|| bad::<D::Error>(u, "an http(s)://host:port URL"))?;
            let s = s.trim_end_matches('/');
            let rest = s
                .strip_prefix("http://")
                .or_else(|| s.strip_prefix("https://"))
                .ok_or_else(|| bad::<D::Error>(u, "an http(s)://host:port URL"))?;
            let ok = !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']);
            if !ok {
                return Err(bad(u, "an http(s)://host:port URL"));
            }
            out.push(s.to_owned());
        }
        Ok(Some(out))
    }

    pub fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
        value(d)?
            .map(|v| match v.as_str() {
                Some("k8s" | "kubernetes") => Ok(Mode::K8s),
                Some("mesos") => Ok(Mode::Mesos),
                _ => Err(D::Error::custom(format!(
                    r#"expected "mesos" or "k8s", got {v}"#
                ))),
            })
            .transpose()
    }
}

impl Section {
    /// Keys this plugin does not know (not the logger's, nor Contrail's keys listed in
    /// [`IGNORED`], which are known and unused).
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.extra
            .keys()
            .map(String::as_str)
            .filter(|k| !LOGGER_KEYS.contains(k) && !IGNORED.iter().any(|(i, _)| i == k))
    }

    /// Decodes the section; an error names the key (`contrail.mesos-port: expected ...`).
    pub fn parse(section: &Value) -> Result<Section> {
        if !section.is_object() {
            return Err(Error::new(
                code::INVALID_CONFIG,
                format!("contrail: expected an object, got {section}"),
            ));
        }
        serde_path_to_error::deserialize(section).map_err(|e| {
            let key = e.path().to_string();
            Error::new(
                code::INVALID_CONFIG,
                format!("contrail.{key}: {}", e.into_inner()),
            )
        })
    }
}

impl ContrailConfig {
    /// The `contrail` section of `conf` (absent = all defaults).
    pub fn from_netconf(conf: &NetConf) -> Result<ContrailConfig> {
        match conf.get("contrail").filter(|v| !v.is_null()) {
            None => Ok(ContrailConfig::default()),
            Some(v) => Self::from_section(Section::parse(v)?),
        }
    }

    /// Resolves a decoded section (defaults filled in, the token file read). Unknown keys are
    /// not logged here: [`Section::unknown_keys`] is reported by `crate::config_check` (on every
    /// ADD and in `config check`).
    pub fn from_section(s: Section) -> Result<ContrailConfig> {
        let d = ContrailConfig::default();
        let mesos_token = match (s.mesos_token, s.mesos_token_file) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| {
                        Error::new(
                            code::INVALID_CONFIG,
                            format!("contrail.mesos-token-file {f}: {e}"),
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let nft_path = s
            .nft_path
            .filter(|p| !p.is_empty())
            .map_or(d.nft_path.clone(), PathBuf::from);
        if !super::portmap::valid_nft_path(&nft_path) {
            return Err(Error::new(
                code::INVALID_CONFIG,
                format!(
                    "contrail.nft-path {:?}: must be an absolute path without `..`",
                    nft_path.display()
                ),
            ));
        }
        let nft_timeout = match s.nft_timeout {
            None => d.nft_timeout,
            Some(t) if t > 0.0 && t <= 600.0 => Duration::from_secs_f64(t),
            Some(t) => {
                return Err(Error::new(
                    code::INVALID_CONFIG,
                    format!("contrail.nft-timeout {t}: expected seconds in (0, 600]"),
                ));
            }
        };
        Ok(ContrailConfig {
            nft_path,
            nft_timeout,
            vrouter_ip: s.vrouter_ip.unwrap_or(d.vrouter_ip),
            vrouter_port: s.vrouter_port.unwrap_or(d.vrouter_port),
            cluster_name: s.cluster_name.unwrap_or(d.cluster_name),
            config_dir: s.config_dir.map_or(d.config_dir, PathBuf::from),
            poll_timeout: s
                .poll_timeout
                .map_or(d.poll_timeout, Duration::from_secs_f64),
            poll_retries: s.poll_retries.unwrap_or(d.poll_retries),
            mode: s.mode,
            mtu: s.mtu.unwrap_or(d.mtu),
            vif_type: s.vif_type.unwrap_or(d.vif_type),
            parent_interface: s.parent_interface.filter(|p| !p.is_empty()),
            managers: {
                let mut m = s.managers.unwrap_or_default();
                if let Some(ip) = s.mesos_ip.filter(|ip| !ip.is_empty()) {
                    let port = s.mesos_port.unwrap_or(DEFAULT_MESOS_PORT);
                    let url = format!("http://{}", host_port(&ip, port));
                    if !m.contains(&url) {
                        m.push(url);
                    }
                }
                m
            },
            mesos_token,
            vrouter_tls: s.vrouter_tls.unwrap_or(false)
                || s.vrouter_ca_file.as_ref().is_some_and(|f| !f.is_empty()),
            manager_ca_file: s.manager_ca_file.unwrap_or_default(),
            vrouter_ca_file: s.vrouter_ca_file.unwrap_or_default(),
            mesos_timeout: s
                .mesos_timeout
                .map_or(d.mesos_timeout, Duration::from_secs_f64),
            async_teardown: s.async_teardown.unwrap_or(d.async_teardown),
            state_dir: s
                .state_dir
                .filter(|d| !d.is_empty())
                .map_or(d.state_dir, PathBuf::from),
        })
    }

    /// Whether this is nested mode (`vif-type: macvlan`).
    pub fn nested(&self) -> bool {
        self.vif_type == VIF_MACVLAN
    }

    /// `vif-type` is `veth` or `macvlan`; `macvlan` needs a `parent-interface` that is a valid
    /// interface name (whether it exists on the node is ADD's check).
    pub fn check_supported(&self) -> Result<()> {
        match self.vif_type.as_str() {
            "veth" => Ok(()),
            VIF_MACVLAN => match self.parent_interface.as_deref() {
                None => Err(Error::new(
                    code::INVALID_CONFIG,
                    "contrail.parent-interface is required with contrail.vif-type \"macvlan\" (nested mode)",
                )),
                Some(p) if !valid_ifname(p) => Err(Error::new(
                    code::INVALID_CONFIG,
                    format!("contrail.parent-interface {p:?} is not an interface name"),
                )),
                Some(_) => Ok(()),
            },
            other => Err(Error::new(
                code::INVALID_CONFIG,
                format!(
                    "contrail.vif-type {other:?} is not supported: \"veth\" or \"macvlan\" (nested mode, on parent-interface)"
                ),
            )),
        }
    }

    /// The state directory must be absolute and outside `config-dir`: the agent reads every
    /// directory there as a VM's ports.
    pub fn check_state_dir(&self) -> Result<()> {
        let bad = |why: &str| {
            Err(Error::new(
                code::INVALID_CONFIG,
                format!("contrail.state-dir {}: {why}", self.state_dir.display()),
            ))
        };
        if !self.state_dir.is_absolute() {
            return bad("must be an absolute path");
        }
        if self.state_dir.starts_with(&self.config_dir)
            || self.config_dir.starts_with(&self.state_dir)
        {
            return bad(&format!(
                "must not be inside (or contain) contrail.config-dir {}",
                self.config_dir.display()
            ));
        }
        Ok(())
    }

    /// The whole time we wait for the agent: what Contrail's `poll-retries` polls spaced by
    /// `poll-timeout` would take.
    pub fn poll_budget(&self) -> Duration {
        self.poll_timeout * self.poll_retries.max(1)
    }

    pub fn agent_base(&self) -> String {
        let scheme = if self.vrouter_tls { "https" } else { "http" };
        format!(
            "{scheme}://{}/",
            host_port(&self.vrouter_ip, self.vrouter_port)
        )
    }

    /// The manager client's TLS settings. A CA file that is missing or does not parse is a
    /// configuration error (code 7), never a fallback to the default roots.
    pub fn manager_tls(&self) -> Result<ureq::tls::TlsConfig> {
        load_ca("manager-ca-file", &self.manager_ca_file)
    }

    /// The vRouter agent client's TLS settings, as [`Self::manager_tls`].
    pub fn agent_tls(&self) -> Result<ureq::tls::TlsConfig> {
        load_ca("vrouter-ca-file", &self.vrouter_ca_file)
    }
}

fn load_ca(key: &str, file: &str) -> Result<ureq::tls::TlsConfig> {
    contrail_mesos_api::tls::client_config(file)
        .map_err(|e| Error::new(code::INVALID_CONFIG, format!("contrail.{key}: {e}")))
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_dir_must_be_absolute_and_outside_config_dir() {
        let c = |state: &str| ContrailConfig {
            state_dir: state.into(),
            ..ContrailConfig::default()
        };
        c(DEFAULT_STATE_DIR).check_state_dir().unwrap();
        for bad in [
            "/var/lib/contrail/ports/vm/state",
            "/var/lib/contrail",
            "state",
        ] {
            let e = c(bad).check_state_dir().unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{bad}");
            assert!(e.msg.starts_with("contrail.state-dir"), "{}", e.msg);
        }
        let s = Section::parse(&serde_json::json!({"state-dir": "/srv/att"})).unwrap();
        assert!(s.unknown_keys().next().is_none());
        let c = ContrailConfig::from_section(s).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/att"));
    }

    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ContrailConfig> {
        ContrailConfig::from_netconf(&NetConf::from_value(v).unwrap())
    }

    #[test]
    fn nft_path_and_timeout() {
        let c = parse(json!({"name": "n", "type": "t"})).unwrap();
        assert_eq!(
            (c.nft_path.as_path(), c.nft_timeout),
            (
                std::path::Path::new("/usr/sbin/nft"),
                Duration::from_secs(5)
            )
        );
        let c = parse(
            json!({"name": "n", "type": "t", "contrail": {"nft-path": "/sbin/nft", "nft-timeout": "0.5"}}),
        )
        .unwrap();
        assert_eq!(
            (c.nft_path.as_path(), c.nft_timeout),
            (
                std::path::Path::new("/sbin/nft"),
                Duration::from_millis(500)
            )
        );
        for (k, v, want) in [
            (
                "nft-path",
                json!("nft"),
                "contrail.nft-path \"nft\": must be an absolute path",
            ),
            ("nft-path", json!("/a/../nft"), "contrail.nft-path"),
            ("nft-timeout", json!(0), "contrail.nft-timeout 0"),
            ("nft-timeout", json!(601), "contrail.nft-timeout 601"),
            ("nft-timeout", json!("x"), "contrail.nft-timeout"),
        ] {
            let e = parse(json!({"name": "n", "type": "t", "contrail": {k: v}})).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG);
            assert!(e.msg.starts_with(want), "{}", e.msg);
        }
    }

    #[test]
    fn defaults_follow_contrail() {
        let c = parse(json!({"name": "n", "type": "contrail-cni-plugin"})).unwrap();
        assert_eq!(c.vrouter_ip, "127.0.0.1");
        assert_eq!(c.vrouter_port, 9091);
        assert_eq!(c.cluster_name, "k8s");
        assert_eq!(c.config_dir, PathBuf::from("/var/lib/contrail/ports/vm"));
        assert_eq!(c.poll_timeout, Duration::from_secs(3));
        assert_eq!(c.poll_retries, 20);
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.mode, None);
        assert_eq!(c.poll_budget(), Duration::from_secs(60));
    }

    #[test]
    fn deployed_mesos_config_with_string_numbers() {
        let c = parse(json!({"contrail": {
            "config-dir": "/var/lib/contrail/ports/vm", "poll-timeout": 5, "poll-retries": 15,
            "log-dir": "/x", "log-file": "/x/o.log", "log-level": "4", "vrouter-port": 9091,
            "vrouter-ip": "10.0.0.5", "mode": "mesos", "cluster-name": "mesos",
            "mesos-ip": "10.0.0.1", "mesos-port": "6991", "mtu": "1400"}}))
        .unwrap();
        assert_eq!(c.mode, Some(Mode::Mesos));
        assert_eq!(c.mtu, 1400);
        let conf =
            NetConf::from_value(json!({"contrail": {"log-level": "4", "log-file": 5}})).unwrap();
        assert_eq!(conf.log_settings().level.as_deref(), Some("4"));
        ContrailConfig::from_netconf(&conf).unwrap();
        assert_eq!(c.managers, ["http://10.0.0.1:6991"]);
        assert_eq!(c.agent_base(), "http://10.0.0.5:9091/");
    }

    #[test]
    fn https_peers_and_their_ca_files() {
        let c = parse(json!({"contrail": {
            "managers": ["https://m1.example:6991/", "http://10.0.0.2:6991"],
            "manager-ca-file": "/etc/contrail/ca.pem",
            "vrouter-ca-file": "/etc/contrail/vrouter-ca.pem", "vrouter-port": 9091}}))
        .unwrap();
        assert_eq!(
            c.managers,
            ["https://m1.example:6991", "http://10.0.0.2:6991"]
        );
        assert_eq!(c.manager_ca_file, "/etc/contrail/ca.pem");
        // A CA file for the agent means the agent speaks TLS.
        assert_eq!(c.agent_base(), "https://127.0.0.1:9091/");
        let c = parse(json!({"contrail": {"vrouter-tls": true}})).unwrap();
        assert_eq!(c.agent_base(), "https://127.0.0.1:9091/");
        assert!(
            c.manager_tls().is_ok() && c.agent_tls().is_ok(),
            "built-in roots"
        );
        // Files are read when the clients are built: a missing one is error 7 naming the key.
        let e = c.clone();
        let e = ContrailConfig {
            manager_ca_file: "/nonexistent/ca.pem".into(),
            ..e
        }
        .manager_tls()
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("contrail.manager-ca-file"), "{}", e.msg);
        let e = parse(json!({"contrail": {"managers": ["ftp://x:1"]}})).unwrap_err();
        assert!(e.msg.contains("http(s)://"), "{}", e.msg);
    }

    #[test]
    fn fractional_poll_timeout_and_errors_name_the_key() {
        let c = parse(json!({"contrail": {"poll-timeout": 0.2}})).unwrap();
        assert_eq!(c.poll_timeout, Duration::from_millis(200));
        let e = parse(json!({"contrail": {"mesos-port": "x"}})).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("contrail.mesos-port"), "{}", e.msg);
        let e = parse(json!({"contrail": {"mode": "swarm"}})).unwrap_err();
        assert!(e.msg.contains("contrail.mode"), "{}", e.msg);
        let e = parse(json!({"contrail": {"mtu": 10}})).unwrap_err();
        assert!(e.msg.contains("contrail.mtu"), "{}", e.msg);
        let e = parse(json!({"contrail": {"poll-retries": 1.5}})).unwrap_err();
        assert!(e.msg.contains("poll-retries"), "{}", e.msg);
    }

    #[test]
    fn unknown_keys_are_kept_and_nested_mode_needs_its_parent() {
        let s = Section::parse(
            &json!({"log-dir": "/x", "frobnicate": 1, "vif-type": "macvlan",
            "parent-interface": "eth1", "mesos-ip": null}),
        )
        .unwrap();
        assert_eq!(
            s.extra.keys().collect::<Vec<_>>(),
            ["log-dir", "frobnicate"]
        );
        // Contrail's known-but-unused keys are not reported as unknown.
        assert_eq!(s.unknown_keys().collect::<Vec<_>>(), ["frobnicate"]);
        let c = ContrailConfig::from_section(s).unwrap();
        assert!(c.managers.is_empty());
        assert!(c.nested());
        assert_eq!(c.parent_interface.as_deref(), Some("eth1"));
        c.check_supported().unwrap();
        ContrailConfig::default().check_supported().unwrap();
        for (sec, want) in [
            (
                json!({"vif-type": "macvlan"}),
                "contrail.parent-interface is required",
            ),
            (
                json!({"vif-type": "macvlan", "parent-interface": ""}),
                "contrail.parent-interface is required",
            ),
            (
                json!({"vif-type": "macvlan", "parent-interface": "a/b"}),
                "contrail.parent-interface \"a/b\"",
            ),
            (
                json!({"vif-type": "ipvlan"}),
                "contrail.vif-type \"ipvlan\"",
            ),
        ] {
            let c = ContrailConfig::from_section(Section::parse(&sec).unwrap()).unwrap();
            let e = c.check_supported().unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.contains(want), "{}", e.msg);
        }
        let e = parse(json!({"contrail": 5})).unwrap_err();
        assert_eq!(e.code, 7);
        let e = parse(json!({"contrail": {"vrouter-port": 0}})).unwrap_err();
        assert!(e.msg.contains("contrail.vrouter-port"), "{}", e.msg);
    }

    #[test]
    fn several_managers_then_mesos_ip() {
        let c = parse(
            json!({"contrail": {"managers": ["http://10.0.0.1:6991/", "http://10.0.0.2:6991"],
            "mesos-ip": "10.0.0.3", "mesos-port": 7000}}),
        )
        .unwrap();
        assert_eq!(
            c.managers,
            [
                "http://10.0.0.1:6991",
                "http://10.0.0.2:6991",
                "http://10.0.0.3:7000"
            ]
        );
        let c = parse(json!({"contrail": {"managers": ["http://10.0.0.1:6991"],
            "mesos-ip": "10.0.0.1", "mesos-port": "6991"}}))
        .unwrap();
        assert_eq!(c.managers, ["http://10.0.0.1:6991"]);
        for bad in [
            json!("http://a:1"),
            json!(["ftp://a:1"]),
            json!(["http://a:1/x"]),
            json!([1]),
            json!(["http://u@a:1"]),
        ] {
            let e = parse(json!({"contrail": {"managers": bad}})).unwrap_err();
            assert!(e.msg.contains("contrail.managers"), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let c = parse(json!({"contrail": {"vrouter-ip": "fd00::1"}})).unwrap();
        assert_eq!(c.agent_base(), "http://[fd00::1]:9091/");
    }
}

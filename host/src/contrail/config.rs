//! The `contrail` section of the network configuration, with Contrail's defaults where a key is
//! absent (shared/contracts/contrail.md §3.2). Numbers are accepted as JSON numbers or strings
//! (deployed configs have `"mesos-port": "6991"`, `"log-level": "4"`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::error::{Error, Result, code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kubernetes: VM name `<cluster>__<ns>__<pod>` from `CNI_ARGS`; no manager.
    K8s,
    /// Mesos: VM name = container id; registration with the manager when `mesos-ip` is set.
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
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    /// None when the config has no `mode`: decided per invocation (k8s when `CNI_ARGS` names a
    /// pod, Mesos otherwise).
    pub mode: Option<Mode>,
    pub mtu: u32,
    pub mesos_ip: Option<String>,
    pub mesos_port: u16,
    pub mesos_token: Option<String>,
    pub mesos_timeout: Duration,
    /// DEL frees the interface names at once and leaves the kernel's slow veth teardown to a
    /// detached child (`async-teardown`, default true).
    pub async_teardown: bool,
}

pub const DEFAULT_CONFIG_DIR: &str = "/var/lib/contrail/ports/vm";
pub const DEFAULT_MESOS_PORT: u16 = 6991;

impl Default for ContrailConfig {
    fn default() -> Self {
        ContrailConfig {
            vrouter_ip: "127.0.0.1".into(),
            vrouter_port: 9091,
            cluster_name: "k8s".into(),
            config_dir: DEFAULT_CONFIG_DIR.into(),
            poll_timeout: Duration::from_secs(3),
            poll_retries: 20,
            log_file: None,
            log_level: None,
            mode: None,
            mtu: 1500,
            mesos_ip: None,
            mesos_port: DEFAULT_MESOS_PORT,
            mesos_token: None,
            mesos_timeout: Duration::from_secs(30),
            async_teardown: true,
        }
    }
}

fn bad(key: &str, v: &Value, want: &str) -> Error {
    Error::new(
        code::INVALID_CONFIG,
        format!("contrail.{key}: expected {want}, got {v}"),
    )
}

fn string(key: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(key, v, "a string")),
    }
}

fn number(key: &str, v: &Value) -> Result<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| bad(key, v, "a non-negative number"))
}

fn integer<T: TryFrom<u64>>(key: &str, v: &Value, want: &str) -> Result<T> {
    let n = number(key, v)?;
    if n.fract() != 0.0 {
        return Err(bad(key, v, want));
    }
    T::try_from(n as u64).map_err(|_| bad(key, v, want))
}

impl ContrailConfig {
    /// Parses the `contrail` object of the whole network configuration (absent = all defaults).
    pub fn from_netconf(conf: &Value) -> Result<ContrailConfig> {
        let mut c = ContrailConfig::default();
        let Some(section) = conf.get("contrail") else {
            return Ok(c);
        };
        let obj = section.as_object().ok_or_else(|| {
            Error::new(
                code::INVALID_CONFIG,
                format!("contrail: expected an object, got {section}"),
            )
        })?;
        let mut token_file = None;
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "vrouter-ip" => c.vrouter_ip = string(k, v)?,
                "vrouter-port" => c.vrouter_port = integer(k, v, "a port number")?,
                "cluster-name" => c.cluster_name = string(k, v)?,
                "config-dir" => c.config_dir = string(k, v)?.into(),
                "poll-timeout" => c.poll_timeout = Duration::from_secs_f64(number(k, v)?),
                "poll-retries" => c.poll_retries = integer(k, v, "a count")?,
                "log-file" => c.log_file = Some(string(k, v)?),
                "log-level" => c.log_level = Some(string(k, v)?),
                "mode" => {
                    c.mode = Some(match string(k, v)?.as_str() {
                        "k8s" | "kubernetes" => Mode::K8s,
                        "mesos" => Mode::Mesos,
                        _ => return Err(bad(k, v, r#""mesos" or "k8s""#)),
                    })
                }
                "mtu" => {
                    c.mtu = integer(k, v, "an MTU")?;
                    if !(68..=65535).contains(&c.mtu) {
                        return Err(bad(k, v, "an MTU between 68 and 65535"));
                    }
                }
                "mesos-ip" => {
                    let s = string(k, v)?;
                    c.mesos_ip = (!s.is_empty()).then_some(s);
                }
                "mesos-port" => c.mesos_port = integer(k, v, "a port number")?,
                "mesos-token" => c.mesos_token = Some(string(k, v)?),
                "mesos-token-file" => token_file = Some(string(k, v)?),
                "mesos-timeout" => c.mesos_timeout = Duration::from_secs_f64(number(k, v)?),
                "async-teardown" => {
                    c.async_teardown = v.as_bool().ok_or_else(|| bad(k, v, "true or false"))?
                }
                // Contrail keys we accept and do not use (veth only; no meta-plugin detection).
                _ => {}
            }
        }
        if c.vrouter_port == 0 {
            return Err(bad("vrouter-port", &Value::from(0), "a port number"));
        }
        if c.mesos_token.is_none()
            && let Some(f) = token_file
        {
            let t = std::fs::read_to_string(&f).map_err(|e| {
                Error::new(
                    code::INVALID_CONFIG,
                    format!("contrail.mesos-token-file {f}: {e}"),
                )
            })?;
            c.mesos_token = Some(t.trim().to_owned());
        }
        Ok(c)
    }

    /// The whole time we wait for the agent: what Contrail's `poll-retries` polls spaced by
    /// `poll-timeout` would take.
    pub fn poll_budget(&self) -> Duration {
        self.poll_timeout * self.poll_retries.max(1)
    }

    pub fn agent_base(&self) -> String {
        format!("http://{}/", host_port(&self.vrouter_ip, self.vrouter_port))
    }

    pub fn manager_base(&self) -> Option<String> {
        self.mesos_ip
            .as_ref()
            .map(|ip| format!("http://{}", host_port(ip, self.mesos_port)))
    }
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
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_contrail() {
        let c = ContrailConfig::from_netconf(&json!({"name": "n", "type": "contrail-cni-plugin"}))
            .unwrap();
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
        let c = ContrailConfig::from_netconf(&json!({"contrail": {
            "config-dir": "/var/lib/contrail/ports/vm", "poll-timeout": 5, "poll-retries": 15,
            "log-dir": "/x", "log-file": "/x/o.log", "log-level": "4", "vrouter-port": 9091,
            "vrouter-ip": "10.0.0.5", "mode": "mesos", "cluster-name": "mesos",
            "mesos-ip": "10.0.0.1", "mesos-port": "6991", "mtu": "1400"}}))
        .unwrap();
        assert_eq!(c.mode, Some(Mode::Mesos));
        assert_eq!(c.mesos_port, 6991);
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.log_level.as_deref(), Some("4"));
        assert_eq!(c.manager_base().unwrap(), "http://10.0.0.1:6991");
        assert_eq!(c.agent_base(), "http://10.0.0.5:9091/");
    }

    #[test]
    fn fractional_poll_timeout_and_errors_name_the_key() {
        let c = ContrailConfig::from_netconf(&json!({"contrail": {"poll-timeout": 0.2}})).unwrap();
        assert_eq!(c.poll_timeout, Duration::from_millis(200));
        let e =
            ContrailConfig::from_netconf(&json!({"contrail": {"mesos-port": "x"}})).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("contrail.mesos-port"), "{}", e.msg);
        let e = ContrailConfig::from_netconf(&json!({"contrail": {"mode": "swarm"}})).unwrap_err();
        assert!(e.msg.contains("contrail.mode"), "{}", e.msg);
        let e = ContrailConfig::from_netconf(&json!({"contrail": {"mtu": 10}})).unwrap_err();
        assert!(e.msg.contains("contrail.mtu"), "{}", e.msg);
        let e =
            ContrailConfig::from_netconf(&json!({"contrail": {"poll-retries": 1.5}})).unwrap_err();
        assert!(e.msg.contains("poll-retries"), "{}", e.msg);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let c =
            ContrailConfig::from_netconf(&json!({"contrail": {"vrouter-ip": "fd00::1"}})).unwrap();
        assert_eq!(c.agent_base(), "http://[fd00::1]:9091/");
    }
}

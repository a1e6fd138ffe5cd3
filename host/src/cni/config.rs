//! The network configuration read from stdin.
//!
//! [`NetConf`] keeps the raw JSON (and the exact text) so unknown keys survive untouched, as
//! the spec requires ("Runtimes must preserve unknown fields"); typed readers give views of
//! what this host uses: `name`, `type`, `cniVersion`, what Mesos injects under
//! `args."org.apache.mesos".network_info`, `args.cni`, `runtimeConfig`, `prevResult`, the
//! `delegate` block, the `wasm` section and the log settings.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{CniError, DECODE_FAILURE, INVALID_CONFIG};
use super::result::CniResult;
use super::version::CniVersion;

pub use contrail_mesos_api::Label;

/// Mesos' `NetworkInfo` as injected (protobuf JSON, snake_case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `labels: {"labels": [...]}`; Marathon sends `"labels": {}` when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpAddress {
    /// "IPv4" (the protobuf default, so it is present even for an empty entry) or "IPv6".
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
}

/// The `wasm` section (all keys optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmSettings {
    /// `plugin-dir`; default: `contrail-cni-wasm/` beside the executable.
    pub plugin_dir: Option<PathBuf>,
    /// `translator`: file of the label translator (absolute, or relative to the plugin dir).
    pub translator: Option<PathBuf>,
    /// `ipam`: file of the IPAM plugin.
    pub ipam: Option<PathBuf>,
    /// `cache-dir`: compiled artifacts.
    pub cache_dir: Option<PathBuf>,
    /// `memory-limit-mb`: cap of each plugin linear memory.
    pub memory_limit_mb: u64,
    /// `timeout-ms`: wall time per plugin call.
    pub timeout_ms: u64,
    /// `delegate-translator` / `contrail-translator`: the file per translator world (default:
    /// `translator`).
    pub delegate_translator: Option<PathBuf>,
    pub contrail_translator: Option<PathBuf>,
    /// `plugin-config`: per world name, the JSON a plugin receives as `plugin-config`.
    pub plugin_config: Option<Map<String, Value>>,
    /// `compile-timeout-ms`: wall time to compile a plugin not in the cache.
    pub compile_timeout_ms: u64,
    /// `allow-insecure-permissions`: load a plugin file (or dir) a non-root user can write.
    pub allow_insecure_permissions: bool,
    /// Bounds on an answer: `max-ips`, `max-routes`, `max-nameservers`, `max-answer-bytes`.
    pub max_ips: u64,
    pub max_routes: u64,
    pub max_nameservers: u64,
    pub max_answer_bytes: u64,
}

pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 32;
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_COMPILE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_IPS: u64 = 16;
pub const DEFAULT_MAX_ROUTES: u64 = 64;
pub const DEFAULT_MAX_NAMESERVERS: u64 = 8;
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 << 10;
/// Upper bounds, so a typo cannot disable the sandbox's limits.
const MAX_MEMORY_LIMIT_MB: u64 = 4096;
const MAX_TIMEOUT_MS: u64 = 600_000;

impl Default for WasmSettings {
    fn default() -> Self {
        WasmSettings {
            plugin_dir: None,
            translator: None,
            ipam: None,
            cache_dir: None,
            memory_limit_mb: DEFAULT_MEMORY_LIMIT_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            delegate_translator: None,
            contrail_translator: None,
            plugin_config: None,
            compile_timeout_ms: DEFAULT_COMPILE_TIMEOUT_MS,
            allow_insecure_permissions: false,
            max_ips: DEFAULT_MAX_IPS,
            max_routes: DEFAULT_MAX_ROUTES,
            max_nameservers: DEFAULT_MAX_NAMESERVERS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }
}

/// Where and how much to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub file: Option<PathBuf>,
    pub level: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    raw: Value,
    text: String,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

fn opt_str<'a>(
    o: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<&'a str>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(invalid(format!("{what}{key} must be a string, got {v}"))),
    }
}

impl NetConf {
    /// Parses stdin. Not JSON or not an object: code 6; `name`/`type` missing or not strings:
    /// code 7. The version is checked separately ([`NetConf::version`]) so VERSION can answer
    /// for any config.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            CniError::new(DECODE_FAILURE, format!("network config is not UTF-8: {e}"))
        })?;
        let raw: Value = serde_json::from_str(text).map_err(|e| {
            CniError::new(DECODE_FAILURE, format!("error reading network config: {e}"))
        })?;
        if !raw.is_object() {
            return Err(CniError::new(
                DECODE_FAILURE,
                "network config is not a JSON object",
            ));
        }
        let conf = NetConf {
            raw,
            text: text.to_owned(),
        };
        conf.version_str()?;
        Ok(conf)
    }

    /// Builds a config from a value (tests, synthesised delegate configs).
    pub fn from_value(raw: Value) -> Result<Self, CniError> {
        let text = raw.to_string();
        Self::parse(text.as_bytes())
    }

    /// Checks the keys every plugin invocation needs: `name` and `type`.
    pub fn validate(&self) -> Result<(), CniError> {
        match self.name()? {
            Some(n) if !n.is_empty() => {}
            _ => return Err(invalid("network config: missing \"name\"")),
        }
        match self.type_()? {
            Some(t) if !t.is_empty() => Ok(()),
            _ => Err(invalid("network config: missing \"type\"")),
        }
    }

    pub fn raw(&self) -> &Value {
        &self.raw
    }

    fn obj(&self) -> &Map<String, Value> {
        self.raw.as_object().expect("checked in parse")
    }

    /// The config exactly as the runtime passed it.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn name(&self) -> Result<Option<&str>, CniError> {
        opt_str(self.obj(), "name", "")
    }

    pub fn type_(&self) -> Result<Option<&str>, CniError> {
        opt_str(self.obj(), "type", "")
    }

    fn version_str(&self) -> Result<Option<&str>, CniError> {
        opt_str(self.obj(), "cniVersion", "")
    }

    /// `cniVersion` as written ("0.1.0" when absent).
    pub fn cni_version(&self) -> &str {
        self.version_str()
            .ok()
            .flatten()
            .unwrap_or(super::version::DEFAULT_VERSION)
    }

    /// The version, or error 1 when unsupported.
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::from_config(self.version_str()?)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.obj().get(key)
    }

    /// `args."org.apache.mesos".network_info`; `None` when Mesos did not inject it (any other
    /// runtime).
    pub fn mesos_network_info(&self) -> Result<Option<NetworkInfo>, CniError> {
        let Some(ni) = self
            .raw
            .pointer("/args/org.apache.mesos/network_info")
            .filter(|v| !v.is_null())
        else {
            return Ok(None);
        };
        NetworkInfo::deserialize(ni).map(Some).map_err(|e| {
            invalid(format!(
                "args.\"org.apache.mesos\".network_info is malformed: {e}"
            ))
        })
    }

    /// The labels Mesos passed (empty when none).
    pub fn mesos_labels(&self) -> Result<Vec<Label>, CniError> {
        Ok(self
            .mesos_network_info()?
            .map(|n| n.labels.labels)
            .unwrap_or_default())
    }

    /// `args.cni` (CONVENTIONS.md: `ips`, `mac`, `labels`...).
    pub fn cni_args(&self) -> Option<&Value> {
        self.raw.pointer("/args/cni").filter(|v| !v.is_null())
    }

    pub fn runtime_config(&self) -> Option<&Value> {
        self.get("runtimeConfig").filter(|v| !v.is_null())
    }

    /// `prevResult`, decoded whatever its version.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match self.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::decode(v)
                .map(|(r, _)| Some(r))
                .map_err(|e| CniError::new(DECODE_FAILURE, format!("prevResult: {}", e.msg))),
        }
    }

    /// The `delegate` block (the Mesos delegate path).
    pub fn delegate(&self) -> Option<&Value> {
        self.get("delegate").filter(|v| !v.is_null())
    }

    /// `ignoreUnknown`: unknown `CNI_ARGS` keys in labels are ignored instead of refused.
    pub fn ignore_unknown(&self) -> Result<bool, CniError> {
        match self.get("ignoreUnknown") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(invalid(format!("ignoreUnknown must be a boolean, got {v}"))),
        }
    }

    /// The `wasm` section with defaults.
    pub fn wasm(&self) -> Result<WasmSettings, CniError> {
        let mut s = WasmSettings::default();
        let o = match self.get("wasm") {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Object(o)) => o,
            Some(v) => return Err(invalid(format!("wasm must be an object, got {v}"))),
        };
        let path = |key: &str| -> Result<Option<PathBuf>, CniError> {
            Ok(opt_str(o, key, "wasm.")?
                .filter(|p| !p.is_empty())
                .map(PathBuf::from))
        };
        s.plugin_dir = path("plugin-dir")?;
        s.translator = path("translator")?;
        s.ipam = path("ipam")?;
        s.cache_dir = path("cache-dir")?;
        let num = |key: &str, default: u64, max: u64| -> Result<u64, CniError> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 && n <= max => Ok(n),
                    _ => Err(invalid(format!(
                        "wasm.{key} must be an integer from 1 to {max}, got {v}"
                    ))),
                },
            }
        };
        s.memory_limit_mb = num(
            "memory-limit-mb",
            DEFAULT_MEMORY_LIMIT_MB,
            MAX_MEMORY_LIMIT_MB,
        )?;
        s.timeout_ms = num("timeout-ms", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
        s.delegate_translator = path("delegate-translator")?;
        s.contrail_translator = path("contrail-translator")?;
        s.compile_timeout_ms = num(
            "compile-timeout-ms",
            DEFAULT_COMPILE_TIMEOUT_MS,
            MAX_TIMEOUT_MS,
        )?;
        s.max_ips = num("max-ips", DEFAULT_MAX_IPS, 1024)?;
        s.max_routes = num("max-routes", DEFAULT_MAX_ROUTES, 4096)?;
        s.max_nameservers = num("max-nameservers", DEFAULT_MAX_NAMESERVERS, 64)?;
        s.max_answer_bytes = num("max-answer-bytes", DEFAULT_MAX_ANSWER_BYTES, 16 << 20)?;
        s.allow_insecure_permissions = match o.get("allow-insecure-permissions") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(invalid(format!(
                    "wasm.allow-insecure-permissions must be a boolean, got {v}"
                )));
            }
        };
        s.plugin_config = match o.get("plugin-config") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(v) => {
                return Err(invalid(format!(
                    "wasm.plugin-config must be an object (world name -> config), got {v}"
                )));
            }
        };
        Ok(s)
    }

    /// Log file and level: top-level `log-file`/`log-level`, else the Contrail section's
    /// `contrail.log-file`/`contrail.log-level` (the existing Contrail CNI's keys).
    /// Never fails: a bad log setting must not break networking.
    pub fn log_settings(&self) -> LogSettings {
        let pick = |key: &str| -> Option<String> {
            self.get(key)
                .and_then(Value::as_str)
                .or_else(|| {
                    self.raw
                        .pointer(&format!("/contrail/{key}"))
                        .and_then(Value::as_str)
                })
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        LogSettings {
            file: pick("log-file").map(PathBuf::from),
            level: pick("log-level"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// contract cni-mesos-marathon §2.4, verbatim (Mesos escapes `/`).
    const CAPTURED: &str = r#"{"args":{"org.apache.mesos":{"network_info":{"ip_addresses":[{"protocol":"IPv4"}],"labels":{},"name":"contrail-cni-plugin"}}},
 "cniVersion":"0.2.0",
 "contrail":{"cluster-name":"b2s28","config-dir":"\/var\/lib\/contrail\/ports\/vm","log-file":"\/var\/log\/contrail\/cni\/opencontrail.log","log-level":"debug","mesos-ip":"localhost","mesos-port":"6991","mode":"mesos","poll-retries":5,"poll-timeout":15,"vrouter-ip":"10.84.22.28","vrouter-port":9091},
 "name":"contrail-cni-plugin","type":"contrail-cni-plugin"}"#;

    /// seed 003's network config with Mesos' injection, as in its README.
    const SEED3: &str = r#"{
  "name" : "test-delegate",
  "type" : "mesos",
  "MyAwesomeFlag": false,
  "AnotherAwesomeArg": "qwerqwer",
  "delegate": {
      "type": "macvtap",
      "master": "eth1",
      "hostrouteif": "macvtap0",
      "ipam": {
        "type": "host-local",
        "subnet": "192.168.122.0/24",
        "rangeStart": "192.168.122.171",
        "rangeEnd": "192.168.122.179",
        "routes": [ { "dst": "192.168.122.22/32", "gw": "0.0.0.0" },
                { "dst": "192.168.10.153/32", "gw": "0.0.0.0" }]
      },
      "dns": { "nameservers": ["192.168.10.10"] },
      "args": {
          "test": { "rs": ["192.168.10.10"] },
          "cni": { "test": [ "192.168.122.172" ] }
      }
  },
  "args": {
    "org.apache.mesos": {
      "network_info": {
        "ip_addresses": [ { "protocol": "IPv4" } ],
        "labels": { "labels": [ { "key": "CNI_ARGS", "value": "IP=192.168.122.176" } ] },
        "name": "test-delegate",
        "port_mappings": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"}]
      }
    }
  }
}"#;

    #[test]
    fn captured_mesos_stdin() {
        let c = NetConf::parse(CAPTURED.as_bytes()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.name().unwrap(), Some("contrail-cni-plugin"));
        assert_eq!(c.type_().unwrap(), Some("contrail-cni-plugin"));
        assert_eq!(c.version().unwrap(), CniVersion::V0_2_0);
        let ni = c.mesos_network_info().unwrap().unwrap();
        assert_eq!(ni.name.as_deref(), Some("contrail-cni-plugin"));
        assert!(ni.labels.labels.is_empty());
        assert_eq!(
            ni.ip_addresses,
            vec![IpAddress {
                protocol: Some("IPv4".into()),
                ip_address: None
            }]
        );
        assert!(ni.port_mappings.is_empty());
        // Unknown keys are kept, and the `\/` escapes decode to `/`.
        assert_eq!(
            c.raw()["contrail"]["config-dir"],
            "/var/lib/contrail/ports/vm"
        );
        assert_eq!(c.text(), CAPTURED);
        let log = c.log_settings();
        assert_eq!(
            log.file,
            Some(PathBuf::from("/var/log/contrail/cni/opencontrail.log"))
        );
        assert_eq!(log.level.as_deref(), Some("debug"));
        assert_eq!(c.wasm().unwrap(), WasmSettings::default());
        assert!(c.delegate().is_none());
    }

    #[test]
    fn seed_003_config() {
        let c = NetConf::parse(SEED3.as_bytes()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.type_().unwrap(), Some("mesos"));
        assert_eq!(c.cni_version(), "0.1.0");
        assert_eq!(c.version().unwrap(), CniVersion::V0_1_0);
        assert_eq!(
            c.mesos_labels().unwrap(),
            vec![Label {
                key: "CNI_ARGS".into(),
                value: "IP=192.168.122.176".into()
            }]
        );
        let ni = c.mesos_network_info().unwrap().unwrap();
        assert_eq!(
            ni.port_mappings,
            vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Some("tcp".into())
            }]
        );
        assert_eq!(c.delegate().unwrap()["type"], "macvtap");
        assert_eq!(c.get("MyAwesomeFlag"), Some(&Value::Bool(false)));
        assert!(
            c.cni_args().is_none(),
            "args.cni is the delegate's, not ours"
        );
        assert!(!c.ignore_unknown().unwrap());
        assert_eq!(c.log_settings(), LogSettings::default());
    }

    #[test]
    fn typed_views() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t",
            "args":{"cni":{"ips":["10.0.0.2/24"]}},
            "runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]},
            "prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]},
            "ignoreUnknown":true,
            "log-file":"/tmp/x.log",
            "wasm":{"plugin-dir":"/opt/p","translator":"t.wasm","ipam":"/abs/i.wasm","cache-dir":"/tmp/c","memory-limit-mb":8,"timeout-ms":250}}"#).unwrap();
        assert_eq!(c.cni_args().unwrap()["ips"][0], "10.0.0.2/24");
        assert_eq!(
            c.runtime_config().unwrap()["portMappings"][0]["hostPort"],
            80
        );
        assert_eq!(
            c.prev_result().unwrap().unwrap().ips[0].address.to_string(),
            "10.0.0.2/24"
        );
        assert!(c.ignore_unknown().unwrap());
        assert!(c.mesos_network_info().unwrap().is_none());
        let w = c.wasm().unwrap();
        assert_eq!(w.plugin_dir, Some(PathBuf::from("/opt/p")));
        assert_eq!(w.translator, Some(PathBuf::from("t.wasm")));
        assert_eq!(w.ipam, Some(PathBuf::from("/abs/i.wasm")));
        assert_eq!(w.cache_dir, Some(PathBuf::from("/tmp/c")));
        assert_eq!((w.memory_limit_mb, w.timeout_ms), (8, 250));
        assert_eq!(c.log_settings().file, Some(PathBuf::from("/tmp/x.log")));
    }

    #[test]
    fn bad_configs() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(b"[1]").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(br#"{"cniVersion":1}"#).unwrap_err().code, 7);
        let c = NetConf::parse(br#"{"type":"mesos"}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().code, 7);
        let c = NetConf::parse(br#"{"name":"n","type":"mesos","cniVersion":"9.9.9"}"#).unwrap();
        assert_eq!(c.version().unwrap_err().code, 1);
        for w in [
            r#"{"memory-limit-mb":0}"#,
            r#"{"timeout-ms":"fast"}"#,
            r#"{"plugin-dir":3}"#,
            r#"[]"#,
        ] {
            let c = NetConf::parse(format!(r#"{{"name":"n","type":"t","wasm":{w}}}"#).as_bytes())
                .unwrap();
            let e = c.wasm().unwrap_err();
            assert_eq!(e.code, 7, "{w}: {e:?}");
        }
        let c = NetConf::parse(br#"{"name":"n","type":"t","args":{"org.apache.mesos":{"network_info":{"labels":{"labels":[{"key":1}]}}}}}"#).unwrap();
        assert_eq!(c.mesos_network_info().unwrap_err().code, 7);
        let c = NetConf::parse(br#"{"name":"n","type":"t","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"x"}]}}"#).unwrap();
        assert_eq!(c.prev_result().unwrap_err().code, 6);
    }
}

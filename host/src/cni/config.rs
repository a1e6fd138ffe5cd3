//! The network configuration read from stdin.
//!
//! [`NetConf`] keeps the JSON object (and the exact text) so unknown keys survive untouched, as
//! CNI SPEC.md requires of plugins that pass a config on, and decodes once what this host uses:
//! `name`, `type`, `cniVersion`, what Mesos injects under `args."org.apache.mesos".network_info`
//! (Mesos docs, cni.md), `ignoreUnknown`, the `wasm` section and the log settings. `prevResult`
//! is decoded by the one command that reads it (CHECK).

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
    /// `log-max-bytes`: the log file is rotated before it would grow past this.
    pub max_bytes: Option<u64>,
    /// `log-keep`: how many rotated files (`<file>.1` ...) are kept.
    pub keep: Option<u32>,
}

/// A count in a log setting: a JSON integer or a string of one; anything else is None (the
/// default applies, `config check` warns).
pub fn log_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A section decoded with the rest, whose error is kept for the path that reads it (a DEL must
/// not fail over a label block only ADD reads): (where in the section, what was wrong).
#[derive(Debug, Clone, PartialEq)]
struct Deferred<T>(Result<T, (String, String)>);

impl<T: Default> Default for Deferred<T> {
    fn default() -> Self {
        Deferred(Ok(T::default()))
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Deferred<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        // Every deferred section is an object or a scalar; serde would also read an array
        // into a struct, field by position.
        if v.is_array() {
            return Ok(Deferred(Err((
                ".".into(),
                format!("expected an object, got {v}"),
            ))));
        }
        Ok(Deferred(serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })))
    }
}

impl<T: Clone> Deferred<T> {
    /// The value, or error 7 naming `section` and the key inside it.
    fn get(&self, section: &str) -> Result<T, CniError> {
        self.0.clone().map_err(|(path, msg)| {
            let at = if path == "." {
                section.to_owned()
            } else {
                format!("{section}.{path}")
            };
            invalid(format!("{at}: {msg}"))
        })
    }
}

/// `args` (CNI CONVENTIONS.md): only Mesos' part is read here; the rest (`args.cni`, ...) is
/// the delegate's and passes through in the raw object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Args {
    #[serde(rename = "org.apache.mesos", default)]
    mesos: Option<MesosArgs>,
    #[serde(flatten)]
    _other: Map<String, Value>,
}

/// What Mesos injects (Mesos docs, cni.md, "Passing network labels and port-mapping information
/// to CNI plugins").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct MesosArgs {
    #[serde(default)]
    network_info: Option<NetworkInfo>,
    #[serde(flatten)]
    _other: Map<String, Value>,
}

/// The `wasm` section as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct WasmSection {
    plugin_dir: Option<String>,
    translator: Option<String>,
    ipam: Option<String>,
    cache_dir: Option<String>,
    memory_limit_mb: Option<u64>,
    timeout_ms: Option<u64>,
    delegate_translator: Option<String>,
    contrail_translator: Option<String>,
    compile_timeout_ms: Option<u64>,
    max_ips: Option<u64>,
    max_routes: Option<u64>,
    max_nameservers: Option<u64>,
    max_answer_bytes: Option<u64>,
    allow_insecure_permissions: Option<bool>,
    /// World name -> the JSON that world's plugin receives as `plugin-config`.
    plugin_config: Option<Map<String, Value>>,
    /// Unknown keys: ignored, and logged when the section is used.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl WasmSection {
    /// Unknown keys are not logged here: `crate::config_check` reports them (on every ADD and
    /// in `config check`).
    fn settings(self) -> Result<WasmSettings, CniError> {
        let path = |p: Option<String>| p.filter(|p| !p.is_empty()).map(PathBuf::from);
        let bounded = |key: &str, v: Option<u64>, default: u64, max: u64| match v {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(invalid(format!(
                "wasm.{key} must be an integer from 1 to {max}, got {n}"
            ))),
        };
        Ok(WasmSettings {
            plugin_dir: path(self.plugin_dir),
            translator: path(self.translator),
            ipam: path(self.ipam),
            cache_dir: path(self.cache_dir),
            memory_limit_mb: bounded(
                "memory-limit-mb",
                self.memory_limit_mb,
                DEFAULT_MEMORY_LIMIT_MB,
                MAX_MEMORY_LIMIT_MB,
            )?,
            timeout_ms: bounded(
                "timeout-ms",
                self.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            delegate_translator: path(self.delegate_translator),
            contrail_translator: path(self.contrail_translator),
            compile_timeout_ms: bounded(
                "compile-timeout-ms",
                self.compile_timeout_ms,
                DEFAULT_COMPILE_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            max_ips: bounded("max-ips", self.max_ips, DEFAULT_MAX_IPS, 1024)?,
            max_routes: bounded("max-routes", self.max_routes, DEFAULT_MAX_ROUTES, 4096)?,
            max_nameservers: bounded(
                "max-nameservers",
                self.max_nameservers,
                DEFAULT_MAX_NAMESERVERS,
                64,
            )?,
            max_answer_bytes: bounded(
                "max-answer-bytes",
                self.max_answer_bytes,
                DEFAULT_MAX_ANSWER_BYTES,
                16 << 20,
            )?,
            allow_insecure_permissions: self.allow_insecure_permissions.unwrap_or(false),
            plugin_config: self.plugin_config,
        })
    }
}

/// The network configuration's keys, as this host reads them, decoded once by serde; every other
/// key lands in `extra`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Fields {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default)]
    args: Deferred<Option<Args>>,
    #[serde(rename = "ignoreUnknown", default)]
    ignore_unknown: Deferred<Option<bool>>,
    #[serde(default)]
    wasm: Deferred<Option<WasmSection>>,
    /// Never fatal: a bad log setting must not break networking.
    #[serde(rename = "log-file", default)]
    log_file: Option<Value>,
    #[serde(rename = "log-level", default)]
    log_level: Option<Value>,
    /// Everything else (`delegate`, `prevResult`, `contrail`, a runtime's own keys, ...).
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The network configuration: the exact text (handed to plugins), the JSON object (unknown keys
/// preserved as the spec requires, and passed on to delegates), and what this host reads of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    raw: Value,
    text: String,
    fields: Fields,
    wasm: Result<WasmSettings, CniError>,
    /// Keys of the `wasm` section this host does not know (ignored).
    wasm_unknown: Vec<String>,
    log: LogSettings,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`: the network name's grammar (CNI SPEC.md, "Configuration
/// format": `name` "must be unique across all network configurations on a host, and must be
/// usable as a directory name"; libcni enforces this pattern).
pub fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Top-level `log-file`/`log-level`, else the Contrail section's (the existing Contrail CNI's
/// keys). Values that are not strings are ignored.
fn log_settings(fields: &Fields) -> LogSettings {
    let contrail = fields.extra.get("contrail");
    let pick = |top: Option<&Value>, key: &str| -> Option<String> {
        top.and_then(Value::as_str)
            .or_else(|| contrail.and_then(|c| c.get(key)).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let count = |key: &str| -> Option<u64> {
        fields
            .extra
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| contrail.and_then(|c| c.get(key)))
            .and_then(log_count)
    };
    LogSettings {
        file: pick(fields.log_file.as_ref(), "log-file").map(PathBuf::from),
        level: pick(fields.log_level.as_ref(), "log-level"),
        max_bytes: count("log-max-bytes"),
        keep: count("log-keep").map(|k| k.min(u32::MAX as u64) as u32),
    }
}

impl NetConf {
    /// Parses stdin. Not JSON or not an object: code 6; `cniVersion`, `name` or `type` not
    /// strings: code 7. The version is checked separately ([`NetConf::version`]) so VERSION can
    /// answer for any config.
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
        // Typed once; only a config that fails is walked again to name the failing path
        // (the path-tracking deserializer costs more than the plain one on every call).
        let mut fields = match Fields::deserialize(&raw) {
            Ok(f) => f,
            Err(plain) => {
                return Err(match serde_path_to_error::deserialize::<_, Fields>(&raw) {
                    Err(e) => {
                        let path = e.path().to_string();
                        invalid(format!("network config: {path}: {}", e.into_inner()))
                    }
                    Ok(_) => invalid(format!("network config: {plain}")),
                });
            }
        };
        // libcni reads an empty `cniVersion` as absent: 0.1.0.
        fields.cni_version = fields.cni_version.filter(|v| !v.is_empty());
        let wasm_unknown = match &fields.wasm.0 {
            Ok(Some(w)) => w.extra.keys().cloned().collect(),
            _ => vec![],
        };
        let wasm = fields
            .wasm
            .get("wasm")
            .and_then(|w| w.unwrap_or_default().settings());
        let log = log_settings(&fields);
        Ok(NetConf {
            text: text.to_owned(),
            raw,
            fields,
            wasm,
            wasm_unknown,
            log,
        })
    }

    /// Builds a config from a value (tests, synthesised delegate configs).
    pub fn from_value(raw: Value) -> Result<Self, CniError> {
        let text = raw.to_string();
        Self::parse(text.as_bytes())
    }

    /// Checks the keys every plugin invocation needs: `name` (with the spec's grammar) and
    /// `type`.
    pub fn validate(&self) -> Result<(), CniError> {
        match self.name() {
            Some(n) if !n.is_empty() => {
                if !valid_network_name(n) {
                    return Err(invalid(format!(
                        "invalid network name {n:?}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
                    )));
                }
            }
            _ => return Err(invalid("network config: missing \"name\"")),
        }
        match self.type_() {
            Some(t) if !t.is_empty() => Ok(()),
            _ => Err(invalid("network config: missing \"type\"")),
        }
    }

    /// The config exactly as the runtime passed it.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn name(&self) -> Option<&str> {
        self.fields.name.as_deref()
    }

    pub fn type_(&self) -> Option<&str> {
        self.fields.type_.as_deref()
    }

    /// `cniVersion` as written; absent is 0.1.0 (libcni's reading of a config without one).
    pub fn cni_version(&self) -> &str {
        self.fields
            .cni_version
            .as_deref()
            .unwrap_or(super::version::DEFAULT_VERSION)
    }

    /// The version, or error 1 when unsupported.
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::from_config(self.fields.cni_version.as_deref())
    }

    /// The whole config as JSON (unknown keys included).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Any top-level key, as written (unknown keys included).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// `args."org.apache.mesos".network_info`; `None` when Mesos did not inject it (any other
    /// runtime). An `args` or `args."org.apache.mesos"` that is not an object is error 7: Mesos
    /// always injects an object, so anything else is a broken config, not another runtime.
    pub fn mesos_network_info(&self) -> Result<Option<NetworkInfo>, CniError> {
        Ok(self
            .fields
            .args
            .get("args")?
            .and_then(|a| a.mesos)
            .and_then(|m| m.network_info))
    }

    /// The labels Mesos passed (empty when none).
    pub fn mesos_labels(&self) -> Result<Vec<Label>, CniError> {
        Ok(self
            .mesos_network_info()?
            .map(|n| n.labels.labels)
            .unwrap_or_default())
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
        Ok(self
            .fields
            .ignore_unknown
            .get("ignoreUnknown")?
            .unwrap_or(false))
    }

    /// The `wasm` section with defaults.
    pub fn wasm(&self) -> Result<WasmSettings, CniError> {
        self.wasm.clone()
    }

    /// Keys of the `wasm` section this host does not know (they are ignored).
    pub fn wasm_unknown_keys(&self) -> &[String] {
        &self.wasm_unknown
    }

    /// Log file and level.
    pub fn log_settings(&self) -> LogSettings {
        self.log.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stdin Mesos' `network/cni` isolator passed to Contrail's plugin on a DC/OS agent,
    /// verbatim (Mesos escapes `/`).
    const CAPTURED: &str = r#"{"args":{"org.apache.mesos":{"network_info":{"ip_addresses":[{"protocol":"IPv4"}],"labels":{},"name":"contrail-cni-plugin"}}},
 "cniVersion":"0.2.0",
 "contrail":{"cluster-name":"b2s28","config-dir":"\/var\/lib\/contrail\/ports\/vm","log-file":"\/var\/log\/contrail\/cni\/opencontrail.log","log-level":"debug","mesos-ip":"localhost","mesos-port":"6991","mode":"mesos","poll-retries":5,"poll-timeout":15,"vrouter-ip":"10.84.22.28","vrouter-port":9091},
 "name":"contrail-cni-plugin","type":"contrail-cni-plugin"}"#;

    /// A Mesos delegate network config (macvtap + host-local) with Mesos' injection.
    const DELEGATE: &str = r#"{
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
        assert_eq!(c.name(), Some("contrail-cni-plugin"));
        assert_eq!(c.type_(), Some("contrail-cni-plugin"));
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
            c.get("contrail").unwrap()["config-dir"],
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
    fn log_caps_top_level_or_contrail_section() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","log-max-bytes":"2048",
                 "contrail":{"log-keep":5,"log-max-bytes":1}}"#,
        )
        .unwrap();
        let l = c.log_settings();
        assert_eq!((l.max_bytes, l.keep), (Some(2048), Some(5)));
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t","log-keep":-1}"#)
            .unwrap();
        assert_eq!(c.log_settings().keep, None);
    }

    #[test]
    fn delegate_config() {
        let c = NetConf::parse(DELEGATE.as_bytes()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.type_(), Some("mesos"));
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
            c.get("args").and_then(|a| a.get("cni")).is_none(),
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
        assert_eq!(c.get("args").unwrap()["cni"]["ips"][0], "10.0.0.2/24");
        assert_eq!(
            c.get("runtimeConfig").unwrap()["portMappings"][0]["hostPort"],
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
        let e = NetConf::parse(br#"{"name":"n","type":"t","wasm":{"timeout-ms":"fast"}}"#)
            .unwrap()
            .wasm()
            .unwrap_err();
        assert!(
            e.msg.starts_with("wasm.timeout-ms: invalid type"),
            "{}",
            e.msg
        );
        let e = NetConf::parse(br#"{"name":"n","type":"t","args":{"org.apache.mesos":5}}"#)
            .unwrap()
            .mesos_labels()
            .unwrap_err();
        assert!(
            e.msg.starts_with("args.org.apache.mesos: invalid type"),
            "{}",
            e.msg
        );
        let c = NetConf::parse(br#"{"name":"n","type":"t","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"x"}]}}"#).unwrap();
        assert_eq!(c.prev_result().unwrap_err().code, 6);
    }

    #[test]
    fn an_empty_cni_version_is_0_1_0() {
        let c = NetConf::parse(br#"{"cniVersion":"","name":"n","type":"t"}"#).unwrap();
        assert_eq!(c.cni_version(), "0.1.0");
        assert_eq!(c.version().unwrap(), CniVersion::V0_1_0);
    }

    #[test]
    fn network_names_follow_the_spec_grammar() {
        for bad in [
            "a/b", "../x", "-net", ".net", "net work", "nét", "a:b", "_x",
        ] {
            let c = NetConf::from_value(serde_json::json!({"name": bad, "type": "mesos"})).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
            assert!(e.msg.contains("invalid network name"), "{bad}: {}", e.msg);
        }
        for good in ["contrail-cni-plugin", "net1", "A.b_c-9", "0"] {
            let c =
                NetConf::from_value(serde_json::json!({"name": good, "type": "mesos"})).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn mesos_args_that_are_not_objects_are_refused() {
        for args in [
            serde_json::json!(5),
            serde_json::json!({"org.apache.mesos": 5}),
            serde_json::json!({"org.apache.mesos": "x"}),
            serde_json::json!({"org.apache.mesos": []}),
        ] {
            let c =
                NetConf::from_value(serde_json::json!({"name": "n", "type": "t", "args": args}))
                    .unwrap();
            assert_eq!(c.mesos_labels().unwrap_err().code, 7, "{args}");
        }
        // Another runtime's args, or Mesos without network_info: not Mesos labels, no error.
        for args in [
            serde_json::json!({"cni": {"ips": []}}),
            serde_json::json!({"org.apache.mesos": {}}),
            serde_json::json!({"org.apache.mesos": null}),
        ] {
            let c =
                NetConf::from_value(serde_json::json!({"name": "n", "type": "t", "args": args}))
                    .unwrap();
            assert_eq!(c.mesos_labels().unwrap(), vec![], "{args}");
        }
    }
}

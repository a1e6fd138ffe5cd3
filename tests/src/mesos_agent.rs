//! A Mesos agent's `network/cni` isolator, reduced to what touches CNI, as Apache Mesos'
//! `src/slave/containerizer/mesos/isolators/network/cni/cni.cpp` and the Mesos CNI docs
//! (`docs/cni.md`) describe it:
//!
//! - network configs are every non-directory file in the config dir that parses with a `name` and
//!   a `type` found in the plugins dir; conflists are skipped;
//! - each named network of a container gets `eth0`, `eth1`, ... in order;
//! - the config is checkpointed to `<root>/<cid>/<network>/network.conf` with
//!   `args."org.apache.mesos".network_info` injected and that file is the plugin's stdin;
//! - ADD env is exactly `CNI_COMMAND, CNI_CONTAINERID, CNI_PATH, CNI_IFNAME, CNI_NETNS, PATH`, no
//!   `CNI_ARGS`; all networks of one container are attached in parallel;
//! - stdout is parsed as a 0.2.0 result: only `ip4`/`ip6`/`dns` are read, and the raw
//!   stdout is checkpointed to `<root>/<cid>/<network>/<ifname>/network.info`;
//! - DEL reuses the checkpointed config, has no `prevResult`, sets `CNI_NETNS` only while the
//!   namespace handle exists, and runs in parallel for all networks.
//!
//! [`OperatorApi`] stands in for the agent's operator API (`GET_CONTAINERS` only).
//!
//! The container's namespace is a named netns (`ip netns add`), standing in for the bind mount of
//! `/proc/<pid>/ns/net` that Mesos makes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value, json};

/// One network a container asks for: Marathon's `networks[]` entry after translation to a
/// Mesos `NetworkInfo`.
#[derive(Debug, Clone)]
pub struct NetworkRequest {
    pub name: String,
    pub labels: Vec<(String, String)>,
    /// `(host_port, container_port, protocol)`.
    pub port_mappings: Vec<(u16, u16, String)>,
    /// Apps get `ip_addresses: [{"protocol": "IPv4"}]`, pods get none (Marathon's
    /// TaskBuilder sets them for apps only).
    pub app_style_ip_addresses: bool,
}

impl NetworkRequest {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Self {
        NetworkRequest {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port_mappings: Vec::new(),
            app_style_ip_addresses: true,
        }
    }

    /// The JSON form of the `NetworkInfo` protobuf as Mesos' `JSON::protobuf` writes it:
    /// snake_case, labels nested twice, `{"protocol":"IPv4"}` for an empty IPAddress, no
    /// `port_mappings` key when there are none, and `"labels":{}` when there are no labels.
    pub fn network_info(&self) -> Value {
        let mut ni = Map::new();
        if self.app_style_ip_addresses {
            ni.insert("ip_addresses".into(), json!([{"protocol": "IPv4"}]));
        }
        let labels: Vec<Value> = self
            .labels
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        ni.insert(
            "labels".into(),
            if labels.is_empty() {
                json!({})
            } else {
                json!({ "labels": labels })
            },
        );
        ni.insert("name".into(), json!(self.name));
        if !self.port_mappings.is_empty() {
            let pm: Vec<Value> = self
                .port_mappings
                .iter()
                .map(|(h, c, p)| json!({"host_port": h, "container_port": c, "protocol": p}))
                .collect();
            ni.insert("port_mappings".into(), Value::Array(pm));
        }
        Value::Object(ni)
    }
}

/// What one network attachment produced.
#[derive(Debug, Clone)]
pub struct Attached {
    pub network: String,
    pub ifname: String,
    /// `ip4.ip` without its prefix, as Mesos records it in `ContainerStatus.network_infos`.
    pub ip4: Option<String>,
    pub ip6: Option<String>,
    /// The plugin's raw stdout (checkpointed as `network.info`).
    pub raw_result: String,
}

/// A launched container: its namespace and attachments.
#[derive(Debug)]
pub struct Container {
    pub container_id: String,
    pub netns_name: String,
    pub attached: Vec<Attached>,
}

impl Container {
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns_name)
    }

    /// Every address Mesos would report for the container, in network order.
    pub fn ips(&self) -> Vec<String> {
        self.attached
            .iter()
            .flat_map(|a| a.ip4.iter().chain(a.ip6.iter()).cloned())
            .collect()
    }
}

/// A failed CNI invocation, with what Mesos would log.
#[derive(Debug)]
pub struct CniFailure {
    pub network: String,
    pub command: &'static str,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CniFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the CNI plugin for network '{}' failed to {} (exit {:?}): stdout='{}' stderr='{}'",
            self.network,
            self.command,
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

impl std::error::Error for CniFailure {}

/// The agent.
#[derive(Debug, Clone)]
pub struct MesosAgent {
    /// `--network_cni_config_dir`.
    pub config_dir: PathBuf,
    /// `--network_cni_plugins_dir` (becomes `CNI_PATH`).
    pub plugins_dir: PathBuf,
    /// The isolator's root dir (`/var/run/mesos/isolators/network/cni` in production).
    pub root_dir: PathBuf,
    /// `PATH` given to plugins.
    pub path_env: String,
    /// Container namespaces are named `<prefix><container id start>`.
    pub netns_prefix: String,
}

impl MesosAgent {
    pub fn new(config_dir: &Path, plugins_dir: &Path, root_dir: &Path) -> Self {
        MesosAgent {
            config_dir: config_dir.to_owned(),
            plugins_dir: plugins_dir.to_owned(),
            root_dir: root_dir.to_owned(),
            path_env: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            netns_prefix: "mesos-".into(),
        }
    }

    /// Loads the network configs the way `loadNetworkConfigs` does: every non-directory file,
    /// any extension; files that do not parse, lack `name`/`type`, duplicate a name, or name a
    /// plugin missing from the plugins dir are skipped.
    pub fn network_configs(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let Ok(entries) = fs::read_dir(&self.config_dir) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                continue;
            }
            let Ok(text) = fs::read_to_string(&p) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let (Some(name), Some(ty)) = (v["name"].as_str(), v["type"].as_str()) else {
                continue;
            };
            if !self.plugins_dir.join(ty).exists() || out.contains_key(name) {
                continue;
            }
            out.insert(name.to_owned(), v);
        }
        out
    }

    fn container_dir(&self, cid: &str) -> PathBuf {
        self.root_dir.join(cid)
    }

    /// Launches a container on the given networks: creates its namespace, then ADDs every
    /// network in parallel. On any failure the container is destroyed (DEL for every network,
    /// as Mesos' cleanup does) and the first failure is returned.
    pub fn launch(
        &self,
        container_id: &str,
        networks: &[NetworkRequest],
    ) -> Result<Container, CniFailure> {
        let configs = self.network_configs();
        let netns_name = format!(
            "{}{}",
            self.netns_prefix,
            &container_id[..container_id.len().min(12)]
        );
        create_netns(&netns_name).map_err(|e| CniFailure {
            network: String::new(),
            command: "create namespace",
            status: None,
            stdout: String::new(),
            stderr: e,
        })?;
        let container = Container {
            container_id: container_id.to_owned(),
            netns_name,
            attached: Vec::new(),
        };

        // Checkpoint every network.conf before any exec, as the isolator does.
        let mut jobs = Vec::new();
        for (i, req) in networks.iter().enumerate() {
            let ifname = format!("eth{i}");
            let Some(conf) = configs.get(&req.name) else {
                let _ = self.destroy(&container, false);
                return Err(CniFailure {
                    network: req.name.clone(),
                    command: "find network",
                    status: None,
                    stdout: String::new(),
                    stderr: format!("unknown CNI network '{}'", req.name),
                });
            };
            let mut conf = conf.clone();
            let mut args = conf.get("args").cloned().unwrap_or_else(|| json!({}));
            args["org.apache.mesos"] = json!({ "network_info": req.network_info() });
            conf["args"] = args;
            let dir = self.container_dir(container_id).join(&req.name);
            fs::create_dir_all(&dir).expect("checkpoint dir");
            let path = dir.join("network.conf");
            fs::write(&path, serde_json::to_vec(&conf).unwrap()).expect("checkpoint");
            fs::create_dir_all(dir.join(&ifname)).expect("interface dir");
            jobs.push((req.name.clone(), ifname, path));
        }

        let netns_path = container.netns_path();
        let results: Vec<Result<Attached, CniFailure>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(net, ifname, conf)| {
                    let netns_path = &netns_path;
                    s.spawn(move || {
                        let type_ = type_of(conf);
                        let out =
                            self.exec("ADD", container_id, ifname, Some(netns_path), conf, &type_);
                        match out {
                            Ok(stdout) => {
                                let info = conf.parent().unwrap().join(ifname).join("network.info");
                                let _ = fs::write(info, &stdout);
                                let v: Value = serde_json::from_str(&stdout).unwrap_or_default();
                                Ok(Attached {
                                    network: net.clone(),
                                    ifname: ifname.clone(),
                                    ip4: strip_prefix(v["ip4"]["ip"].as_str()),
                                    ip6: strip_prefix(v["ip6"]["ip"].as_str()),
                                    raw_result: stdout,
                                })
                            }
                            Err(mut f) => {
                                f.network = net.clone();
                                Err(f)
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("cni thread"))
                .collect()
        });

        let mut container = container;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(a) => container.attached.push(a),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            let _ = self.destroy(&container, false);
            return Err(e);
        }
        Ok(container)
    }

    /// Destroys a container: DEL for every checkpointed network (in parallel), then the
    /// namespace and checkpoint dir. With `skip_del` the plugins are never told (a lost DEL,
    /// as after an agent crash). DEL failures are returned but cleanup still happens.
    pub fn destroy(&self, container: &Container, skip_del: bool) -> Result<(), CniFailure> {
        let cdir = self.container_dir(&container.container_id);
        let mut jobs = Vec::new();
        if !skip_del && let Ok(entries) = fs::read_dir(&cdir) {
            let mut nets: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            nets.sort();
            for dir in nets {
                let conf = dir.join("network.conf");
                if !conf.exists() {
                    continue; // ADD never ran: Mesos skips DEL.
                }
                // The interface dir was made before ADD ran (as Mesos does), so DEL knows the
                // ifname even when ADD failed.
                let Some(ifname) = fs::read_dir(&dir).ok().and_then(|es| {
                    es.flatten()
                        .find(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                }) else {
                    continue;
                };
                let net = dir.file_name().unwrap().to_string_lossy().into_owned();
                jobs.push((net, ifname, conf));
            }
        }
        let netns_path = container.netns_path();
        let netns_alive = netns_path.exists();
        let errors: Vec<CniFailure> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(net, ifname, conf)| {
                    let netns = netns_alive.then_some(netns_path.as_path());
                    s.spawn(move || {
                        self.exec(
                            "DEL",
                            &container.container_id,
                            ifname,
                            netns,
                            conf,
                            &type_of(conf),
                        )
                        .map_err(|mut f| {
                            f.network = net.clone();
                            f
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("cni thread").err())
                .collect()
        });
        delete_netns(&container.netns_name);
        if errors.is_empty() {
            let _ = fs::remove_dir_all(&cdir);
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs one plugin with the isolator's exact environment; stdin is the checkpointed file.
    fn exec(
        &self,
        command: &'static str,
        container_id: &str,
        ifname: &str,
        netns: Option<&Path>,
        conf: &Path,
        type_: &str,
    ) -> Result<String, CniFailure> {
        let plugin = self.plugins_dir.join(type_);
        let mut cmd = Command::new(&plugin);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_PATH", &self.plugins_dir)
            .env("CNI_IFNAME", ifname)
            .env("PATH", &self.path_env)
            .stdin(Stdio::from(fs::File::open(conf).expect("network.conf")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", ns);
        }
        let out = cmd.output().map_err(|e| CniFailure {
            network: String::new(),
            command,
            status: None,
            stdout: String::new(),
            stderr: format!("exec {}: {e}", plugin.display()),
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(CniFailure {
                network: String::new(),
                command,
                status: out.status.code(),
                stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

fn type_of(conf: &Path) -> String {
    let v: Value = serde_json::from_slice(&fs::read(conf).unwrap_or_default()).unwrap_or_default();
    v["type"].as_str().unwrap_or_default().to_owned()
}

fn strip_prefix(ip: Option<&str>) -> Option<String> {
    ip.map(|s| s.split('/').next().unwrap_or(s).to_owned())
}

/// `ip netns add <name>` with `lo` up.
pub fn create_netns(name: &str) -> Result<(), String> {
    for args in [
        vec!["netns", "add", name],
        vec!["-n", name, "link", "set", "lo", "up"],
    ] {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    Ok(())
}

/// `ip netns delete <name>`, ignoring "not found".
pub fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "delete", name])
        .stderr(Stdio::null())
        .status();
}

/// Writes a network config file into a config dir (helper for tests and the devstack).
pub fn write_network_config(dir: &Path, file: &str, conf: &Value) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut f = fs::File::create(dir.join(file))?;
    f.write_all(serde_json::to_string_pretty(conf).unwrap().as_bytes())
}

/// The agent's operator API (`POST /api/v1`, Apache Mesos "Operator HTTP API"), reduced to
/// `GET_CONTAINERS`: the containers the test says run, each with its executor and framework,
/// in the v1 JSON form (`{"container_id": {"value": ...}, ...}`). Other call types get 400
/// with a plain-text body, as the agent answers calls it cannot parse.
pub struct OperatorApi {
    pub addr: std::net::SocketAddr,
    /// container id -> (executor id, framework id)
    containers: std::sync::Arc<std::sync::Mutex<BTreeMap<String, (String, String)>>>,
    /// `GET_CONTAINERS` calls answered.
    pub calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    server: std::sync::Arc<tiny_http::Server>,
}

impl OperatorApi {
    pub fn start() -> std::io::Result<OperatorApi> {
        let server = std::sync::Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let containers: std::sync::Arc<std::sync::Mutex<BTreeMap<String, (String, String)>>> =
            Default::default();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (srv, cs, n) = (server.clone(), containers.clone(), calls.clone());
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(
                    &mut std::io::Read::take(req.as_reader(), 1 << 20),
                    &mut body,
                );
                let call: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let resp = if req.method() != &tiny_http::Method::Post || req.url() != "/api/v1" {
                    tiny_http::Response::from_string("Not Found").with_status_code(404)
                } else if call["type"] != "GET_CONTAINERS" {
                    tiny_http::Response::from_string(format!(
                        "Failed to validate agent::Call: unsupported call {}",
                        call["type"]
                    ))
                    .with_status_code(400)
                } else {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let list: Vec<Value> = cs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .map(|(cid, (exec, fw))| {
                            json!({"container_id": {"value": cid}, "executor_id": {"value": exec},
                                "executor_name": "Command Executor", "framework_id": {"value": fw},
                                "resource_statistics": {"cpus_limit": 0.1, "timestamp": 1.0}})
                        })
                        .collect();
                    tiny_http::Response::from_string(
                        json!({"type": "GET_CONTAINERS", "get_containers": {"containers": list}})
                            .to_string(),
                    )
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json")
                            .expect("static header"),
                    )
                };
                let _ = req.respond(resp);
            }
        });
        Ok(OperatorApi {
            addr,
            containers,
            calls,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The agent now runs this container for this executor (Marathon's command executor:
    /// the executor id is the task id).
    pub fn add_container(&self, container_id: &str, executor_id: &str) {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                container_id.to_owned(),
                (executor_id.to_owned(), "marathon-framework-0000".to_owned()),
            );
    }

    pub fn remove_container(&self, container_id: &str) {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container_id);
    }
}

impl Drop for OperatorApi {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_network_info_matches_the_captured_mesos_form() {
        // The form Mesos checkpoints: {"ip_addresses":[{"protocol":"IPv4"}],"labels":{},"name":"contrail-cni-plugin"}
        let ni = NetworkRequest::new("contrail-cni-plugin", &[]).network_info();
        assert_eq!(
            serde_json::to_string(&ni).unwrap(),
            r#"{"ip_addresses":[{"protocol":"IPv4"}],"labels":{},"name":"contrail-cni-plugin"}"#
        );
    }

    #[test]
    fn labels_are_nested_twice_and_pods_have_no_ip_addresses() {
        let mut req = NetworkRequest::new("test-delegate", &[("CNI_ARGS", "IP=192.168.122.176")]);
        req.app_style_ip_addresses = false;
        req.port_mappings.push((8080, 80, "tcp".into()));
        let ni = req.network_info();
        assert_eq!(ni["labels"]["labels"][0]["key"], "CNI_ARGS");
        assert_eq!(ni["labels"]["labels"][0]["value"], "IP=192.168.122.176");
        assert!(ni.get("ip_addresses").is_none());
        assert_eq!(ni["port_mappings"][0]["host_port"], 8080);
    }

    #[test]
    fn config_loading_skips_what_mesos_skips() {
        let tmp = tempfile::tempdir().unwrap();
        let confs = tmp.path().join("net.d");
        let plugins = tmp.path().join("bin");
        fs::create_dir_all(&plugins).unwrap();
        fs::write(plugins.join("bridge"), "").unwrap();
        write_network_config(&confs, "a.conf", &json!({"name": "a", "type": "bridge"})).unwrap();
        write_network_config(&confs, "b.json", &json!({"name": "a", "type": "bridge"})).unwrap();
        write_network_config(&confs, "c", &json!({"name": "c", "type": "missing"})).unwrap();
        write_network_config(&confs, "d.conflist", &json!({"name": "d", "plugins": []})).unwrap();
        fs::write(confs.join("e.conf"), "not json").unwrap();
        fs::create_dir_all(confs.join("subdir")).unwrap();
        let agent = MesosAgent::new(&confs, &plugins, tmp.path());
        let names: Vec<_> = agent.network_configs().into_keys().collect();
        assert_eq!(names, vec!["a".to_string()]);
    }

    #[test]
    fn operator_api_lists_containers_in_the_v1_form() {
        let api = OperatorApi::start().unwrap();
        api.add_container("c1", "web.1");
        let a: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = a
            .post(format!("{}/api/v1", api.url()))
            .send(r#"{"type":"GET_CONTAINERS"}"#)
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(v["type"], "GET_CONTAINERS");
        assert_eq!(
            v["get_containers"]["containers"][0]["container_id"]["value"],
            "c1"
        );
        assert_eq!(
            v["get_containers"]["containers"][0]["executor_id"]["value"],
            "web.1"
        );
        api.remove_container("c1");
        let r = a
            .post(format!("{}/api/v1", api.url()))
            .send(r#"{"type":"GET_HEALTH"}"#)
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }

    #[test]
    fn prefixes_are_stripped_like_mesos_does() {
        assert_eq!(
            strip_prefix(Some("10.0.0.5/24")).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(strip_prefix(None), None);
    }
}

//! The role Go's `pkg/skel` plays: read `CNI_*` from an injectable [`Env`], the config from an
//! injectable stdin, call the plugin, and print either the result (in the config's
//! `cniVersion`) or the error JSON on the injectable stdout. Nothing else is ever written to
//! stdout; the exit code is 0 on success and 1 on error.
//!
//! Required variables follow CNI SPEC.md 1.1.0 ("Parameters", the table of which command needs
//! which variable): ADD and
//! CHECK need CONTAINERID, NETNS, IFNAME; DEL needs CONTAINERID, IFNAME; GC needs PATH;
//! STATUS and VERSION nothing beyond COMMAND. Unlike Go's skel we do not demand `CNI_PATH` for
//! every command: the path that needs it (the delegate) says so itself.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::{Value, json};

use super::config::NetConf;
use super::error::{CniError, DECODE_FAILURE, INCOMPATIBLE_VERSION, INTERNAL, INVALID_ENV};
use super::result::CniResult;
use super::version::{CURRENT, CniVersion};

/// Largest stdin accepted: configs are a few KiB; this only stops a runaway writer.
const MAX_STDIN: u64 = 16 << 20;

/// The process environment, injectable for tests.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
    /// Every variable, passed on unchanged to delegates.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Required variables besides `CNI_COMMAND` (CNI SPEC.md 1.1.0, "Parameters").
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }
}

/// What the runtime passed (Go's `skel.CmdArgs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdArgs {
    /// `CNI_CONTAINERID` (empty for STATUS/GC when not given).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (a DEL after a reboot).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (empty for STATUS/GC when not given).
    pub ifname: String,
    /// `CNI_ARGS` (Mesos never sets it).
    pub args: Option<String>,
    /// `CNI_PATH` split on `:` (empty entries dropped).
    pub path: Vec<PathBuf>,
    pub stdin_data: Vec<u8>,
    /// The whole environment, handed unchanged to delegates (spec: "the same environment").
    pub environ: Vec<(String, String)>,
}

/// One validated invocation, handed to the plugin logic.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    pub args: CmdArgs,
    pub conf: NetConf,
    pub version: CniVersion,
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (Go `utils.ValidateContainerID`).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(
            CniError::new(INVALID_ENV, "invalid characters in containerID")
                .with_details(format!("CNI_CONTAINERID={id:?}")),
        )
    }
}

/// Go `utils.ValidateInterfaceName`: not empty, at most 15 bytes, not `.`/`..`, no `/`, `:`
/// or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let err = |msg: &str| {
        Err(CniError::new(INVALID_ENV, msg).with_details(format!("CNI_IFNAME={name:?}")))
    };
    if name.is_empty() {
        return err("interface name is empty");
    }
    if name.len() > 15 {
        return err("interface name is too long (at most 15 characters)");
    }
    if name == "." || name == ".." {
        return err("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return err("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

/// Reads and checks the environment. Missing variables are reported together, by name.
pub fn parse_env(env: &dyn Env) -> Result<(Command, CmdArgs), CniError> {
    let get = |k: &str| env.var(k).filter(|v| !v.is_empty());
    let Some(cmd) = get("CNI_COMMAND") else {
        return Err(CniError::new(
            INVALID_ENV,
            "required env variables [CNI_COMMAND] missing",
        ));
    };
    let command = Command::parse(&cmd)
        .ok_or_else(|| CniError::new(INVALID_ENV, format!("unknown CNI_COMMAND: {cmd:?}")))?;
    let missing: Vec<&str> = command
        .required()
        .iter()
        .copied()
        .filter(|k| get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    let args = CmdArgs {
        container_id: get("CNI_CONTAINERID").unwrap_or_default(),
        netns: get("CNI_NETNS"),
        ifname: get("CNI_IFNAME").unwrap_or_default(),
        args: get("CNI_ARGS"),
        path: get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default(),
        stdin_data: vec![],
        environ: env.vars(),
    };
    if matches!(command, Command::Add | Command::Del | Command::Check) {
        validate_container_id(&args.container_id)?;
        validate_ifname(&args.ifname)?;
    }
    Ok((command, args))
}

fn print(stdout: &mut dyn Write, v: &Value) {
    // If stdout is gone there is nobody to tell; the exit code still says it.
    let _ = writeln!(stdout, "{v}");
    let _ = stdout.flush();
}

/// The VERSION answer: the requested version echoed (spec), and the versions served.
pub fn version_answer(requested: Option<&str>, supported: &[CniVersion]) -> Value {
    let newest = supported.last().copied().unwrap_or(CURRENT);
    json!({
        "cniVersion": requested.unwrap_or(newest.as_str()),
        "supportedVersions": supported.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

/// The `cniVersion` of whatever is on stdin, if it is a JSON object with one: errors are
/// written in it even when they come before the config is read (an env error).
fn version_of(data: &[u8]) -> Option<String> {
    // Only `cniVersion` is kept; the rest is skipped without building a value.
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(rename = "cniVersion")]
        cni_version: Option<Value>,
    }
    // An object only (a struct would also take a JSON array, by position).
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let v: Version = serde_json::from_slice(data).ok()?;
    match v.cni_version?.as_str()? {
        "" => Some(super::version::DEFAULT_VERSION.to_owned()),
        s => Some(s.to_owned()),
    }
}

/// Runs one invocation. `handler` gets a validated [`Request`]; for ADD it returns the
/// result, for the other commands `None`. `supported` is what VERSION answers. Returns the
/// process exit code.
pub fn run(
    env: &dyn Env,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    supported: &[CniVersion],
    handler: impl FnOnce(Request) -> Result<Option<CniResult>, CniError>,
) -> i32 {
    let mut err_version = CURRENT.as_str().to_owned();
    match run_inner(env, stdin, supported, &mut err_version, handler) {
        Ok(Some(v)) => {
            print(stdout, &v);
            0
        }
        Ok(None) => 0,
        Err(e) => {
            print(stdout, &e.to_json(&err_version));
            1
        }
    }
}

fn run_inner(
    env: &dyn Env,
    stdin: &mut dyn Read,
    supported: &[CniVersion],
    err_version: &mut String,
    handler: impl FnOnce(Request) -> Result<Option<CniResult>, CniError>,
) -> Result<Option<Value>, CniError> {
    // stdin first: an error about the environment is then written in the config's version.
    let mut data = Vec::new();
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut data)
        .map_err(|e| CniError::new(super::error::IO_FAILURE, format!("reading stdin: {e}")))?;
    if data.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            DECODE_FAILURE,
            "network config on stdin is too large",
        ));
    }
    if let Some(v) = version_of(&data) {
        *err_version = v;
    }
    let (command, mut args) = parse_env(env)?;

    if command == Command::Version {
        // The input is `{"cniVersion": ...}`; an empty stdin still gets an answer.
        let requested = if data.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let v: Value = serde_json::from_slice(&data).map_err(|e| {
                CniError::new(DECODE_FAILURE, format!("error reading VERSION input: {e}"))
            })?;
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        return Ok(Some(version_answer(requested.as_deref(), supported)));
    }

    let conf = NetConf::parse(&data)?;
    *err_version = conf.cni_version().to_owned();
    let version = conf.version()?;
    let refuse = |what: &str| {
        CniError::new(
            INCOMPATIBLE_VERSION,
            format!("config version does not allow {what}"),
        )
        .with_details(format!("config is {version}"))
    };
    match command {
        Command::Check if version < CniVersion::V0_4_0 => return Err(refuse("CHECK")),
        Command::Status if version < CniVersion::V1_1_0 => return Err(refuse("STATUS")),
        Command::Gc if version < CniVersion::V1_1_0 => return Err(refuse("GC")),
        _ => {}
    }
    conf.validate()?;
    args.stdin_data = data;

    let result = handler(Request {
        command,
        args,
        conf,
        version,
    })?;
    match (command, result) {
        (Command::Add, Some(r)) => Ok(Some(r.encode(version)?)),
        (Command::Add, None) => Err(CniError::new(INTERNAL, "ADD produced no result")),
        // Only ADD prints a result (spec: DEL/CHECK/GC/STATUS output nothing on success).
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::result::IpConfig;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "5baff64c-d028-47ba-864e-a5ee679fc069"),
        ("CNI_NETNS", "/var/run/mesos/isolators/network/cni/x/ns"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni:/usr/lib/cni"),
        ("PATH", "/usr/bin"),
    ];

    fn result() -> CniResult {
        CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: "10.0.0.5/24".parse().unwrap(),
                gateway: None,
            }],
            ..Default::default()
        }
    }

    /// Runs skel with a handler that records the request and answers `answer`.
    fn invoke(
        e: &BTreeMap<String, String>,
        stdin: &str,
        answer: Result<Option<CniResult>, CniError>,
    ) -> (i32, String, Option<Request>) {
        let mut out = Vec::new();
        let mut seen = None;
        let code = run(
            e,
            &mut stdin.as_bytes(),
            &mut out,
            &CniVersion::ALL,
            |req| {
                seen = Some(req);
                answer
            },
        );
        (code, String::from_utf8(out).unwrap(), seen)
    }

    fn error_of(out: &str) -> (u64, String) {
        let v: Value = serde_json::from_str(out).unwrap();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_owned(),
        )
    }

    const CONF02: &str = r#"{"cniVersion":"0.2.0","name":"n","type":"mesos"}"#;

    #[test]
    fn add_prints_the_result_in_the_configs_version() {
        let (code, out, req) = invoke(&env(ADD_ENV), CONF02, Ok(Some(result())));
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "{\"cniVersion\":\"0.2.0\",\"ip4\":{\"ip\":\"10.0.0.5/24\"},\"dns\":{}}\n"
        );
        let req = req.unwrap();
        assert_eq!(req.command, Command::Add);
        assert_eq!(
            req.args.container_id,
            "5baff64c-d028-47ba-864e-a5ee679fc069"
        );
        assert_eq!(
            req.args.path,
            vec![PathBuf::from("/opt/cni"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(req.args.stdin_data, CONF02.as_bytes());
        assert!(
            req.args
                .environ
                .contains(&("PATH".into(), "/usr/bin".into()))
        );
        assert_eq!(req.version, CniVersion::V0_2_0);

        let (_, out, _) = invoke(
            &env(ADD_ENV),
            r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#,
            Ok(Some(result())),
        );
        assert_eq!(
            out,
            "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.5/24\"}],\"dns\":{}}\n"
        );
    }

    #[test]
    fn missing_variables_are_named_and_the_handler_is_not_called() {
        let mut e = env(ADD_ENV);
        e.remove("CNI_NETNS");
        e.insert("CNI_IFNAME".into(), String::new());
        let (code, out, req) = invoke(&e, CONF02, Ok(Some(result())));
        assert_eq!(code, 1);
        assert!(req.is_none());
        assert_eq!(
            error_of(&out),
            (
                4,
                "required env variables [CNI_NETNS,CNI_IFNAME] missing".into()
            )
        );
        // The error is printed in the config's version, although the config is not used.
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["cniVersion"],
            "0.2.0"
        );
        // Without a readable config: our newest.
        let (_, out, _) = invoke(&e, "{nope", Ok(None));
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["cniVersion"],
            "1.1.0"
        );

        let (code, out, _) = invoke(&env(&[("CNI_CONTAINERID", "x")]), CONF02, Ok(None));
        assert_eq!((code, error_of(&out).0), (1, 4));
        let (_, out, _) = invoke(&env(&[("CNI_COMMAND", "FROB")]), CONF02, Ok(None));
        assert_eq!(error_of(&out), (4, "unknown CNI_COMMAND: \"FROB\"".into()));
    }

    #[test]
    fn required_variables_per_command() {
        // DEL: no NETNS needed (Mesos after a reboot).
        let mut e = env(ADD_ENV);
        e.insert("CNI_COMMAND".into(), "DEL".into());
        e.remove("CNI_NETNS");
        let (code, out, req) = invoke(&e, CONF02, Ok(None));
        assert_eq!((code, out.as_str()), (0, ""));
        assert_eq!(req.unwrap().args.netns, None);
        // STATUS: nothing but the command.
        let e = env(&[("CNI_COMMAND", "STATUS")]);
        let (code, out, _) = invoke(
            &e,
            r#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#,
            Ok(None),
        );
        assert_eq!((code, out.as_str()), (0, ""));
        // GC: CNI_PATH.
        let e = env(&[("CNI_COMMAND", "GC")]);
        let (code, out, _) = invoke(
            &e,
            r#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#,
            Ok(None),
        );
        assert_eq!(
            (code, error_of(&out)),
            (1, (4, "required env variables [CNI_PATH] missing".into()))
        );
        // CHECK: like ADD.
        let mut e = env(ADD_ENV);
        e.insert("CNI_COMMAND".into(), "CHECK".into());
        e.remove("CNI_NETNS");
        let (_, out, _) = invoke(
            &e,
            r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#,
            Ok(None),
        );
        assert_eq!(
            error_of(&out).1,
            "required env variables [CNI_NETNS] missing"
        );
    }

    #[test]
    fn container_id_and_ifname_validation() {
        for bad in ["-abc", "a b", "a/b", "ä", ".x", "x;rm"] {
            assert_eq!(validate_container_id(bad).unwrap_err().code, 4, "{bad}");
        }
        for good in [
            "a",
            "5baff64c-d028-47ba-864e-a5ee679fc069",
            "parent.child",
            "A_b.c-1",
        ] {
            validate_container_id(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "0123456789abcdef",
        ] {
            assert_eq!(validate_ifname(bad).unwrap_err().code, 4, "{bad:?}");
        }
        for good in ["eth0", "0123456789abcde", "net1.100"] {
            validate_ifname(good).unwrap();
        }
        let mut e = env(ADD_ENV);
        e.insert("CNI_IFNAME".into(), "eth0:1".into());
        let (code, out, req) = invoke(&e, CONF02, Ok(Some(result())));
        assert_eq!((code, error_of(&out).0), (1, 4));
        assert!(req.is_none());
        assert!(out.contains("CNI_IFNAME"), "{out}");
    }

    #[test]
    fn version_answers_truthfully() {
        let e = env(&[("CNI_COMMAND", "VERSION")]);
        let (code, out, req) = invoke(&e, r#"{"cniVersion":"0.2.0"}"#, Ok(None));
        assert_eq!(code, 0);
        assert!(req.is_none());
        assert_eq!(
            out,
            "{\"cniVersion\":\"0.2.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
        );
        let (code, out, _) = invoke(&e, "", Ok(None));
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["cniVersion"],
            "1.1.0"
        );
        let (code, out, _) = invoke(&e, "{nope", Ok(None));
        assert_eq!((code, error_of(&out).0), (1, 6));
    }

    #[test]
    fn version_gates() {
        let mut e = env(ADD_ENV);
        e.insert("CNI_COMMAND".into(), "CHECK".into());
        let (code, out, req) = invoke(&e, CONF02, Ok(None));
        assert_eq!(
            (code, error_of(&out)),
            (1, (1, "config version does not allow CHECK".into()))
        );
        assert!(req.is_none());
        let (code, _, _) = invoke(
            &e,
            r#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#,
            Ok(None),
        );
        assert_eq!(code, 0);
        for cmd in ["STATUS", "GC"] {
            let e = env(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/x")]);
            let (code, out, _) = invoke(
                &e,
                r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#,
                Ok(None),
            );
            assert_eq!((code, error_of(&out).0), (1, 1), "{cmd}");
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["cniVersion"], "1.0.0", "errors use the config's version");
        }
        let (_, out, _) = invoke(
            &env(ADD_ENV),
            r#"{"cniVersion":"0.9.0","name":"n","type":"t"}"#,
            Ok(None),
        );
        assert_eq!(error_of(&out).0, 1);
    }

    #[test]
    fn config_errors_and_handler_errors() {
        let (code, out, _) = invoke(&env(ADD_ENV), "not json", Ok(None));
        assert_eq!((code, error_of(&out).0), (1, 6));
        let (_, out, _) = invoke(
            &env(ADD_ENV),
            r#"{"cniVersion":"0.2.0","type":"t"}"#,
            Ok(None),
        );
        assert_eq!(error_of(&out).0, 7);
        let (code, out, _) = invoke(
            &env(ADD_ENV),
            CONF02,
            Err(CniError::new(102, "delegate failed").with_details("d")),
        );
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "{\"cniVersion\":\"0.2.0\",\"code\":102,\"msg\":\"delegate failed\",\"details\":\"d\"}\n"
        );
        // A result that cannot be written in 0.2.0 is an error, not an empty success.
        let (code, out, _) = invoke(&env(ADD_ENV), CONF02, Ok(Some(CniResult::default())));
        assert_eq!(
            (code, error_of(&out).1.as_str()),
            (1, "cannot convert: no valid IP addresses")
        );
        let (code, out, _) = invoke(&env(ADD_ENV), CONF02, Ok(None));
        assert_eq!((code, error_of(&out).0), (1, 100));
        // Exactly one line on stdout, always.
        assert_eq!(out.lines().count(), 1);
    }
}

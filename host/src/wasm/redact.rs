//! What a plugin may read of the network config: everything except credentials and the host's
//! own `wasm` section. Plugins are policy, not trusted code; a token they never see is a token
//! they cannot leak through an answer, a log line or a timing channel.

use serde_json::Value;

/// True for a key that names a credential: token, password, secret, credentials, or a file
/// holding one (`key-file`, `token-file`, `cert-key`...), in any spelling (`mesos-token`,
/// `auth_token`, `passwordFile`, `clientSecret`).
pub fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const WORDS: &[&str] = &[
        "token",
        "password",
        "passwd",
        "passphrase",
        "secret",
        "credential",
        "keyfile",
        "privatekey",
        "apikey",
        "authorization",
        "bearer",
    ];
    WORDS.iter().any(|w| k.contains(w)) || k.ends_with("keydata")
}

/// Removes every secret-named key, at any depth (objects inside arrays included).
pub fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_secret_key(k));
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// The config text a plugin receives: credentials and the top-level `wasm` section removed.
/// Text that is not JSON is passed as it is (the host refused such a config long before a
/// plugin runs; this keeps the function total).
pub fn config_for_plugin(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            if let Value::Object(m) = &mut v {
                m.shift_remove("wasm");
            }
            strip(&mut v);
            v.to_string()
        }
        Err(_) => text.to_owned(),
    }
}

/// A JSON value for a plugin, credentials removed.
pub fn value_for_plugin(v: &Value) -> String {
    let mut v = v.clone();
    strip(&mut v);
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let text = json!({
            "name": "n",
            "contrail": {"mesos-token": "T0", "vrouter-ip": "10.0.0.5", "token-file": "/x",
                         "nested": [{"password": "p", "keep": 1}]},
            "delegate": {"type": "bridge", "ipam": {"type": "x", "clientSecret": "s", "key-file": "/k"}},
            "credentials": {"a": 1},
            "wasm": {"plugin-config": {}},
            "args": {"cni": {"labels": [{"key": "k", "value": "v"}]}}
        })
        .to_string();
        let out = config_for_plugin(&text);
        for gone in [
            "T0",
            "token-file",
            "password",
            "clientSecret",
            "key-file",
            "credentials",
            "wasm",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["contrail"]["vrouter-ip"], "10.0.0.5");
        assert_eq!(v["contrail"]["nested"][0]["keep"], 1);
        assert_eq!(
            v["args"]["cni"]["labels"][0]["key"], "k",
            "a label's `key` is not a secret"
        );
        assert_eq!(v["delegate"]["ipam"]["type"], "x");
    }
}

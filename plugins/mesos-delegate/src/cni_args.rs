//! The `CNI_ARGS` network label: `;`-separated `KEY=VALUE` pairs, the same syntax as the
//! `CNI_ARGS` environment variable (Go `pkg/types.LoadArgs`).
//!
//! Known keys (case-sensitive, as in Go, where keys are struct field names):
//! * `IP`: one or more addresses, each with or without a prefix length, IPv4 or IPv6,
//!   comma-separated; the key may repeat. Goes to the delegate's `args.cni.ips`.
//! * `MAC`: one unicast MAC address. Goes to `args.cni.mac` (and `runtimeConfig.mac`).
//! * `IgnoreUnknown`: `1`/`true`/`0`/`false`, case-insensitive (Go's `UnmarshallableBool`);
//!   wherever it appears in the string it applies to the whole string, as in Go.
//!
//! Differences from Go, on purpose: empty segments (`IP=1.2.3.4;` with a trailing `;`) are
//! skipped rather than rejected, whitespace around keys and values is trimmed, and a value may
//! contain `=` only for keys that are ignored as unknown.

#[allow(unused_imports)]
use guest_support::prelude::*;

use crate::error::{PluginError, UNSUPPORTED_FIELD};
use crate::net::{AddrWithPrefix, parse_addr_with_prefix, unusable_reason};

/// The label key Marathon operators use.
pub const LABEL: &str = "CNI_ARGS";

const KNOWN_KEYS: [&str; 3] = ["IP", "MAC", "IgnoreUnknown"];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CniArgs {
    /// In the order given, without duplicates.
    pub ips: Vec<AddrWithPrefix>,
    /// Normalised `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
}

/// Parse the label value. `ignore_unknown` is the network config's `ignoreUnknown`; an
/// `IgnoreUnknown=1` inside the value has the same effect.
pub fn parse(value: &str, ignore_unknown: bool) -> Result<CniArgs, PluginError> {
    let mut out = CniArgs::default();
    let mut unknown: Vec<(String, String)> = Vec::new();
    let mut ignore_in_args = false;

    for segment in value.split(';') {
        let pair = segment.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((key, val)) = pair.split_once('=') else {
            return Err(PluginError::invalid(format!(
                "label {LABEL}: \"{pair}\" is not a KEY=VALUE pair"
            )));
        };
        let (key, val) = (key.trim(), val.trim());
        if key.is_empty() {
            return Err(PluginError::invalid(format!(
                "label {LABEL}: \"{pair}\" has an empty key"
            )));
        }
        match key {
            "IP" => parse_ips(pair, val, &mut out.ips)?,
            "MAC" => {
                if let Some(prev) = &out.mac {
                    return Err(PluginError::invalid(format!(
                        "label {LABEL}: \"{pair}\": MAC given twice (first {prev})"
                    )));
                }
                let mac = parse_mac(val).map_err(|why| {
                    PluginError::invalid(format!("label {LABEL}: \"{pair}\": {why}"))
                })?;
                out.mac = Some(mac);
            }
            "IgnoreUnknown" => {
                ignore_in_args = match val.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(PluginError::invalid(format!(
                            "label {LABEL}: \"{pair}\": IgnoreUnknown must be 1, true, 0 or false"
                        )));
                    }
                }
            }
            _ => unknown.push((key.to_string(), val.to_string())),
        }
    }

    if !unknown.is_empty() && !ignore_unknown && !ignore_in_args {
        let list: Vec<String> = unknown
            .iter()
            .map(|(k, v)| {
                let hint = KNOWN_KEYS
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(k))
                    .map(|known| format!(" (keys are case-sensitive: did you mean {known}?)"))
                    .unwrap_or_default();
                format!("\"{k}\" in \"{k}={v}\"{hint}")
            })
            .collect();
        let noun = if list.len() == 1 { "key" } else { "keys" };
        let mut err = PluginError::new(
            UNSUPPORTED_FIELD,
            format!("label {LABEL}: unknown {noun} {}", list.join(", ")),
        );
        err.details = "known keys: IP, MAC, IgnoreUnknown; add IgnoreUnknown=1 to the label or \
                       \"ignoreUnknown\": true to the network config to skip unknown keys"
            .into();
        return Err(err);
    }
    Ok(out)
}

fn parse_ips(pair: &str, val: &str, ips: &mut Vec<AddrWithPrefix>) -> Result<(), PluginError> {
    for item in val.split(',') {
        let item = item.trim();
        let bad = |why: String| PluginError::invalid(format!("label {LABEL}: \"{pair}\": {why}"));
        if item.is_empty() {
            return Err(bad("empty address in the list".into()));
        }
        let ip = parse_addr_with_prefix(item).map_err(bad)?;
        if let Some(why) = unusable_reason(ip.addr) {
            return Err(bad(format!("{} {why}", ip.addr)));
        }
        push_unique(ips, ip).map_err(bad)?;
    }
    Ok(())
}

/// Append `ip` unless the same address is already there. The same address with a different
/// prefix is a conflict: which one the operator meant cannot be guessed.
pub fn push_unique(ips: &mut Vec<AddrWithPrefix>, ip: AddrWithPrefix) -> Result<(), String> {
    match ips.iter().find(|have| have.addr == ip.addr) {
        Some(have) if *have == ip => Ok(()),
        Some(have) => Err(format!("{ip} conflicts with {have}")),
        None => {
            ips.push(ip);
            Ok(())
        }
    }
}

/// A 48-bit unicast MAC, `:`- or `-`-separated, normalised to lower-case `:` form. A multicast
/// or all-zero MAC is refused: the kernel would reject it on the interface.
pub fn parse_mac(s: &str) -> Result<String, String> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let octets: Vec<&str> = s.split(sep).collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(format!(
            "{s} is not a MAC address (expected six hex octets, e.g. 02:42:ac:11:00:02)"
        ));
    }
    let bytes: Vec<u8> = octets
        .iter()
        .map(|o| u8::from_str_radix(o, 16).expect("checked hex"))
        .collect();
    if bytes[0] & 1 == 1 {
        return Err(format!("{s} is a multicast MAC address"));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(format!("{s} is the all-zero MAC address"));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(a: &CniArgs) -> Vec<String> {
        a.ips.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn single_ip_as_in_the_classic_example() {
        let a = parse("IP=192.168.122.176", false).unwrap();
        assert_eq!(ips(&a), ["192.168.122.176"]);
        assert_eq!(a.mac, None);
    }

    #[test]
    fn several_ips_comma_and_repeated_key_v4_and_v6() {
        let a = parse(
            "IP=10.1.1.5/24, 10.1.1.6 ;IP=FD00::5/64;IP=2001:db8::7",
            false,
        )
        .unwrap();
        assert_eq!(
            ips(&a),
            ["10.1.1.5/24", "10.1.1.6", "fd00::5/64", "2001:db8::7"]
        );
    }

    #[test]
    fn duplicate_ip_is_dropped_but_conflicting_prefix_is_an_error() {
        let a = parse("IP=10.1.1.5/24,10.1.1.5/24;IP=10.1.1.5/24", false).unwrap();
        assert_eq!(ips(&a), ["10.1.1.5/24"]);
        let e = parse("IP=10.1.1.5/24,10.1.1.5/16", false).unwrap_err();
        assert_eq!(e.code, 7);
        assert_eq!(
            e.msg,
            "label CNI_ARGS: \"IP=10.1.1.5/24,10.1.1.5/16\": 10.1.1.5/16 conflicts with 10.1.1.5/24"
        );
    }

    #[test]
    fn bad_ips_name_the_pair_and_the_reason() {
        let cases = [
            ("IP=10.1.1.300", "10.1.1.300 is not an IP address"),
            (
                "IP=10.1.1.3/33",
                "/33 is not a prefix length for 10.1.1.3 (0..=32)",
            ),
            (
                "IP=fd00::1/200",
                "/200 is not a prefix length for fd00::1 (0..=128)",
            ),
            ("IP=10.1.1.1,,10.1.1.2", "empty address in the list"),
            ("IP=", "empty address in the list"),
            ("IP=0.0.0.0", "0.0.0.0 is the unspecified address"),
            ("IP=224.0.0.1", "224.0.0.1 is a multicast address"),
            ("IP=ff02::1", "ff02::1 is a multicast address"),
            (
                "IP=255.255.255.255",
                "255.255.255.255 is the broadcast address",
            ),
            ("IP=host.example", "host.example is not an IP address"),
        ];
        for (input, why) in cases {
            let e = parse(input, false).unwrap_err();
            assert_eq!(e.code, 7, "{input}");
            assert_eq!(e.msg, format!("label CNI_ARGS: \"{input}\": {why}"));
        }
    }

    #[test]
    fn mac_is_validated_and_normalised() {
        let a = parse("MAC=02-42-AC-11-00-02", false).unwrap();
        assert_eq!(a.mac.as_deref(), Some("02:42:ac:11:00:02"));
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:0g",
            "0242.ac11.0002",
            "2:42:ac:11:0:2",
        ] {
            let e = parse(&format!("MAC={bad}"), false).unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.contains("is not a MAC address"), "{}", e.msg);
        }
        assert!(
            parse("MAC=01:00:5e:00:00:01", false)
                .unwrap_err()
                .msg
                .contains("multicast")
        );
        assert!(
            parse("MAC=00:00:00:00:00:00", false)
                .unwrap_err()
                .msg
                .contains("all-zero")
        );
        assert!(
            parse("MAC=02:00:00:00:00:01;MAC=02:00:00:00:00:02", false)
                .unwrap_err()
                .msg
                .contains("MAC given twice")
        );
    }

    #[test]
    fn unknown_keys_are_code_2_naming_key_and_value() {
        let e = parse("IP=10.1.1.5;FOO=1", false).unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(e.msg, "label CNI_ARGS: unknown key \"FOO\" in \"FOO=1\"");
        let e = parse("FOO=1;ip=10.1.1.1", false).unwrap_err();
        assert_eq!(
            e.msg,
            "label CNI_ARGS: unknown keys \"FOO\" in \"FOO=1\", \"ip\" in \"ip=10.1.1.1\" \
             (keys are case-sensitive: did you mean IP?)"
        );
    }

    #[test]
    fn ignore_unknown_from_config_or_label_anywhere() {
        assert_eq!(
            ips(&parse("FOO=1;IP=10.1.1.5", true).unwrap()),
            ["10.1.1.5"]
        );
        for flag in [
            "IgnoreUnknown=1",
            "IgnoreUnknown=true",
            "IgnoreUnknown=TRUE",
        ] {
            // Before and after the unknown key: Go decides after reading the whole string.
            assert!(parse(&format!("{flag};FOO=a=b;IP=10.1.1.5"), false).is_ok());
            assert!(parse(&format!("FOO=1;IP=10.1.1.5;{flag}"), false).is_ok());
        }
        assert_eq!(parse("IgnoreUnknown=0;FOO=1", false).unwrap_err().code, 2);
        assert_eq!(
            parse("IgnoreUnknown=false;FOO=1", false).unwrap_err().code,
            2
        );
        let e = parse("IgnoreUnknown=yes", false).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("IgnoreUnknown must be 1, true, 0 or false"));
        // Ignoring unknown keys never excuses a malformed known one.
        assert_eq!(
            parse("IgnoreUnknown=1;IP=10.1.1.300", true)
                .unwrap_err()
                .code,
            7
        );
    }

    #[test]
    fn malformed_pairs() {
        let e = parse("IP", false).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "label CNI_ARGS: \"IP\" is not a KEY=VALUE pair")
        );
        assert!(parse("=1", false).unwrap_err().msg.contains("empty key"));
        // Empty segments and surrounding blanks are harmless.
        assert_eq!(
            ips(&parse(" ; IP = 10.1.1.5 ;", false).unwrap()),
            ["10.1.1.5"]
        );
        assert_eq!(parse("", false).unwrap(), CniArgs::default());
    }
}

//! Replays every request of the three real-server transcripts against the stand-in over HTTP and
//! checks the same status codes, the same JSON shapes (keys at every level, scalar values after
//! mapping the real server's uuids to ours) and the same plain-text error bodies.

use std::collections::HashMap;

use serde_json::Value;

use super::VncServer;

const REAL_BASE: &str = "http://127.0.0.1:18082";

fn transcript(name: &str) -> Vec<Value> {
    let p = crate::paths::fixtures_dir().join("vnc").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("transcript json")
}

/// A query value as a client library sends it (RFC 3986 unreserved characters kept).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Replaces every mapped real uuid in `s` with ours.
fn map_text(s: &str, map: &HashMap<String, String>) -> String {
    let mut out = s.to_owned();
    for (real, ours) in map {
        if out.contains(real.as_str()) {
            out = out.replace(real.as_str(), ours);
        }
    }
    out
}

fn map_value(v: &Value, map: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(map_text(s, map)),
        Value::Array(a) => Value::Array(a.iter().map(|x| map_value(x, map)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), map_value(x, map)))
                .collect(),
        ),
        x => x.clone(),
    }
}

/// Compares shapes; learns uuid mappings (real -> ours) on the way. Returns mismatches.
fn compare(
    real: &Value,
    ours: &Value,
    path: &str,
    map: &mut HashMap<String, String>,
    out: &mut Vec<String>,
) {
    match (real, ours) {
        (Value::Object(a), Value::Object(b)) => {
            let skip = |k: &str| k == "id_perms" || k == "perms2";
            for k in a.keys().filter(|k| !skip(k)) {
                match b.get(k) {
                    Some(bv) => compare(&a[k], bv, &format!("{path}.{k}"), map, out),
                    None => out.push(format!("{path}.{k}: missing in ours")),
                }
            }
            for k in b.keys().filter(|k| !skip(k)) {
                if !a.contains_key(k) {
                    out.push(format!("{path}.{k}: extra in ours"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path}: {} items vs ours {}", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{path}[{i}]"), map, out);
            }
        }
        (Value::String(a), Value::String(b)) => {
            if is_uuid(a) && is_uuid(b) {
                match map.get(a) {
                    Some(m) if m != b => {
                        out.push(format!("{path}: uuid {a} maps to {m}, ours {b}"))
                    }
                    Some(_) => {}
                    None => {
                        map.insert(a.clone(), b.clone());
                    }
                }
                return;
            }
            // hrefs: learn the uuid in the last segment, then compare with our base.
            if let (Some((ra, ru)), Some((_, bu))) = (a.rsplit_once('/'), b.rsplit_once('/'))
                && is_uuid(ru)
                && is_uuid(bu)
            {
                map.entry(ru.to_owned()).or_insert_with(|| bu.to_owned());
                let want = format!("{}/{}", ra, map[ru]);
                if want != *b {
                    out.push(format!("{path}: {a} vs ours {b}"));
                }
                return;
            }
            // MACs derive from the (random) VMI uuid: compare the form only.
            if path.contains("mac_address") {
                if a.len() != b.len() || !b.starts_with("02:") {
                    out.push(format!("{path}: {a:?} vs ours {b:?}"));
                }
                return;
            }
            if map_text(a, map) != *b {
                out.push(format!("{path}: {a:?} vs ours {b:?}"));
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} vs ours {b}")),
    }
}

/// How one step's answer is compared when the real server's order or content rests on its own
/// random uuids (which ours cannot share).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Exact,
    /// The list's order is not part of the contract (upstream does not sort it): compared as a
    /// multiset, ordered by fq_name.
    Unordered,
    /// Paged in uuid order: which objects land on which page depends on the uuids, so only the
    /// answer's shape (top-level keys, the keys of an item) is compared.
    Shape,
}

fn mode(name: &str, step: usize) -> Mode {
    match (name, step) {
        ("vnc-transcript-3.json", 183 | 200 | 202) => Mode::Unordered,
        ("vnc-transcript-3.json", 177..=180 | 186) => Mode::Shape,
        _ => Mode::Exact,
    }
}

/// fq_name of a list item (short or wrapped) or of a ref/back-ref item, as a sort key.
fn fq_key(v: &Value) -> String {
    let inner = match v.as_object() {
        Some(m) if m.len() == 1 => m.values().next().unwrap_or(v),
        _ => v,
    };
    let fq = inner.get("fq_name").or_else(|| inner.get("to"));
    fq.map(|f| f.to_string()).unwrap_or_default()
}

/// Sorts the top-level list and every `*_back_refs` array (upstream orders back-refs by uuid,
/// which ours cannot share) by fq_name.
fn canonical(v: &Value, top: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match x {
                        Value::Array(a) if top || k.ends_with("_back_refs") => {
                            let mut a: Vec<Value> = a.iter().map(|i| canonical(i, false)).collect();
                            a.sort_by_key(fq_key);
                            Value::Array(a)
                        }
                        other => canonical(other, false),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|i| canonical(i, false)).collect()),
        x => x.clone(),
    }
}

/// The keys of an answer and of its first list item.
fn shape(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return Value::Null;
    };
    Value::Object(
        m.iter()
            .map(|(k, x)| {
                let first = match x {
                    Value::Array(a) => a
                        .first()
                        .and_then(Value::as_object)
                        .map(|o| o.keys().cloned().collect::<Vec<_>>()),
                    _ => None,
                };
                (k.clone(), serde_json::json!(first))
            })
            .collect(),
    )
}

/// Every uuid in `s` written as `<uuid>`.
fn mask_uuids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && is_uuid(&rest[..36]) {
            out.push_str("<uuid>");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Same text, up to the order of a `Delete when ...: [hrefs]` list (upstream lists them in
/// uuid order) and up to uuids the real server never showed otherwise (e.g. of an object it
/// refused to create).
fn same_text(real: &str, ours: &str, map: &HashMap<String, String>) -> bool {
    // A uuid of the real text that is no object's we know (mapped texts hold ours).
    let unknown = real
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .any(|w| is_uuid(w) && !map.values().any(|v| v == w));
    if unknown && mask_uuids(real) == mask_uuids(ours) {
        return true;
    }
    let split = |t: &str| -> Option<(String, Vec<String>)> {
        let (head, list) = t.split_once(": [")?;
        let mut items: Vec<String> = list
            .trim_end_matches(']')
            .split(", ")
            .map(str::to_owned)
            .collect();
        items.sort();
        Some((head.to_owned(), items))
    };
    real == ours
        || (real.starts_with("Delete when") && split(real).is_some() && split(real) == split(ours))
}

fn replay(name: &str) {
    let srv = VncServer::start().expect("start");
    let ours_base = srv.url();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut map: HashMap<String, String> = HashMap::new();
    // A page marker is the uuid of the last object on a page, and which object that is rests on
    // each server's own uuids: the next page is asked for with *our* previous marker (the real
    // one's, mapped, can be any of ours, even the last: an empty "next" page).
    let mut markers: HashMap<String, String> = HashMap::new();
    let mut problems = Vec::new();
    for (i, step) in transcript(name).iter().enumerate() {
        let method = step["method"].as_str().unwrap();
        let path = map_text(step["path"].as_str().unwrap(), &map);
        let mut url = format!("{ours_base}{path}");
        if let Some(params) = step["params"].as_object() {
            let q: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let v = match markers.get(&v) {
                        Some(ours) if k == "page_marker" => ours.clone(),
                        _ => map_text(&v, &map),
                    };
                    format!("{k}={}", percent_encode(&v))
                })
                .collect();
            url = format!("{url}?{}", q.join("&"));
        }
        let body = if step["request"].is_null() {
            None
        } else {
            Some(
                map_value(&step["request"], &map)
                    .to_string()
                    .replace(REAL_BASE, &ours_base),
            )
        };
        let resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("POST", Some(b)) => agent
                .post(&url)
                .content_type("application/json")
                .send(b.as_bytes()),
            ("PUT", Some(b)) => agent
                .put(&url)
                .content_type("application/json")
                .send(b.as_bytes()),
            (m, _) => panic!("step {i}: method {m}"),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("step {i}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_default()
            .replace(&ours_base, REAL_BASE);
        let note = step["note"].as_str().unwrap_or("");
        let want = step["status"].as_u64().unwrap() as u16;
        if status != want {
            problems.push(format!(
                "step {i} ({note}): status {status}, want {want}; body {text}"
            ));
            continue;
        }
        match &step["response"] {
            Value::String(want_text) => {
                let want_text = map_text(want_text, &map);
                let ok = if want_text.starts_with("Unknown reference in resource create") {
                    text.starts_with("Unknown reference in resource create {")
                } else {
                    // DELETE's empty body was recorded as "".
                    same_text(&want_text, &text, &map) || (want_text == "\"\"" && text.is_empty())
                };
                if !ok {
                    problems.push(format!(
                        "step {i} ({note}): text {text:?}, want {want_text:?}"
                    ));
                }
            }
            real => {
                let ours: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let mut out = Vec::new();
                // The root link list is long upstream; compare the shape of one link only.
                if step["path"] == "/" {
                    let one = |v: &Value| serde_json::json!({"href": v["href"], "links": [v["links"][0]]});
                    compare(&one(real), &one(&ours), "$", &mut map, &mut out);
                } else {
                    match mode(name, i) {
                        Mode::Exact => compare(
                            &canonical(real, false),
                            &canonical(&ours, false),
                            "$",
                            &mut map,
                            &mut out,
                        ),
                        Mode::Unordered => compare(
                            &canonical(real, true),
                            &canonical(&ours, true),
                            "$",
                            &mut map,
                            &mut out,
                        ),
                        Mode::Shape => {
                            if let (Some(r), Some(o)) =
                                (real["marker"].as_str(), ours["marker"].as_str())
                            {
                                markers.insert(r.to_owned(), o.to_owned());
                            }
                            if shape(real) != shape(&ours) {
                                out.push(format!("shape {} vs ours {}", shape(real), shape(&ours)));
                            }
                        }
                    }
                }
                for o in out {
                    problems.push(format!("step {i} ({note}): {o}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{name}: {} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn replays_transcript_1() {
    replay("vnc-transcript-1.json");
}

#[test]
fn replays_transcript_2() {
    replay("vnc-transcript-2.json");
}

#[test]
fn replays_transcript_3() {
    replay("vnc-transcript-3.json");
}

//! `GET /<type>s` and `POST /list-bulk-collection` of the VNC stand-in, as the real API server
//! answers them (recorded in `tests/fixtures/vnc/vnc-transcript-3.json`, scenario 7):
//!
//! - scopes `parent_id` / `parent_fq_name_str`, `obj_uuids`, `fq_names`, `back_ref_id` are
//!   all applied together; unknown uuids and names are skipped, an unknown parent gives `[]`;
//!   `fq_name_str` is not a scope;
//! - paging is on only when `page_marker` is given (`None` starts): a scoped list pages in uuid
//!   order with the last uuid as `marker`, an unscoped one walks the type's fq-name index with
//!   `"<fq:name>:<uuid>"` markers; the marker is null on the last page; `page_limit` alone is
//!   ignored, its default is 256; without paging a scoped list is in creation order;
//! - `count=true` answers `{"<type>s": {"count": n}}` (the page's count when paging);
//! - `detail=True` wraps full objects (props and refs, no children or back-refs) and ignores
//!   `fields`; otherwise `fields` adds props, refs, children and back-refs to the short entries
//!   (their items without `href`), and `exclude_hrefs` drops `href`;
//! - `filters=k==v[,k2==v2]` match top-level properties, `v` JSON-decoded when it can be.

use serde_json::{Map, Value, json};

use super::store::{JsonObj, Obj, Store, VncErr, index_key, write_json};

/// Upstream's `paginate_count` default.
const DEFAULT_PAGE: usize = 256;

/// The options of one list request.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub parent_ids: Option<Vec<String>>,
    pub parent_fq_name: Option<Vec<String>>,
    pub back_ref_ids: Option<Vec<String>>,
    pub obj_uuids: Option<Vec<String>>,
    pub fq_names: Option<Vec<Vec<String>>>,
    pub filters: Option<String>,
    pub fields: Vec<String>,
    pub detail: bool,
    pub count: bool,
    pub exclude_hrefs: bool,
    pub page_marker: Option<String>,
    pub page_limit: Option<String>,
}

fn csv(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

impl ListQuery {
    /// From query parameters (already percent-decoded) by name.
    pub fn from_params(get: impl Fn(&str) -> Option<String>) -> ListQuery {
        ListQuery {
            parent_ids: get("parent_id").map(|v| csv(&v)),
            parent_fq_name: get("parent_fq_name_str")
                .map(|v| v.split(':').map(str::to_owned).collect()),
            back_ref_ids: get("back_ref_id").map(|v| csv(&v)),
            obj_uuids: get("obj_uuids").map(|v| csv(&v)),
            fq_names: get("fq_names").map(|v| {
                csv(&v)
                    .iter()
                    .map(|f| f.split(':').map(str::to_owned).collect())
                    .collect()
            }),
            filters: get("filters"),
            fields: get("fields").map(|v| csv(&v)).unwrap_or_default(),
            detail: get("detail").is_some_and(|v| truthy(&v)),
            count: get("count").is_some_and(|v| truthy(&v)),
            exclude_hrefs: get("exclude_hrefs").is_some_and(|v| truthy(&v)),
            page_marker: get("page_marker"),
            page_limit: get("page_limit"),
        }
    }

    /// From a `POST /list-bulk-collection` body (the same options, JSON-typed).
    pub fn from_body(b: &Value) -> ListQuery {
        ListQuery::from_params(|k| match b.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => Some(
                a.iter()
                    .map(|x| x.as_str().map(str::to_owned).unwrap_or(x.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    }

    fn scoped(&self) -> bool {
        self.parent_ids.is_some()
            || self.parent_fq_name.is_some()
            || self.back_ref_ids.is_some()
            || self.obj_uuids.is_some()
            || self.fq_names.is_some()
    }
}

fn bad(text: String) -> VncErr {
    VncErr { status: 400, text }
}

/// `filters`: (key, wanted value) pairs.
fn parse_filters(f: &str) -> Result<Vec<(String, Value)>, VncErr> {
    csv(f)
        .into_iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once("==")
                .ok_or_else(|| bad(format!("Invalid filter {kv}")))?;
            let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
            Ok((k.to_owned(), v))
        })
        .collect()
}

/// The list answer.
pub fn list(s: &Store, ty: &str, q: &ListQuery) -> Result<Value, VncErr> {
    let (objs, marker) = select(s, ty, q)?;
    let body = if q.count {
        json!({"count": objs.len()})
    } else {
        Value::Array(objs.iter().map(|o| entry(s, ty, o, q)).collect())
    };
    let mut out = Map::new();
    out.insert(format!("{ty}s"), body);
    if let Some(m) = marker {
        out.insert("marker".into(), m);
    }
    Ok(Value::Object(out))
}

/// `list` as the JSON text the server sends: byte for byte `list(..)?.to_string()` (tested),
/// with each detail entry written straight from its object (`Store::write_detail`) instead of
/// through a `Value` tree, which was most of the cost of serving a 1,000-object page.
pub fn list_text(s: &Store, ty: &str, q: &ListQuery) -> Result<String, VncErr> {
    let (objs, marker) = select(s, ty, q)?;
    let mut out = Vec::with_capacity(if q.count {
        256
    } else {
        256 + objs.len() * 1024
    });
    let mut top = JsonObj::open(&mut out);
    top.key(&format!("{ty}s"));
    if q.count {
        write_json(top.out, &json!({"count": objs.len()}));
    } else {
        top.out.push(b'[');
        for (i, o) in objs.iter().enumerate() {
            if i > 0 {
                top.out.push(b',');
            }
            if q.detail {
                let mut w = JsonObj::open(top.out);
                w.key(ty);
                s.write_detail(o, w.out);
                w.close();
            } else {
                write_short(s, ty, o, q, top.out);
            }
        }
        top.out.push(b']');
    }
    if let Some(m) = marker {
        top.value("marker", &m);
    }
    top.close();
    Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
}

/// The objects of one answer, in order, and the page's marker (None when not paging).
fn select<'s>(
    s: &'s Store,
    ty: &str,
    q: &ListQuery,
) -> Result<(Vec<&'s Obj>, Option<Value>), VncErr> {
    let filters = q.filters.as_deref().map(parse_filters).transpose()?;
    let paging = q.page_marker.is_some();
    let limit = match (&q.page_limit, paging) {
        (Some(l), true) => match l.parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            _ => {
                return Err(bad(format!(
                    "Invalid page_limit {l}: page_limit has to be greater than zero"
                )));
            }
        },
        _ => DEFAULT_PAGE,
    };
    let parents: Option<Vec<String>> = match (&q.parent_ids, &q.parent_fq_name) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(fq)) => Some(s.uuid_of_any(fq).into_iter().collect::<Vec<String>>()),
        (None, None) => None,
    };
    let fq_uuids: Option<Vec<String>> = q
        .fq_names
        .as_ref()
        .map(|names| names.iter().filter_map(|fq| s.uuid_of(ty, fq)).collect());
    let keep = |o: &Obj| {
        filters.as_ref().is_none_or(|fs| {
            let r = s.render(o, true);
            fs.iter().all(|(k, v)| r.get(k) == Some(v))
        })
    };
    let start = q.page_marker.as_deref().filter(|m| *m != "None");
    let mut marker = None;
    let objs: Vec<&Obj> = if !q.scoped() {
        // Upstream lists in the order of its fq-name index, and an unscoped page walks it
        // from the marker: only the page (and one more, to know whether there is a next) is
        // looked at.
        let walk = s
            .walk_index(ty, if paging { start } else { None })
            .filter(|o| keep(o));
        if paging {
            let mut objs: Vec<&Obj> = walk.take(limit + 1).collect();
            let more = objs.len() > limit;
            objs.truncate(limit);
            marker = Some(match (more, objs.last()) {
                (true, Some(o)) => Value::String(index_key(o)),
                _ => Value::Null,
            });
            objs
        } else {
            walk.collect()
        }
    } else {
        let mut objs: Vec<&Obj> = s
            .list_type(ty)
            .into_iter()
            .filter(|o| {
                parents
                    .as_ref()
                    .is_none_or(|ps| o.parent.as_ref().is_some_and(|(_, pu)| ps.contains(pu)))
            })
            .filter(|o| {
                q.back_ref_ids
                    .as_ref()
                    .is_none_or(|bs| o.refs.values().flatten().any(|r| bs.contains(&r.to_uuid)))
            })
            .filter(|o| q.obj_uuids.as_ref().is_none_or(|us| us.contains(&o.uuid)))
            .filter(|o| fq_uuids.as_ref().is_none_or(|us| us.contains(&o.uuid)))
            .filter(|o| keep(o))
            .collect();
        if paging {
            objs.sort_by(|a, b| a.uuid.cmp(&b.uuid));
            if let Some(m) = start {
                if uuid::Uuid::parse_str(m).is_err() {
                    return Err(bad(format!(
                        "Invalid page_marker {m}: badly formed hexadecimal UUID string"
                    )));
                }
                objs.retain(|o| o.uuid.as_str() > m);
            }
            let more = objs.len() > limit;
            objs.truncate(limit);
            marker = Some(match (more, objs.last()) {
                (true, Some(o)) => Value::String(o.uuid.clone()),
                _ => Value::Null,
            });
        } else if let (Some(us), None, None) = (&q.obj_uuids, &parents, &q.back_ref_ids) {
            // obj_uuids alone: in the order asked for.
            objs.sort_by_key(|o| us.iter().position(|u| *u == o.uuid));
        }
        objs
    };
    Ok((objs, marker))
}

/// A short entry (`entry` without `detail`) as JSON text, byte for byte (tested), written
/// straight from the object: with `fields`, each a `Value` tree cloned from the object and
/// freed again made the short lists the stand-in's slowest answer.
fn write_short(s: &Store, ty: &str, o: &Obj, q: &ListQuery, out: &mut Vec<u8>) {
    // `entry`'s map: fq_name, uuid and href first, then each asked-for key the rendering has,
    // in the order asked; a key already in the map keeps its place.
    let mut keys: Vec<&str> = vec!["fq_name", "uuid"];
    if !q.exclude_hrefs {
        keys.push("href");
    }
    let first = keys.len();
    let mut scratch = Vec::new();
    for f in &q.fields {
        if !keys.contains(&f.as_str()) && s.write_short_field(o, f, &mut scratch) {
            keys.push(f);
        }
        scratch.clear();
    }
    let mut m = JsonObj::open(out);
    for (i, k) in keys.into_iter().enumerate() {
        m.key(k);
        let asked = i >= first || q.fields.iter().any(|f| f == k);
        if asked && s.write_short_field(o, k, m.out) {
            continue;
        }
        match k {
            "fq_name" => write_json(m.out, &o.fq_name),
            "uuid" => write_json(m.out, &o.uuid),
            _ => write_json(m.out, &s.href(ty, &o.uuid)),
        }
    }
    m.close();
}

/// One list entry: the wrapped object (detail) or the short form with the asked-for fields.
fn entry(s: &Store, ty: &str, o: &Obj, q: &ListQuery) -> Value {
    if q.detail {
        return json!({ ty: s.render(o, true) });
    }
    let mut m = Map::new();
    m.insert("fq_name".into(), json!(o.fq_name));
    m.insert("uuid".into(), json!(o.uuid));
    if !q.exclude_hrefs {
        m.insert("href".into(), json!(s.href(ty, &o.uuid)));
    }
    if !q.fields.is_empty() {
        // Only the asked-for keys of the full rendering (each with the value it has there).
        let full = s.render_only(o, false, &|k| q.fields.iter().any(|f| f == k));
        for f in &q.fields {
            let Some(v) = full.get(f) else { continue };
            // Ref, child and back-ref items come without href here.
            let v = match v {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| {
                            let mut i = i.clone();
                            if let Some(im) = i.as_object_mut() {
                                im.remove("href");
                            }
                            i
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            m.insert(f.clone(), v);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one of each kind of thing a rendering has to get right: boot objects
    /// (no `display_name`), parents and children, refs with and without attrs, an empty ref
    /// list, back-refs, a `display_name` set by an update, `id_perms`/`perms2` sent by a
    /// client (their later value in their own place), strings that need escaping.
    fn store() -> Store {
        let mut s = Store::new("http://127.0.0.1:1");
        let p = ["default-domain", "default-project"];
        s.create(
            "network-ipam",
            json!({"fq_name": [p[0], p[1], "ipam"], "parent_type": "project"}),
        )
        .unwrap();
        let vn = s
            .create(
                "virtual-network",
                json!({"fq_name": [p[0], p[1], "blue"], "parent_type": "project",
                    "network_ipam_refs": [{"to": [p[0], p[1], "ipam"],
                        "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "10.1.0.0", "ip_prefix_len": 24}}]}}]}),
            )
            .unwrap();
        let vr = s
            .create(
                "virtual-router",
                json!({"fq_name": ["default-global-system-config", "agent-1"],
                    "parent_type": "global-system-config", "virtual_router_ip_address": "10.0.0.1"}),
            )
            .unwrap();
        for i in 0..5 {
            let cid = format!("c{i}");
            let vm = s
                .create(
                    "virtual-machine",
                    json!({"fq_name": [cid], "display_name": format!("app.{i} \"q\" \\ \u{1} é"),
                        "annotations": {"key_value_pair": [{"key": "owner", "value": "m"}]}}),
                )
                .unwrap();
            let vmi = s
                .create(
                    "virtual-machine-interface",
                    json!({"fq_name": [p[0], p[1], format!("{cid}__eth0")], "parent_type": "project",
                        "virtual_network_refs": [{"to": [p[0], p[1], "blue"], "uuid": vn}],
                        "virtual_machine_refs": [{"to": [cid], "uuid": vm}],
                        "security_group_refs": [],
                        "annotations": {"key_value_pair": [{"key": "index", "value": "0/1"}]}}),
                )
                .unwrap();
            s.create(
                "instance-ip",
                json!({"fq_name": [format!("{cid}__eth0")],
                    "virtual_network_refs": [{"to": [p[0], p[1], "blue"], "uuid": vn}],
                    "virtual_machine_interface_refs": [{"to": [p[0], p[1], format!("{cid}__eth0")], "uuid": vmi}]}),
            )
            .unwrap();
            s.ref_update(
                &json!({"type": "virtual-router", "uuid": vr, "ref-type": "virtual-machine",
                "ref-uuid": vm, "operation": "ADD", "attr": null}),
            )
            .unwrap();
        }
        let vm = s
            .create(
                "virtual-machine",
                json!({"fq_name": ["perms"], "id_perms": {"enable": false}, "perms2": {"owner": "x"},
                    "server_type": "container"}),
            )
            .unwrap();
        s.update("virtual-machine", &vm, json!({"display_name": "renamed"}))
            .unwrap();
        s
    }

    fn queries() -> Vec<ListQuery> {
        let q = |pairs: &[(&str, &str)]| {
            ListQuery::from_params(|k| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        vec![
            q(&[("detail", "True")]),
            q(&[
                ("detail", "True"),
                ("page_marker", "None"),
                ("page_limit", "2"),
            ]),
            q(&[]),
            q(&[("page_marker", "None"), ("page_limit", "3")]),
            q(&[("fields", "display_name,annotations")]),
            q(&[(
                "fields",
                "virtual_machine_interface_back_refs,virtual_router_back_refs,routing_instances,virtual_network_refs",
            )]),
            q(&[
                ("fields", "href,id_perms,perms2,fq_name"),
                ("exclude_hrefs", "true"),
            ]),
            // Identity keys, a parent's, one key twice, one no object has.
            q(&[(
                "fields",
                "virtual_network_refs,uuid,name,display_name,parent_type,parent_uuid,parent_href,virtual_network_refs,no_such_field,fq_name",
            )]),
            q(&[("count", "true")]),
            q(&[("detail", "True"), ("filters", "display_name==renamed")]),
        ]
    }

    #[test]
    fn list_text_is_the_list_value_as_text() {
        let s = store();
        for ty in super::super::store::TYPES {
            for q in queries() {
                // Walk every page: the next marker is this page's.
                let mut q = q.clone();
                loop {
                    let v = list(&s, ty, &q).unwrap();
                    assert_eq!(list_text(&s, ty, &q).unwrap(), v.to_string(), "{ty} {q:?}");
                    match v.get("marker").and_then(Value::as_str) {
                        Some(m) => q.page_marker = Some(m.to_owned()),
                        None => break,
                    }
                }
            }
        }
    }

    #[test]
    fn a_restricted_rendering_has_the_full_ones_values() {
        let s = store();
        for ty in super::super::store::TYPES {
            for o in s.list_type(ty) {
                for detail in [false, true] {
                    let full = s.render(o, detail);
                    for (k, v) in full.as_object().unwrap() {
                        let one = s.render_only(o, detail, &|x| x == k);
                        assert_eq!(one.as_object().unwrap().len(), 1, "{ty} {k}");
                        assert_eq!(&one[k], v, "{ty} {k}");
                    }
                }
                let mut text = Vec::new();
                s.write_detail(o, &mut text);
                assert_eq!(
                    String::from_utf8(text).unwrap(),
                    s.render(o, true).to_string(),
                    "{ty}"
                );
                // The single-object form (`GET /<type>/<uuid>`) and the create answer.
                let mut text = Vec::new();
                s.write_render(o, false, &mut text);
                assert_eq!(
                    String::from_utf8(text).unwrap(),
                    s.render(o, false).to_string(),
                    "{ty}"
                );
                let mut text = Vec::new();
                s.write_created(&o.uuid, &mut text);
                assert_eq!(
                    String::from_utf8(text).unwrap(),
                    s.render_created(&o.uuid).to_string(),
                    "{ty}"
                );
            }
        }
    }
}

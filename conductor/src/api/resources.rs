//! The Ironic collections Ferrite keeps as documents — chassis, portgroups, volume
//! connectors and targets, deploy templates — served by one set of handlers driven by a
//! [`Kind`] table: each kind's fields with their types, defaults and patchability, its
//! summary fields, the microversion it appeared in, and its uniqueness keys. Storage is
//! `db::resources`; what a kind *does* (portgroups in PXE, deploy templates as steps) lives
//! with the code that uses it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::nodes::check_paths;
use super::patch::{self, Operation};
use super::query::View;
use super::{base_url, json_ok, next_link, ApiError, ApiResult, JsonBody, Shared, Version};
use crate::db::{Resource, ResourceFilter};
use crate::model::{is_uuid_like, links, normalize_mac, now, Obj};

/// The JSON type a field accepts (`null` is accepted where the field is `nullable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Mac,
    Obj,
    Bool,
    Int,
    List,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// Must be given at creation.
    pub required: bool,
    pub nullable: bool,
    /// Settable by create and patch (otherwise server-maintained).
    pub writable: bool,
    /// The microversion that added the field (hidden and refused below it).
    pub since: Version,
    /// The value of a field not given.
    pub default: Dflt,
}

/// A field's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dflt {
    /// By type: `{}`, `[]`, `true`, else `null`.
    Auto,
    Bool(bool),
    Int(i64),
    Str(&'static str),
}

pub(super) const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
        nullable: true,
        writable: true,
        since: Version(1, 1),
        default: Dflt::Auto,
    }
}

/// A field with a default other than its type's.
pub(super) const fn with_default(field: Field, default: Dflt) -> Field {
    Field {
        default,
        nullable: false,
        ..field
    }
}

/// A server-maintained field (shown, not settable by create or patch).
pub(super) const fn read_only(field: Field) -> Field {
    Field {
        writable: false,
        ..field
    }
}

pub(super) const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        required: true,
        nullable: false,
        ..f(name, ty)
    }
}

pub(super) const fn obj(name: &'static str) -> Field {
    Field {
        nullable: false,
        ..f(name, Ty::Obj)
    }
}

pub(super) const fn since(field: Field, v: Version) -> Field {
    Field { since: v, ..field }
}

/// One collection: its routes, fields and rules.
pub struct Kind {
    /// Stored `kind` and the URL path under `/v1/`.
    pub path: &'static str,
    /// The key of the list in collection answers.
    pub list_key: &'static str,
    /// How error messages name one object.
    pub what: &'static str,
    /// The microversion that added the collection (404 below it, as Ironic answers).
    pub since: Version,
    /// Objects have a unique, optional `name`.
    pub named: bool,
    /// Objects belong to a node (`node_uuid`): `Some(true)` required, `Some(false)` optional.
    pub node: Option<bool>,
    pub fields: &'static [Field],
    /// Fields of a non-detailed list entry (besides `links`).
    pub summary: &'static [&'static str],
    /// Uniqueness keys within the kind, from the document (with `node_uuid` inserted).
    pub keys: fn(&Obj) -> (Option<String>, Option<String>),
    /// Extra checks on the whole document (at the request's version) before it is stored.
    pub validate: fn(&Obj, Version) -> Result<(), String>,
    /// What an answer hides (an inspection rule's `sensitive` conditions and actions).
    pub sanitize: fn(&mut Obj),
}

pub(super) fn no_keys(_: &Obj) -> (Option<String>, Option<String>) {
    (None, None)
}

pub(super) fn valid(_: &Obj, _: Version) -> Result<(), String> {
    Ok(())
}

pub(super) fn shown(_: &mut Obj) {}

pub(super) fn text(doc: &Obj, k: &str) -> String {
    match doc.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

pub static CHASSIS: Kind = Kind {
    path: "chassis",
    list_key: "chassis",
    what: "Chassis",
    since: Version(1, 1),
    named: false,
    node: None,
    fields: &[f("description", Ty::Str), obj("extra")],
    summary: &["uuid", "description"],
    keys: no_keys,
    validate: valid,
    sanitize: shown,
};

pub static PORTGROUPS: Kind = Kind {
    path: "portgroups",
    list_key: "portgroups",
    what: "Portgroup",
    since: Version(1, 23),
    named: true,
    node: Some(true),
    fields: &[
        f("address", Ty::Mac),
        obj("extra"),
        Field {
            nullable: false,
            ..f("standalone_ports_supported", Ty::Bool)
        },
        Field {
            writable: false,
            ..obj("internal_info")
        },
        since(f("mode", Ty::Str), Version(1, 26)),
        since(obj("properties"), Version(1, 26)),
        since(f("physical_network", Ty::Str), Version(1, 102)),
        since(f("category", Ty::Str), Version(1, 103)),
        // Ironic's dynamic portgroups (1.111) are made by its network interfaces; Ferrite's
        // (noop, flat) make none, so this stays false.
        since(
            read_only(with_default(
                f("dynamic_portgroup", Ty::Bool),
                Dflt::Bool(false),
            )),
            Version(1, 111),
        ),
    ],
    summary: &["uuid", "address", "name"],
    keys: |d| match d.get("address") {
        Some(Value::String(a)) => (Some(a.clone()), None),
        _ => (None, None),
    },
    validate: valid,
    sanitize: shown,
};

const CONNECTOR_TYPES: &[&str] = &["iqn", "ip", "mac", "wwnn", "wwpn", "port", "portgroup"];

pub static VOLUME_CONNECTORS: Kind = Kind {
    path: "volume/connectors",
    list_key: "connectors",
    what: "Volume connector",
    since: Version(1, 32),
    named: false,
    node: Some(true),
    fields: &[
        req("type", Ty::Str),
        req("connector_id", Ty::Str),
        obj("extra"),
    ],
    summary: &["uuid", "type", "connector_id", "node_uuid"],
    keys: |d| {
        (
            Some(format!("{}|{}", text(d, "type"), text(d, "connector_id"))),
            None,
        )
    },
    sanitize: shown,
    validate: |d, _| {
        let t = text(d, "type");
        if CONNECTOR_TYPES.contains(&t.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "Invalid volume connector type {t:?}: use one of {}",
                CONNECTOR_TYPES.join(", ")
            ))
        }
    },
};

pub static VOLUME_TARGETS: Kind = Kind {
    path: "volume/targets",
    list_key: "targets",
    what: "Volume target",
    since: Version(1, 32),
    named: false,
    node: Some(true),
    fields: &[
        req("volume_type", Ty::Str),
        obj("properties"),
        req("boot_index", Ty::Int),
        req("volume_id", Ty::Str),
        obj("extra"),
    ],
    summary: &[
        "uuid",
        "node_uuid",
        "volume_type",
        "boot_index",
        "volume_id",
    ],
    keys: |d| {
        let node = text(d, "node_uuid");
        (
            Some(format!("{node}|boot_index|{}", text(d, "boot_index"))),
            Some(format!("{node}|volume_id|{}", text(d, "volume_id"))),
        )
    },
    validate: |d, _| match d.get("boot_index").and_then(Value::as_i64) {
        Some(i) if i >= 0 => Ok(()),
        _ => Err("Invalid boot_index: use an integer of 0 or more".into()),
    },
    sanitize: shown,
};

pub(super) const STEP_INTERFACES: &[&str] = &[
    "bios",
    "boot",
    "console",
    "deploy",
    "firmware",
    "inspect",
    "management",
    "network",
    "power",
    "raid",
    "rescue",
    "storage",
    "vendor",
];

/// A deploy template's steps: a non-empty list of `{interface, step, args, priority}`.
fn check_steps(doc: &Obj, _: Version) -> Result<(), String> {
    let name = text(doc, "name");
    if !is_trait(&name) {
        return Err(format!(
            "Invalid deploy template name {name:?}: it must be a trait name, CUSTOM_ followed \
             by upper-case letters, digits and underscores (at most 255 characters)"
        ));
    }
    let Some(Value::Array(steps)) = doc.get("steps") else {
        return Err("Field \"steps\" must be a list of steps".into());
    };
    if steps.is_empty() {
        return Err("A deploy template needs at least one step".into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in steps {
        let Some(o) = s.as_object() else {
            return Err(format!("Invalid step {s}: expected an object"));
        };
        if let Some(k) = o
            .keys()
            .find(|k| !["interface", "step", "args", "priority"].contains(&k.as_str()))
        {
            return Err(format!("Invalid step {s}: unknown key {k:?}"));
        }
        let iface = o.get("interface").and_then(Value::as_str).unwrap_or("");
        if !STEP_INTERFACES.contains(&iface) {
            return Err(format!(
                "Invalid step {s}: interface must be one of {}",
                STEP_INTERFACES.join(", ")
            ));
        }
        let step = o.get("step").and_then(Value::as_str).unwrap_or("");
        if step.is_empty() {
            return Err(format!("Invalid step {s}: \"step\" names the step to run"));
        }
        if !o.get("args").is_some_and(Value::is_object) {
            return Err(format!("Invalid step {s}: \"args\" must be an object"));
        }
        if o.get("priority")
            .and_then(Value::as_i64)
            .is_none_or(|p| p < 0)
        {
            return Err(format!(
                "Invalid step {s}: \"priority\" must be an integer of 0 or more"
            ));
        }
        if !seen.insert((iface, step)) {
            return Err(format!(
                "Duplicate deploy steps for {iface}.{step}: each step may appear once"
            ));
        }
    }
    Ok(())
}

/// Ironic's trait syntax for custom traits (os-traits' standard names are upper-case too).
pub fn is_trait(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_uppercase())
}

pub static DEPLOY_TEMPLATES: Kind = Kind {
    path: "deploy_templates",
    list_key: "deploy_templates",
    what: "Deploy template",
    since: Version(1, 55),
    named: true,
    node: None,
    fields: &[req("steps", Ty::List), obj("extra")],
    summary: &["uuid", "name"],
    keys: no_keys,
    validate: check_steps,
    sanitize: shown,
};

pub static KINDS: &[&Kind] = &[
    &CHASSIS,
    &PORTGROUPS,
    &VOLUME_CONNECTORS,
    &VOLUME_TARGETS,
    &DEPLOY_TEMPLATES,
    &super::runbooks::RUNBOOKS,
    &super::runbooks::INSPECTION_RULES,
];

impl Kind {
    fn visible(&self, v: Version) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| f.since <= v)
    }

    /// Every field name an answer may carry at `v` (for `?fields=`).
    fn field_names(&self, v: Version) -> Vec<&'static str> {
        let mut out = vec!["uuid"];
        if self.named {
            out.push("name");
        }
        if self.node.is_some() {
            out.push("node_uuid");
        }
        out.extend(self.visible(v).map(|f| f.name));
        out.extend(["created_at", "updated_at", "links"]);
        out
    }

    pub(super) fn check_version(&self, v: Version) -> ApiResult<()> {
        if v < self.since {
            return Err(ApiError::not_found("The resource could not be found."));
        }
        Ok(())
    }

    fn default_of(&self, field: &Field) -> Value {
        match (field.default, field.ty) {
            (Dflt::Bool(b), _) => json!(b),
            (Dflt::Int(i), _) => json!(i),
            (Dflt::Str(s), _) => json!(s),
            (Dflt::Auto, Ty::Obj) => json!({}),
            (Dflt::Auto, Ty::List) => json!([]),
            (Dflt::Auto, Ty::Bool) => json!(true),
            (Dflt::Auto, _) => Value::Null,
        }
    }

    /// The API document of `r` at microversion `v`, as answers show it.
    pub(super) fn to_api(&self, r: &Resource, base: &str, v: Version) -> Obj {
        let mut o = self.to_api_raw(r, base, v);
        (self.sanitize)(&mut o);
        o
    }

    /// The whole document of `r` at `v`, nothing hidden (what a patch applies to).
    fn to_api_raw(&self, r: &Resource, base: &str, v: Version) -> Obj {
        let mut o = Obj::new();
        o.insert("uuid".into(), json!(r.uuid));
        if self.named {
            o.insert("name".into(), json!(r.name));
        }
        if self.node.is_some() {
            o.insert("node_uuid".into(), json!(r.node_uuid));
        }
        for field in self.visible(v) {
            let val = r
                .doc
                .get(field.name)
                .cloned()
                .unwrap_or_else(|| self.default_of(field));
            o.insert(field.name.into(), val);
        }
        o.insert("created_at".into(), json!(r.created_at));
        o.insert("updated_at".into(), json!(r.updated_at));
        o.insert("links".into(), links(base, self.path, &r.uuid));
        o
    }

    /// Checks `doc` (a whole object: create body or patched document) and writes it into
    /// `r`, resolving the node reference.
    async fn apply(
        &self,
        state: &Shared,
        r: &mut Resource,
        doc: &Obj,
        v: Version,
    ) -> ApiResult<()> {
        let mut writable: Vec<&str> = self
            .visible(v)
            .filter(|f| f.writable)
            .map(|f| f.name)
            .collect();
        if self.named {
            writable.push("name");
        }
        if self.node.is_some() {
            writable.push("node_uuid");
        }
        if let Some(k) = doc
            .keys()
            .find(|k| k.as_str() != "uuid" && !writable.contains(&k.as_str()))
        {
            return Err(ApiError::bad(format!(
                "Field {k:?} is read-only or unknown for a {}: settable fields are {}",
                self.what.to_lowercase(),
                writable.join(", ")
            )));
        }
        let mut out = Obj::new();
        for field in self.visible(v) {
            let given = if field.writable {
                doc.get(field.name)
            } else {
                r.doc.get(field.name)
            };
            let val = match given {
                None | Some(Value::Null) if field.required => {
                    return Err(ApiError::bad(format!(
                        "Field {:?} is mandatory for a {}",
                        field.name,
                        self.what.to_lowercase()
                    )))
                }
                None => self.default_of(field),
                Some(Value::Null) if field.nullable => Value::Null,
                Some(Value::Null) => self.default_of(field),
                Some(val) => check_type(field, val)?,
            };
            out.insert(field.name.into(), val);
        }
        if self.named {
            r.name = match doc.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if !n.is_empty() && !is_uuid_like(n) => Some(n.clone()),
                Some(n) => {
                    return Err(ApiError::bad(format!(
                        "Invalid name {n}: a non-empty string that is not a UUID"
                    )))
                }
            };
        }
        if let Some(required) = self.node {
            r.node_uuid = match doc.get("node_uuid") {
                None | Some(Value::Null) if required => {
                    return Err(ApiError::bad(format!(
                        "Field \"node_uuid\" is mandatory: the node this {} belongs to",
                        self.what.to_lowercase()
                    )))
                }
                None | Some(Value::Null) => None,
                Some(Value::String(ident)) => {
                    let node = state.engine.db.get_node(ident).await?.ok_or_else(|| {
                        ApiError::bad(format!(
                            "Node {ident} could not be found: create the node first"
                        ))
                    })?;
                    Some(node.uuid)
                }
                Some(other) => {
                    return Err(ApiError::bad(format!(
                        "Invalid node_uuid {other}: expected a node UUID or name"
                    )))
                }
            };
            out.insert("node_uuid".into(), json!(r.node_uuid));
        }
        if self.named {
            out.insert("name".into(), json!(r.name));
        }
        (self.validate)(&out, v).map_err(ApiError::bad)?;
        let (k1, k2) = (self.keys)(&out);
        out.remove("node_uuid");
        out.remove("name");
        patch::check_size(&Value::Object(out.clone()), self.what)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        r.doc = out;
        r.key1 = k1;
        r.key2 = k2;
        Ok(())
    }

    pub(super) async fn find(&self, state: &Shared, ident: &str) -> ApiResult<Resource> {
        state
            .engine
            .db
            .get_resource(self.path, ident)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("{} {ident} could not be found.", self.what))
            })
    }

    fn duplicate(&self) -> &'static str {
        match self.path {
            "portgroups" => "portgroup with this name, MAC address or uuid",
            "volume/connectors" => "volume connector with this type and connector_id",
            "volume/targets" => "volume target with this node and boot_index or volume_id",
            "deploy_templates" => "deploy template with this name",
            "runbooks" => "runbook with this name",
            _ => "object with this uuid",
        }
    }
}

fn check_type(field: &Field, v: &Value) -> ApiResult<Value> {
    let bad = |want: &str| {
        ApiError::bad(format!(
            "Invalid type for field {}: expected {want}, got {v}",
            field.name
        ))
    };
    Ok(match field.ty {
        Ty::Str => v
            .as_str()
            .map(|s| json!(s))
            .ok_or_else(|| bad("a string"))?,
        Ty::Mac => {
            let s = v.as_str().ok_or_else(|| bad("a MAC address"))?;
            json!(normalize_mac(s).map_err(|e| ApiError::bad(e.to_string()))?)
        }
        Ty::Obj if v.is_object() => v.clone(),
        Ty::Obj => return Err(bad("an object")),
        Ty::List if v.is_array() => v.clone(),
        Ty::List => return Err(bad("a list")),
        Ty::Bool => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) => json!(super::parse_bool(field.name, s)?),
            _ => return Err(bad("a boolean")),
        },
        Ty::Int => match v {
            Value::Number(n) if n.is_i64() => v.clone(),
            Value::String(s) => json!(s.parse::<i64>().map_err(|_| bad("an integer"))?),
            _ => return Err(bad("an integer")),
        },
    })
}

async fn list(
    kind: &'static Kind,
    state: Shared,
    headers: HeaderMap,
    v: Version,
    q: HashMap<String, String>,
    node: Option<String>,
    detail_path: bool,
) -> ApiResult<Response> {
    kind.check_version(v)?;
    const PARAMS: &[&str] = &[
        "detail",
        "fields",
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "node",
        "node_uuid",
        "address",
        "phase",
        "shard",
        "conductor_groups",
    ];
    let names = kind.field_names(v);
    let view = View::parse(&q, PARAMS, &names, detail_path)?;
    let limit = view.limit;
    let mut filter = ResourceFilter {
        limit: Some(limit),
        ..Default::default()
    };
    if let Some(n) = node
        .clone()
        .or_else(|| q.get("node").or(q.get("node_uuid")).cloned())
    {
        if kind.node.is_none() {
            return Err(ApiError::bad(format!(
                "A {} does not belong to a node: drop the node filter",
                kind.what.to_lowercase()
            )));
        }
        let found = state
            .engine
            .db
            .get_node(&n)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Node {n} could not be found.")))?;
        filter.node_uuid = Some(found.uuid);
    }
    if let Some(a) = q.get("address") {
        if !std::ptr::eq(kind, &PORTGROUPS) {
            return Err(ApiError::bad(format!(
                "A {} has no address to filter by",
                kind.what.to_lowercase()
            )));
        }
        // A portgroup's first uniqueness key is its MAC address.
        filter.key1 = Some(normalize_mac(a).map_err(|e| ApiError::bad(e.to_string()))?);
    }
    let within = if std::ptr::eq(kind, &PORTGROUPS) {
        super::ports::nodes_in(&state, &q, v, Version(1, 106)).await?
    } else if q.contains_key("shard") || q.contains_key("conductor_groups") {
        return Err(ApiError::bad(format!(
            "A {} cannot be filtered by shard or conductor_groups",
            kind.what.to_lowercase()
        )));
    } else {
        None
    };
    let phase = q.get("phase");
    if phase.is_some() && kind.path != "inspection_rules" {
        return Err(ApiError::bad(format!(
            "A {} has no phase to filter by",
            kind.what.to_lowercase()
        )));
    }
    if let Some(m) = q.get("marker") {
        let r = state
            .engine
            .db
            .get_resource(kind.path, m)
            .await?
            .ok_or_else(|| ApiError::bad(format!("Invalid marker {m:?}: no such object")))?;
        filter.after_id = Some(r.id);
    }
    let rows = state.engine.db.list_resources(kind.path, &filter).await?;
    let base = base_url(&state, &headers);
    let items: Vec<Value> = rows
        .iter()
        .filter(|r| phase.is_none_or(|p| r.doc.get("phase").and_then(Value::as_str) == Some(p)))
        .filter(|r| {
            within
                .as_ref()
                .is_none_or(|n| r.node_uuid.as_ref().is_some_and(|u| n.contains(u)))
        })
        .map(|r| Value::Object(view.project(kind.to_api(r, &base, v), kind.summary)))
        .collect();
    let mut out = json!({ kind.list_key: items });
    if rows.len() as i64 == limit {
        if let Some(last) = rows.last() {
            let path = match (&node, detail_path) {
                (Some(n), _) => format!("nodes/{n}/{}", kind.path),
                (None, true) => format!("{}/detail", kind.path),
                (None, false) => kind.path.to_string(),
            };
            out["next"] = json!(next_link(&base, &path, &q, limit, &last.uuid));
        }
    }
    Ok(json_ok(out))
}

async fn show(
    kind: &'static Kind,
    state: Shared,
    headers: HeaderMap,
    v: Version,
    ident: String,
    q: HashMap<String, String>,
) -> ApiResult<Response> {
    kind.check_version(v)?;
    let names = kind.field_names(v);
    let view = View::parse(&q, &["fields"], &names, true)?;
    let r = kind.find(&state, &ident).await?;
    let full = kind.to_api(&r, &base_url(&state, &headers), v);
    Ok(json_ok(Value::Object(view.project(full, kind.summary))))
}

async fn create(
    kind: &'static Kind,
    state: Shared,
    headers: HeaderMap,
    v: Version,
    doc: Obj,
) -> ApiResult<Response> {
    kind.check_version(v)?;
    let uuid = match doc.get("uuid") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(u)) if is_uuid_like(u) => u.to_lowercase(),
        Some(u) => return Err(ApiError::bad(format!("Invalid uuid {u}"))),
    };
    let mut r = Resource {
        id: 0,
        kind: kind.path,
        uuid,
        name: None,
        node_uuid: None,
        key1: None,
        key2: None,
        doc: Obj::new(),
        created_at: now(),
        updated_at: None,
    };
    kind.apply(&state, &mut r, &doc, v).await?;
    let r = state
        .engine
        .db
        .insert_resource(&r, kind.duplicate())
        .await?;
    let base = base_url(&state, &headers);
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(Value::Object(kind.to_api(&r, &base, v))),
    )
        .into_response();
    if let Ok(h) = format!("{base}/v1/{}/{}", kind.path, r.uuid).parse() {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

async fn update(
    kind: &'static Kind,
    state: Shared,
    headers: HeaderMap,
    v: Version,
    ident: String,
    ops: Vec<Operation>,
) -> ApiResult<Response> {
    kind.check_version(v)?;
    if ops.is_empty() {
        return Err(ApiError::bad(
            "The patch is empty: send a list of JSON Patch operations",
        ));
    }
    let mut writable: Vec<&str> = kind
        .visible(v)
        .filter(|f| f.writable)
        .map(|f| f.name)
        .collect();
    if kind.named {
        writable.push("name");
    }
    if kind.node.is_some() {
        writable.push("node_uuid");
    }
    check_paths(&ops, &writable)?;
    let mut r = kind.find(&state, &ident).await?;
    let mut doc = Value::Object(kind.to_api_raw(&r, "", v));
    patch::apply(&mut doc, &ops).map_err(|e| ApiError::bad(e.to_string()))?;
    let Value::Object(mut obj) = doc else {
        return Err(ApiError::bad(format!(
            "The patch replaced the whole {}",
            kind.what.to_lowercase()
        )));
    };
    obj.retain(|k, _| writable.contains(&k.as_str()));
    kind.apply(&state, &mut r, &obj, v).await?;
    r.updated_at = Some(now());
    state.engine.db.save_resource(&r, kind.duplicate()).await?;
    Ok(json_ok(Value::Object(kind.to_api(
        &r,
        &base_url(&state, &headers),
        v,
    ))))
}

async fn delete(
    kind: &'static Kind,
    state: Shared,
    v: Version,
    ident: String,
) -> ApiResult<Response> {
    kind.check_version(v)?;
    let r = kind.find(&state, &ident).await?;
    if std::ptr::eq(kind, &PORTGROUPS) && !super::ports::members(&state, &r.uuid).await?.is_empty()
    {
        return Err(ApiError::bad(format!(
            "Cannot complete the requested action because portgroup {} contains ports",
            r.uuid
        )));
    }
    state.engine.db.delete_resource(kind.path, &r.uuid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

type Q = Query<HashMap<String, String>>;
type V = Extension<Version>;

/// The routes of every kind: collection, detail, one object, and per-node lists.
pub fn routes() -> Router<Shared> {
    let mut r = Router::new();
    for &kind in KINDS {
        let base = format!("/v1/{}", kind.path);
        r = r
            .route(
                &base,
                get(
                    move |State(s): State<Shared>, h: HeaderMap, Extension(v): V, Query(q): Q| {
                        list(kind, s, h, v, q, None, false)
                    },
                )
                .post(
                    move |State(s): State<Shared>,
                          h: HeaderMap,
                          Extension(v): V,
                          JsonBody(doc): JsonBody<Obj>| {
                        create(kind, s, h, v, doc)
                    },
                ),
            )
            .route(
                &format!("{base}/detail"),
                get(
                    move |State(s): State<Shared>, h: HeaderMap, Extension(v): V, Query(q): Q| {
                        list(kind, s, h, v, q, None, true)
                    },
                ),
            )
            .route(
                &format!("{base}/{{ident}}"),
                get(
                    move |State(s): State<Shared>,
                          h: HeaderMap,
                          Extension(v): V,
                          Path(id): Path<String>,
                          Query(q): Q| show(kind, s, h, v, id, q),
                )
                .patch(
                    move |State(s): State<Shared>,
                          h: HeaderMap,
                          Extension(v): V,
                          Path(id): Path<String>,
                          JsonBody(ops): JsonBody<Vec<Operation>>| {
                        update(kind, s, h, v, id, ops)
                    },
                )
                .delete(
                    move |State(s): State<Shared>, Extension(v): V, Path(id): Path<String>| {
                        delete(kind, s, v, id)
                    },
                ),
            );
        if kind.node.is_some() {
            r = r.route(
                &format!("/v1/nodes/{{node}}/{}", kind.path),
                get(
                    move |State(s): State<Shared>,
                          h: HeaderMap,
                          Extension(v): V,
                          Path(n): Path<String>,
                          Query(q): Q| list(kind, s, h, v, q, Some(n), false),
                ),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn deploy_template_steps_are_checked() {
        let good = doc(json!({"name": "CUSTOM_RAID", "steps": [
            {"interface": "bios", "step": "apply_configuration", "args": {}, "priority": 150}
        ]}));
        assert_eq!(check_steps(&good, Version(1, 55)), Ok(()));
        for (bad, why) in [
            (
                json!({"name": "raid", "steps": good["steps"]}),
                "trait name",
            ),
            (json!({"name": "CUSTOM_X", "steps": []}), "at least one"),
            (
                json!({"name": "CUSTOM_X", "steps": [{"interface": "disk", "step": "x", "args": {}, "priority": 1}]}),
                "interface must be",
            ),
            (
                json!({"name": "CUSTOM_X", "steps": [{"interface": "raid", "step": "x", "args": {}, "priority": -1}]}),
                "priority",
            ),
            (
                json!({"name": "CUSTOM_X", "steps": [
                    {"interface": "raid", "step": "x", "args": {}, "priority": 1},
                    {"interface": "raid", "step": "x", "args": {}, "priority": 2}]}),
                "Duplicate",
            ),
        ] {
            let err = check_steps(&doc(bad), Version(1, 55)).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn uniqueness_keys_follow_ironic() {
        let vt = doc(json!({"node_uuid": "n1", "boot_index": 0, "volume_id": "v"}));
        assert_eq!(
            (VOLUME_TARGETS.keys)(&vt),
            (
                Some("n1|boot_index|0".into()),
                Some("n1|volume_id|v".into())
            )
        );
        let vc = doc(json!({"type": "iqn", "connector_id": "iqn.x"}));
        assert_eq!(
            (VOLUME_CONNECTORS.keys)(&vc).0.as_deref(),
            Some("iqn|iqn.x")
        );
        assert!(
            (VOLUME_CONNECTORS.validate)(&doc(json!({"type": "nfs"})), Version(1, 32)).is_err()
        );
        assert_eq!(
            (PORTGROUPS.keys)(&doc(json!({"address": null}))),
            (None, None)
        );
    }

    #[test]
    fn fields_appear_from_their_microversion() {
        let names = PORTGROUPS.field_names(Version(1, 23));
        assert!(names.contains(&"address") && !names.contains(&"mode"));
        assert!(PORTGROUPS.field_names(Version(1, 26)).contains(&"mode"));
        assert!(CHASSIS.check_version(Version(1, 1)).is_ok());
        assert!(DEPLOY_TEMPLATES.check_version(Version(1, 54)).is_err());
    }

    #[test]
    fn trait_names() {
        assert!(is_trait("CUSTOM_GPU_2"));
        assert!(is_trait("HW_CPU_X86_AVX2"));
        assert!(!is_trait("custom_gpu") && !is_trait("") && !is_trait("_X"));
    }
}

//! `/v1/nodes`: create, list (detail, fields, filters, markers), show by UUID or name,
//! JSON Patch, delete, states, provision and power requests, validate, boot device,
//! maintenance, inventory.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::patch::{self, Operation};
use super::{
    base_url, json_ok, next_link, parse_bool, parse_fields, parse_json, parse_limit, ApiError,
    ApiResult, JsonBody, Shared, Version,
};
use crate::db::NodeFilter;
use crate::engine::{EngineError, ProvisionRequest};
use crate::model::{
    is_uuid_like, now, ExtTy, Node, Obj, EXTENDED_FIELDS, NODE_FIELDS, NODE_SHORT_FIELDS,
};
use crate::state::State as PState;

const LIST_PARAMS: &[&str] = &[
    "detail",
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "provision_state",
    "maintenance",
    "driver",
    "resource_class",
    "associated",
    "instance_uuid",
    "owner",
    "lessee",
    "project",
    "conductor_group",
    "shard",
    "sharded",
    "include_children",
    "parent_node",
    "instance_name",
];

/// The microversion that added a node field: Ironic's `VERSIONED_FIELDS`
/// (api/controllers/v1/utils.py). Below it the field is left out of answers, and asking
/// for it (`fields=`, create, patch) is not acceptable (406).
pub fn field_since(field: &str) -> Version {
    let minor = match field {
        "driver_internal_info" => 3,
        "name" => 5,
        "inspection_finished_at" | "inspection_started_at" => 6,
        "clean_step" => 7,
        "raid_config" | "target_raid_config" => 12,
        "network_interface" => 20,
        "resource_class" => 21,
        "boot_interface"
        | "console_interface"
        | "deploy_interface"
        | "inspect_interface"
        | "management_interface"
        | "power_interface"
        | "raid_interface"
        | "vendor_interface" => 31,
        "storage_interface" => 33,
        "traits" => 37,
        "rescue_interface" => 38,
        "bios_interface" => 40,
        "fault" => 42,
        "deploy_step" => 44,
        "conductor_group" => 46,
        "automated_clean" => 47,
        "protected" | "protected_reason" => 48,
        "conductor" => 49,
        "owner" => 50,
        "description" => 51,
        "allocation_uuid" => 52,
        "retired" | "retired_reason" => 61,
        "lessee" => 65,
        "network_data" => 66,
        "boot_mode" | "secure_boot" => 75,
        "shard" => 82,
        "parent_node" => 83,
        "firmware_interface" => 86,
        "service_step" => 87,
        "disable_power_off" => 95,
        "instance_name" => 104,
        "health" => 109,
        _ => 1,
    };
    Version(1, minor)
}

/// Ironic's answer to a field newer than the request's version.
pub fn not_acceptable(field: &str) -> ApiError {
    let v = field_since(field);
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "Request not acceptable: field {field:?} needs API version {}.{} or newer",
            v.0, v.1
        ),
    )
}

/// The node's document at microversion `v` (fields newer than `v` left out).
/// Ironic links the node's states (1.14), port groups (1.24) and volume (1.32)
/// sub-resources beside its ports.
pub fn node_doc(n: &Node, base: &str, v: Version) -> Obj {
    let mut o = n.to_api(base);
    o.retain(|k, _| field_since(k) <= v);
    for (sub, since) in [("states", 14), ("portgroups", 24), ("volume", 32)] {
        if v >= Version(1, since) {
            o.insert(
                sub.into(),
                crate::model::links(base, "nodes", &format!("{}/{sub}", n.uuid)),
            );
        }
    }
    o
}

/// `fields=` checked against the node fields, and against the version.
fn node_fields(f: &str, v: Version) -> ApiResult<Vec<&str>> {
    let fields = parse_fields(f, NODE_FIELDS)?;
    if let Some(bad) = fields.iter().find(|f| field_since(f) > v) {
        return Err(not_acceptable(bad));
    }
    Ok(fields)
}

/// A `parent_node` given by name or UUID is stored as the parent's UUID, as Ironic's
/// `authorize_node_link` does; a parent that does not exist is refused.
async fn resolve_parent(state: &Shared, value: &mut Value) -> ApiResult<()> {
    let Value::String(ident) = value else {
        return Ok(());
    };
    let parent = state.engine.db.get_node(ident).await?.ok_or_else(|| {
        ApiError::bad(format!(
            "Node {ident} could not be found: parent_node must name an existing node"
        ))
    })?;
    *value = json!(parent.uuid);
    Ok(())
}

/// Fields a user may set at creation or patch.
const WRITABLE: &[&str] = &[
    "uuid",
    "name",
    "driver",
    "driver_info",
    "properties",
    "instance_info",
    "instance_uuid",
    "extra",
    "resource_class",
    "boot_interface",
    "deploy_interface",
    "power_interface",
    "management_interface",
    "inspect_interface",
    "maintenance",
    "maintenance_reason",
];

/// [`WRITABLE`] and the settable [`EXTENDED_FIELDS`].
fn writable() -> Vec<&'static str> {
    let ext = EXTENDED_FIELDS
        .iter()
        .filter(|f| f.ty != ExtTy::ReadOnly)
        .map(|f| f.name);
    WRITABLE.iter().copied().chain(ext).collect()
}

/// Checks and stores one extended field; `Null` returns it to its default.
fn apply_extended(node: &mut Node, k: &str, v: &Value) -> ApiResult<()> {
    let Some(f) = EXTENDED_FIELDS.iter().find(|f| f.name == k) else {
        return Err(ApiError::bad(format!("Field {k:?} is unknown")));
    };
    if v.is_null() {
        node.extended.remove(k);
        return Ok(());
    }
    let ok = match f.ty {
        ExtTy::Str => v.is_string(),
        ExtTy::Bool | ExtTy::OptBool => v.is_boolean(),
        ExtTy::Obj => v.is_object(),
        ExtTy::Iface(names) => {
            let name = v.as_str().unwrap_or("");
            if !names.contains(&name) {
                return Err(ApiError::bad(format!(
                    "Interface {name:?} for {k} is not enabled: Ferrite implements {}",
                    names.join(", ")
                )));
            }
            true
        }
        ExtTy::ReadOnly => false,
    };
    if !ok {
        return Err(ApiError::bad(format!(
            "Invalid type for field {k}: got {v}"
        )));
    }
    if let Some(s) = v.as_str() {
        if s.len() > 255 {
            return Err(ApiError::bad(format!("{k} is longer than 255 characters")));
        }
        if k == "conductor_group" {
            // Ironic stores conductor groups lower-case and limits their alphabet.
            if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(ApiError::bad(format!(
                    "Invalid conductor_group {s:?}: use letters, digits, '.', '_' and '-'"
                )));
            }
            node.extended.insert(k.into(), json!(s.to_lowercase()));
            return Ok(());
        }
    }
    node.extended.insert(k.to_string(), v.clone());
    Ok(())
}

/// Ironic's rules for `retired` and `protected`: a reason is dropped with its flag; an
/// available node cannot retire (it could be scheduled), only an active node is protected.
fn check_flags(before: &Node, node: &mut Node) -> ApiResult<()> {
    for (flag, reason) in [
        ("retired", "retired_reason"),
        ("protected", "protected_reason"),
    ] {
        if !node.ext_flag(flag) {
            let newly_given =
                node.ext(reason).is_string() && node.ext(reason) != before.ext(reason);
            if newly_given && !before.ext_flag(flag) {
                return Err(ApiError::bad(format!(
                    "Cannot set {reason} on node {} that is not {flag}: set {flag} to true with it",
                    node.uuid
                )));
            }
            node.extended.remove(reason);
        }
    }
    if node.ext_flag("retired")
        && !before.ext_flag("retired")
        && node.provision_state == PState::Available
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Node {} is available and cannot be retired: move it to manageable (or deploy it) first",
                node.uuid
            ),
        ));
    }
    if node.ext_flag("protected") && node.provision_state != PState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Node {} is {} and cannot be protected: only active nodes can",
                node.uuid, node.provision_state
            ),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        && !is_uuid_like(name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "Expected a logical name but received {name:?}: use letters, digits and -._~ (not a UUID)"
        )))
    }
}

fn want_str(k: &str, v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(ApiError::bad(format!(
            "Invalid type for field {k}: expected a string, got {other}"
        ))),
    }
}

fn want_obj(k: &str, v: &Value) -> ApiResult<Obj> {
    match v {
        Value::Null => Ok(Obj::new()),
        Value::Object(o) => Ok(o.clone()),
        other => Err(ApiError::bad(format!(
            "Invalid type for field {k}: expected an object, got {other}"
        ))),
    }
}

/// Writes the user-settable fields of `doc` into `node`, validating each.
fn apply_fields(state: &Shared, node: &mut Node, doc: &Obj, creating: bool) -> ApiResult<()> {
    let settable = writable();
    if let Some(k) = doc.keys().find(|k| !settable.contains(&k.as_str())) {
        let what = if NODE_FIELDS.contains(&k.as_str()) {
            "read-only"
        } else {
            "unknown"
        };
        return Err(ApiError::bad(format!(
            "Field {k:?} is {what}: settable fields are {}",
            settable.join(", ")
        )));
    }
    let before = node.clone();
    let old_driver = node.driver.clone();
    for (k, v) in doc {
        match k.as_str() {
            "uuid" => {
                let u = want_str(k, v)?.unwrap_or_default();
                if !creating && u != node.uuid {
                    return Err(ApiError::bad("Field \"uuid\" cannot be changed"));
                }
                if !is_uuid_like(&u) {
                    return Err(ApiError::bad(format!(
                        "Expected a UUID for uuid but received {u:?}"
                    )));
                }
                node.uuid = u.to_ascii_lowercase();
            }
            "name" => {
                node.name = want_str(k, v)?;
                if let Some(n) = &node.name {
                    check_name(n)?;
                }
            }
            "driver" => {
                node.driver = want_str(k, v)?.ok_or_else(|| {
                    ApiError::bad("Field \"driver\" is mandatory: e.g. fake-hardware")
                })?
            }
            "driver_info" => node.driver_info = want_obj(k, v)?,
            "properties" => node.properties = want_obj(k, v)?,
            "instance_info" => node.instance_info = want_obj(k, v)?,
            "extra" => node.extra = want_obj(k, v)?,
            "instance_uuid" => {
                node.instance_uuid = want_str(k, v)?;
                if let Some(u) = &node.instance_uuid {
                    if !is_uuid_like(u) {
                        return Err(ApiError::bad(format!(
                            "Expected a UUID for instance_uuid but received {u:?}"
                        )));
                    }
                }
            }
            "resource_class" => {
                node.resource_class = want_str(k, v)?;
                if node.resource_class.as_ref().is_some_and(|r| r.len() > 80) {
                    return Err(ApiError::bad("resource_class is longer than 80 characters"));
                }
            }
            "maintenance" => {
                node.maintenance = v.as_bool().ok_or_else(|| {
                    ApiError::bad(format!(
                        "Invalid type for field maintenance: expected a boolean, got {v}"
                    ))
                })?
            }
            "maintenance_reason" => node.maintenance_reason = want_str(k, v)?,
            ext if !WRITABLE.contains(&ext) => apply_extended(node, ext, v)?,
            iface => {
                let val = want_str(k, v)?;
                let slot = match iface {
                    "boot_interface" => &mut node.boot_interface,
                    "deploy_interface" => &mut node.deploy_interface,
                    "power_interface" => &mut node.power_interface,
                    "management_interface" => &mut node.management_interface,
                    _ => &mut node.inspect_interface,
                };
                *slot = val.unwrap_or_default();
            }
        }
    }
    let hw = state.engine.drivers.get(&node.driver).ok_or_else(|| {
        ApiError::bad(format!(
            "Driver {:?} is not loaded: available drivers are {}",
            node.driver,
            state.engine.drivers.names().join(", ")
        ))
    })?;
    // Interfaces not given (or emptied, or from another driver) take the defaults.
    for (field, default) in hw.defaults() {
        let explicit = doc.get(field).is_some_and(|v| !v.is_null());
        let slot = match field {
            "boot_interface" => &mut node.boot_interface,
            "deploy_interface" => &mut node.deploy_interface,
            "power_interface" => &mut node.power_interface,
            "management_interface" => &mut node.management_interface,
            _ => &mut node.inspect_interface,
        };
        if slot.is_empty() || (!explicit && (creating || old_driver != node.driver)) {
            *slot = default.to_string();
        }
    }
    hw.for_node(node)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    // Clearing instance_uuid ends the node's allocation (the handler deletes its row).
    if node.instance_uuid.is_none() {
        node.extended.remove("allocation_uuid");
    }
    check_flags(&before, node)
}

pub(crate) fn blank_node() -> Node {
    Node {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        name: None,
        driver: String::new(),
        driver_info: Obj::new(),
        properties: Obj::new(),
        instance_info: Obj::new(),
        instance_uuid: None,
        extra: Obj::new(),
        provision_state: PState::Enroll,
        target_provision_state: None,
        power_state: None,
        target_power_state: None,
        last_error: None,
        maintenance: false,
        maintenance_reason: None,
        reservation: None,
        conductor: None,
        driver_internal_info: Obj::new(),
        clean_step: Obj::new(),
        deploy_step: Obj::new(),
        resource_class: None,
        boot_interface: String::new(),
        deploy_interface: String::new(),
        power_interface: String::new(),
        management_interface: String::new(),
        inspect_interface: String::new(),
        created_at: now(),
        updated_at: None,
        provision_updated_at: None,
        inspection_started_at: None,
        inspection_finished_at: None,
        extended: Obj::new(),
        agent_token: None,
        agent_url: None,
        agent_verify_ca: None,
        agent_last_heartbeat: None,
    }
}

pub async fn create(
    State(state): State<Shared>,
    Extension(version): Extension<Version>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<Obj>,
) -> ApiResult<Response> {
    if !doc.contains_key("driver") {
        return Err(ApiError::bad(
            "Field \"driver\" is mandatory: e.g. {\"driver\": \"fake-hardware\"}",
        ));
    }
    if let Some(k) = doc.keys().find(|k| field_since(k) > version) {
        return Err(not_acceptable(k));
    }
    let mut doc = doc;
    if let Some(parent) = doc.get_mut("parent_node") {
        resolve_parent(&state, parent).await?;
    }
    let mut node = blank_node();
    apply_fields(&state, &mut node, &doc, true)?;
    // Before 1.11 new nodes started `available` (Ironic's rule).
    node.provision_state = if version >= Version(1, 11) {
        PState::Enroll
    } else {
        PState::Available
    };
    node.conductor = Some(state.engine.cfg.host.clone());
    if let Some(n) = &node.name {
        if state.engine.db.get_node(n).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("A node with name {n} already exists."),
            ));
        }
    }
    if state.engine.db.get_node(&node.uuid).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("A node with UUID {} already exists.", node.uuid),
        ));
    }
    let node = state.engine.db.insert_node(&node).await?;
    let base = base_url(&state, &headers);
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(Value::Object(node_doc(&node, &base, version))),
    )
        .into_response();
    if let Ok(h) = format!("{base}/v1/nodes/{}", node.uuid).parse() {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

async fn list_inner(
    state: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    detail_path: bool,
    v: Version,
) -> ApiResult<Value> {
    if let Some(k) = q.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: supported are {}",
            LIST_PARAMS.join(", ")
        )));
    }
    let detail = match q.get("detail") {
        Some(v) => parse_bool("detail", v)?,
        None => detail_path,
    };
    if detail && q.contains_key("fields") {
        return Err(ApiError::bad(
            "Can not specify ?detail=True and fields in the same request.",
        ));
    }
    if let Some(d) = q.get("sort_dir") {
        if d != "asc" {
            return Err(ApiError::bad(format!(
                "Invalid sort_dir {d:?}: only \"asc\" is supported"
            )));
        }
    }
    if let Some(k) = q.get("sort_key") {
        if k != "id" && k != "created_at" {
            return Err(ApiError::bad(format!(
                "Invalid sort_key {k:?}: only id and created_at are supported"
            )));
        }
    }
    let limit = parse_limit(q.get("limit").map(String::as_str))?;
    let mut f = NodeFilter {
        provision_state: q.get("provision_state").cloned(),
        driver: q.get("driver").cloned(),
        resource_class: q.get("resource_class").cloned(),
        instance_uuid: q.get("instance_uuid").cloned(),
        project: q.get("project").cloned(),
        limit: Some(limit),
        ..Default::default()
    };
    for (key, since) in [
        ("owner", 50),
        ("lessee", 65),
        ("conductor_group", 46),
        ("shard", 82),
        ("parent_node", 83),
        ("instance_name", 104),
    ] {
        if let Some(val) = q.get(key) {
            if v < Version(1, since) {
                return Err(not_acceptable(key));
            }
            let val = if key == "conductor_group" {
                val.to_lowercase()
            } else if key == "parent_node" {
                // A parent is named by UUID or name; nodes store its UUID.
                match state.engine.db.get_node(val).await? {
                    Some(p) => p.uuid,
                    None => val.clone(),
                }
            } else {
                val.clone()
            };
            f.extended.push((key, val));
        }
    }
    if let Some(sh) = q.get("sharded") {
        if v < Version(1, 82) {
            return Err(not_acceptable("shard"));
        }
        f.extended_set.push(("shard", parse_bool("sharded", sh)?));
    }
    let include_children = match q.get("include_children") {
        Some(_) if v < Version(1, 83) => return Err(not_acceptable("parent_node")),
        Some(c) => parse_bool("include_children", c)?,
        None => false,
    };
    // Child nodes are listed only when asked for, or under their parent (as in Ironic).
    if !include_children && !q.contains_key("parent_node") {
        f.extended_set.push(("parent_node", false));
    }
    if let Some(ps) = &f.provision_state {
        ps.parse::<PState>()
            .map_err(|e| ApiError::bad(e.to_string()))?;
    }
    if let Some(m) = q.get("maintenance") {
        f.maintenance = Some(parse_bool("maintenance", m)?);
    }
    if let Some(a) = q.get("associated") {
        f.associated = Some(parse_bool("associated", a)?);
    }
    if let Some(m) = q.get("marker") {
        let n = state
            .engine
            .db
            .get_node(m)
            .await?
            .ok_or_else(|| ApiError::bad(format!("Invalid marker {m:?}: no such node")))?;
        f.after_id = Some(n.id);
    }
    let fields = match q.get("fields") {
        Some(fl) => Some(node_fields(fl, v)?),
        None => None,
    };
    let nodes = state.engine.db.list_nodes(&f).await?;
    let base = base_url(state, headers);
    let list: Vec<Value> = nodes
        .iter()
        .map(|n| {
            Value::Object(match (&fields, detail) {
                (Some(fl), _) => n.to_api_fields(&base, fl),
                (None, true) => node_doc(n, &base, v),
                (None, false) => {
                    let mut o = n.to_api_fields(&base, NODE_SHORT_FIELDS);
                    o.retain(|k, _| field_since(k) <= v);
                    o
                }
            })
        })
        .collect();
    let mut out = json!({"nodes": list});
    if nodes.len() as i64 == limit {
        if let Some(last) = nodes.last() {
            let path = if detail_path { "nodes/detail" } else { "nodes" };
            out["next"] = json!(next_link(&base, path, q, limit, &last.uuid));
        }
    }
    Ok(out)
}

pub async fn list(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, &q, false, v)
        .await
        .map(json_ok)
}

pub async fn list_detail(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if q.contains_key("detail") {
        return Err(ApiError::bad("detail is implied by /nodes/detail"));
    }
    list_inner(&state, &headers, &q, true, v).await.map(json_ok)
}

pub async fn show(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "fields") {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: only fields is supported"
        )));
    }
    let node = state.engine.node(&ident).await?;
    let base = base_url(&state, &headers);
    let body = match q.get("fields") {
        Some(f) => node.to_api_fields(&base, &node_fields(f, v)?),
        None => node_doc(&node, &base, v),
    };
    Ok(json_ok(Value::Object(body)))
}

/// The user-settable view of a node, unmasked, that a patch applies to.
fn patch_doc(n: &Node) -> Value {
    let mut doc = json!({
        "uuid": n.uuid, "name": n.name, "driver": n.driver, "driver_info": n.driver_info,
        "properties": n.properties, "instance_info": n.instance_info,
        "instance_uuid": n.instance_uuid, "extra": n.extra, "resource_class": n.resource_class,
        "boot_interface": n.boot_interface, "deploy_interface": n.deploy_interface,
        "power_interface": n.power_interface, "management_interface": n.management_interface,
        "inspect_interface": n.inspect_interface, "maintenance": n.maintenance,
        "maintenance_reason": n.maintenance_reason,
    });
    for f in EXTENDED_FIELDS.iter().filter(|f| f.ty != ExtTy::ReadOnly) {
        doc[f.name] = n.ext(f.name);
    }
    doc
}

/// Checks that each operation targets a patchable field.
pub fn check_paths(ops: &[Operation], writable: &[&str]) -> ApiResult<()> {
    for op in ops {
        for path in std::iter::once(&op.path).chain(op.from.as_ref()) {
            let tokens = patch::pointer(path).map_err(|e| ApiError::bad(e.to_string()))?;
            let first = tokens.first().map(String::as_str).unwrap_or("");
            if first == "uuid" || first == "id" || !writable.contains(&first) {
                return Err(ApiError::bad(format!(
                    "Cannot patch {path:?}: it is read-only or unknown; patchable: /{}",
                    writable
                        .iter()
                        .filter(|w| **w != "uuid")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", /")
                )));
            }
        }
    }
    Ok(())
}

pub async fn update(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    JsonBody(ops): JsonBody<Vec<Operation>>,
) -> ApiResult<Response> {
    if ops.is_empty() {
        return Err(ApiError::bad(
            "The patch is empty: send a list of JSON Patch operations",
        ));
    }
    check_paths(&ops, &writable())?;
    for op in &ops {
        let first = patch::pointer(&op.path)
            .ok()
            .and_then(|t| t.into_iter().next())
            .unwrap_or_default();
        if field_since(&first) > v {
            return Err(not_acceptable(&first));
        }
    }
    let mut ops = ops;
    for op in &mut ops {
        if op.path == "/parent_node" {
            if let Some(value) = op.value.as_mut() {
                resolve_parent(&state, value).await?;
            }
        }
    }
    // The allocation the node had, read under the update's lock.
    let mut allocation = Value::Null;
    let prior = &mut allocation;
    let st = state.clone();
    let node = state
        .engine
        .update(&ident, move |node| {
            *prior = node.ext("allocation_uuid");
            let mut doc = patch_doc(node);
            patch::apply(&mut doc, &ops).map_err(|e| EngineError::Invalid(e.to_string()))?;
            // A config drive comes with a provisioning request (up to 64 MiB) and is not
            // the patch's to count.
            let configdrive = doc
                .get_mut("instance_info")
                .and_then(Value::as_object_mut)
                .and_then(|i| i.remove("configdrive"));
            patch::check_size(&doc, "node").map_err(|e| EngineError::Invalid(e.to_string()))?;
            if let (Some(cd), Some(i)) = (
                configdrive,
                doc.get_mut("instance_info").and_then(Value::as_object_mut),
            ) {
                i.insert("configdrive".into(), cd);
            }
            let mut obj = match doc {
                Value::Object(o) => o,
                _ => {
                    return Err(EngineError::Invalid(
                        "The patch replaced the whole node".into(),
                    ))
                }
            };
            // A removed top-level field returns to its empty value.
            for k in writable() {
                obj.entry(k.to_string()).or_insert(Value::Null);
            }
            obj.insert("uuid".into(), json!(node.uuid));
            if obj.get("maintenance").is_some_and(Value::is_null) {
                obj.insert("maintenance".into(), json!(false));
            }
            let old_instance_info = node.instance_info.clone();
            apply_fields(&st, node, &obj, false).map_err(|e| {
                if e.status == StatusCode::CONFLICT {
                    EngineError::Conflict(e.message)
                } else {
                    EngineError::Invalid(e.message)
                }
            })?;
            // Ironic (1.104): a changed instance_info's display_name becomes the
            // instance_name when the node has none.
            if node.instance_info != old_instance_info
                && node.ext("instance_name").as_str().is_none_or(str::is_empty)
            {
                if let Some(d) = node
                    .instance_info
                    .get("display_name")
                    .and_then(Value::as_str)
                {
                    node.extended.insert("instance_name".into(), json!(d));
                }
            }
            Ok(())
        })
        .await?;
    if let (Some(a), true) = (allocation.as_str(), node.ext("allocation_uuid").is_null()) {
        state.engine.db.delete_resource("allocations", a).await?;
    }
    Ok(json_ok(Value::Object(node_doc(
        &node,
        &base_url(&state, &headers),
        v,
    ))))
}

const DELETABLE: &[PState] = &[
    PState::Enroll,
    PState::Manageable,
    PState::Available,
    PState::InspectFailed,
    PState::CleanFailed,
];

pub async fn delete(State(state): State<Shared>, Path(ident): Path<String>) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    let ps = node.provision_state;
    if !(DELETABLE.contains(&ps) || (node.maintenance && !ps.is_working())) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Node {} can not be deleted while it is in state \"{ps}\": move it to manageable \
                 or available first, or set maintenance",
                node.uuid
            ),
        ));
    }
    if node.ext_flag("protected") {
        return Err(ApiError::forbidden(format!(
            "Node {} is protected: set protected to false before deleting it",
            node.uuid
        )));
    }
    if let Some(i) = &node.instance_uuid {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Node {} is associated with instance {i}: remove instance_uuid first",
                node.uuid
            ),
        ));
    }
    let node = state.engine.lock_waiting(&node).await?;
    state.engine.db.delete_node(&node.uuid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn states(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let n = state.engine.node(&ident).await?;
    let mut doc = json!({
        "power_state": n.power_state,
        "target_power_state": n.target_power_state,
        "provision_state": n.provision_state.as_str(),
        "target_provision_state": n.target_provision_state.map(|s| s.as_str()),
        "provision_updated_at": n.provision_updated_at,
        "last_error": n.last_error,
        "console_enabled": false,
        "raid_config": n.ext("raid_config"),
        "target_raid_config": n.ext("target_raid_config"),
        "boot_mode": n.ext("boot_mode"),
        "secure_boot": n.ext("secure_boot"),
    });
    if let Value::Object(o) = &mut doc {
        o.retain(|k, _| field_since(k) <= v);
    }
    Ok(json_ok(doc))
}

fn accepted(base: &str, uuid: &str) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(h) = format!("{base}/v1/nodes/{uuid}/states").parse() {
        r.headers_mut().insert(header::LOCATION, h);
    }
    r
}

pub async fn provision(
    State(state): State<Shared>,
    Extension(version): Extension<Version>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    JsonBody(mut req): JsonBody<ProvisionRequest>,
) -> ApiResult<Response> {
    check_provision_version(&req, version)?;
    let current = state.engine.node(&ident).await?;
    check_flags_allow(&current, &req.target)?;
    if let Some(rb) = req.runbook.take() {
        // Ironic's _handle_runbook: the runbook's steps replace the user's.
        let (steps, disable_ramdisk) =
            super::runbooks::runbook_steps(&state, &current, &rb, version).await?;
        match req.target.as_str() {
            "clean" if req.clean_steps.is_none() => req.clean_steps = Some(steps),
            "service" if req.service_steps.is_none() => req.service_steps = Some(steps),
            "clean" | "service" => {
                return Err(ApiError::bad(format!(
                    "Please provide either \"{}_steps\" or a runbook, but not both.",
                    req.target
                )))
            }
            _ => {
                return Err(ApiError::bad(
                    "\"runbook\" is only valid when setting target provision state to clean \
                     or service",
                ))
            }
        }
        if disable_ramdisk && req.target == "clean" {
            return Err(ApiError::bad(
                "The runbook sets disable_ramdisk, which Ferrite's cleaning does not support \
                 (cleaning always boots the agent)",
            ));
        }
    }
    let node = state.engine.provision(&ident, req).await?;
    Ok(accepted(&base_url(&state, &headers), &node.uuid))
}

/// A retired node is not offered for deployment again; a protected node keeps its
/// instance (Ironic's NodeIsRetired and NodeProtected).
fn check_flags_allow(node: &Node, target: &str) -> ApiResult<()> {
    if node.ext_flag("retired") && target == "provide" {
        return Err(ApiError::bad(format!(
            "Node {} is retired and cannot be provided: set retired to false first",
            node.uuid
        )));
    }
    if node.ext_flag("protected") && ["deleted", "undeploy", "rebuild"].contains(&target) {
        return Err(ApiError::forbidden(format!(
            "Node {} is protected: set protected to false before \"{target}\"",
            node.uuid
        )));
    }
    Ok(())
}

/// Fields of a provision request newer than the negotiated version are refused (406), as
/// Ironic does; `disable_ramdisk: true` is refused because cleaning always boots the agent.
fn check_provision_version(req: &ProvisionRequest, version: Version) -> ApiResult<()> {
    let need = |v: u32, what: &str| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("Request not acceptable: {what} needs API version 1.{v} or newer"),
        )
    };
    if ["deploy", "undeploy"].contains(&req.target.as_str()) && version < Version(1, 73) {
        return Err(need(73, &format!("target \"{}\"", req.target)));
    }
    if ["rescue", "unrescue"].contains(&req.target.as_str()) && version < Version(1, 38) {
        return Err(need(38, &format!("target \"{}\"", req.target)));
    }
    if req.rescue_password.is_some() && version < Version(1, 38) {
        return Err(need(38, "rescue_password"));
    }
    if req.deploy_steps.is_some() && version < Version(1, 69) {
        return Err(need(69, "deploy_steps"));
    }
    if req.disable_ramdisk.is_some() && version < Version(1, 70) {
        return Err(need(70, "disable_ramdisk"));
    }
    let service = req.target == "service";
    if service && version < Version(1, 87) {
        return Err(need(87, "target \"service\""));
    }
    if req.service_steps.is_some() && version < Version(1, 87) {
        return Err(need(87, "service_steps"));
    }
    if req.runbook.is_some() && version < Version(1, 92) {
        return Err(need(92, "runbook"));
    }
    if service && req.disable_ramdisk.is_some() && version < Version(1, 108) {
        return Err(need(108, "disable_ramdisk with target \"service\""));
    }
    // Servicing never boots the ramdisk (ferrite-agent has no service steps), so asking
    // it not to is what happens anyway.
    if req.disable_ramdisk == Some(true) && !service {
        return Err(ApiError::bad(
            "disable_ramdisk is not supported: Ferrite runs clean steps through the agent, so \
             the ramdisk is always booted; leave disable_ramdisk out or set it to false",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    target: String,
    #[serde(default)]
    #[allow(dead_code)]
    timeout: Option<u64>,
}

pub async fn power(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    JsonBody(req): JsonBody<PowerRequest>,
) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    if node.ext_flag("disable_power_off")
        && ["power off", "soft power off"].contains(&req.target.as_str())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Failed to set node power state to {}.", req.target),
        ));
    }
    state.engine.set_power(&node.uuid, &req.target).await?;
    Ok(accepted(&base_url(&state, &headers), &node.uuid))
}

pub async fn validate(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    let d = state
        .engine
        .drivers
        .for_node(&node)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    let r = |res: Result<(), crate::drivers::DriverError>| match res {
        Ok(()) => json!({"result": true}),
        Err(e) => json!({"result": false, "reason": crate::error_chain(&e)}),
    };
    // Ironic's answer for the "no-" implementations Ferrite's hardware types have.
    let unsupported = |iface: &str| {
        json!({"result": false, "reason": format!(
            "Driver {} does not support {iface} (disabled or not implemented).", node.driver
        )})
    };
    let mut doc = json!({
        "power": r(d.power.validate(&node)),
        "management": r(d.management.validate(&node)),
        "boot": r(d.boot.validate(&node)),
        "deploy": r(d.deploy.validate(&node)),
        "inspect": r(d.inspect.validate(&node)),
        "network": {"result": true},
        "console": unsupported("console"),
        "raid": unsupported("raid"),
        "rescue": match crate::drivers::rescue_interface(&node) {
            crate::drivers::NO_RESCUE => unsupported("rescue"),
            _ => r(crate::drivers::validate_rescue(&node, &d)),
        },
        "bios": unsupported("bios"),
        "storage": {"result": true},
    });
    if v >= Version(1, 86) {
        doc["firmware"] = unsupported("firmware");
    }
    Ok(json_ok(doc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceRequest {
    boot_device: String,
    #[serde(default)]
    persistent: bool,
}

pub async fn set_boot_device(
    State(state): State<Shared>,
    Path(ident): Path<String>,
    JsonBody(req): JsonBody<BootDeviceRequest>,
) -> ApiResult<Response> {
    state
        .engine
        .set_boot_device(&ident, &req.boot_device, req.persistent)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn get_boot_device(
    State(state): State<Shared>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let n = state.engine.node(&ident).await?;
    let v = n
        .driver_internal_info
        .get("boot_device")
        .cloned()
        .unwrap_or(json!({"boot_device": null, "persistent": null}));
    Ok(json_ok(v))
}

pub async fn supported_boot_devices(
    State(state): State<Shared>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let n = state.engine.node(&ident).await?;
    let d = state
        .engine
        .drivers
        .for_node(&n)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(json_ok(
        json!({"supported_boot_devices": d.management.supported_boot_devices()}),
    ))
}

pub async fn maintenance_on(
    State(state): State<Shared>,
    Path(ident): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let reason = if body.is_empty() {
        None
    } else {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct M {
            #[serde(default)]
            reason: Option<String>,
        }
        parse_json::<M>(&body)?.reason
    };
    state
        .engine
        .update(&ident, move |n| {
            n.maintenance = true;
            n.maintenance_reason = reason;
            Ok(())
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn maintenance_off(
    State(state): State<Shared>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    state
        .engine
        .update(&ident, |n| {
            n.maintenance = false;
            n.maintenance_reason = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn inventory(
    State(state): State<Shared>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let n = state.engine.node(&ident).await?;
    let (inv, plugin) = state.engine.db.inventory(&n.uuid).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "Node {} has no inventory: inspect it first",
            n.uuid
        ))
    })?;
    let inv: Value = serde_json::from_str(&inv).unwrap_or(Value::Null);
    let plugin: Value = serde_json::from_str(&plugin).unwrap_or(Value::Null);
    Ok(json_ok(json!({"inventory": inv, "plugin_data": plugin})))
}

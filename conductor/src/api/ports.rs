//! `/v1/ports`: create with MAC validation and uniqueness, list, show, patch, delete;
//! fields hidden and refused below the microversion that added them.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::nodes::check_paths;
use super::patch::{self, Operation};
use super::query::View;
use super::{base_url, json_ok, next_link, ApiError, ApiResult, JsonBody, Shared, Version};
use crate::db::PortFilter;
use crate::model::{is_uuid_like, normalize_mac, now, Obj, Port, PORT_FIELDS};

const WRITABLE: &[&str] = &[
    "uuid",
    "address",
    "node_uuid",
    "node_ident",
    "pxe_enabled",
    "extra",
    "local_link_connection",
    "physical_network",
    "portgroup_uuid",
    "is_smartnic",
    "name",
    "description",
    "vendor",
    "category",
    "available_for_dynamic_portgroup",
];

/// Port fields stored in `Port::extended`: (name, is a boolean, longest string).
const EXTENDED: &[(&str, bool, usize)] = &[
    ("is_smartnic", true, 0),
    ("name", false, 255),
    ("description", false, 255),
    ("vendor", false, 32),
    ("category", false, 80),
    ("available_for_dynamic_portgroup", true, 0),
];

/// The microversion that added a port field (Ironic's `hide_fields_in_newer_versions`).
fn field_since(field: &str) -> Version {
    let minor = match field {
        "internal_info" => 18,
        "pxe_enabled" | "local_link_connection" => 19,
        "portgroup_uuid" => 24,
        "physical_network" => 34,
        "is_smartnic" => 53,
        "name" => 88,
        "node_ident" => 94,
        "description" => 97,
        "vendor" => 100,
        "category" => 101,
        "available_for_dynamic_portgroup" => 111,
        _ => 1,
    };
    Version(1, minor)
}

/// The port's document at `v`.
fn port_doc(p: &Port, base: &str, v: Version) -> Obj {
    let mut o = p.to_api(base);
    o.retain(|k, _| field_since(k) <= v);
    o
}

fn check_version(doc: &Obj, v: Version) -> ApiResult<()> {
    if let Some(k) = doc.keys().find(|k| field_since(k) > v) {
        let need = field_since(k);
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Request not acceptable: field {k:?} needs API version {}.{} or newer",
                need.0, need.1
            ),
        ));
    }
    Ok(())
}

fn port_fields(v: Version) -> Vec<&'static str> {
    PORT_FIELDS
        .iter()
        .copied()
        .filter(|f| field_since(f) <= v)
        .collect()
}
const LIST_PARAMS: &[&str] = &[
    "detail",
    "fields",
    "limit",
    "marker",
    "node",
    "node_uuid",
    "address",
    "sort_key",
    "sort_dir",
    "shard",
    "conductor_groups",
    "portgroup",
];

/// The nodes a port or portgroup list is narrowed to by `shard=` (ports from 1.82,
/// portgroups from 1.106) and `conductor_groups=` (1.99), comma-separated lists; `None`
/// when neither is given. `conductor_groups` does not combine with a node or address
/// filter (Ironic's rule).
pub(super) async fn nodes_in(
    state: &Shared,
    q: &HashMap<String, String>,
    v: Version,
    shard_since: Version,
) -> ApiResult<Option<std::collections::HashSet<String>>> {
    let refuse = |what: &str, since: Version| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Request not acceptable: filtering by {what} needs API version {}.{} or newer",
                since.0, since.1
            ),
        )
    };
    let list = |k: &str| {
        q.get(k).map(|s| {
            s.split(',')
                .map(|x| x.trim().to_lowercase())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        })
    };
    let shards = list("shard");
    let groups = list("conductor_groups");
    if shards.is_some() && v < shard_since {
        return Err(refuse("shard", shard_since));
    }
    if groups.is_some() {
        if v < Version(1, 99) {
            return Err(refuse("conductor_groups", Version(1, 99)));
        }
        if ["node", "node_uuid", "portgroup", "address"]
            .iter()
            .any(|k| q.contains_key(*k))
        {
            return Err(ApiError::bad(
                "Filtering by conductor_groups cannot be combined with node, portgroup or \
                 address",
            ));
        }
    }
    if shards.is_none() && groups.is_none() {
        return Ok(None);
    }
    let nodes = state
        .engine
        .db
        .list_nodes(&crate::db::NodeFilter::default())
        .await?;
    let text = |n: &crate::model::Node, k: &str| n.ext(k).as_str().unwrap_or("").to_lowercase();
    Ok(Some(
        nodes
            .iter()
            .filter(|n| {
                shards
                    .as_ref()
                    .is_none_or(|s| s.contains(&text(n, "shard")))
            })
            .filter(|n| {
                groups
                    .as_ref()
                    .is_none_or(|g| g.contains(&text(n, "conductor_group")))
            })
            .map(|n| n.uuid.clone())
            .collect(),
    ))
}

async fn apply_fields(state: &Shared, port: &mut Port, doc: &Obj, creating: bool) -> ApiResult<()> {
    if let Some(k) = doc.keys().find(|k| !WRITABLE.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "Field {k:?} is read-only or unknown: settable fields are {}",
            WRITABLE.join(", ")
        )));
    }
    for (k, v) in doc {
        let s = || {
            v.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::bad(format!(
                    "Invalid type for field {k}: expected a string, got {v}"
                ))
            })
        };
        if let Some(&(_, boolean, max)) = EXTENDED.iter().find(|(n, _, _)| n == k) {
            match v {
                Value::Null => {
                    port.extended.remove(k);
                }
                Value::Bool(_) if boolean => {
                    port.extended.insert(k.clone(), v.clone());
                }
                Value::String(b) if boolean => {
                    let b = super::parse_bool(k, b)?;
                    port.extended.insert(k.clone(), json!(b));
                }
                Value::String(t) if !boolean && t.len() <= max => {
                    port.extended.insert(k.clone(), v.clone());
                }
                Value::String(_) if !boolean => {
                    return Err(ApiError::bad(format!(
                        "{k} is longer than {max} characters"
                    )))
                }
                _ => {
                    return Err(ApiError::bad(format!(
                        "Invalid type for field {k}: expected a {}, got {v}",
                        if boolean { "boolean" } else { "string" }
                    )))
                }
            }
            continue;
        }
        match k.as_str() {
            "uuid" => {
                let u = s()?;
                if !is_uuid_like(&u) || (!creating && u != port.uuid) {
                    return Err(ApiError::bad(format!("Invalid port uuid {u:?}")));
                }
                port.uuid = u;
            }
            "address" => {
                port.address = normalize_mac(&s()?).map_err(|e| ApiError::bad(e.to_string()))?
            }
            "node_uuid" | "node_ident" => {
                let ident = s()?;
                let node = state.engine.db.get_node(&ident).await?.ok_or_else(|| {
                    ApiError::bad(format!(
                        "Node {ident} could not be found: create the node first"
                    ))
                })?;
                port.node_uuid = node.uuid;
            }
            "pxe_enabled" => {
                port.pxe_enabled = v.as_bool().ok_or_else(|| {
                    ApiError::bad(format!(
                        "Invalid type for field pxe_enabled: expected a boolean, got {v}"
                    ))
                })?
            }
            "extra" | "local_link_connection" => {
                let o = match v {
                    Value::Null => Obj::new(),
                    Value::Object(o) => o.clone(),
                    _ => {
                        return Err(ApiError::bad(format!(
                            "Invalid type for field {k}: expected an object"
                        )))
                    }
                };
                if k == "extra" {
                    port.extra = o
                } else {
                    port.local_link_connection = o
                }
            }
            "portgroup_uuid" => {
                if v.is_null() {
                    port.extended.remove("portgroup_uuid");
                } else {
                    let ident = s()?;
                    let pg = state
                        .engine
                        .db
                        .get_resource("portgroups", &ident)
                        .await?
                        .ok_or_else(|| {
                            ApiError::bad(format!(
                                "Portgroup {ident} could not be found: create it first"
                            ))
                        })?;
                    port.extended
                        .insert("portgroup_uuid".into(), json!(pg.uuid));
                    // Checked against the node once all fields are applied.
                    port.extended
                        .insert("_portgroup_node".into(), json!(pg.node_uuid));
                }
            }
            _ => port.physical_network = if v.is_null() { None } else { Some(s()?) },
        }
    }
    if let Some(pg_node) = port.extended.remove("_portgroup_node") {
        if pg_node.as_str() != Some(port.node_uuid.as_str()) {
            return Err(ApiError::bad(
                "Port can not be added to a port group belonging to a different node.",
            ));
        }
    }
    if let Some(Value::String(name)) = port.extended.get("name") {
        if name.is_empty() || is_uuid_like(name) {
            return Err(ApiError::bad(format!(
                "Invalid port name {name:?}: a non-empty string that is not a UUID"
            )));
        }
        let taken = state
            .engine
            .db
            .list_ports(&PortFilter::default())
            .await?
            .into_iter()
            .any(|p| p.uuid != port.uuid && p.extended.get("name") == Some(&json!(name)));
        if taken {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("A port with name {name} already exists."),
            ));
        }
    }
    if port.address.is_empty() {
        return Err(ApiError::bad(
            "Field \"address\" is mandatory: the port's MAC address",
        ));
    }
    if port.node_uuid.is_empty() {
        return Err(ApiError::bad(
            "Field \"node_uuid\" is mandatory: the UUID of the port's node",
        ));
    }
    let dup = state
        .engine
        .db
        .list_ports(&PortFilter {
            address: Some(port.address.clone()),
            ..Default::default()
        })
        .await?;
    if dup.iter().any(|p| p.uuid != port.uuid) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("A port with MAC address {} already exists.", port.address),
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<Obj>,
) -> ApiResult<Response> {
    check_version(&doc, v)?;
    if doc.contains_key("node_uuid") && doc.contains_key("node_ident") {
        return Err(ApiError::bad(
            "Give the port's node as node_uuid or node_ident, not both",
        ));
    }
    let mut port = Port {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        address: String::new(),
        node_uuid: String::new(),
        pxe_enabled: true,
        extra: Obj::new(),
        local_link_connection: Obj::new(),
        physical_network: None,
        extended: Obj::new(),
        created_at: now(),
        updated_at: None,
    };
    apply_fields(&state, &mut port, &doc, true).await?;
    let port = state.engine.db.insert_port(&port).await?;
    let base = base_url(&state, &headers);
    let mut r = (
        StatusCode::CREATED,
        axum::Json(Value::Object(port_doc(&port, &base, v))),
    )
        .into_response();
    if let Ok(h) = format!("{base}/v1/ports/{}", port.uuid).parse() {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

/// The UUID of the portgroup a port list is narrowed to (`?portgroup=` or
/// `/v1/portgroups/{pg}/ports`, 1.24), by the group's UUID or name.
async fn portgroup_filter(
    state: &Shared,
    v: Version,
    pg: Option<&String>,
) -> ApiResult<Option<String>> {
    let Some(pg) = pg else {
        return Ok(None);
    };
    if v < Version(1, 24) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Request not acceptable: portgroups need API version 1.24 or newer",
        ));
    }
    let r = state
        .engine
        .db
        .get_resource("portgroups", pg)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Portgroup {pg} could not be found.")))?;
    Ok(Some(r.uuid))
}

/// The ports that are members of portgroup `uuid`.
pub(super) async fn members(state: &Shared, uuid: &str) -> ApiResult<Vec<Port>> {
    Ok(state
        .engine
        .db
        .list_ports(&PortFilter::default())
        .await?
        .into_iter()
        .filter(|p| p.extended.get("portgroup_uuid").and_then(Value::as_str) == Some(uuid))
        .collect())
}

async fn list_inner(
    state: &Shared,
    headers: &HeaderMap,
    v: Version,
    q: &HashMap<String, String>,
    node: Option<String>,
    detail_path: bool,
) -> ApiResult<Value> {
    list_ports(state, headers, v, q, node, None, detail_path).await
}

async fn list_ports(
    state: &Shared,
    headers: &HeaderMap,
    v: Version,
    q: &HashMap<String, String>,
    node: Option<String>,
    pg_path: Option<String>,
    detail_path: bool,
) -> ApiResult<Value> {
    let view = View::parse(q, LIST_PARAMS, &port_fields(v), detail_path)?;
    let limit = view.limit;
    let mut f = PortFilter {
        limit: Some(limit),
        ..Default::default()
    };
    let path = match (&node, &pg_path, detail_path) {
        (Some(n), _, _) => format!("nodes/{n}/ports"),
        (None, Some(g), true) => format!("portgroups/{g}/ports/detail"),
        (None, Some(g), false) => format!("portgroups/{g}/ports"),
        (None, None, true) => "ports/detail".to_string(),
        (None, None, false) => "ports".to_string(),
    };
    let pg = portgroup_filter(state, v, pg_path.as_ref().or(q.get("portgroup"))).await?;
    if let Some(n) = node.or_else(|| q.get("node").or(q.get("node_uuid")).cloned()) {
        let node = state
            .engine
            .db
            .get_node(&n)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Node {n} could not be found.")))?;
        f.node_uuid = Some(node.uuid);
    }
    if let Some(a) = q.get("address") {
        f.address = Some(normalize_mac(a).map_err(|e| ApiError::bad(e.to_string()))?);
    }
    if let Some(m) = q.get("marker") {
        let p = state
            .engine
            .db
            .get_port(m)
            .await?
            .ok_or_else(|| ApiError::bad(format!("Invalid marker {m:?}: no such port")))?;
        f.after_id = Some(p.id);
    }
    let within = nodes_in(state, q, v, Version(1, 82)).await?;
    let ports = state.engine.db.list_ports(&f).await?;
    let base = base_url(state, headers);
    let list: Vec<Value> = ports
        .iter()
        .filter(|p| within.as_ref().is_none_or(|n| n.contains(&p.node_uuid)))
        .filter(|p| {
            pg.as_ref().is_none_or(|g| {
                p.extended.get("portgroup_uuid").and_then(Value::as_str) == Some(g.as_str())
            })
        })
        .map(|p| Value::Object(view.project(port_doc(p, &base, v), &["uuid", "address"])))
        .collect();
    let mut out = json!({"ports": list});
    if ports.len() as i64 == limit {
        if let Some(last) = ports.last() {
            out["next"] = json!(next_link(&base, &path, q, limit, &last.uuid));
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
    list_inner(&state, &headers, v, &q, None, false)
        .await
        .map(json_ok)
}

pub async fn list_detail(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, v, &q, None, true)
        .await
        .map(json_ok)
}

pub async fn list_for_portgroup(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(pg): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_ports(&state, &headers, v, &q, None, Some(pg), false)
        .await
        .map(json_ok)
}

pub async fn list_detail_for_portgroup(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(pg): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_ports(&state, &headers, v, &q, None, Some(pg), true)
        .await
        .map(json_ok)
}

pub async fn list_for_node(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, v, &q, Some(node), false)
        .await
        .map(json_ok)
}

/// A port by UUID, or by name from 1.88.
async fn port(state: &Shared, ident: &str, v: Version) -> ApiResult<Port> {
    let not_found = || ApiError::not_found(format!("Port {ident} could not be found."));
    if !is_uuid_like(ident) {
        if v < Version(1, 88) {
            return Err(ApiError::bad(format!(
                "Expected a port UUID but received {ident:?}"
            )));
        }
        return state
            .engine
            .db
            .list_ports(&PortFilter::default())
            .await?
            .into_iter()
            .find(|p| p.extended.get("name").and_then(Value::as_str) == Some(ident))
            .ok_or_else(not_found);
    }
    state.engine.db.get_port(ident).await?.ok_or_else(not_found)
}

pub async fn show(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let view = View::parse(&q, &["fields"], &port_fields(v), true)?;
    let p = port(&state, &ident, v).await?;
    let doc = port_doc(&p, &base_url(&state, &headers), v);
    Ok(json_ok(Value::Object(view.project(doc, &[]))))
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
    let writable: Vec<&str> = WRITABLE
        .iter()
        .copied()
        .filter(|f| *f != "node_ident" && field_since(f) <= v)
        .collect();
    check_paths(&ops, &writable)?;
    let mut p = port(&state, &ident, v).await?;
    let mut doc = json!({
        "address": p.address, "node_uuid": p.node_uuid, "pxe_enabled": p.pxe_enabled,
        "extra": p.extra, "local_link_connection": p.local_link_connection,
        "physical_network": p.physical_network,
    });
    for (k, _, _) in EXTENDED.iter().chain(&[("portgroup_uuid", false, 0)]) {
        if let Some(x) = p.extended.get(*k) {
            doc[*k] = x.clone();
        }
    }
    patch::apply(&mut doc, &ops).map_err(|e| ApiError::bad(e.to_string()))?;
    patch::check_size(&doc, "port").map_err(|e| ApiError::bad(e.to_string()))?;
    let Value::Object(mut obj) = doc else {
        return Err(ApiError::bad("The patch replaced the whole port"));
    };
    if obj.get("address").is_none_or(Value::is_null)
        || obj.get("node_uuid").is_none_or(Value::is_null)
    {
        return Err(ApiError::bad("address and node_uuid cannot be removed"));
    }
    obj.entry("pxe_enabled").or_insert(json!(true));
    // A removed field returns to its default.
    for (k, _, _) in EXTENDED.iter().chain(&[("portgroup_uuid", false, 0)]) {
        if !obj.contains_key(*k) {
            p.extended.remove(*k);
        }
    }
    apply_fields(&state, &mut p, &obj, false).await?;
    p.updated_at = Some(now());
    state.engine.db.save_port(&p).await?;
    Ok(json_ok(Value::Object(port_doc(
        &p,
        &base_url(&state, &headers),
        v,
    ))))
}

pub async fn delete(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    let p = port(&state, &ident, v).await?;
    state.engine.db.delete_port(&p.uuid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

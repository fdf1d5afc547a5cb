//! `/v1/ports`: create with MAC validation and uniqueness, list, show, patch, delete.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::nodes::check_paths;
use super::patch::{self, Operation};
use super::{
    base_url, json_ok, next_link, parse_bool, parse_fields, parse_limit, ApiError, ApiResult,
    JsonBody, Shared,
};
use crate::db::PortFilter;
use crate::model::{is_uuid_like, normalize_mac, now, Obj, Port, PORT_FIELDS};

const WRITABLE: &[&str] = &[
    "uuid",
    "address",
    "node_uuid",
    "pxe_enabled",
    "extra",
    "local_link_connection",
    "physical_network",
];
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
];

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
            "node_uuid" => {
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
            _ => port.physical_network = if v.is_null() { None } else { Some(s()?) },
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
    headers: HeaderMap,
    JsonBody(doc): JsonBody<Obj>,
) -> ApiResult<Response> {
    let mut port = Port {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        address: String::new(),
        node_uuid: String::new(),
        pxe_enabled: true,
        extra: Obj::new(),
        local_link_connection: Obj::new(),
        physical_network: None,
        created_at: now(),
        updated_at: None,
    };
    apply_fields(&state, &mut port, &doc, true).await?;
    let port = state.engine.db.insert_port(&port).await?;
    let base = base_url(&state, &headers);
    let mut r = (
        StatusCode::CREATED,
        axum::Json(Value::Object(port.to_api(&base))),
    )
        .into_response();
    if let Ok(h) = format!("{base}/v1/ports/{}", port.uuid).parse() {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

async fn list_inner(
    state: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    node: Option<String>,
    detail_path: bool,
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
    let limit = parse_limit(q.get("limit").map(String::as_str))?;
    let mut f = PortFilter {
        limit: Some(limit),
        ..Default::default()
    };
    let path = match (&node, detail_path) {
        (Some(n), _) => format!("nodes/{n}/ports"),
        (None, true) => "ports/detail".to_string(),
        (None, false) => "ports".to_string(),
    };
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
    let fields = match q.get("fields") {
        Some(fl) => Some(parse_fields(fl, PORT_FIELDS)?),
        None => None,
    };
    let ports = state.engine.db.list_ports(&f).await?;
    let base = base_url(state, headers);
    let list: Vec<Value> = ports
        .iter()
        .map(|p| {
            let full = p.to_api(&base);
            Value::Object(match (&fields, detail) {
                (Some(fl), _) => full
                    .into_iter()
                    .filter(|(k, _)| fl.contains(&k.as_str()))
                    .collect(),
                (None, true) => full,
                (None, false) => full
                    .into_iter()
                    .filter(|(k, _)| ["uuid", "address", "links"].contains(&k.as_str()))
                    .collect(),
            })
        })
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
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, &q, None, false)
        .await
        .map(json_ok)
}

pub async fn list_detail(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, &q, None, true)
        .await
        .map(json_ok)
}

pub async fn list_for_node(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    list_inner(&state, &headers, &q, Some(node), false)
        .await
        .map(json_ok)
}

async fn port(state: &Shared, ident: &str) -> ApiResult<Port> {
    if !is_uuid_like(ident) {
        return Err(ApiError::bad(format!(
            "Expected a port UUID but received {ident:?}"
        )));
    }
    state
        .engine
        .db
        .get_port(ident)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Port {ident} could not be found.")))
}

pub async fn show(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "fields") {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: only fields is supported"
        )));
    }
    let fields = match q.get("fields") {
        Some(fl) => Some(parse_fields(fl, PORT_FIELDS)?),
        None => None,
    };
    let p = port(&state, &ident).await?;
    let mut doc = p.to_api(&base_url(&state, &headers));
    if let Some(fl) = fields {
        doc.retain(|k, _| fl.contains(&k.as_str()));
    }
    Ok(json_ok(Value::Object(doc)))
}

pub async fn update(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    JsonBody(ops): JsonBody<Vec<Operation>>,
) -> ApiResult<Response> {
    if ops.is_empty() {
        return Err(ApiError::bad(
            "The patch is empty: send a list of JSON Patch operations",
        ));
    }
    check_paths(&ops, WRITABLE)?;
    let mut p = port(&state, &ident).await?;
    let mut doc = json!({
        "address": p.address, "node_uuid": p.node_uuid, "pxe_enabled": p.pxe_enabled,
        "extra": p.extra, "local_link_connection": p.local_link_connection,
        "physical_network": p.physical_network,
    });
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
    apply_fields(&state, &mut p, &obj, false).await?;
    p.updated_at = Some(now());
    state.engine.db.save_port(&p).await?;
    Ok(json_ok(Value::Object(
        p.to_api(&base_url(&state, &headers)),
    )))
}

pub async fn delete(State(state): State<Shared>, Path(ident): Path<String>) -> ApiResult<Response> {
    let p = port(&state, &ident).await?;
    state.engine.db.delete_port(&p.uuid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

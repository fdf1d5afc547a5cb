//! Version discovery (`/`, `/v1`), drivers and conductors.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    base_url, fmt_version, json_ok, parse_bool, ApiError, ApiResult, Shared, MAX_VERSION,
    MIN_VERSION,
};

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": fmt_version(MIN_VERSION),
        "version": fmt_version(MAX_VERSION),
    })
}

pub async fn root(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    json_ok(json!({
        "name": "OpenStack Ironic API",
        "description": "Ferrite conductor: Ironic-compatible bare metal provisioning.",
        "default_version": version_doc(&base),
        "versions": [version_doc(&base)],
    }))
}

pub async fn v1(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    let link = |k: &str| {
        json!([{"href": format!("{base}/v1/{k}/"), "rel": "self"},
               {"href": format!("{base}/{k}/"), "rel": "bookmark"}])
    };
    json_ok(json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"}],
        "nodes": link("nodes"),
        "ports": link("ports"),
        "drivers": link("drivers"),
        "conductors": link("conductors"),
        "lookup": link("lookup"),
        "heartbeat": link("heartbeat"),
        "version": version_doc(&base),
    }))
}

fn driver_doc(state: &Shared, base: &str, name: &str, detail: bool) -> Value {
    let mut d = json!({
        "name": name,
        "hosts": [state.engine.cfg.host],
        "type": "dynamic",
        "links": [{"href": format!("{base}/v1/drivers/{name}"), "rel": "self"},
                  {"href": format!("{base}/drivers/{name}"), "rel": "bookmark"}],
    });
    if detail {
        if let Some(hw) = state.engine.drivers.get(name) {
            for (iface, names) in hw.interfaces() {
                d[format!("default_{iface}_interface")] = json!(names[0]);
                d[format!("enabled_{iface}_interfaces")] = json!(names);
            }
        }
    }
    d
}

/// `GET /v1/drivers[?detail=True][&type=dynamic]`: every driver is a hardware type.
pub async fn drivers(
    State(state): State<Shared>,
    axum::Extension(v): axum::Extension<super::Version>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q
        .keys()
        .find(|k| !["detail", "type", "fields"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: supported are detail, type, fields"
        )));
    }
    let fields = driver_fields(&q, v)?;
    let detail = q
        .get("detail")
        .map(|d| parse_bool("detail", d))
        .transpose()?
        .unwrap_or(false);
    let base = base_url(&state, &headers);
    let list: Vec<Value> = match q.get("type").map(String::as_str) {
        None | Some("dynamic") => state
            .engine
            .drivers
            .names()
            .into_iter()
            .map(|n| {
                select(
                    driver_doc(&state, &base, n, detail || fields.is_some()),
                    &fields,
                )
            })
            .collect(),
        Some("classic") => vec![],
        Some(t) => {
            return Err(ApiError::bad(format!(
                "Invalid driver type {t:?}: use dynamic or classic"
            )))
        }
    };
    Ok(json_ok(json!({"drivers": list})))
}

pub async fn driver(
    State(state): State<Shared>,
    axum::Extension(v): axum::Extension<super::Version>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "fields") {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: only fields is supported"
        )));
    }
    let fields = driver_fields(&q, v)?;
    if state.engine.drivers.get(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "Driver {name} could not be found."
        )));
    }
    let doc = driver_doc(&state, &base_url(&state, &headers), &name, true);
    Ok(json_ok(select(doc, &fields)))
}

/// `?fields=` of drivers (1.77).
fn driver_fields(q: &HashMap<String, String>, v: super::Version) -> ApiResult<Option<Vec<String>>> {
    let Some(f) = q.get("fields") else {
        return Ok(None);
    };
    if v < super::Version(1, 77) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "Request not acceptable: fields on drivers needs API version 1.77 or newer",
        ));
    }
    Ok(Some(
        f.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

fn select(doc: Value, fields: &Option<Vec<String>>) -> Value {
    match (fields, doc) {
        (Some(fl), Value::Object(mut o)) => {
            o.retain(|k, _| fl.iter().any(|f| f == k));
            Value::Object(o)
        }
        (_, doc) => doc,
    }
}

async fn conductor_docs(state: &Shared, base: &str) -> ApiResult<Vec<Value>> {
    let members = state.engine.members(true).await?;
    Ok(state
        .engine
        .db
        .conductors()
        .await?
        .into_iter()
        .map(|c| {
            let hostname = c.hostname;
            json!({
                "hostname": hostname,
                "conductor_group": c.conductor_group,
                // Alive: a heartbeat younger than --dead-after (as this conductor sees it).
                "alive": members.is_alive(&hostname),
                "drivers": c.drivers,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
                "links": [{"href": format!("{base}/v1/conductors/{hostname}"), "rel": "self"},
                          {"href": format!("{base}/conductors/{hostname}"), "rel": "bookmark"}],
            })
        })
        .collect())
}

pub async fn conductors(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let docs = conductor_docs(&state, &base_url(&state, &headers)).await?;
    Ok(json_ok(json!({"conductors": docs})))
}

pub async fn conductor(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let docs = conductor_docs(&state, &base_url(&state, &headers)).await?;
    docs.into_iter()
        .find(|d| d["hostname"] == json!(name))
        .map(json_ok)
        .ok_or_else(|| ApiError::not_found(format!("Conductor {name} could not be found.")))
}

/// `GET /v1/shards` (1.82): every shard some node is in, with its node count.
pub async fn shards(
    State(state): State<Shared>,
    axum::Extension(v): axum::Extension<super::Version>,
) -> ApiResult<Response> {
    if v < super::Version(1, 82) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let list: Vec<Value> = state
        .engine
        .db
        .shard_counts()
        .await?
        .into_iter()
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    Ok(json_ok(json!({"shards": list})))
}

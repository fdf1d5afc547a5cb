//! Version discovery (`/`, `/v1`), drivers and conductors.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use crate::model::{ExtTy, EXTENDED_FIELDS};

use super::{
    base_url, fmt_version, json_ok, parse_bool, ApiError, ApiResult, Shared, Version, MAX_VERSION,
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

/// A hardware type's document at version `v`, as Ironic's `driver.convert_with_links`
/// builds it: the properties link from 1.14, `type` and (with `detail`) every interface's
/// default and enabled implementations from 1.30, each interface from the version that
/// added it.
fn driver_doc(state: &Shared, base: &str, name: &str, detail: bool, v: Version) -> Value {
    let mut d = json!({
        "name": name,
        "hosts": [state.engine.cfg.host],
        "links": [{"href": format!("{base}/v1/drivers/{name}"), "rel": "self"},
                  {"href": format!("{base}/drivers/{name}"), "rel": "bookmark"}],
    });
    if v >= Version(1, 14) {
        d["properties"] = json!([
            {"href": format!("{base}/v1/drivers/{name}/properties"), "rel": "self"},
            {"href": format!("{base}/drivers/{name}/properties"), "rel": "bookmark"},
        ]);
    }
    if v < Version(1, 30) {
        return d;
    }
    d["type"] = json!("dynamic");
    if detail {
        if let Some(hw) = state.engine.drivers.get(name) {
            for (iface, names) in hw.interfaces() {
                d[format!("default_{iface}_interface")] = json!(names[0]);
                d[format!("enabled_{iface}_interfaces")] = json!(names);
            }
        }
        // The optional interfaces, the same for every hardware type.
        for f in EXTENDED_FIELDS {
            let (ExtTy::Iface(names), Some(iface)) = (&f.ty, f.name.strip_suffix("_interface"))
            else {
                continue;
            };
            // Interfaces older than dynamic drivers (1.30) show with them.
            let since = super::nodes::field_since(f.name).max(Version(1, 30));
            if since <= v || since == Version(1, 31) && v >= Version(1, 30) {
                d[format!("default_{iface}_interface")] = f.default.value();
                d[format!("enabled_{iface}_interfaces")] = json!(names);
            }
        }
    }
    d
}

/// `GET /v1/drivers/{name}/properties`: the `driver_info` keys the hardware type reads,
/// with Ironic's descriptions ("Required." where it cannot work without one).
pub async fn driver_properties(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    if state.engine.drivers.get(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "Driver {name} could not be found."
        )));
    }
    let bmc: &[(&str, &str)] = match name.as_str() {
        "ipmi" => &[
            ("ipmi_address", "IP address or hostname of the node. Required."),
            ("ipmi_port", "remote IPMI RMCP port. Optional."),
            ("ipmi_username", "username; default is NULL user. Optional."),
            ("ipmi_password", "password. Optional."),
            ("ipmi_cipher_suite", "IPMI cipher suite (3 or 17). Optional."),
            ("ipmi_priv_level", "privilege level: ADMINISTRATOR (default), OPERATOR or USER. Optional."),
        ],
        "redfish" => &[
            ("redfish_address", "The URL address to the Redfish controller. Required."),
            ("redfish_system_id", "The canonical path to the ComputerSystem resource; the only system when absent. Optional."),
            ("redfish_username", "User account with admin/server-profile access privilege. Optional."),
            ("redfish_password", "User account password. Optional."),
            ("redfish_verify_ca", "true, false or a CA bundle path to verify the BMC's certificate. Optional."),
            ("redfish_auth_type", "basic, session or auto (default). Optional."),
        ],
        _ => &[],
    };
    let deploy: &[(&str, &str)] = if bmc.is_empty() {
        &[]
    } else {
        &[
            (
                "deploy_kernel",
                "URL or Glance-less path of the deployment kernel. Required.",
            ),
            (
                "deploy_ramdisk",
                "URL or Glance-less path of the deployment ramdisk. Required.",
            ),
            (
                "ferrite_power_wait",
                "Seconds to wait for a power state change (Ferrite). Optional.",
            ),
        ]
    };
    let props: serde_json::Map<String, Value> = bmc
        .iter()
        .chain(deploy)
        .map(|(k, d)| (k.to_string(), json!(d)))
        .collect();
    Ok(json_ok(Value::Object(props)))
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
                    driver_doc(&state, &base, n, detail || fields.is_some(), v),
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
    let doc = driver_doc(&state, &base_url(&state, &headers), &name, true, v);
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
            o.retain(|k, _| k == "links" || fl.iter().any(|f| f == k));
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

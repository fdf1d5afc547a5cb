//! Node sub-resources that reach optional hardware interfaces — BIOS settings (1.40),
//! console (`/states/console`), RAID (`/states/raid`, 1.12), NMI injection (1.29), vendor
//! passthru, firmware components (1.86), virtual media (1.89, GET 1.93), boot mode and
//! secure boot changes (1.76) — answered as Ironic answers them for the interfaces Ferrite
//! has: `no-bios`, `no-console`, `no-raid`, `no-vendor`, `no-firmware`, and management
//! interfaces without boot mode or virtual media support. Only NMI injection on `ipmi`
//! reaches hardware (IPMI chassis control "pulse diagnostic interrupt").

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::check_params;
use super::{
    base_url, json_ok, parse_bool, parse_json, ApiError, ApiResult, JsonBody, Shared, Version,
};
use crate::engine::history::{self, Severity};
use crate::model::Node;

fn need(v: Version, since: Version) -> ApiResult<()> {
    if v < since {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

/// Ironic's `UnsupportedDriverExtension` message.
pub fn unsupported(node: &Node, extension: &str) -> String {
    format!(
        "Driver {} does not support {extension} (disabled or not implemented).",
        node.driver
    )
}

/// `GET /v1/nodes/{node}/bios`: Ferrite's interfaces keep no BIOS settings (`no-bios`
/// caches none), so the list is empty, as Ironic's is for such a node.
async fn bios(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    need(v, Version(1, 40))?;
    let allowed: &[&str] = if v >= Version(1, 74) {
        &["detail", "fields"]
    } else {
        &[]
    };
    check_params(&q, allowed)?;
    if let Some(d) = q.get("detail") {
        parse_bool("detail", d)?;
    }
    state.engine.node(&node).await?;
    Ok(json_ok(json!({"bios": []})))
}

async fn bios_setting(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((node, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    need(v, Version(1, 40))?;
    let n = state.engine.node(&node).await?;
    Err(ApiError::not_found(format!(
        "Node {} doesn't have a BIOS setting '{name}'",
        n.uuid
    )))
}

/// `GET /states/console`: `no-console` never has a console enabled.
async fn console(State(state): State<Shared>, Path(node): Path<String>) -> ApiResult<Response> {
    state.engine.node(&node).await?;
    Ok(json_ok(
        json!({"console_enabled": false, "console_info": null}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleBody {
    enabled: Value,
}

/// `PUT /states/console`: the interface's validation fails first, as in Ironic.
async fn set_console(
    State(state): State<Shared>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<ConsoleBody>,
) -> ApiResult<Response> {
    match &body.enabled {
        Value::Bool(_) => {}
        Value::String(s) => {
            parse_bool("enabled", s)?;
        }
        other => {
            return Err(ApiError::bad(format!(
                "Invalid value {other} for enabled: use true or false"
            )))
        }
    }
    let n = state.engine.node(&node).await?;
    Err(ApiError::bad(unsupported(&n, "console")))
}

/// `PUT /states/raid` (1.12): an empty configuration is stored (it clears the target);
/// anything else needs a RAID interface, and `no-raid` answers 404 as Ironic does.
async fn set_raid(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let n = state.engine.node(&node).await?;
    if v < Version(1, 12) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Request not acceptable: setting a RAID configuration needs API version 1.12",
        ));
    }
    let Value::Object(cfg) = body else {
        return Err(ApiError::bad(
            "Invalid target_raid_config: expected a JSON object (e.g. {\"logical_disks\": [...]})",
        ));
    };
    if !cfg.is_empty() {
        return Err(ApiError::not_found(unsupported(&n, "raid")));
    }
    state
        .engine
        .update(&n.uuid, |n| {
            n.extended.remove("target_raid_config");
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /management/inject_nmi` (1.29): the management interface's, or Ironic's
/// "does not support inject_nmi" (the fake interface has none, as in Ironic).
async fn inject_nmi(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    need(v, Version(1, 29))?;
    if !body.is_empty() {
        let doc: Value = parse_json(&body)?;
        if doc.as_object().is_none_or(|o| !o.is_empty()) {
            return Err(ApiError::bad(
                "inject_nmi takes an empty JSON object ({}) as its body",
            ));
        }
    }
    let n = state.engine.node(&node).await?;
    let d = state
        .engine
        .drivers
        .for_node(&n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    d.management
        .validate(&n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    let Some(call) = d.management.inject_nmi(&n) else {
        return Err(ApiError::bad(unsupported(&n, "inject_nmi")));
    };
    let locked = state.engine.lock_waiting(&n).await?;
    let result = call.await;
    state.engine.unlock(&locked.uuid).await;
    result.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Injecting an NMI into node {} failed: {}",
                n.uuid,
                crate::error_chain(&e)
            ),
        )
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `no-vendor` has no passthru methods.
async fn vendor_methods(
    State(state): State<Shared>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    state.engine.node(&node).await?;
    Ok(json_ok(json!({})))
}

fn passthru_method(q: &HashMap<String, String>) -> ApiResult<String> {
    match q.get("method").map(String::as_str) {
        None | Some("") => Err(ApiError::bad("Method not specified")),
        Some(m) => Ok(m.to_string()),
    }
}

async fn vendor_passthru(
    State(state): State<Shared>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let method = passthru_method(&q)?;
    state.engine.node(&node).await?;
    Err(ApiError::bad(format!("No handler for method {method}")))
}

async fn driver_vendor_methods(
    State(state): State<Shared>,
    Path(driver): Path<String>,
) -> ApiResult<Response> {
    driver_exists(&state, &driver)?;
    Ok(json_ok(json!({})))
}

async fn driver_vendor_passthru(
    State(state): State<Shared>,
    Path(driver): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let method = passthru_method(&q)?;
    driver_exists(&state, &driver)?;
    Err(ApiError::bad(format!("No handler for method {method}")))
}

fn driver_exists(state: &Shared, name: &str) -> ApiResult<()> {
    match state.engine.drivers.get(name) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "Driver {name} could not be found."
        ))),
    }
}

/// `GET /firmware` (1.86): `no-firmware` caches no components.
async fn firmware(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 86))?;
    state.engine.node(&node).await?;
    Ok(json_ok(json!({"firmware": []})))
}

const VMEDIA_DEVICES: &[&str] = &["disk", "cdrom", "floppy"];
const VMEDIA_SCHEMES: &[&str] = &["http", "https", "nfs", "cifs", "smb"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmediaBody {
    device_type: String,
    image_url: String,
    #[serde(default)]
    image_download_source: Option<String>,
}

/// Checks the management interface and records, as Ironic's background worker does, that
/// the interface cannot do `extension` (Ironic answers 204 and the failure lands in the
/// node's history).
async fn vmedia_unsupported(
    state: &Shared,
    n: &Node,
    extension: &str,
    event: String,
) -> ApiResult<Response> {
    let d = state
        .engine
        .drivers
        .for_node(n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    d.management
        .validate(n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    let event = format!("{event}: {}", unsupported(n, extension));
    history::record(&state.engine, n, Severity::Error, "management", &event).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vmedia_attach(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<VmediaBody>,
) -> ApiResult<Response> {
    need(v, Version(1, 89))?;
    if !VMEDIA_DEVICES.contains(&body.device_type.as_str()) {
        return Err(ApiError::bad(format!(
            "Invalid device_type {:?}: use one of {}",
            body.device_type,
            VMEDIA_DEVICES.join(", ")
        )));
    }
    if let Some(s) = &body.image_download_source {
        if !["http", "local", "swift"].contains(&s.as_str()) {
            return Err(ApiError::bad(format!(
                "Invalid image_download_source {s:?}: use http, local or swift"
            )));
        }
    }
    let scheme = body
        .image_url
        .split_once("://")
        .map(|(s, _)| s)
        .unwrap_or("");
    if !VMEDIA_SCHEMES.contains(&scheme) {
        return Err(ApiError::bad(format!(
            "Unsupported or missing URL scheme: {scheme}"
        )));
    }
    let n = state.engine.node(&node).await?;
    let event = format!(
        "Could not attach device {} to node {}",
        body.device_type, n.uuid
    );
    vmedia_unsupported(&state, &n, "attach_virtual_media", event).await
}

async fn vmedia_detach(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    need(v, Version(1, 89))?;
    check_params(&q, &["device_types"])?;
    let types: Vec<&str> = match q.get("device_types") {
        Some(t) => t
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect(),
        None => VMEDIA_DEVICES.to_vec(),
    };
    let invalid: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| !VMEDIA_DEVICES.contains(t))
        .collect();
    if !invalid.is_empty() {
        return Err(ApiError::bad(format!(
            "Invalid device type(s) {} (valid are {})",
            invalid.join(", "),
            VMEDIA_DEVICES.join(", ")
        )));
    }
    let n = state.engine.node(&node).await?;
    let event = format!(
        "Could not detach device(s) {} from node {}",
        types.join(", "),
        n.uuid
    );
    vmedia_unsupported(&state, &n, "detach_virtual_media", event).await
}

async fn vmedia_get(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 93))?;
    let n = state.engine.node(&node).await?;
    Err(ApiError::bad(unsupported(&n, "get_virtual_media")))
}

fn accepted(base: &str, node: &str, what: &str) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(h) = format!("{base}/v1/nodes/{node}/states/{what}").parse() {
        r.headers_mut().insert(header::LOCATION, h);
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    target: Value,
}

/// Ironic starts the change in the background and writes the interface's refusal to
/// `last_error`; neither of Ferrite's management interfaces sets boot modes or secure boot.
async fn change_mode(
    state: &Shared,
    headers: &HeaderMap,
    node: &str,
    what: &'static str,
    extension: &'static str,
    target: String,
) -> ApiResult<Response> {
    let n = state.engine.node(node).await?;
    if n.provision_state.is_working() || n.provision_state.expects_agent() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Node {} is in state \"{}\": wait for it to finish before changing {what}",
                n.uuid, n.provision_state
            ),
        ));
    }
    let d = state
        .engine
        .drivers
        .for_node(&n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    d.management
        .validate(&n)
        .map_err(|e| ApiError::bad(crate::error_chain(&e)))?;
    let message = format!(
        "Failed to change {what} to '{target}: {}",
        unsupported(&n, extension)
    );
    state
        .engine
        .update(&n.uuid, move |n| {
            n.last_error = Some(message);
            Ok(())
        })
        .await?;
    let path = if what == "boot mode" {
        "boot_mode"
    } else {
        "secure_boot"
    };
    Ok(accepted(&base_url(state, headers), &n.uuid, path))
}

async fn set_boot_mode(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Response> {
    need(v, Version(1, 76))?;
    let target = body.target.as_str().unwrap_or("").to_string();
    if !["uefi", "bios"].contains(&target.as_str()) {
        return Err(ApiError::bad(format!(
            "Invalid boot mode {} requested for node. Allowed boot modes are: uefi, bios",
            body.target
        )));
    }
    change_mode(
        &state,
        &headers,
        &node,
        "boot mode",
        "set_boot_mode",
        target,
    )
    .await
}

async fn set_secure_boot(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Response> {
    need(v, Version(1, 76))?;
    let Some(target) = body.target.as_bool() else {
        return Err(ApiError::bad(format!(
            "Invalid secure_boot {} requested for node. Allowed secure_boot states are: True, False)",
            body.target
        )));
    };
    change_mode(
        &state,
        &headers,
        &node,
        "secure boot",
        "set_secure_boot_state",
        target.to_string(),
    )
    .await
}

/// Any method on `/vendor_passthru`: Ironic routes them all to the named method.
async fn vendor_any(
    method: Method,
    state: State<Shared>,
    node: Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed on vendor_passthru"),
        ));
    }
    vendor_passthru(state, node, q).await
}

async fn driver_vendor_any(
    method: Method,
    state: State<Shared>,
    driver: Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed on vendor_passthru"),
        ));
    }
    driver_vendor_passthru(state, driver, q).await
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/nodes/{node}/bios", get(bios))
        .route("/v1/nodes/{node}/bios/{setting}", get(bios_setting))
        .route(
            "/v1/nodes/{node}/states/console",
            get(console).put(set_console),
        )
        .route("/v1/nodes/{node}/states/raid", put(set_raid))
        .route("/v1/nodes/{node}/states/boot_mode", put(set_boot_mode))
        .route("/v1/nodes/{node}/states/secure_boot", put(set_secure_boot))
        .route("/v1/nodes/{node}/management/inject_nmi", put(inject_nmi))
        .route("/v1/nodes/{node}/vendor_passthru", any(vendor_any))
        .route(
            "/v1/nodes/{node}/vendor_passthru/methods",
            get(vendor_methods),
        )
        .route(
            "/v1/drivers/{driver}/vendor_passthru",
            any(driver_vendor_any),
        )
        .route(
            "/v1/drivers/{driver}/vendor_passthru/methods",
            get(driver_vendor_methods),
        )
        .route("/v1/nodes/{node}/firmware", get(firmware))
        .route(
            "/v1/nodes/{node}/vmedia",
            get(vmedia_get).post(vmedia_attach).delete(vmedia_detach),
        )
}

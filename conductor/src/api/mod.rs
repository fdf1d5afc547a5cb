//! Ironic-compatible REST API (CONTRACT.md §6): routing, microversions, auth, body limits
//! and Ironic's error format. Handlers turn requests into engine calls.

mod agent;
mod allocations;
mod auth;
mod boot;
mod deploy_logs;
pub mod forward;
mod history;
mod misc;
mod node_extras;
mod node_hw;
pub(crate) mod nodes;
pub mod patch;
mod ports;
mod query;
mod resources;
mod runbooks;
mod timeline;

pub use auth::Htpasswd;
pub(crate) use resources::is_trait;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::engine::{Conductor, EngineError};

pub const MIN_VERSION: (u32, u32) = (1, 1);
/// 1.69 deploy_steps on deploy/rebuild, 1.70 disable_ramdisk on manual cleaning (refused
/// when true: cleaning always boots the agent), 1.71 a policy signifier only, 1.72
/// `agent_status` in heartbeats; 1.73 `deploy`/`undeploy` verbs, 1.74 BIOS registry fields
/// (`node_hw`), 1.75 `boot_mode`/`secure_boot` node fields, 1.76 changing them (`node_hw`),
/// 1.77 `fields` on drivers, 1.78 node history (`history`), 1.79 allocations try the node
/// named like them first, 1.80 a policy signifier only, 1.81 inventory, 1.82 shards, 1.83
/// parent/child nodes, 1.84 `continue_inspection`, 1.85 `unhold`, 1.86 firmware interface
/// and `/firmware`; 1.87 servicing (`engine::plan::service`), 1.88–1.111 port and
/// portgroup fields (`ports`, `resources`), vmedia (`node_hw`), runbooks and inspection
/// rules (`runbooks`), `disable_power_off`, `instance_name`, request ids, `health`; 1.112
/// runbook traits; 1.113–1.115 history and firmware fields. docs/api-microversions.md says
/// what Ferrite does differently at each.
pub const MAX_VERSION: (u32, u32) = (1, 115);
/// Request bodies other than provision requests (which carry config drives).
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const PROVISION_BODY_LIMIT: usize = crate::engine::CONFIGDRIVE_MAX + 64 * 1024;

pub struct AppState {
    pub engine: Arc<Conductor>,
    pub auth: Option<Htpasswd>,
    /// Base of links; from the Host header when unset.
    pub public_url: Option<String>,
}

pub type Shared = Arc<AppState>;

/// An API error, rendered as Ironic renders them.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Rendered as webob renders an HTTP exception (`code`, `title`, `description`), the
    /// shape Ironic's version negotiation answers in, rather than as a faultstring.
    pub webob: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            webob: false,
        }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let faultcode = if self.status.is_server_error() {
            "Server"
        } else {
            "Client"
        };
        let inner = if self.webob {
            json!({
                "code": self.status.as_u16(),
                "title": self.status.canonical_reason().unwrap_or_default(),
                "description": self.message,
            })
        } else {
            json!({"faultstring": self.message, "faultcode": faultcode, "debuginfo": null})
        };
        let body = json!({"error_message": inner.to_string()});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        use crate::db::DbError;
        let status = match &e {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Locked { .. } | EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::NotAllowed(_) | EngineError::Invalid(_) | EngineError::Driver(_) => {
                StatusCode::BAD_REQUEST
            }
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::Db(DbError::Duplicate { .. }) => StatusCode::CONFLICT,
            EngineError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            EngineError::Db(DbError::Duplicate { what }) => {
                format!("A {what} with this value already exists: pick another one")
            }
            EngineError::Db(_) => {
                tracing::error!(error = %crate::error_chain(&e), "storage error");
                crate::error_chain(&e)
            }
            _ => crate::error_chain(&e),
        };
        ApiError::new(status, message)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> ApiError {
        EngineError::Db(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body: size-limited, `deny_unknown_fields`-checked, errors in Ironic's format.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "Request body is too large: the limit is 1 MiB (64 MiB for config drives)",
                )
            } else {
                ApiError::new(status, format!("Cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.is_empty() {
        return Err(ApiError::bad(
            "The request body is empty: send a JSON document",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("Invalid JSON in the request body: {e}")))
}

/// The negotiated microversion of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

fn fmt_version(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

fn parse_version(headers: &HeaderMap) -> Result<Version, ApiError> {
    let raw = headers
        .get(ferrite_proto::API_VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("").to_string())
        .or_else(|| {
            headers
                .get("OpenStack-API-Version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("baremetal "))
                .map(str::to_string)
        });
    let Some(raw) = raw else {
        return Ok(Version(MIN_VERSION.0, MIN_VERSION.1));
    };
    let raw = raw.trim();
    if raw == "latest" {
        return Ok(Version(MAX_VERSION.0, MAX_VERSION.1));
    }
    let parsed = raw
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some((maj, min)) = parsed else {
        return Err(ApiError::bad(format!(
            "Invalid value for {} header: {raw:?}; use MAJOR.MINOR like 1.68 or \"latest\"",
            ferrite_proto::API_VERSION_HEADER
        )));
    };
    if (maj, min) < MIN_VERSION || (maj, min) > MAX_VERSION {
        let mut e = ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {raw} was requested but the minor version is not supported by this \
                 service. The supported version range is: [{}, {}].",
                fmt_version(MIN_VERSION),
                fmt_version(MAX_VERSION)
            ),
        );
        e.webob = true;
        return Err(e);
    }
    Ok(Version(maj, min))
}

/// oslo.middleware's request id: the caller's `X-OpenStack-Request-Id` when it has the
/// form `req-<uuid>`, else a new one; answered as `X-OpenStack-Request-Id` and Ironic's
/// older `OpenStack-Request-Id` (1.107 documents the first).
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("X-OpenStack-Request-Id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.strip_prefix("req-")
                .is_some_and(|u| uuid::Uuid::parse_str(u).is_ok())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4()))
}

/// The node a request names in its path (`/v1/nodes/{node}/…`, `/v1/heartbeat/{node}`),
/// for the request's log lines.
fn path_node(path: &str) -> &str {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some("nodes" | "heartbeat"), Some(n)) if n != "detail" => n,
        _ => "",
    }
}

async fn versioning(mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let req_id = request_id(req.headers());
    let negotiated = parse_version(req.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %req_id,
        method = %req.method(),
        path = %req.uri().path(),
        node = path_node(req.uri().path()),
    );
    let mut resp = match negotiated {
        Ok(v) => {
            req.extensions_mut().insert(v);
            let mut r = next.run(req).instrument(span).await;
            if let Ok(h) = HeaderValue::from_str(&format!("{}.{}", v.0, v.1)) {
                r.headers_mut()
                    .insert(ferrite_proto::API_VERSION_HEADER, h.clone());
                if let Ok(h2) = HeaderValue::from_str(&format!("baremetal {}.{}", v.0, v.1)) {
                    r.headers_mut().insert("OpenStack-API-Version", h2);
                }
            }
            r
        }
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    let min =
        HeaderValue::from_str(&fmt_version(MIN_VERSION)).unwrap_or(HeaderValue::from_static("1.1"));
    let max =
        HeaderValue::from_str(&fmt_version(MAX_VERSION)).unwrap_or(HeaderValue::from_static("1.1"));
    for (name, v) in [
        ("X-OpenStack-Ironic-API-Minimum-Version", &min),
        ("X-OpenStack-Ironic-API-Maximum-Version", &max),
        ("X-OpenStack-Ironic-API-Min-Version", &min),
        ("X-OpenStack-Ironic-API-Max-Version", &max),
    ] {
        h.insert(name, v.clone());
    }
    h.insert(
        "Vary",
        HeaderValue::from_static("X-OpenStack-Ironic-API-Version"),
    );
    if let Ok(id) = HeaderValue::from_str(&req_id) {
        h.insert("X-OpenStack-Request-Id", id.clone());
        h.insert("OpenStack-Request-Id", id);
    }
    resp
}

/// Times every request for the metrics, by method, route (the matched pattern, so one
/// series per route, not per node) and status.
async fn observe(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let resp = next.run(req).await;
    state.engine.metrics.api_request(
        method.as_str(),
        route.as_ref().map(|m| m.as_str()),
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// `GET /metrics`: Prometheus text format (behind the API's auth).
async fn metrics(axum::extract::State(state): axum::extract::State<Shared>) -> ApiResult<Response> {
    let text = state
        .engine
        .metrics
        .render(&state.engine.db)
        .await
        .map_err(EngineError::from)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Base URL for links in answers.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:6385");
    format!("http://{host}")
}

async fn fallback() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

pub fn router(state: Shared) -> Router {
    let agent_routes = Router::new()
        .route("/v1/lookup", get(agent::lookup))
        .route("/v1/heartbeat/{node}", post(agent::heartbeat))
        .route("/v1/continue_inspection", post(agent::continue_inspection));
    let user_routes = Router::new()
        .route("/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/detail", get(nodes::list_detail))
        .route(
            "/v1/nodes/{node}",
            get(nodes::show).patch(nodes::update).delete(nodes::delete),
        )
        .route("/v1/nodes/{node}/states", get(nodes::states))
        .route(
            "/v1/nodes/{node}/states/provision",
            put(nodes::provision).layer(DefaultBodyLimit::max(PROVISION_BODY_LIMIT)),
        )
        .route("/v1/nodes/{node}/states/power", put(nodes::power))
        .route("/v1/nodes/{node}/validate", get(nodes::validate))
        .route(
            "/v1/nodes/{node}/management/boot_device",
            put(nodes::set_boot_device).get(nodes::get_boot_device),
        )
        .route(
            "/v1/nodes/{node}/management/boot_device/supported",
            get(nodes::supported_boot_devices),
        )
        .route(
            "/v1/nodes/{node}/maintenance",
            put(nodes::maintenance_on).delete(nodes::maintenance_off),
        )
        .route("/v1/nodes/{node}/ports", get(ports::list_for_node))
        .route("/v1/nodes/{node}/inventory", get(nodes::inventory))
        .route("/v1/ports", get(ports::list).post(ports::create))
        .route("/v1/ports/detail", get(ports::list_detail))
        .route("/v1/portgroups/{pg}/ports", get(ports::list_for_portgroup))
        .route(
            "/v1/portgroups/{pg}/ports/detail",
            get(ports::list_detail_for_portgroup),
        )
        .route(
            "/v1/ports/{port}",
            get(ports::show).patch(ports::update).delete(ports::delete),
        )
        .route("/v1/drivers", get(misc::drivers))
        .route("/v1/drivers/{name}", get(misc::driver))
        .route(
            "/v1/drivers/{name}/properties",
            get(misc::driver_properties),
        )
        .route("/v1/shards", get(misc::shards))
        .route("/v1/conductors", get(misc::conductors))
        .route("/v1/conductors/{name}", get(misc::conductor))
        .merge(resources::routes())
        .merge(runbooks::routes())
        .merge(node_extras::routes())
        .merge(node_hw::routes())
        .merge(history::routes())
        .merge(timeline::routes())
        .merge(deploy_logs::routes())
        .route("/metrics", get(metrics))
        .merge(crate::ui::routes())
        .merge(allocations::routes())
        .layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let inner = Router::new()
        .route("/", get(misc::root))
        .route("/v1", get(misc::v1))
        .merge(agent_routes)
        .merge(user_routes)
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(versioning))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .route("/boot/{*rel}", get(boot::file))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        .with_state(state);
    // Ironic answers `/v1/nodes/` like `/v1/nodes` (and `GET /v1` links to the slashed
    // forms): trailing slashes are dropped before routing.
    Router::new().fallback_service(tower::util::MapRequest::new(inner, trim_trailing_slash))
}

/// `/v1/ports/?node=x` → `/v1/ports?node=x`; `/` stays.
fn trim_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let new = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = new.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// `?fields=a,b` checked against the known names.
pub fn parse_fields<'a>(fields: &'a str, known: &[&str]) -> ApiResult<Vec<&'a str>> {
    let mut out = vec![];
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if !known.contains(&f) {
            return Err(ApiError::bad(format!(
                "Field(s) \"{f}\" are not valid: choose from {}",
                known.join(", ")
            )));
        }
        out.push(f);
    }
    Ok(out)
}

/// `?limit=` checked and capped like Ironic's `max_limit`.
pub fn parse_limit(limit: Option<&str>) -> ApiResult<i64> {
    match limit {
        None => Ok(1000),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n.min(1000)),
            Ok(0) => Ok(1000),
            _ => Err(ApiError::bad(format!(
                "Invalid limit {l:?}: use a positive integer (at most 1000 are returned)"
            ))),
        },
    }
}

/// The `next` link of a full page: the caller's query (filters, `fields`, `detail`) again,
/// with `limit` and `marker` set for the page after `marker`.
pub fn next_link(
    base: &str,
    path: &str,
    q: &std::collections::HashMap<String, String>,
    limit: i64,
    marker: &str,
) -> String {
    let mut params: Vec<String> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "marker" && k.as_str() != "limit")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    params.sort();
    params.push(format!("limit={limit}"));
    params.push(format!("marker={marker}"));
    format!("{base}/v1/{path}?{}", params.join("&"))
}

pub fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::bad(format!(
            "Invalid value {v:?} for {name}: use true or false"
        ))),
    }
}

pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

pub fn json_ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

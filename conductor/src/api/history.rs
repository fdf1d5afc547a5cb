//! Node history (`/v1/nodes/{node}/history`, API 1.78): events the conductor records —
//! failures (severity ERROR, as Ironic records them) and the provision verbs users ask
//! for (INFO) — kept as `history` rows of the resources table and deleted with the node.
//! `project` appears from 1.113; `state`, `target_provision_state` and
//! `duration_seconds` from 1.115.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::query::check_params;
use super::{
    base_url, json_ok, next_link, parse_bool, parse_limit, ApiError, ApiResult, Shared, Version,
};
use crate::db::{Resource, ResourceFilter};
use crate::engine::history::KIND;
use crate::model::Obj;

const STANDARD: &[&str] = &["uuid", "created_at", "severity", "event"];
const DETAIL: &[&str] = &[
    "uuid",
    "created_at",
    "severity",
    "event_type",
    "event",
    "conductor",
    "user",
    "project",
    "state",
    "target_provision_state",
    "duration_seconds",
];

fn to_api(r: &Resource, base: &str, node: &str, detail: bool, v: Version) -> Value {
    let mut o = Obj::new();
    for f in if detail { DETAIL } else { STANDARD } {
        let val = match *f {
            "uuid" => json!(r.uuid),
            "created_at" => json!(r.created_at),
            other => r.doc.get(other).cloned().unwrap_or(Value::Null),
        };
        o.insert((*f).into(), val);
    }
    if detail && v < Version(1, 113) {
        o.remove("project");
    }
    if detail && v < Version(1, 115) {
        for k in ["state", "target_provision_state", "duration_seconds"] {
            o.remove(k);
        }
    }
    if !detail {
        if let Some(Value::String(e)) = o.get_mut("event") {
            if e.chars().count() > 255 {
                *e = format!("{}...", e.chars().take(251).collect::<String>());
            }
        }
    }
    o.insert(
        "links".into(),
        json!([{"href": format!("{base}/v1/nodes/{node}/history/{}", r.uuid), "rel": "self"}]),
    );
    Value::Object(o)
}

fn need(v: Version) -> ApiResult<()> {
    if v < Version(1, 78) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

async fn list(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    need(v)?;
    check_params(&q, &["detail", "marker", "limit", "sort_key", "sort_dir"])?;
    let detail = q
        .get("detail")
        .map(|d| parse_bool("detail", d))
        .transpose()?
        .unwrap_or(false);
    if let Some(d) = q.get("sort_dir") {
        if d != "asc" {
            return Err(ApiError::bad(format!(
                "Invalid sort_dir {d:?}: only \"asc\" is supported"
            )));
        }
    }
    if let Some(k) = q.get("sort_key") {
        if k != "created_at" {
            return Err(ApiError::bad(format!(
                "Invalid sort_key {k:?}: only created_at is supported"
            )));
        }
    }
    let limit = parse_limit(q.get("limit").map(String::as_str))?;
    let node = state.engine.node(&ident).await?;
    let mut filter = ResourceFilter {
        node_uuid: Some(node.uuid.clone()),
        limit: Some(limit),
        ..Default::default()
    };
    if let Some(m) = q.get("marker") {
        let r = state
            .engine
            .db
            .get_resource(KIND, m)
            .await?
            .filter(|r| r.node_uuid.as_deref() == Some(node.uuid.as_str()))
            .ok_or_else(|| ApiError::bad(format!("Invalid marker {m:?}: no such event")))?;
        filter.after_id = Some(r.id);
    }
    let rows = state.engine.db.list_resources(KIND, &filter).await?;
    let base = base_url(&state, &headers);
    let items: Vec<Value> = rows
        .iter()
        .map(|r| to_api(r, &base, &node.uuid, detail, v))
        .collect();
    let mut out = json!({"history": items});
    if rows.len() as i64 == limit {
        if let Some(last) = rows.last() {
            let path = format!("nodes/{ident}/history");
            out["next"] = json!(next_link(&base, &path, &q, limit, &last.uuid));
        }
    }
    Ok(json_ok(out))
}

async fn show(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    headers: HeaderMap,
    Path((ident, event)): Path<(String, String)>,
) -> ApiResult<Response> {
    need(v)?;
    let node = state.engine.node(&ident).await?;
    let r = state
        .engine
        .db
        .get_resource(KIND, &event)
        .await?
        .filter(|r| r.node_uuid.as_deref() == Some(node.uuid.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!("Node history record {event} could not be found."))
        })?;
    let base = base_url(&state, &headers);
    Ok(json_ok(to_api(&r, &base, &node.uuid, true, v)))
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/nodes/{node}/history", get(list))
        .route("/v1/nodes/{node}/history/{event}", get(show))
}

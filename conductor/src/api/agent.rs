//! Agent endpoints: `/v1/lookup`, `/v1/heartbeat/{node}`, `/v1/continue_inspection`.
//! No user auth: the agent token guards heartbeats (CONTRACT.md §2).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use ferrite_proto::lookup::{Heartbeat, InspectionData};
use serde_json::{json, Value};

use super::{json_ok, ApiError, ApiResult, JsonBody, Shared, Version};

pub async fn lookup(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q
        .keys()
        .find(|k| !["addresses", "node_uuid"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(format!(
            "Unknown argument {k:?}: use addresses and node_uuid"
        )));
    }
    let addresses = q.get("addresses").map(String::as_str).unwrap_or("");
    let r = state
        .engine
        .lookup(addresses, q.get("node_uuid").map(String::as_str))
        .await?;
    Ok(json_ok(serde_json::to_value(r).unwrap_or(Value::Null)))
}

pub async fn heartbeat(
    State(state): State<Shared>,
    Extension(version): Extension<Version>,
    Path(node): Path<String>,
    JsonBody(hb): JsonBody<Heartbeat>,
) -> ApiResult<Response> {
    if (hb.agent_status.is_some() || hb.agent_status_message.is_some()) && version < Version(1, 72)
    {
        return Err(ApiError::bad(
            "Fields \"agent_status\" and \"agent_status_message\" not recognised: they need \
             API version 1.72 or newer (X-OpenStack-Ironic-API-Version header)",
        ));
    }
    state.engine.heartbeat(&node, hb).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn continue_inspection(
    State(state): State<Shared>,
    JsonBody(raw): JsonBody<Value>,
) -> ApiResult<Response> {
    let data: InspectionData = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad(format!("Invalid inspection data: {e}")))?;
    let r = state.engine.continue_inspection(data, raw).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"uuid": r.uuid}))).into_response())
}

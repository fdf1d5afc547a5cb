//! `GET /v1/nodes/{node}/timeline` (a Ferrite extension, any microversion): the node's
//! step timeline — states, steps and power actions with start, end, duration, outcome and
//! the agent's progress — oldest first. docs/operations.md describes the fields.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{json_ok, ApiResult, Shared};
use crate::engine::timeline;

async fn list(State(state): State<Shared>, Path(ident): Path<String>) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    let rows = state.engine.timeline.entries(&node.uuid).await?;
    let entries: Vec<Value> = rows.iter().map(timeline::to_api).collect();
    Ok(json_ok(json!({
        "node_uuid": node.uuid,
        "name": node.name,
        "provision_state": node.provision_state.as_str(),
        "timeline": entries,
    })))
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/nodes/{node}/timeline", get(list))
}

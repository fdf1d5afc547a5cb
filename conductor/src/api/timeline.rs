//! `GET /v1/nodes/{node}/timeline` (a Ferrite extension, any microversion): the node's
//! step timeline — states, steps and power actions with start, end, duration, outcome and
//! the agent's progress — oldest first; `?open=true`: only the entries still going on (the
//! current state and step), which `ferrite … --wait` polls. docs/operations.md describes
//! the fields.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::query::check_params;
use super::{json_ok, parse_bool, ApiResult, Shared};
use crate::engine::timeline;

async fn list(
    State(state): State<Shared>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    check_params(&q, &["open"])?;
    let open = q
        .get("open")
        .map(|v| parse_bool("open", v))
        .transpose()?
        .unwrap_or(false);
    let node = state.engine.node(&ident).await?;
    let rows = if open {
        state.engine.timeline.open_entries(&node.uuid).await?
    } else {
        state.engine.timeline.entries(&node.uuid).await?
    };
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

//! `GET /v1/nodes/{node}/deploy_logs` (the node's kept agent log archives, newest first) and
//! `GET /v1/nodes/{node}/deploy_logs/{name}` (one archive, gzipped tar): a Ferrite
//! extension, any microversion. `engine/deploy_logs.rs` collects and rotates them.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::{json_ok, ApiError, ApiResult, Shared};
use crate::engine::deploy_logs;

fn dir(state: &Shared) -> ApiResult<std::path::PathBuf> {
    state
        .engine
        .cfg
        .deploy_logs
        .dir
        .clone()
        .ok_or_else(|| ApiError::not_found("This conductor keeps no deploy logs."))
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "reading the deploy logs directory");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "Cannot read the deploy logs directory: see the conductor's log",
    )
}

async fn list(State(state): State<Shared>, Path(ident): Path<String>) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    let d = dir(&state)?;
    let uuid = node.uuid.clone();
    let archives = tokio::task::spawn_blocking(move || deploy_logs::list(&d, &uuid))
        .await
        .map_err(|e| io_error(std::io::Error::other(e.to_string())))?
        .map_err(io_error)?;
    let items: Vec<_> = archives
        .iter()
        .map(|a| json!({"name": a.name, "size": a.size, "created_at": a.created_at}))
        .collect();
    Ok(json_ok(
        json!({"node_uuid": node.uuid, "deploy_logs": items}),
    ))
}

async fn show(
    State(state): State<Shared>,
    Path((ident, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let node = state.engine.node(&ident).await?;
    let d = dir(&state)?;
    let uuid = node.uuid.clone();
    let n = name.clone();
    let bytes = tokio::task::spawn_blocking(move || deploy_logs::read(&d, &uuid, &n))
        .await
        .map_err(|e| io_error(std::io::Error::other(e.to_string())))?
        .map_err(io_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Node {} has no deploy log {name:?}: list them at /v1/nodes/{}/deploy_logs",
                node.uuid, node.uuid
            ))
        })?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response())
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/nodes/{node}/deploy_logs", get(list))
        .route("/v1/nodes/{node}/deploy_logs/{name}", get(show))
}

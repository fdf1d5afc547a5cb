//! The web dashboard at `/ui/`, behind the API's auth: server-rendered HTML (`render.rs`)
//! with one small script (`static/app.js`, no library, nothing fetched from elsewhere, so
//! it works offline) that filters the fleet table, sends the verbs' API requests and
//! refreshes the page's live region by polling its server-rendered fragment every 2 s.
//! Polling rather than SSE: node state lives in the database, written by whichever
//! conductor works on the node, with no change feed to stream from; one small fragment per
//! open page every 2 s costs little and needs no reconnect logic.

mod render;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::api::{ApiResult, Shared};
use crate::engine::deploy_logs;
use crate::model::Node;
use crate::state::{self, Event};

const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");

/// The running step's name and the agent's write progress, from the open timeline entry.
async fn current(state: &Shared, node: &Node) -> (Option<String>, Option<(u64, Option<u64>, f64)>) {
    let step_obj = [&node.deploy_step, &node.clean_step]
        .into_iter()
        .find(|s| !s.is_empty());
    let Some(s) = step_obj else {
        return (None, None);
    };
    let name = format!(
        "{}.{}",
        s.get("interface").and_then(Value::as_str).unwrap_or("?"),
        s.get("step").and_then(Value::as_str).unwrap_or("?")
    );
    let open = state
        .engine
        .timeline
        .open_entries(&node.uuid)
        .await
        .unwrap_or_default();
    let write = open
        .iter()
        .find(|r| r.doc.get("type").and_then(Value::as_str) == Some("step"))
        .and_then(|r| r.doc.get("progress"))
        .and_then(|p| {
            Some((
                p.get("bytes_done")?.as_u64()?,
                p.get("bytes_total").and_then(Value::as_u64),
                p.get("rate_bytes_per_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
            ))
        });
    (Some(name), write)
}

async fn fleet_html(state: &Shared, filter: Option<&str>) -> ApiResult<String> {
    let nodes = state
        .engine
        .db
        .list_nodes(&crate::db::NodeFilter::default())
        .await
        .map_err(crate::engine::EngineError::from)?;
    let mut rows = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let (step, write) = current(state, n).await;
        rows.push(render::FleetRow {
            uuid: n.uuid.clone(),
            name: n.name.clone(),
            state: n.provision_state.as_str().to_string(),
            target: n.target_provision_state.map(|t| t.as_str().to_string()),
            power: n.power_state.clone(),
            step,
            write,
            last_error: n.last_error.clone(),
            in_state_secs: n
                .provision_updated_at
                .as_deref()
                .and_then(crate::model::age_secs),
            maintenance: n.maintenance,
        });
    }
    Ok(render::fleet(&rows, filter))
}

fn filter_of(q: &HashMap<String, String>) -> Option<&str> {
    q.get("state").map(String::as_str).filter(|s| !s.is_empty())
}

fn live_url(base: &str, q: &HashMap<String, String>) -> String {
    match filter_of(q) {
        Some(s) => format!("{base}?state={}", s.replace(' ', "%20")),
        None => base.to_string(),
    }
}

async fn fleet(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let body = fleet_html(&state, filter_of(&q)).await?;
    let body = format!(
        "<input id=\"filter\" type=\"search\" placeholder=\"Filter by name, UUID, state or error\" \
         aria-label=\"filter\"><div id=\"fleet-live\">{body}</div>"
    );
    Ok(Html(render::page(
        "Fleet",
        &live_url("/ui/fragment/fleet", &q),
        &body,
    ))
    .into_response())
}

async fn fleet_fragment(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    Ok(Html(fleet_html(&state, filter_of(&q)).await?).into_response())
}

/// The user verbs the node's state allows, as the API's target words, with labels; those
/// needing arguments (manual clean, service) are left to the CLI.
fn verbs(node: &Node) -> Vec<(&'static str, &'static str)> {
    [
        (Event::Manage, "Manage"),
        (Event::Provide, "Provide"),
        (Event::Inspect, "Inspect"),
        (Event::Deploy, "Deploy"),
        (Event::Rebuild, "Rebuild"),
        (Event::Delete, "Undeploy"),
        (Event::Abort, "Abort"),
        (Event::Unhold, "Unhold"),
    ]
    .into_iter()
    .filter(|(e, _)| state::next(node.provision_state, *e).is_ok())
    .map(|(e, label)| (e.target_word(), label))
    .collect()
}

/// The last lines of the newest deploy log archive's agent log (else its dmesg).
fn log_tail(dir: &std::path::Path, node: &str) -> Option<(String, String, String)> {
    let newest = deploy_logs::list(dir, node).ok()?.into_iter().next()?;
    let gz = deploy_logs::read(dir, node, &newest.name).ok()??;
    let files = crate::cli::logs::unpack(&gz).ok()?;
    let (file, data) = ["ferrite-agent.log", "dmesg.txt"]
        .iter()
        .find_map(|want| files.iter().find(|(n, _)| n == want))?;
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    Some((newest.name, file.clone(), tail))
}

async fn node_html(state: &Shared, ident: &str) -> ApiResult<(String, String)> {
    let node = state.engine.node(ident).await?;
    let (step, write) = current(state, &node).await;
    let rows = state.engine.timeline.entries(&node.uuid).await?;
    // The last 60 entries: the latest runs, not a node's whole life.
    let timeline: Vec<Value> = rows[rows.len().saturating_sub(60)..]
        .iter()
        .map(crate::engine::timeline::to_api)
        .collect();
    let ports = state
        .engine
        .db
        .list_ports(&crate::db::PortFilter {
            node_uuid: Some(node.uuid.clone()),
            ..Default::default()
        })
        .await
        .map_err(crate::engine::EngineError::from)?;
    let inventory = state
        .engine
        .db
        .inventory(&node.uuid)
        .await
        .ok()
        .flatten()
        .and_then(|(inv, _)| serde_json::from_str(&inv).ok());
    let log_tail = match (&node.last_error, &state.engine.cfg.deploy_logs.dir) {
        (Some(_), Some(dir)) => {
            let (dir, uuid) = (dir.clone(), node.uuid.clone());
            tokio::task::spawn_blocking(move || log_tail(&dir, &uuid))
                .await
                .ok()
                .flatten()
        }
        _ => None,
    };
    let view = render::NodeView {
        node: &node,
        step,
        write,
        verbs: verbs(&node),
        timeline: &timeline,
        ports: &ports,
        inventory,
        log_tail,
    };
    let title = node.name.clone().unwrap_or_else(|| node.uuid.clone());
    Ok((title, render::node(&view)))
}

async fn node_page(State(state): State<Shared>, Path(ident): Path<String>) -> ApiResult<Response> {
    let (title, body) = node_html(&state, &ident).await?;
    let live = format!("/ui/fragment/nodes/{}", render::esc(&ident));
    Ok(Html(render::page(&title, &live, &body)).into_response())
}

async fn node_fragment(
    State(state): State<Shared>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    Ok(Html(node_html(&state, &ident).await?.1).into_response())
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// `/ui/…` (trailing slashes are dropped before routing, so `/ui/` is `/ui`).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui", get(fleet))
        .route("/ui/fragment/fleet", get(fleet_fragment))
        .route("/ui/nodes/{node}", get(node_page))
        .route("/ui/fragment/nodes/{node}", get(node_fragment))
        .route("/ui/static/app.js", get(app_js))
        .route("/ui/static/style.css", get(style_css))
}

//! One HTTP listener for every simulated agent: `/node/<index>/v1/commands…` is the agent
//! API of node `<index>` (its heartbeat's callback URL is `<base>/node/<index>`, to which
//! the conductor appends `/v1/commands`), plus `/sim/stats`, `/sim/nodes` and
//! `/sim/files/<name>` for tests and benches. A node without a live agent answers 503, as a machine whose agent is not
//! serving would fail the conductor's call.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post as post_route};
use axum::{Json, Router};
use ferrite_proto::agent::{AgentStatus, CommandList, CommandRequest, Fault};

use crate::agent::AgentBoot;
use crate::machine::Machine;
use crate::Fleet;

type Params = Query<HashMap<String, String>>;

fn fault(status: u16, client: bool, msg: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Fault {
        faultcode: if client { "Client" } else { "Server" }.into(),
        faultstring: msg.into(),
    };
    (code, Json(body)).into_response()
}

pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/node/{index}/v1/commands", get(list).post(post))
        .route("/node/{index}/v1/commands/", get(list).post(post))
        .route("/node/{index}/v1/commands/{id}", get(one))
        .route("/node/{index}/v1/status", get(status))
        .route("/sim/stats", get(stats))
        .route("/sim/stats/reset", post_route(reset_latencies))
        .route("/sim/nodes", get(nodes))
        .route("/sim/files/{name}", get(file))
        .with_state(fleet)
}

/// The node's live agent, after checking the request's token.
#[allow(clippy::result_large_err)]
fn agent(
    fleet: &Fleet,
    index: usize,
    q: &Params,
) -> Result<(Arc<Machine>, Arc<AgentBoot>), Response> {
    let Some(m) = fleet.machine(index) else {
        return Err(fault(404, true, format!("no simulated node {index}")));
    };
    let Some(a) = m.agent() else {
        return Err(fault(
            503,
            false,
            format!("node {index} runs no agent (powered off, booting, or dead)"),
        ));
    };
    if !a.token_allows(q.get("agent_token").map(String::as_str)) {
        return Err(fault(401, true, "agent token missing or wrong"));
    }
    Ok((m.clone(), a))
}

async fn post(
    State(fleet): State<Arc<Fleet>>,
    Path(index): Path<usize>,
    q: Params,
    body: axum::body::Bytes,
) -> Response {
    let (m, a) = match agent(&fleet, index, &q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: CommandRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return fault(400, true, format!("invalid command body: {e}")),
    };
    let wait = q.get("wait").is_some_and(|w| w == "true");
    match crate::commands::execute(&fleet, &m, &a, req, wait).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => fault(e.status, e.fault.faultcode == "Client", e.fault.faultstring),
    }
}

async fn list(State(fleet): State<Arc<Fleet>>, Path(index): Path<usize>, q: Params) -> Response {
    match agent(&fleet, index, &q) {
        Ok((_, a)) => {
            let commands = a.commands.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Json(CommandList { commands }).into_response()
        }
        Err(r) => r,
    }
}

async fn one(
    State(fleet): State<Arc<Fleet>>,
    Path((index, id)): Path<(usize, String)>,
    q: Params,
) -> Response {
    let a = match agent(&fleet, index, &q) {
        Ok((_, a)) => a,
        Err(r) => return r,
    };
    let found = a
        .commands
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|c| c.id == id)
        .cloned();
    match found {
        Some(c) => Json(c).into_response(),
        None => fault(404, true, format!("no command {id}")),
    }
}

async fn status(State(fleet): State<Arc<Fleet>>, Path(index): Path<usize>) -> Response {
    match fleet.machine(index).and_then(|m| m.agent()) {
        Some(a) => Json(AgentStatus {
            started_at: a.started_unix,
            version: format!("ferrite-sim boot {}", a.generation),
        })
        .into_response(),
        None => fault(503, false, format!("node {index} runs no agent")),
    }
}

async fn stats(State(fleet): State<Arc<Fleet>>) -> Response {
    Json(fleet.stats.snapshot(&fleet)).into_response()
}

/// Forgets the heartbeat latencies so far (a bench measures one phase).
async fn reset_latencies(State(fleet): State<Arc<Fleet>>) -> StatusCode {
    fleet.stats.reset_latencies();
    StatusCode::NO_CONTENT
}

/// A deploy kernel, ramdisk or image a conductor may fetch or check (4 KiB of zeros:
/// nothing boots it).
async fn file(Path(_name): Path<String>) -> Response {
    vec![0u8; 4096].into_response()
}

async fn nodes(State(fleet): State<Arc<Fleet>>) -> Response {
    Json(crate::enroll::specs(&fleet)).into_response()
}

//! Node sub-resources that are lists kept on the node: traits (`/v1/nodes/{node}/traits`,
//! API 1.37) and VIFs (`/v1/nodes/{node}/vifs`, API 1.28).
//!
//! Traits are what allocations and deploy templates match on. VIFs: Ferrite has no
//! Neutron; with the `noop` network interface an attached VIF is only recorded, with
//! `flat` it also takes one of the node's ports (as Ironic records `tenant_vif_port_id`), so
//! a node cannot carry more VIFs than it has ports.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::resources::is_trait;
use super::{json_ok, ApiError, ApiResult, JsonBody, Shared, Version};
use crate::db::PortFilter;
use crate::engine::EngineError;

/// Ironic's limit on traits per node.
const MAX_TRAITS: usize = 50;
/// Where attached VIF ids are kept in `Node::extended` (not an API field).
const VIFS_KEY: &str = "_vifs";

fn need(v: Version, since: Version) -> ApiResult<()> {
    if v < since {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

fn check_trait(t: &str) -> Result<(), EngineError> {
    if is_trait(t) {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "Invalid trait {t:?}: use a standard trait or CUSTOM_ followed by upper-case \
             letters, digits and underscores"
        )))
    }
}

fn list_of(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn set_traits(
    state: &Shared,
    node: &str,
    f: impl FnOnce(&mut Vec<String>) -> Result<(), EngineError>,
) -> ApiResult<Response> {
    state
        .engine
        .update(node, move |n| {
            let mut traits = list_of(&n.ext("traits"));
            f(&mut traits)?;
            traits.dedup();
            if traits.len() > MAX_TRAITS {
                return Err(EngineError::Invalid(format!(
                    "A node can have at most {MAX_TRAITS} traits"
                )));
            }
            n.extended.insert("traits".into(), json!(traits));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 37))?;
    let n = state.engine.node(&node).await?;
    Ok(json_ok(json!({"traits": list_of(&n.ext("traits"))})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitsBody {
    traits: Vec<String>,
}

async fn replace_traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<TraitsBody>,
) -> ApiResult<Response> {
    need(v, Version(1, 37))?;
    set_traits(&state, &node, move |t| {
        for x in &body.traits {
            check_trait(x)?;
        }
        let mut new = body.traits;
        new.sort();
        *t = new;
        Ok(())
    })
    .await
}

async fn clear_traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 37))?;
    set_traits(&state, &node, |t| {
        t.clear();
        Ok(())
    })
    .await
}

async fn add_trait(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((node, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    need(v, Version(1, 37))?;
    set_traits(&state, &node, move |t| {
        check_trait(&name)?;
        if !t.contains(&name) {
            t.push(name);
            t.sort();
        }
        Ok(())
    })
    .await
}

async fn remove_trait(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((node, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    need(v, Version(1, 37))?;
    set_traits(&state, &node, move |t| {
        let before = t.len();
        t.retain(|x| *x != name);
        if t.len() == before {
            return Err(EngineError::NotFound(format!(
                "Trait {name} is not set on this node"
            )));
        }
        Ok(())
    })
    .await
}

async fn vifs(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 28))?;
    let n = state.engine.node(&node).await?;
    let list: Vec<Value> = list_of(n.extended.get(VIFS_KEY).unwrap_or(&Value::Null))
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    Ok(json_ok(json!({"vifs": list})))
}

#[derive(Deserialize)]
struct VifBody {
    id: String,
}

async fn attach_vif(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<VifBody>,
) -> ApiResult<Response> {
    need(v, Version(1, 28))?;
    if body.id.is_empty() || body.id.len() > 255 {
        return Err(ApiError::bad(
            "Invalid VIF id: a non-empty string, at most 255 characters",
        ));
    }
    let n = state.engine.node(&node).await?;
    let ports = state
        .engine
        .db
        .list_ports(&PortFilter {
            node_uuid: Some(n.uuid.clone()),
            ..Default::default()
        })
        .await?;
    state
        .engine
        .update(&n.uuid, move |n| {
            let mut list = list_of(n.extended.get(VIFS_KEY).unwrap_or(&Value::Null));
            if list.contains(&body.id) {
                return Err(EngineError::Conflict(format!(
                    "VIF {} is already attached to node {}",
                    body.id, n.uuid
                )));
            }
            if n.ext("network_interface") == json!("flat") && list.len() >= ports.len() {
                return Err(EngineError::Invalid(format!(
                    "Unable to attach VIF {} to node {}: every one of its {} ports already \
                     carries a VIF (network_interface flat); add a port or detach a VIF",
                    body.id,
                    n.uuid,
                    ports.len()
                )));
            }
            list.push(body.id);
            n.extended.insert(VIFS_KEY.into(), json!(list));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn detach_vif(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((node, vif)): Path<(String, String)>,
) -> ApiResult<Response> {
    need(v, Version(1, 28))?;
    state
        .engine
        .update(&node, move |n| {
            let mut list = list_of(n.extended.get(VIFS_KEY).unwrap_or(&Value::Null));
            let before = list.len();
            list.retain(|x| *x != vif);
            if list.len() == before {
                return Err(EngineError::Invalid(format!(
                    "VIF {vif} is not attached to node {}",
                    n.uuid
                )));
            }
            n.extended.insert(VIFS_KEY.into(), json!(list));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/nodes/{node}/children` (1.83): the UUIDs of the nodes whose parent it is.
async fn children(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v, Version(1, 83))?;
    let n = state.engine.node(&node).await?;
    let kids = state
        .engine
        .db
        .list_nodes(&crate::db::NodeFilter {
            extended: vec![("parent_node", n.uuid.clone())],
            ..Default::default()
        })
        .await?;
    let list: Vec<String> = kids.into_iter().map(|k| k.uuid).collect();
    Ok(json_ok(json!({"children": list})))
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/nodes/{node}/children", get(children))
        .route(
            "/v1/nodes/{node}/traits",
            get(traits).put(replace_traits).delete(clear_traits),
        )
        .route(
            "/v1/nodes/{node}/traits/{name}",
            delete(remove_trait).put(add_trait),
        )
        .route("/v1/nodes/{node}/vifs", get(vifs).post(attach_vif))
        .route("/v1/nodes/{node}/vifs/{vif}", delete(detach_vif))
}

//! `/v1/allocations` (API 1.52): Ironic's scheduler for standalone use, as metalsmith
//! uses it. An allocation asks for a node by resource class, traits and candidate nodes;
//! it is answered `allocating`, then a background task picks a matching available node
//! (random among the matches, as Ironic does), reserves it by setting the node's
//! `instance_uuid` and `allocation_uuid` under the node lock, and turns `active` — or
//! `error` with a `last_error` naming what did not match. Deleting an allocation frees its
//! node. Stored in the `resources` table (kind `allocations`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use super::nodes::check_paths;
use super::patch::{self, Operation};
use super::query::View;
use super::resources::is_trait;
use super::{base_url, json_ok, next_link, ApiError, ApiResult, JsonBody, Shared, Version};
use crate::db::{NodeFilter, Resource, ResourceFilter};
use crate::engine::EngineError;
use crate::model::{is_uuid_like, links, now, Node, Obj};
use crate::state::State as PState;

const KIND: &str = crate::db::ALLOCATIONS;
const FIELDS: &[&str] = &[
    "uuid",
    "name",
    "node_uuid",
    "state",
    "last_error",
    "resource_class",
    "traits",
    "candidate_nodes",
    "extra",
    "owner",
    "created_at",
    "updated_at",
    "links",
];
const SUMMARY: &[&str] = &[
    "uuid",
    "name",
    "node_uuid",
    "state",
    "resource_class",
    "links",
];

fn need(v: Version) -> ApiResult<()> {
    if v < Version(1, 52) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

fn to_api(r: &Resource, base: &str) -> Obj {
    let mut o = Obj::new();
    o.insert("uuid".into(), json!(r.uuid));
    o.insert("name".into(), json!(r.name));
    o.insert("node_uuid".into(), json!(r.node_uuid));
    for (k, default) in [
        ("state", json!("allocating")),
        ("last_error", Value::Null),
        ("resource_class", Value::Null),
        ("traits", json!([])),
        ("candidate_nodes", json!([])),
        ("extra", json!({})),
        ("owner", Value::Null),
    ] {
        o.insert(k.into(), r.doc.get(k).cloned().unwrap_or(default));
    }
    o.insert("created_at".into(), json!(r.created_at));
    o.insert("updated_at".into(), json!(r.updated_at));
    o.insert("links".into(), links(base, KIND, &r.uuid));
    o
}

fn strings(k: &str, v: Option<&Value>) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad(format!("Invalid {k}: expected a list of strings"))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::bad(format!(
            "Invalid {k}: expected a list of strings"
        ))),
    }
}

fn opt_str(k: &str, v: Option<&Value>) -> ApiResult<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(format!("Invalid {k}: expected a string"))),
    }
}

fn check_name(name: &Option<String>) -> ApiResult<()> {
    match name {
        Some(n) if n.is_empty() || is_uuid_like(n) || n.len() > 255 => Err(ApiError::bad(format!(
            "Invalid allocation name {n:?}: a non-empty string that is not a UUID"
        ))),
        _ => Ok(()),
    }
}

async fn find(state: &Shared, ident: &str) -> ApiResult<Resource> {
    state
        .engine
        .db
        .get_resource(KIND, ident)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Allocation {ident} could not be found.")))
}

fn node_traits(n: &Node) -> Vec<String> {
    n.ext("traits")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `n` can take the allocation `a` (ignoring the race: [`reserve`] checks again
/// under the lock).
fn matches(n: &Node, a: &Obj, candidates: &[String]) -> bool {
    let rc = a.get("resource_class").and_then(Value::as_str);
    let traits: Vec<String> = a
        .get("traits")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let owner = a.get("owner").and_then(Value::as_str);
    let have = node_traits(n);
    n.provision_state == PState::Available
        && !n.maintenance
        && n.power_state.is_some()
        && n.instance_uuid.is_none()
        && n.ext("allocation_uuid").is_null()
        && !n.ext_flag("retired")
        && rc.is_none_or(|rc| n.resource_class.as_deref() == Some(rc))
        && traits.iter().all(|t| have.contains(t))
        && (candidates.is_empty() || candidates.contains(&n.uuid))
        && owner.is_none_or(|o| {
            n.ext("owner").as_str() == Some(o) || n.ext("lessee").as_str() == Some(o)
        })
}

/// Extra passes over nodes found locked, and the pause between them.
const LOCKED_RETRIES: u32 = 5;
const LOCKED_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// What [`reserve`] found.
#[derive(Debug, PartialEq)]
enum Reserve {
    Taken,
    /// The node no longer fits (taken by another allocation, changed, gone).
    Unfit,
    /// Another task holds the node's lock (a power action finishing, the power sync):
    /// worth trying again shortly, as Ironic does (`node_locked_retry_attempts`).
    Locked,
}

/// Takes `node` for allocation `uuid` under the node lock, re-checking that it is free.
async fn reserve(
    state: &Shared,
    node: &str,
    uuid: &str,
    a: &Obj,
    candidates: &[String],
) -> Reserve {
    let (uuid, a, candidates) = (uuid.to_string(), a.clone(), candidates.to_vec());
    let r = state
        .engine
        .update(node, move |n| {
            if !matches(n, &a, &candidates) {
                return Err(EngineError::Conflict("taken".into()));
            }
            n.instance_uuid = Some(uuid.clone());
            n.extended.insert("allocation_uuid".into(), json!(uuid));
            Ok(())
        })
        .await;
    match r {
        Ok(_) => Reserve::Taken,
        Err(EngineError::Locked { .. }) => Reserve::Locked,
        Err(_) => Reserve::Unfit,
    }
}

/// Undoes [`reserve`] for allocation `uuid`, if `n` still carries it.
fn unreserve(n: &mut Node, uuid: &str) {
    if n.ext("allocation_uuid").as_str() == Some(uuid) {
        n.extended.remove("allocation_uuid");
        if n.instance_uuid.as_deref() == Some(uuid) {
            n.instance_uuid = None;
        }
    }
}

/// Resolves candidate node names to UUIDs.
async fn candidate_uuids(state: &Shared, names: &[String]) -> ApiResult<Vec<String>> {
    let mut out = vec![];
    for c in names {
        let n = state
            .engine
            .db
            .get_node(c)
            .await?
            .ok_or_else(|| ApiError::bad(format!("Candidate node {c} could not be found")))?;
        out.push(n.uuid);
    }
    Ok(out)
}

/// The background half of a create: pick, reserve, record.
async fn process(state: Shared, mut r: Resource) {
    let result = async {
        let candidates =
            strings("candidate_nodes", r.doc.get("candidate_nodes")).unwrap_or_default();
        let nodes = state
            .engine
            .db
            .list_nodes(&NodeFilter {
                provision_state: Some(PState::Available.as_str().into()),
                ..Default::default()
            })
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let mut fit: Vec<&Node> = nodes
            .iter()
            .filter(|n| matches(n, &r.doc, &candidates))
            .collect();
        fit.shuffle(&mut rand::rng());
        // A node named like the allocation is tried first (Ironic since 1.79).
        if let Some(i) = r
            .name
            .as_ref()
            .and_then(|name| fit.iter().position(|n| n.name.as_ref() == Some(name)))
        {
            let n = fit.remove(i);
            fit.insert(0, n);
        }
        let mut fit: Vec<String> = fit.into_iter().map(|n| n.uuid.clone()).collect();
        // Locked nodes get a few more passes (a power action that just answered may
        // still hold its lock for a moment); unfit ones are dropped.
        for attempt in 0..=LOCKED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(LOCKED_RETRY_INTERVAL).await;
            }
            let mut locked = vec![];
            for n in fit {
                match reserve(&state, &n, &r.uuid, &r.doc, &candidates).await {
                    Reserve::Taken => return Ok(n),
                    Reserve::Locked => locked.push(n),
                    Reserve::Unfit => {}
                }
            }
            fit = locked;
            if fit.is_empty() {
                break;
            }
        }
        if !fit.is_empty() {
            return Err(format!(
                "{} node(s) matching the allocation stayed locked by other work (a power action \
                 or another operation) for {} s: try the allocation again",
                fit.len(),
                (LOCKED_RETRY_INTERVAL * LOCKED_RETRIES).as_secs_f32()
            ));
        }
        let rc = r
            .doc
            .get("resource_class")
            .and_then(Value::as_str)
            .unwrap_or("(any)");
        let traits = strings("traits", r.doc.get("traits")).unwrap_or_default();
        Err(format!(
            "No available nodes match the resource class {rc}{}{}: a node must be available, \
             powered (known power state), not in maintenance, not retired and not already \
             allocated",
            if traits.is_empty() {
                String::new()
            } else {
                format!(" and traits {}", traits.join(", "))
            },
            if candidates.is_empty() {
                String::new()
            } else {
                " among the candidate nodes".to_string()
            }
        ))
    }
    .await;
    match result {
        Ok(node) => {
            r.node_uuid = Some(node);
            r.doc.insert("state".into(), json!("active"));
        }
        Err(e) => {
            r.doc.insert("state".into(), json!("error"));
            r.doc.insert("last_error".into(), json!(e));
        }
    }
    r.updated_at = Some(now());
    match state.engine.db.save_resource(&r, "allocation").await {
        Ok(true) => {}
        // Deleted while it was being processed: give the node back.
        Ok(false) => {
            if let Some(node) = &r.node_uuid {
                let uuid = r.uuid.clone();
                let undo = state
                    .engine
                    .update(node, move |n| {
                        unreserve(n, &uuid);
                        Ok(())
                    })
                    .await;
                if let Err(e) = undo {
                    tracing::error!(allocation = %r.uuid, error = %crate::error_chain(&e),
                                    "freeing the node of a deleted allocation");
                }
            }
        }
        Err(e) => {
            tracing::error!(allocation = %r.uuid, error = %crate::error_chain(&e), "saving allocation");
        }
    }
}

async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    Extension(v): Extension<Version>,
    JsonBody(doc): JsonBody<Obj>,
) -> ApiResult<Response> {
    need(v)?;
    const SETTABLE: &[&str] = &[
        "uuid",
        "name",
        "resource_class",
        "traits",
        "candidate_nodes",
        "extra",
        "owner",
        "node",
    ];
    if let Some(k) = doc.keys().find(|k| !SETTABLE.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "Field {k:?} is read-only or unknown for an allocation: settable fields are {}",
            SETTABLE.join(", ")
        )));
    }
    let uuid = match opt_str("uuid", doc.get("uuid"))? {
        None => uuid::Uuid::new_v4().to_string(),
        Some(u) if is_uuid_like(&u) => u.to_lowercase(),
        Some(u) => return Err(ApiError::bad(format!("Invalid uuid {u:?}"))),
    };
    let name = opt_str("name", doc.get("name"))?;
    check_name(&name)?;
    let rc = opt_str("resource_class", doc.get("resource_class"))?;
    let traits = strings("traits", doc.get("traits"))?;
    if let Some(t) = traits.iter().find(|t| !is_trait(t)) {
        return Err(ApiError::bad(format!("Invalid trait {t:?}")));
    }
    let candidates = candidate_uuids(
        &state,
        &strings("candidate_nodes", doc.get("candidate_nodes"))?,
    )
    .await?;
    let backfill = opt_str("node", doc.get("node"))?;
    if backfill.is_some() && v < Version(1, 58) {
        return Err(ApiError::bad(
            "Backfilling an allocation (\"node\") needs API 1.58",
        ));
    }
    if rc.is_none() && backfill.is_none() {
        return Err(ApiError::bad(
            "Field \"resource_class\" is mandatory: the resource class of the node wanted",
        ));
    }
    let mut stored = Obj::new();
    stored.insert("state".into(), json!("allocating"));
    stored.insert("resource_class".into(), json!(rc));
    stored.insert("traits".into(), json!(traits));
    stored.insert("candidate_nodes".into(), json!(candidates));
    stored.insert(
        "extra".into(),
        match doc.get("extra") {
            None | Some(Value::Null) => json!({}),
            Some(e @ Value::Object(_)) => e.clone(),
            Some(_) => return Err(ApiError::bad("Invalid extra: expected an object")),
        },
    );
    stored.insert("owner".into(), json!(opt_str("owner", doc.get("owner"))?));
    let mut r = Resource {
        id: 0,
        kind: KIND,
        uuid,
        name,
        node_uuid: None,
        key1: None,
        key2: None,
        doc: stored,
        created_at: now(),
        updated_at: None,
    };
    if let Some(node) = backfill {
        // Backfill: record an allocation for a node that is already deployed.
        let n = state.engine.node(&node).await?;
        let (uuid, rc2) = (r.uuid.clone(), rc.clone());
        state
            .engine
            .update(&n.uuid, move |n| {
                if !n.ext("allocation_uuid").is_null() {
                    return Err(EngineError::Conflict(format!(
                        "Node {} already has an allocation",
                        n.uuid
                    )));
                }
                if rc2.is_some() && n.resource_class != rc2 {
                    return Err(EngineError::Invalid(format!(
                        "Node {} has resource class {:?}, not {:?}",
                        n.uuid, n.resource_class, rc2
                    )));
                }
                n.instance_uuid.get_or_insert(uuid.clone());
                n.extended.insert("allocation_uuid".into(), json!(uuid));
                Ok(())
            })
            .await?;
        r.node_uuid = Some(n.uuid);
        r.doc.insert("state".into(), json!("active"));
    }
    let r = state
        .engine
        .db
        .insert_resource(&r, "allocation with this name or uuid")
        .await?;
    let base = base_url(&state, &headers);
    let body = to_api(&r, &base);
    if r.node_uuid.is_none() {
        let st = state.clone();
        let pending = r.clone();
        state.engine.tracker.spawn(process(st, pending));
    }
    let mut resp = (StatusCode::CREATED, axum::Json(Value::Object(body))).into_response();
    if let Ok(h) = format!("{base}/v1/allocations/{}", r.uuid).parse() {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    Extension(v): Extension<Version>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    need(v)?;
    const PARAMS: &[&str] = &[
        "fields",
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "node",
        "resource_class",
        "state",
        "owner",
        "detail",
    ];
    let view = View::parse(&q, PARAMS, FIELDS, false)?;
    let limit = view.limit;
    let mut filter = ResourceFilter::default();
    if let Some(n) = q.get("node") {
        let node = state
            .engine
            .db
            .get_node(n)
            .await?
            .ok_or_else(|| ApiError::bad(format!("Node {n} could not be found")))?;
        filter.node_uuid = Some(node.uuid);
    }
    if let Some(m) = q.get("marker") {
        filter.after_id = Some(find(&state, m).await?.id);
    }
    let rows = state.engine.db.list_resources(KIND, &filter).await?;
    let want = |k: &str, r: &Resource| {
        q.get(k)
            .is_none_or(|want| r.doc.get(k).and_then(Value::as_str) == Some(want.as_str()))
    };
    let base = base_url(&state, &headers);
    let page: Vec<&Resource> = rows
        .iter()
        .filter(|r| want("resource_class", r) && want("state", r) && want("owner", r))
        .take(limit as usize)
        .collect();
    let items: Vec<Value> = page
        .iter()
        .map(|r| Value::Object(view.project(to_api(r, &base), SUMMARY)))
        .collect();
    let mut out = json!({ "allocations": items });
    if page.len() as i64 == limit {
        if let Some(last) = page.last() {
            out["next"] = json!(next_link(&base, KIND, &q, limit, &last.uuid));
        }
    }
    Ok(json_ok(out))
}

async fn show(
    State(state): State<Shared>,
    headers: HeaderMap,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    need(v)?;
    let view = View::parse(&q, &["fields"], FIELDS, true)?;
    let r = find(&state, &ident).await?;
    Ok(json_ok(Value::Object(view.project(
        to_api(&r, &base_url(&state, &headers)),
        SUMMARY,
    ))))
}

async fn update(
    State(state): State<Shared>,
    headers: HeaderMap,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
    JsonBody(ops): JsonBody<Vec<Operation>>,
) -> ApiResult<Response> {
    need(v)?;
    if v < Version(1, 57) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Updating an allocation needs API 1.57",
        ));
    }
    let writable: &[&str] = if v >= Version(1, 60) {
        &["name", "extra", "owner"]
    } else {
        &["name", "extra"]
    };
    check_paths(&ops, writable)?;
    let mut r = find(&state, &ident).await?;
    let mut doc = json!({"name": r.name, "extra": r.doc.get("extra").cloned().unwrap_or(json!({})),
                         "owner": r.doc.get("owner").cloned().unwrap_or(Value::Null)});
    patch::apply(&mut doc, &ops).map_err(|e| ApiError::bad(e.to_string()))?;
    patch::check_size(&doc, "allocation").map_err(|e| ApiError::bad(e.to_string()))?;
    r.name = opt_str("name", doc.get("name"))?;
    check_name(&r.name)?;
    let extra = match doc.get("extra") {
        None | Some(Value::Null) => json!({}),
        Some(e @ Value::Object(_)) => e.clone(),
        Some(_) => return Err(ApiError::bad("Invalid extra: expected an object")),
    };
    r.doc.insert("extra".into(), extra);
    r.doc
        .insert("owner".into(), json!(opt_str("owner", doc.get("owner"))?));
    r.updated_at = Some(now());
    state
        .engine
        .db
        .save_resource(&r, "allocation with this name")
        .await?;
    Ok(json_ok(Value::Object(to_api(
        &r,
        &base_url(&state, &headers),
    ))))
}

/// Frees the allocation's node (unless it is being deployed or deployed: undeploy first).
pub(crate) async fn release(state: &Shared, r: &Resource) -> ApiResult<()> {
    if let Some(node) = &r.node_uuid {
        let uuid = r.uuid.clone();
        let res = state
            .engine
            .update(node, move |n| {
                if matches!(
                    n.provision_state,
                    PState::Active | PState::Deploying | PState::WaitCallBack
                ) && !n.maintenance
                {
                    return Err(EngineError::Conflict(format!(
                        "Allocation {uuid} cannot be deleted while node {} is {}: undeploy it first",
                        n.uuid, n.provision_state
                    )));
                }
                unreserve(n, &uuid);
                Ok(())
            })
            .await;
        match res {
            Ok(_) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state.engine.db.delete_resource(KIND, &r.uuid).await?;
    Ok(())
}

async fn delete(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    need(v)?;
    let r = find(&state, &ident).await?;
    release(&state, &r).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn node_allocation(
    State(state): State<Shared>,
    headers: HeaderMap,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v)?;
    let n = state.engine.node(&node).await?;
    let a = n.ext("allocation_uuid");
    let id = a
        .as_str()
        .ok_or_else(|| ApiError::not_found(format!("Node {} has no allocation", n.uuid)))?;
    let r = find(&state, id).await?;
    Ok(json_ok(Value::Object(to_api(
        &r,
        &base_url(&state, &headers),
    ))))
}

async fn delete_node_allocation(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    need(v)?;
    let n = state.engine.node(&node).await?;
    let id = n
        .ext("allocation_uuid")
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ApiError::not_found(format!("Node {} has no allocation", n.uuid)))?;
    let r = find(&state, &id).await?;
    release(&state, &r).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/allocations", get(list).post(create))
        .route(
            "/v1/allocations/{ident}",
            get(show).patch(update).delete(delete),
        )
        .route(
            "/v1/nodes/{node}/allocation",
            get(node_allocation).delete(delete_node_allocation),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let mut n = super::super::nodes::blank_node();
        n.provision_state = PState::Available;
        n.power_state = Some("power off".into());
        n.resource_class = Some("gold".into());
        n.extended.insert("traits".into(), json!(["CUSTOM_GPU"]));
        n
    }

    fn want(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn matching_follows_resource_class_traits_candidates_and_state() {
        let n = node();
        assert!(matches(&n, &want(json!({"resource_class": "gold"})), &[]));
        assert!(matches(
            &n,
            &want(json!({"resource_class": "gold", "traits": ["CUSTOM_GPU"]})),
            &[]
        ));
        assert!(!matches(
            &n,
            &want(json!({"resource_class": "gold", "traits": ["CUSTOM_FPGA"]})),
            &[]
        ));
        assert!(!matches(
            &n,
            &want(json!({"resource_class": "silver"})),
            &[]
        ));
        assert!(!matches(
            &n,
            &want(json!({"resource_class": "gold"})),
            &["other".into()]
        ));
        assert!(matches(
            &n,
            &want(json!({"resource_class": "gold"})),
            std::slice::from_ref(&n.uuid)
        ));
        let mut taken = node();
        taken.instance_uuid = Some("x".into());
        assert!(!matches(
            &taken,
            &want(json!({"resource_class": "gold"})),
            &[]
        ));
        let mut unknown_power = node();
        unknown_power.power_state = None;
        assert!(!matches(
            &unknown_power,
            &want(json!({"resource_class": "gold"})),
            &[]
        ));
        let mut maint = node();
        maint.maintenance = true;
        assert!(!matches(
            &maint,
            &want(json!({"resource_class": "gold"})),
            &[]
        ));
        assert!(!matches(
            &n,
            &want(json!({"resource_class": "gold", "owner": "p1"})),
            &[]
        ));
    }
}

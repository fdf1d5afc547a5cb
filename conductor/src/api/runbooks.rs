//! Runbooks (1.92, traits 1.112) and inspection rules (1.96): their [`Kind`] entries for
//! the document handlers of `resources.rs`, the runbook traits endpoints, and what a
//! runbook does — its steps become a manual clean's or a servicing's steps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::resources::{
    f, no_keys, read_only, req, shown, since, text, with_default, Dflt, Kind, Ty, STEP_INTERFACES,
};
use super::{json_ok, ApiError, ApiResult, Shared, Version};
use crate::model::{now, Node, Obj};

/// Runbook names: a trait name before 1.112, Ironic's logical-name alphabet from 1.112.
fn check_runbook(doc: &Obj, v: Version) -> Result<(), String> {
    let Some(name) = doc.get("name").and_then(Value::as_str) else {
        return Err("Field \"name\" is mandatory for a runbook".into());
    };
    if v < Version(1, 112) {
        if !super::resources::is_trait(name) {
            return Err(format!(
                "Invalid runbook name {name:?}: before API version 1.112 it must be a trait \
                 name, CUSTOM_ followed by upper-case letters, digits and underscores"
            ));
        }
    } else if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(format!(
            "Invalid runbook name {name:?}: use 1 to 255 letters, digits and -._~"
        ));
    }
    let Some(Value::Array(steps)) = doc.get("steps") else {
        return Err("Field \"steps\" must be a list of steps".into());
    };
    if steps.is_empty() {
        return Err("A runbook needs at least one step".into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in steps {
        let Some(o) = s.as_object() else {
            return Err(format!("Invalid step {s}: expected an object"));
        };
        if let Some(k) = o
            .keys()
            .find(|k| !["interface", "step", "args", "order"].contains(&k.as_str()))
        {
            return Err(format!(
                "Invalid step {s}: unknown key {k:?} (a runbook step has interface, step, \
                 args and order)"
            ));
        }
        let iface = o.get("interface").and_then(Value::as_str).unwrap_or("");
        if !STEP_INTERFACES.contains(&iface) {
            return Err(format!(
                "Invalid step {s}: interface must be one of {}",
                STEP_INTERFACES.join(", ")
            ));
        }
        let step = o.get("step").and_then(Value::as_str).unwrap_or("");
        if step.is_empty() {
            return Err(format!("Invalid step {s}: \"step\" names the step to run"));
        }
        if o.get("args").is_some_and(|a| !a.is_object()) {
            return Err(format!("Invalid step {s}: \"args\" must be an object"));
        }
        if order_of(o).is_none() {
            return Err(format!(
                "Invalid step {s}: \"order\" (an integer of 0 or more) is required"
            ));
        }
        if !seen.insert((iface, step)) {
            return Err(format!(
                "Duplicate runbook steps for {iface}.{step}: each step may appear once"
            ));
        }
    }
    if let Some(Value::String(d)) = doc.get("description") {
        if d.len() > 255 {
            return Err("description is longer than 255 characters".into());
        }
    }
    Ok(())
}

/// A runbook step's `order`: an integer, or a string of digits (Ironic's schema).
fn order_of(step: &Obj) -> Option<u64> {
    match step.get("order")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

pub static RUNBOOKS: Kind = Kind {
    path: "runbooks",
    list_key: "runbooks",
    what: "Runbook",
    since: Version(1, 92),
    named: true,
    node: None,
    fields: &[
        req("steps", Ty::List),
        super::resources::obj("extra"),
        with_default(f("public", Ty::Bool), Dflt::Bool(false)),
        f("owner", Ty::Str),
        with_default(f("disable_ramdisk", Ty::Bool), Dflt::Bool(false)),
        since(f("description", Ty::Str), Version(1, 112)),
        since(read_only(f("traits", Ty::List)), Version(1, 112)),
    ],
    summary: &["uuid", "name"],
    keys: no_keys,
    validate: check_runbook,
    sanitize: shown,
};

const RULE_ACTIONS: &[&str] = &[
    "fail",
    "log",
    "set-attribute",
    "extend-attribute",
    "del-attribute",
    "set-capability",
    "unset-capability",
    "add-trait",
    "remove-trait",
    "set-plugin-data",
    "extend-plugin-data",
    "unset-plugin-data",
    "set-port-attribute",
    "extend-port-attribute",
    "del-port-attribute",
    "api-call",
];

const RULE_OPERATORS: &[&str] = &[
    "eq", "lt", "gt", "is-empty", "in-net", "matches", "contains", "one-of", "is-none", "is-true",
    "is-false",
];

/// Ironic's schema and `validate_rule`: known operators and actions, `args` a list or
/// object, `multiple` one of any/all/first/last, phase `main`, priority 0..9999.
fn check_rule(doc: &Obj, _: Version) -> Result<(), String> {
    let list = |k: &str| match doc.get(k) {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(format!("Field {k:?} must be a list")),
    };
    let actions = list("actions")?;
    if actions.is_empty() {
        return Err("An inspection rule needs at least one action".into());
    }
    for (what, items, ops) in [
        ("action", actions, RULE_ACTIONS),
        ("condition", list("conditions")?, RULE_OPERATORS),
    ] {
        for item in items {
            let Some(o) = item.as_object() else {
                return Err(format!("Invalid {what} {item}: expected an object"));
            };
            let op = o.get("op").and_then(Value::as_str).unwrap_or("");
            let bare = if what == "condition" {
                op.strip_prefix('!').unwrap_or(op)
            } else {
                op
            };
            if !ops.contains(&bare) {
                return Err(format!(
                    "Invalid {what} {item}: unsupported op {op:?}; use one of {}",
                    ops.join(", ")
                ));
            }
            if !o.get("args").is_some_and(|a| a.is_array() || a.is_object()) {
                return Err(format!(
                    "Invalid {what} {item}: \"args\" (a list or an object) is required"
                ));
            }
            if let Some(m) = o.get("multiple") {
                if what == "action"
                    || !["any", "all", "first", "last"].contains(&m.as_str().unwrap_or(""))
                {
                    return Err(format!(
                        "Invalid {what} {item}: \"multiple\" is one of any, all, first, last"
                    ));
                }
            }
        }
    }
    let phase = text(doc, "phase");
    if phase != "main" {
        return Err(format!("Invalid phase: {phase}. Valid phases are: main"));
    }
    match doc.get("priority").and_then(Value::as_i64) {
        Some(p) if (0..=9999).contains(&p) => {}
        _ => return Err("Invalid priority: use an integer 0..9999".into()),
    }
    if let Some(Value::String(d)) = doc.get("description") {
        if d.len() > 255 {
            return Err("description is longer than 255 characters".into());
        }
    }
    Ok(())
}

/// A sensitive rule's conditions and actions are not shown (Ironic's `rules_sanitize`).
fn hide_sensitive(doc: &mut Obj) {
    if doc.get("sensitive") == Some(&Value::Bool(true)) {
        doc.insert("conditions".into(), Value::Null);
        doc.insert("actions".into(), Value::Null);
    }
}

pub static INSPECTION_RULES: Kind = Kind {
    path: "inspection_rules",
    list_key: "inspection_rules",
    what: "Inspection rule",
    since: Version(1, 96),
    named: false,
    node: None,
    fields: &[
        f("description", Ty::Str),
        with_default(f("priority", Ty::Int), Dflt::Int(0)),
        with_default(f("sensitive", Ty::Bool), Dflt::Bool(false)),
        with_default(f("phase", Ty::Str), Dflt::Str("main")),
        f("conditions", Ty::List),
        req("actions", Ty::List),
    ],
    summary: &["uuid", "priority", "phase", "description"],
    keys: no_keys,
    validate: check_rule,
    sanitize: hide_sensitive,
};

/// The steps a runbook gives a manual clean or a servicing, in its `order`, after
/// Ironic's checks: the node must carry one of the runbook's traits (1.112), or a trait
/// named as the runbook (before 1.112). Also returns the runbook's `disable_ramdisk`.
pub async fn runbook_steps(
    state: &Shared,
    node: &Node,
    ident: &str,
    v: Version,
) -> ApiResult<(Vec<Value>, bool)> {
    if v < RUNBOOKS.since {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Request not acceptable: runbook needs API version 1.92 or newer",
        ));
    }
    let r = RUNBOOKS.find(state, ident).await?;
    let node_traits: Vec<String> = node
        .ext("traits")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if v >= Version(1, 112) {
        let traits: Vec<&str> = r
            .doc
            .get("traits")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if traits.is_empty() {
            return Err(ApiError::bad(format!(
                "Runbook {} has no traits configured. Please ask an administrator to add \
                 traits to the runbook.",
                r.uuid
            )));
        }
        if !traits.iter().any(|t| node_traits.iter().any(|n| n == t)) {
            return Err(ApiError::bad(format!(
                "This runbook has not been approved for use on this node {}. The node does \
                 not have any of the runbook's traits {traits:?}. Please ask an administrator \
                 to add a matching trait to your node.",
                node.uuid
            )));
        }
    } else if !node_traits.iter().any(|t| Some(t) == r.name.as_ref()) {
        return Err(ApiError::bad(format!(
            "This runbook has not been approved for use on this node {}. Please ask an \
             administrator to add it to your node traits.",
            node.uuid
        )));
    }
    let mut steps: Vec<Obj> = r
        .doc
        .get("steps")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_object().cloned()).collect())
        .unwrap_or_default();
    steps.sort_by_key(|s| order_of(s).unwrap_or(0));
    let steps = steps
        .into_iter()
        .map(|s| {
            json!({
                "interface": s.get("interface").cloned().unwrap_or(Value::Null),
                "step": s.get("step").cloned().unwrap_or(Value::Null),
                "args": s.get("args").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    let disable_ramdisk = r.doc.get("disable_ramdisk") == Some(&Value::Bool(true));
    Ok((steps, disable_ramdisk))
}

fn check_traits_version(v: Version) -> ApiResult<()> {
    if v < Version(1, 112) {
        return Err(ApiError::not_found(
            "The API version does not allow runbook traits",
        ));
    }
    Ok(())
}

fn traits_of(doc: &Obj) -> Vec<String> {
    doc.get("traits")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn check_trait(t: &str) -> ApiResult<()> {
    if super::resources::is_trait(t) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "Invalid trait {t:?}: CUSTOM_ followed by upper-case letters, digits and \
             underscores, or a standard trait name"
        )))
    }
}

async fn store_traits(
    state: &Shared,
    ident: &str,
    f: impl FnOnce(&mut Vec<String>),
) -> ApiResult<()> {
    let mut r = RUNBOOKS.find(state, ident).await?;
    let mut traits = traits_of(&r.doc);
    f(&mut traits);
    r.doc.insert("traits".into(), json!(traits));
    r.updated_at = Some(now());
    state
        .engine
        .db
        .save_resource(&r, "runbook with this name")
        .await?;
    Ok(())
}

async fn list_traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    check_traits_version(v)?;
    let r = RUNBOOKS.find(&state, &ident).await?;
    Ok(json_ok(json!({"traits": traits_of(&r.doc)})))
}

async fn set_traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
    super::JsonBody(body): super::JsonBody<Obj>,
) -> ApiResult<Response> {
    check_traits_version(v)?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "traits") {
        return Err(ApiError::bad(format!(
            "Unknown key {k:?}: the body is {{\"traits\": [...]}}"
        )));
    }
    let list: Vec<String> = match body.get("traits") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad(format!("Invalid trait {t}: expected a string")))
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(ApiError::bad(
            "A single runbook trait may be added via PUT /v1/runbooks/<runbook>/traits/<trait> \
                 with no body, or all runbook traits may be replaced via PUT \
                 /v1/runbooks/<runbook>/traits with the list of traits in the body.",
        )),
    };
    for t in &list {
        check_trait(t)?;
    }
    store_traits(&state, &ident, |traits| {
        traits.clear();
        for t in list {
            if !traits.contains(&t) {
                traits.push(t);
            }
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_trait(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((ident, t)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_traits_version(v)?;
    check_trait(&t)?;
    store_traits(&state, &ident, |traits| {
        if !traits.contains(&t) {
            traits.push(t);
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_all_traits(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path(ident): Path<String>,
) -> ApiResult<Response> {
    check_traits_version(v)?;
    store_traits(&state, &ident, Vec::clear).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removing a trait the runbook does not have is a no-op, as in Ironic.
async fn remove_trait(
    State(state): State<Shared>,
    Extension(v): Extension<Version>,
    Path((ident, t)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_traits_version(v)?;
    store_traits(&state, &ident, |traits| traits.retain(|x| *x != t)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `/v1/runbooks/{ident}/traits[/{trait}]` (1.112).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/runbooks/{ident}/traits",
            put(set_traits).get(list_traits).delete(remove_all_traits),
        )
        .route(
            "/v1/runbooks/{ident}/traits/{trait}",
            put(add_trait).delete(remove_trait),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    fn step() -> Value {
        json!({"interface": "bios", "step": "apply_configuration", "args": {}, "order": 150})
    }

    #[test]
    fn runbook_names_follow_the_version() {
        let d = doc(json!({"name": "enable-ht", "steps": [step()]}));
        assert!(check_runbook(&d, Version(1, 111))
            .unwrap_err()
            .contains("trait name"));
        assert_eq!(check_runbook(&d, Version(1, 112)), Ok(()));
        let d = doc(json!({"name": "CUSTOM_HT", "steps": [step()]}));
        assert_eq!(check_runbook(&d, Version(1, 92)), Ok(()));
        let d = doc(json!({"name": null, "steps": [step()]}));
        assert!(check_runbook(&d, Version(1, 112))
            .unwrap_err()
            .contains("mandatory"));
    }

    #[test]
    fn runbook_steps_are_checked() {
        for (steps, why) in [
            (json!([]), "at least one"),
            (
                json!([{"interface": "bios", "step": "x", "args": {}}]),
                "order",
            ),
            (
                json!([{"interface": "bios", "step": "x", "priority": 1, "order": 1}]),
                "unknown key",
            ),
            (
                json!([{"interface": "disk", "step": "x", "order": 1}]),
                "interface",
            ),
            (json!([step(), step()]), "Duplicate"),
        ] {
            let d = doc(json!({"name": "CUSTOM_X", "steps": steps}));
            let e = check_runbook(&d, Version(1, 92)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let d = doc(json!({"name": "CUSTOM_X", "steps": [
            {"interface": "bios", "step": "x", "order": "10"}]}));
        assert_eq!(check_runbook(&d, Version(1, 92)), Ok(()));
    }

    #[test]
    fn inspection_rules_are_checked() {
        let good = json!({
            "actions": [{"op": "set-attribute", "args": ["/driver", "idrac"]}],
            "conditions": [{"op": "!eq", "args": ["node:memory_mb", 4096], "multiple": "all"}],
            "phase": "main", "priority": 100,
        });
        assert_eq!(check_rule(&doc(good.clone()), Version(1, 96)), Ok(()));
        for (k, bad, why) in [
            ("actions", json!([]), "at least one action"),
            (
                "actions",
                json!([{"op": "explode", "args": []}]),
                "unsupported op",
            ),
            ("conditions", json!([{"op": "eq"}]), "\"args\""),
            (
                "conditions",
                json!([{"op": "eq", "args": [], "multiple": "most"}]),
                "multiple",
            ),
            ("phase", json!("early"), "Invalid phase"),
            ("priority", json!(10000), "priority"),
        ] {
            let mut d = doc(good.clone());
            d.insert(k.into(), bad);
            let e = check_rule(&d, Version(1, 96)).unwrap_err();
            assert!(e.contains(why), "{k}: {e}");
        }
    }

    #[test]
    fn sensitive_rules_hide_their_logic() {
        let mut d = doc(json!({"sensitive": true, "actions": [1], "conditions": [2]}));
        hide_sensitive(&mut d);
        assert_eq!(d["actions"], Value::Null);
        assert_eq!(d["conditions"], Value::Null);
        let mut d = doc(json!({"sensitive": false, "actions": [1]}));
        hide_sensitive(&mut d);
        assert_eq!(d["actions"], json!([1]));
    }
}

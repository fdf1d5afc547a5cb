//! Node history events (API 1.78): what the conductor records about a node — failures
//! (ERROR, as Ironic records them) and the provision verbs users ask for (INFO) — as
//! `history` rows of the resources table, deleted with the node. `api/history.rs` serves
//! them.

use serde_json::{json, Value};

use super::Conductor;
use crate::db::Resource;
use crate::model::{now, Node, Obj};

/// The resources-table kind of history events.
pub const KIND: &str = "history";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Error,
}

/// Records one event about `node` (its state at that moment included).
pub async fn record(
    engine: &Conductor,
    node: &Node,
    severity: Severity,
    event_type: &str,
    event: &str,
) -> Result<(), crate::db::DbError> {
    let mut doc = Obj::new();
    doc.insert(
        "severity".into(),
        json!(match severity {
            Severity::Info => "INFO",
            Severity::Error => "ERROR",
        }),
    );
    doc.insert("event".into(), json!(event));
    doc.insert("event_type".into(), json!(event_type));
    doc.insert("conductor".into(), json!(engine.cfg.host));
    doc.insert("user".into(), Value::Null);
    doc.insert("project".into(), Value::Null);
    doc.insert("state".into(), json!(node.provision_state.as_str()));
    doc.insert(
        "target_provision_state".into(),
        json!(node.target_provision_state.map(|s| s.as_str())),
    );
    // Seconds the node spent in the state it had before this event, when known.
    let duration = node
        .provision_updated_at
        .as_deref()
        .and_then(crate::model::age_secs)
        .map(|s| s.max(0.0).round() as i64);
    doc.insert("duration_seconds".into(), json!(duration));
    let r = Resource {
        id: 0,
        kind: KIND,
        uuid: uuid::Uuid::new_v4().to_string(),
        name: None,
        node_uuid: Some(node.uuid.clone()),
        key1: None,
        key2: None,
        doc,
        created_at: now(),
        updated_at: None,
    };
    engine.db.insert_resource(&r, "history event").await?;
    Ok(())
}

/// Ironic's `event_type` of an event that happens in `state`.
pub fn event_type(state: crate::state::State) -> &'static str {
    use crate::state::State as S;
    match state {
        S::Deploying | S::WaitCallBack | S::DeployHold | S::DeployFailed => "deploy",
        S::Cleaning | S::CleanWait | S::CleanHold | S::CleanFailed => "clean",
        S::Servicing | S::ServiceWait | S::ServiceHold | S::ServiceFailed => "service",
        S::Inspecting | S::InspectWait | S::InspectFailed => "inspection",
        S::Verifying => "verify",
        S::Deleting | S::Error => "undeploy",
        S::Adopting => "adoption",
        S::Rescuing | S::RescueWait | S::RescueFailed | S::Rescue => "rescue",
        S::Unrescuing | S::UnrescueFailed => "unrescue",
        _ => "provisioning",
    }
}

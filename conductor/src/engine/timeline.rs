//! The step timeline (a Ferrite extension): what happened to a node and how long it took —
//! every provision state it passed through, every deploy/clean/service step with its
//! outcome and the agent's progress (bytes written, rate), and every power action with its
//! BMC latency. Kept as `timeline` rows of the resources table (deleted with the node);
//! `api/timeline.rs` serves them with durations.
//!
//! An entry that is still going on (the current state, the running step) is "open": its
//! row carries the node's UUID in `key1` (states) or `key2` (steps), which the table keeps
//! unique per kind, so finding it is one indexed read and a node never has two. Recording
//! never fails the work it describes: errors are logged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::db::{Db, DbError, Resource, ResourceFilter};
use crate::drivers::{BoxFut, DriverError, PowerCall, PowerObserver};
use crate::model::{now, Node, Obj};

/// The resources-table kind of timeline entries.
pub const KIND: &str = "timeline";

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// The node was in a provision state.
    State,
    /// A deploy, clean or service step ran.
    Step,
    /// A power action (BMC call).
    Power,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::State => "state",
            EntryType::Step => "step",
            EntryType::Power => "power",
        }
    }
}

/// How an entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Writes timeline rows; cheap to share (`Arc`), also the power interfaces' observer.
pub struct Recorder {
    db: Db,
    /// Step durations and image write rates go to the metrics as steps end.
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Off: nothing is recorded (`--timeline false`, for overhead comparisons).
    pub enabled: bool,
}

/// Seconds between two RFC 3339 times (0 when either does not parse).
pub fn seconds_between(from: &str, to: &str) -> f64 {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(from), parse(to)) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(0.0),
        _ => 0.0,
    }
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

impl Recorder {
    pub fn new(
        db: Db,
        enabled: bool,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Recorder {
        Recorder {
            db,
            metrics,
            enabled,
        }
    }

    fn entry(node: &str, ty: EntryType, name: &str, started_at: &str, open_key: bool) -> Resource {
        let mut doc = Obj::new();
        doc.insert("type".into(), json!(ty.as_str()));
        doc.insert("name".into(), json!(name));
        doc.insert("started_at".into(), json!(started_at));
        doc.insert("finished_at".into(), Value::Null);
        doc.insert("outcome".into(), Value::Null);
        let key = open_key.then(|| node.to_string());
        Resource {
            id: 0,
            kind: KIND,
            uuid: uuid::Uuid::new_v4().to_string(),
            name: None,
            node_uuid: Some(node.to_string()),
            key1: if ty == EntryType::State {
                key.clone()
            } else {
                None
            },
            key2: if ty == EntryType::Step { key } else { None },
            doc,
            created_at: started_at.to_string(),
            updated_at: None,
        }
    }

    async fn open_entry(&self, node: &str, ty: EntryType) -> Result<Option<Resource>, DbError> {
        let filter = ResourceFilter {
            key1: (ty == EntryType::State).then(|| node.to_string()),
            key2: (ty == EntryType::Step).then(|| node.to_string()),
            node_uuid: Some(node.to_string()),
            limit: Some(1),
            ..Default::default()
        };
        Ok(self.db.list_resources(KIND, &filter).await?.pop())
    }

    /// Closes the open entry of `ty` (if any) at `at` with `outcome`.
    async fn close(
        &self,
        node: &str,
        ty: EntryType,
        at: &str,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), DbError> {
        let Some(mut r) = self.open_entry(node, ty).await? else {
            return Ok(());
        };
        let started = r.created_at.clone();
        r.key1 = None;
        r.key2 = None;
        r.doc.insert("finished_at".into(), json!(at));
        r.doc.insert(
            "duration_s".into(),
            json!(round_ms(seconds_between(&started, at))),
        );
        r.doc.insert("outcome".into(), json!(outcome.as_str()));
        if let Some(d) = detail {
            r.doc.insert("detail".into(), json!(d));
        }
        r.updated_at = Some(at.to_string());
        self.db.save_resource(&r, "timeline entry").await?;
        if ty == EntryType::Step {
            self.step_metrics(&r.doc, outcome, seconds_between(&started, at));
        }
        Ok(())
    }

    /// A finished step's duration, and its image write's throughput when the agent
    /// reported one.
    fn step_metrics(&self, doc: &Obj, outcome: Outcome, secs: f64) {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("unknown");
        self.metrics
            .step(s("name"), s("driver"), outcome.as_str(), secs);
        if let Some(p) = doc.get("progress") {
            let rate = p.get("rate_bytes_per_s").and_then(Value::as_f64);
            let bytes = p.get("bytes_done").and_then(Value::as_u64);
            if let (Some(rate), Some(bytes)) = (rate, bytes) {
                self.metrics.image_write(s("driver"), rate, bytes);
            }
        }
    }

    fn log(result: Result<(), DbError>, node: &str, what: &str) {
        if let Err(e) = result {
            tracing::error!(node, error = %crate::error_chain(&e), "cannot record {what} in the node's timeline");
        }
    }

    /// The node moved from one provision state to another on `event`; `outcome` is how the
    /// state it leaves ended.
    pub async fn transition(&self, node: &Node, from: &str, event: &str, outcome: Outcome) {
        if !self.enabled {
            return;
        }
        let at = now();
        let r = async {
            self.close(&node.uuid, EntryType::State, &at, outcome, None)
                .await?;
            let mut e = Self::entry(
                &node.uuid,
                EntryType::State,
                node.provision_state.as_str(),
                &at,
                true,
            );
            e.doc.insert("from".into(), json!(from));
            e.doc.insert("event".into(), json!(event));
            e.doc.insert(
                "target".into(),
                json!(node.target_provision_state.map(|s| s.as_str())),
            );
            self.db.insert_resource(&e, "timeline entry").await?;
            Ok(())
        }
        .await;
        Self::log(r, &node.uuid, "a transition");
    }

    /// A step of the run `run` (clean, deploy, service) starts: the previous one, if still
    /// open, ended well (an agent command the heartbeat found finished).
    pub async fn step_started(&self, node: &Node, run: &str, step: &str) {
        if !self.enabled {
            return;
        }
        let at = now();
        let r = async {
            self.close(&node.uuid, EntryType::Step, &at, Outcome::Ok, None)
                .await?;
            let mut e = Self::entry(&node.uuid, EntryType::Step, step, &at, true);
            e.doc.insert("run".into(), json!(run));
            e.doc.insert("driver".into(), json!(node.driver));
            self.db.insert_resource(&e, "timeline entry").await?;
            Ok(())
        }
        .await;
        Self::log(r, &node.uuid, "a step's start");
    }

    /// The open step (if any) ended; returns its duration in seconds and its name.
    pub async fn step_finished(
        &self,
        node: &str,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Option<(String, f64)> {
        if !self.enabled {
            return None;
        }
        let at = now();
        let r = async {
            let open = self.open_entry(node, EntryType::Step).await?;
            self.close(node, EntryType::Step, &at, outcome, detail)
                .await?;
            Ok(open.map(|o| {
                let name = o.doc.get("name").and_then(Value::as_str).unwrap_or("?");
                (name.to_string(), seconds_between(&o.created_at, &at))
            }))
        }
        .await;
        match r {
            Ok(v) => v,
            Err(e) => {
                Self::log(Err(e), node, "a step's end");
                None
            }
        }
    }

    /// The agent's progress of the running step (its `ferrite_progress`: phase, bytes,
    /// rate), kept on the open step entry.
    pub async fn step_progress(&self, node: &str, progress: &Value) {
        if !self.enabled {
            return;
        }
        let r = async {
            let Some(mut r) = self.open_entry(node, EntryType::Step).await? else {
                return Ok(());
            };
            if r.doc.get("progress") == Some(progress) {
                return Ok(());
            }
            r.doc.insert("progress".into(), progress.clone());
            r.updated_at = Some(now());
            self.db.save_resource(&r, "timeline entry").await?;
            Ok(())
        }
        .await;
        Self::log(r, node, "the agent's progress");
    }

    /// A power action ended after `elapsed`.
    pub async fn power(&self, node: &Node, action: &str, elapsed: Duration, error: Option<String>) {
        if !self.enabled {
            return;
        }
        let at = now();
        let started = time::OffsetDateTime::now_utc()
            - time::Duration::try_from(elapsed).unwrap_or(time::Duration::ZERO);
        let started = started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| at.clone());
        let mut e = Self::entry(&node.uuid, EntryType::Power, action, &started, false);
        e.doc.insert("finished_at".into(), json!(at));
        e.doc
            .insert("duration_s".into(), json!(round_ms(elapsed.as_secs_f64())));
        e.doc.insert(
            "outcome".into(),
            json!(if error.is_some() { "failed" } else { "ok" }),
        );
        e.doc.insert("driver".into(), json!(node.driver));
        e.doc
            .insert("interface".into(), json!(node.power_interface.as_str()));
        if let Some(err) = error {
            e.doc.insert("detail".into(), json!(err));
        }
        let r = self
            .db
            .insert_resource(&e, "timeline entry")
            .await
            .map(|_| ());
        Self::log(r, &node.uuid, "a power action");
    }

    /// The entries still going on: the node's current state and running step (if any).
    pub async fn open_entries(&self, node: &str) -> Result<Vec<Resource>, DbError> {
        let mut out = vec![];
        for ty in [EntryType::State, EntryType::Step] {
            out.extend(self.open_entry(node, ty).await?);
        }
        Ok(out)
    }

    /// The node's entries, oldest first.
    pub async fn entries(&self, node: &str) -> Result<Vec<Resource>, DbError> {
        let filter = ResourceFilter {
            node_uuid: Some(node.to_string()),
            ..Default::default()
        };
        self.db.list_resources(KIND, &filter).await
    }
}

impl PowerObserver for Recorder {
    fn power_call<'a>(&'a self, node: &'a Node, call: &'a PowerCall<'a>) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if call.op == crate::drivers::PowerOp::Get {
                return;
            }
            let error = call.error.map(|e: &DriverError| crate::error_chain(e));
            self.power(node, &call.action(), call.elapsed, error).await;
        })
    }
}

/// An entry as the API shows it: the stored fields, plus `duration_s` of an open one so far
/// and `running: true`.
pub fn to_api(r: &Resource) -> Value {
    let mut o = r.doc.clone();
    o.insert("uuid".into(), json!(r.uuid));
    let open = o.get("finished_at").is_none_or(Value::is_null);
    if open {
        let so_far = crate::model::age_secs(&r.created_at)
            .unwrap_or(0.0)
            .max(0.0);
        o.insert("duration_s".into(), json!(round_ms(so_far)));
    }
    o.insert("running".into(), json!(open));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_between_rfc3339_times() {
        let d = seconds_between("2026-01-01T00:00:00Z", "2026-01-01T00:01:01.5Z");
        assert!((d - 61.5).abs() < 1e-9, "{d}");
        assert_eq!(seconds_between("x", "2026-01-01T00:00:00Z"), 0.0);
        assert_eq!(
            seconds_between("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z"),
            0.0,
            "never negative"
        );
    }

    #[test]
    fn open_entries_report_time_so_far() {
        let mut r = Recorder::entry("n1", EntryType::Step, "deploy.write_image", &now(), true);
        assert_eq!(r.key2.as_deref(), Some("n1"));
        assert_eq!(r.key1, None);
        let v = to_api(&r);
        assert_eq!(v["running"], true);
        assert!(v["duration_s"].as_f64().unwrap() >= 0.0);
        r.doc.insert("finished_at".into(), json!(now()));
        r.doc.insert("duration_s".into(), json!(1.25));
        let v = to_api(&r);
        assert_eq!(v["running"], false);
        assert_eq!(v["duration_s"], 1.25);
    }
}

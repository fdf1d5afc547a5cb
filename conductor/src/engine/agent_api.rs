//! Agent-facing operations (CONTRACT.md §2): lookup hands out the token once per boot,
//! heartbeats are checked against it and resume waiting nodes, inspection data is stored.

use std::sync::Arc;

use ferrite_proto::agent::CommandStatus;
use ferrite_proto::lookup::{Heartbeat, InspectionData, LookupConfig, LookupNode, LookupResponse};
use serde_json::{json, Map, Value};

use super::plan::Kind;
use super::progress::{StepProgress, Waiting};
use super::{Conductor, EResult, EngineError};
use crate::drivers::{PowerTarget, POWER_OFF};
use crate::model::{normalize_mac, now, Node, Port};
use crate::state::{Event, State};

/// `POST /v1/continue_inspection` answer.
pub struct ContinueInspection {
    pub uuid: String,
}

/// Values of `agent_status` Ironic accepts (API 1.72).
pub const AGENT_STATUSES: &[&str] = &["start", "end", "error"];

/// The heartbeat's `agent_status` and message, checked (a message alone is ignored, as
/// Ironic does).
fn agent_status(hb: &Heartbeat) -> EResult<Option<(&str, Option<&str>)>> {
    let msg = hb.agent_status_message.as_deref();
    match &hb.agent_status {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if AGENT_STATUSES.contains(&s.as_str()) => Ok(Some((s, msg))),
        Some(other) => Err(EngineError::Invalid(format!(
            "Agent status {other} is invalid. Valid states are {}.",
            AGENT_STATUSES.join(",")
        ))),
    }
}

/// Constant-time comparison of tokens.
fn same_token(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)))
        == 0
}

/// `driver_internal_info` key of the one-time inspection token (masked in the API).
pub const INSPECTION_TOKEN: &str = "inspection_token";

/// Most NICs, disks and CPU flags inspection data may list; real servers stay far below.
pub const MAX_INTERFACES: usize = 256;
pub const MAX_DISKS: usize = 1024;
pub const MAX_CPU_FLAGS: usize = 1024;

pub(crate) fn new_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn valid_callback(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) => matches!(u.scheme(), "http" | "https") && u.host().is_some(),
        Err(_) => false,
    }
}

impl Conductor {
    /// `GET /v1/lookup`.
    pub async fn lookup(
        &self,
        addresses: &str,
        node_uuid: Option<&str>,
    ) -> EResult<LookupResponse> {
        let node = match node_uuid {
            Some(u) => {
                if !crate::model::is_uuid_like(u) {
                    return Err(EngineError::Invalid(format!(
                        "node_uuid {u:?} is not a UUID"
                    )));
                }
                self.node(u).await?
            }
            None => {
                let mut macs = vec![];
                for a in addresses.split(',').filter(|a| !a.is_empty()) {
                    macs.push(normalize_mac(a).map_err(|e| EngineError::Invalid(e.to_string()))?);
                }
                if macs.is_empty() {
                    return Err(EngineError::Invalid(
                        "lookup needs addresses=<mac>[,<mac>] or node_uuid=<uuid>".into(),
                    ));
                }
                let found = self.db.nodes_by_macs(&macs).await?;
                match found.as_slice() {
                    [one] => self.node(one).await?,
                    [] => {
                        return Err(EngineError::NotFound(format!(
                            "No node has a port with any of the MAC addresses {}",
                            macs.join(", ")
                        )))
                    }
                    _ => {
                        return Err(EngineError::NotFound(format!(
                            "The MAC addresses {} belong to several nodes",
                            macs.join(", ")
                        )))
                    }
                }
            }
        };
        // With fast track, an agent may run on while the node rests between inspection,
        // cleaning and deploy (Ironic allows lookups in these states then too).
        let resting = matches!(
            node.provision_state,
            State::Enroll | State::Manageable | State::Available
        );
        if !(node.provision_state.expects_agent() || resting && self.fast_track(&node)) {
            return Err(EngineError::NotFound(format!(
                "Node {} is in state \"{}\", which does not expect an agent",
                node.uuid, node.provision_state
            )));
        }
        let token = new_token();
        let handed = if self.db.issue_agent_token(&node.uuid, &token).await? {
            token
        } else {
            ferrite_proto::MASKED_SECRET.to_string()
        };
        let mut other = Map::new();
        other.insert("agent_token_required".into(), json!(true));
        other.insert("metrics".into(), json!({"backend": "noop"}));
        Ok(LookupResponse {
            node: LookupNode {
                uuid: node.uuid.clone(),
                properties: node.properties.clone(),
                instance_info: crate::model::mask_map(&node.instance_info),
                // Masked too: while a node inspects it holds the one-time inspection token,
                // which a lookup by MAC must not hand to whoever asks.
                driver_internal_info: crate::model::mask_map(&node.driver_internal_info),
            },
            config: LookupConfig {
                heartbeat_timeout: Some(self.cfg.heartbeat_timeout as f64),
                agent_token: Some(handed),
                other,
            },
        })
    }

    /// `POST /v1/heartbeat/{node}`: checks the token, records the agent, resumes work.
    ///
    /// A heartbeat of a node with nothing to do costs one indexed read of a few columns:
    /// its time goes to the [`HeartbeatBuffer`](super::HeartbeatBuffer); the agent's URL and
    /// certificate are written only when they changed, `agent_status` only when it changed.
    /// No lock is taken unless the node waits for the agent.
    pub async fn heartbeat(self: &Arc<Self>, ident: &str, hb: Heartbeat) -> EResult<()> {
        let status = agent_status(&hb)?;
        let node =
            self.db.heartbeat_view(ident).await?.ok_or_else(|| {
                EngineError::NotFound(format!("Node {ident} could not be found."))
            })?;
        let Some(expected) = node.agent_token.as_deref() else {
            return Err(EngineError::Forbidden(format!(
                "No agent token was issued for node {}: the agent must look the node up first",
                node.uuid
            )));
        };
        if !same_token(expected, &hb.agent_token) {
            return Err(EngineError::Forbidden(format!(
                "Invalid or missing agent token received for node {}",
                node.uuid
            )));
        }
        if !valid_callback(&hb.callback_url) {
            return Err(EngineError::Invalid(format!(
                "callback_url {:?} is not an http(s) URL with a host",
                hb.callback_url
            )));
        }
        if self.cfg.require_tls && !hb.callback_url.starts_with("https://") {
            return Err(EngineError::Invalid(format!(
                "callback_url {:?} is not https:// and this conductor requires TLS for agents \
                 (--require-tls): start the agent with TLS (ferrite-auto-tls, on by default)",
                hb.callback_url
            )));
        }
        self.metrics.heartbeat();
        let at = now();
        // The first heartbeat of a boot pins where the conductor reaches the agent and the
        // certificate it trusts (as Ironic does): a token holder cannot redirect the
        // conductor's commands, and their secrets, elsewhere later.
        let pinned = || {
            EngineError::Forbidden(format!(
                "The agent of node {} already heartbeated from {} with its certificate; a \
                 different callback_url or agent_verify_ca is refused until the node boots \
                 a new agent",
                node.uuid,
                node.agent_url.as_deref().unwrap_or("another URL")
            ))
        };
        if node.agent_url.as_deref() != Some(hb.callback_url.as_str())
            || node.agent_verify_ca.as_deref() != hb.agent_verify_ca.as_deref()
        {
            if node.agent_url.is_some() {
                return Err(pinned());
            }
            self.heartbeats.forget(&node.uuid);
            let first = self
                .db
                .record_heartbeat(
                    &node.uuid,
                    &hb.callback_url,
                    hb.agent_verify_ca.as_deref(),
                    &at,
                )
                .await?;
            if !first {
                return Err(pinned());
            }
        } else if self.heartbeats.note(&node.uuid, at) {
            self.schedule_flush();
        }
        let wait_state = matches!(
            node.provision_state,
            State::CleanWait | State::WaitCallBack | State::RescueWait
        );
        if status.is_none() && !wait_state {
            return Ok(());
        }
        let dii: Map<String, Value> =
            serde_json::from_str(&node.driver_internal_info).map_err(|e| {
                EngineError::Db(crate::db::DbError::Corrupt {
                    column: "driver_internal_info",
                    source: e,
                })
            })?;
        if let Some((st, msg)) = status {
            self.store_agent_status(&node.uuid, &node.driver_internal_info, dii.clone(), st, msg)
                .await?;
        }
        if !wait_state || node.reservation.is_some() {
            return Ok(());
        }
        if node.provision_state == State::RescueWait {
            // The rescue ramdisk is up: the agent gets the password (rescue.rs).
            let me = self.clone();
            let uuid = node.uuid.clone();
            self.tracker.spawn(async move {
                if let Err(e) = me.rescue_after_heartbeat(&uuid).await {
                    tracing::error!(node = %uuid, error = %crate::error_chain(&e), "finishing the rescue failed");
                }
            });
            return Ok(());
        }
        let waiting = StepProgress::load(&dii)?.waiting(Kind::of(node.provision_state));
        if waiting == Waiting::Nothing {
            return Ok(());
        }
        let me = self.clone();
        let uuid = node.uuid.clone();
        self.tracker.spawn(async move {
            if let Err(e) = me.continue_after_heartbeat(&uuid).await {
                tracing::error!(node = %uuid, error = %crate::error_chain(&e), "heartbeat work failed");
            }
        });
        Ok(())
    }

    /// Puts `agent_status` (and its message) into `driver_internal_info` when they
    /// changed, without a lock: a compare-and-swap against the text just read. When the
    /// node was written meanwhile the value is dropped; the agent repeats it with its next
    /// heartbeat.
    async fn store_agent_status(
        &self,
        uuid: &str,
        old_text: &str,
        mut dii: Map<String, Value>,
        status: &str,
        message: Option<&str>,
    ) -> EResult<()> {
        let unchanged = dii.get("agent_status").and_then(Value::as_str) == Some(status)
            && dii.get("agent_status_message").and_then(Value::as_str) == message;
        if unchanged {
            return Ok(());
        }
        dii.insert("agent_status".into(), json!(status));
        match message {
            Some(m) => dii.insert("agent_status_message".into(), json!(m)),
            None => dii.remove("agent_status_message"),
        };
        let new_text = crate::db::to_json(&dii);
        if !self
            .db
            .swap_driver_internal_info(uuid, old_text, &new_text)
            .await?
        {
            tracing::debug!(
                node = uuid,
                "driver_internal_info changed meanwhile; agent_status not stored"
            );
        }
        Ok(())
    }

    async fn continue_after_heartbeat(self: &Arc<Self>, uuid: &str) -> EResult<()> {
        let node = self.node(uuid).await?;
        let polled = if let Some(pending) = Self::pending_command(&node)? {
            match self.poll_command(&node, &pending).await {
                Ok(r) if r.command_status == CommandStatus::Running => {
                    self.note_agent_progress(uuid, &r).await;
                    return Ok(());
                }
                Ok(r) => Some(r),
                // Resumed under the lock, where a failed poll fails the node.
                Err(_) => None,
            }
        } else {
            None
        };
        let node = match self.lock(&node).await {
            Ok(n) => n,
            Err(EngineError::Locked { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let r = async {
            if !matches!(node.provision_state, State::CleanWait | State::WaitCallBack) {
                return Ok(());
            }
            let d = self.drivers.for_node(&node)?;
            self.resume(node, &d, polled).await
        }
        .await;
        self.unlock(uuid).await;
        r
    }

    /// `POST /v1/continue_inspection`: stores the inventory and finishes inspection.
    pub async fn continue_inspection(
        self: &Arc<Self>,
        data: InspectionData,
        raw: Value,
    ) -> EResult<ContinueInspection> {
        let inv = &data.inventory;
        for (what, n, max) in [
            ("interfaces", inv.interfaces.len(), MAX_INTERFACES),
            ("disks", inv.disks.len(), MAX_DISKS),
            ("cpu flags", inv.cpu.flags.len(), MAX_CPU_FLAGS),
        ] {
            if n > max {
                return Err(EngineError::Invalid(format!(
                    "Inspection data lists {n} {what}; at most {max} are accepted"
                )));
            }
        }
        let mut macs: Vec<String> = data
            .inventory
            .interfaces
            .iter()
            .filter_map(|i| i.mac_address.as_deref())
            .filter_map(|m| normalize_mac(m).ok())
            .collect();
        if let Some(b) = data
            .boot_interface
            .as_deref()
            .and_then(|m| normalize_mac(m.trim_start_matches("01-")).ok())
        {
            macs.insert(0, b);
        }
        let mut found = self.db.nodes_by_macs(&macs).await?;
        if found.is_empty() {
            if let Some(bmc) = data.inventory.bmc_address.as_deref() {
                for n in self.db.nodes_in_states(&[State::InspectWait]).await? {
                    let addr = n.driver_info.get("ipmi_address").and_then(Value::as_str);
                    if addr == Some(bmc) {
                        found.push(n.uuid);
                    }
                }
            }
        }
        let uuid = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(EngineError::NotFound(format!(
                    "No node matches the inspected MAC addresses ({}) or BMC address",
                    macs.join(", ")
                )))
            }
            _ => {
                return Err(EngineError::NotFound(
                    "The inspected MAC addresses match several nodes".into(),
                ))
            }
        };
        let node = self.node(&uuid).await?;
        if node.provision_state != State::InspectWait {
            return Err(EngineError::Conflict(format!(
                "Node {uuid} is in state \"{}\", not \"inspect wait\": inspection data is not expected",
                node.provision_state
            )));
        }
        check_inspection_token(&node, data.agent_token.as_deref())?;
        // The agent posts its inventory once (IPA retries only on 5xx): a lock held for a
        // moment (a power sync, another conductor's takeover pass) is waited for, as
        // Ironic's API does, rather than leaving the node in `inspect wait`.
        let mut node = self.lock_waiting(&node).await?;
        // Checked again under the lock: the one-time token may have been used meanwhile.
        if let Err(e) = check_inspection_token(&node, data.agent_token.as_deref()) {
            self.unlock(&uuid).await;
            return Err(e);
        }
        let inventory = raw.get("inventory").cloned().unwrap_or(Value::Null);
        let plugin = json!({"boot_interface": data.boot_interface, "ferrite": data.ferrite});
        if let Err(e) = self.store_inspection(&mut node, &data, raw, &macs).await {
            self.unlock(&uuid).await;
            return Err(e);
        }
        // Powering off ends the agent that is waiting for this answer, and with it the HTTP
        // request: the rest must not run in the request's (cancellable) future.
        self.spawn_locked(uuid.clone(), |me, _| async move {
            if !me
                .run_inspection_rules(&mut node, &inventory, &plugin)
                .await?
            {
                return Ok(());
            }
            me.finish_inspection(&mut node).await
        });
        Ok(ContinueInspection { uuid })
    }

    /// Applies the inspection rules (1.96) to the inspected node and saves it; a rule that
    /// fails (or cannot be evaluated) fails the inspection (false).
    async fn run_inspection_rules(
        &self,
        node: &mut Node,
        inventory: &Value,
        plugin_data: &Value,
    ) -> EResult<bool> {
        let rows = self
            .db
            .list_resources("inspection_rules", &Default::default())
            .await?;
        if rows.is_empty() {
            return Ok(true);
        }
        let rules: Vec<crate::model::Obj> = rows
            .into_iter()
            .map(|r| {
                let mut d = r.doc;
                d.insert("uuid".into(), json!(r.uuid));
                d
            })
            .collect();
        match super::rules::apply(&rules, node, inventory, plugin_data) {
            Ok(()) => {
                self.db.save_node(node).await?;
                Ok(true)
            }
            Err(e) => {
                self.fail(node, format!("Inspection failed: {e}")).await?;
                Ok(false)
            }
        }
    }

    /// Saves the inventory, the properties derived from it and ports for new MACs.
    async fn store_inspection(
        &self,
        node: &mut Node,
        data: &InspectionData,
        raw: Value,
        macs: &[String],
    ) -> EResult<()> {
        let inv = &data.inventory;
        let inventory = raw.get("inventory").cloned().unwrap_or(Value::Null);
        let plugin = json!({"boot_interface": data.boot_interface, "ferrite": data.ferrite});
        self.db
            .save_inventory(&node.uuid, &inventory.to_string(), &plugin.to_string())
            .await?;
        let p = &mut node.properties;
        p.insert("cpus".into(), json!(inv.cpu.count));
        p.insert("cpu_arch".into(), json!(inv.cpu.architecture));
        let memory_mb = inv
            .memory
            .physical_mb
            .unwrap_or(inv.memory.total / (1024 * 1024));
        p.insert("memory_mb".into(), json!(memory_mb));
        // Ironic's rule: the root disk (largest here) in GiB, minus one for partitioning.
        if let Some(d) = inv.disks.iter().max_by_key(|d| d.size) {
            let gb = (d.size / (1024 * 1024 * 1024)).saturating_sub(1);
            p.insert("local_gb".into(), json!(gb));
        }
        let pxe = data
            .boot_interface
            .as_deref()
            .and_then(|m| normalize_mac(m.trim_start_matches("01-")).ok());
        node.driver_internal_info.remove(INSPECTION_TOKEN);
        let with_ip: Vec<String> = inv
            .interfaces
            .iter()
            .filter(|i| i.ipv4_address.is_some() || i.ipv6_address.is_some())
            .filter_map(|i| normalize_mac(i.mac_address.as_deref()?).ok())
            .collect();
        let wanted: Vec<&String> = match (self.cfg.inspect_add_ports, &pxe) {
            (super::AddPorts::Disabled, _) => vec![],
            (super::AddPorts::All, _) => macs.iter().collect(),
            (super::AddPorts::Pxe, Some(p)) => macs.iter().filter(|m| *m == p).collect(),
            (super::AddPorts::Pxe | super::AddPorts::Active, _) => {
                macs.iter().filter(|m| with_ip.contains(m)).collect()
            }
        };
        for mac in wanted {
            let existing = self
                .db
                .list_ports(&crate::db::PortFilter {
                    address: Some(mac.clone()),
                    ..Default::default()
                })
                .await?;
            if existing.is_empty() {
                let port = Port {
                    id: 0,
                    uuid: uuid::Uuid::new_v4().to_string(),
                    address: mac.clone(),
                    node_uuid: node.uuid.clone(),
                    pxe_enabled: pxe.as_deref().is_none_or(|p| p == mac.as_str()),
                    extra: Map::new(),
                    local_link_connection: Map::new(),
                    physical_network: None,
                    extended: Default::default(),
                    created_at: now(),
                    updated_at: None,
                };
                self.db.insert_port(&port).await?;
            }
        }
        self.db.save_node(node).await?;
        Ok(())
    }

    /// Powers the inspected node off, removes its boot files and ends inspection.
    async fn finish_inspection(&self, node: &mut Node) -> EResult<()> {
        let d = match self.drivers.for_node(node) {
            Ok(d) => d,
            Err(e) => return self.fail(node, crate::error_chain(&e)).await,
        };
        // Fast track: the agent keeps running (powered on, its boot files and token kept)
        // for the cleaning or deploy that follows.
        let fast = self.fast_track(node);
        let keep = Self::keeps_power(node) || fast;
        let off = async {
            if !keep {
                d.power.set_state(node, PowerTarget::Off).await?;
            }
            if fast {
                return Ok(());
            }
            d.boot.clean_up_ramdisk(node).await
        }
        .await;
        if let Err(e) = off {
            return self
                .fail(
                    node,
                    format!(
                        "Inspection data stored, but powering off failed: {}",
                        crate::error_chain(&e)
                    ),
                )
                .await;
        }
        if !keep {
            node.power_state = Some(POWER_OFF.into());
        }
        node.inspection_finished_at = Some(now());
        node.last_error = None;
        if !fast {
            self.db.clear_agent(&node.uuid).await?;
        }
        self.transition(node, Event::Done).await
    }
}

/// Inspection data is accepted with the node's agent token (from a lookup) or its
/// one-time inspection token (from the ramdisk's kernel command line).
fn check_inspection_token(node: &Node, offered: Option<&str>) -> EResult<()> {
    let inspection = node
        .driver_internal_info
        .get(INSPECTION_TOKEN)
        .and_then(Value::as_str);
    let ok = offered.is_some_and(|t| {
        [node.agent_token.as_deref(), inspection]
            .into_iter()
            .flatten()
            .any(|want| same_token(want, t))
    });
    if ok {
        Ok(())
    } else {
        Err(EngineError::Forbidden(format!(
            "Inspection data for node {} needs its agent token (from a lookup) or its one-time \
             inspection token (the ramdisk's ferrite-inspection-token kernel parameter) in \
             \"agent_token\"",
            node.uuid
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let t = new_token();
        assert!(t.len() >= 32);
        assert!(same_token(&t, &t.clone()));
        assert!(!same_token(&t, &new_token()));
        assert!(!same_token(&t, "short"));
    }

    #[test]
    fn callback_urls_must_be_http() {
        assert!(valid_callback("http://127.0.0.1:9999"));
        assert!(valid_callback("https://[::1]:9999"));
        assert!(!valid_callback("ftp://x"));
        assert!(!valid_callback("not a url"));
    }
}

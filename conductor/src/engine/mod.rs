//! The conductor's single owner of node state: provision requests, heartbeats and timers
//! become [`Event`]s here; every transition is persisted before its work starts, under the
//! node's `reservation` lock.

mod agent_api;
pub mod deploy_logs;
mod heartbeats;
pub mod history;
pub mod membership;
mod periodic;
mod plan;
pub mod power_sync;
mod progress;
mod rescue;
pub mod ring;
mod rules;
mod steps;
pub mod takeover;
pub mod timeline;
mod work;

pub use agent_api::{ContinueInspection, INSPECTION_TOKEN};
pub use heartbeats::HeartbeatBuffer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::task::TaskTracker;

use crate::agent_client::AgentClient;
use crate::db::{Db, DbError};
use crate::drivers::agent::AgentApi;
use crate::drivers::ipxe::{IpxeBoot, IpxeSettings};
use crate::drivers::{DriverError, PowerObserver, PowerTarget, Registry};
use crate::model::{now, Node};
use crate::state::{self, Event, NotAllowed, State};
use plan::Kind;
use progress::StepProgress;

/// Engine settings (a part of the conductor's configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Conductor name: the value written into `reservation`.
    pub host: String,
    /// How long a `clean wait`/`wait call-back` node may go without a heartbeat.
    pub callback_timeout: Duration,
    /// How long `inspect wait` may last.
    pub inspect_timeout: Duration,
    /// How long `rescue wait` may last (Ironic's `[conductor]rescue_callback_timeout`).
    pub rescue_callback_timeout: Duration,
    /// How long one asynchronous agent step may run.
    pub step_timeout: Duration,
    /// How often timeouts are checked.
    pub periodic_interval: Duration,
    /// Seconds the agent is told to heartbeat within.
    pub heartbeat_timeout: u64,
    /// Fast track for nodes whose driver_info does not say (see [`Conductor::fast_track`]).
    pub fast_track: bool,
    /// How recent the agent's last heartbeat must be for fast track to use it.
    pub fast_track_timeout: Duration,
    /// Timeout of one HTTP call to an agent.
    pub agent_timeout: Duration,
    /// How often every node's power state is read from its BMC (None: never).
    pub power_sync_interval: Option<Duration>,
    /// How many BMCs the power sync talks to at once.
    pub power_sync_workers: usize,
    /// Power a node off when its deploy fails (Ironic's
    /// `[deploy]power_off_after_deploy_failure`, default on): a failed node must not sit
    /// in the ramdisk waiting for whoever reaches its agent next.
    pub power_off_after_deploy_failure: bool,
    /// The same after cleaning fails (Ironic's `[conductor]poweroff_in_cleanfail`, which
    /// Ironic leaves off; on here, for the same reason).
    pub power_off_after_clean_failure: bool,
    /// Which NICs of inspection data get a port (Ironic's `[inspector]add_ports`).
    pub inspect_add_ports: AddPorts,
    /// Priority of the agent's full `erase_devices` in automated cleaning, for every node
    /// whose `driver_info.erase_devices_priority` does not say (Ironic's
    /// `[deploy]erase_devices_priority`); `None`: the agent's own (10), 0: never.
    pub erase_devices_priority: Option<i32>,
    /// Refuse heartbeats whose callback_url is not https:// (Ironic's `[agent]require_tls`).
    pub require_tls: bool,
    /// Accept MD5 image checksums (Ironic's `[agent]allow_md5_checksum`, off by default).
    pub allow_md5_checksum: bool,
    /// This conductor's group: the ring gives it only nodes of the same group.
    pub conductor_group: String,
    /// Where the other conductors forward requests for this conductor's nodes.
    pub api_url: Option<String>,
    /// How often this conductor writes its heartbeat into the `conductors` table.
    pub heartbeat_interval: Duration,
    /// A conductor whose heartbeat is older than this is dead: its nodes are taken over.
    pub dead_after: Duration,
    /// 2^this points per conductor on the hash ring.
    pub hash_partition_exponent: u32,
    /// Record the step timeline (on by default; off only to measure its cost).
    pub timeline: bool,
    /// Record metrics for `/metrics` (on by default; off only to measure their cost).
    pub metrics: bool,
    /// When and where the agent's logs are kept.
    pub deploy_logs: deploy_logs::DeployLogs,
}

/// Ports created from inspection data (Ironic's `[inspector]add_ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddPorts {
    /// Only the NIC the node network-booted from (BOOTIF); without one, the NICs with an
    /// IP address (Ironic's fallback).
    #[default]
    Pxe,
    /// The NICs with an IP address.
    Active,
    /// Every NIC reported.
    All,
    /// None.
    Disabled,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            host: "localhost".into(),
            callback_timeout: Duration::from_secs(1800),
            inspect_timeout: Duration::from_secs(1800),
            rescue_callback_timeout: Duration::from_secs(1800),
            step_timeout: Duration::from_secs(3600),
            periodic_interval: Duration::from_secs(10),
            heartbeat_timeout: 300,
            fast_track: false,
            fast_track_timeout: Duration::from_secs(300),
            agent_timeout: Duration::from_secs(60),
            power_sync_interval: Some(Duration::from_secs(60)),
            power_sync_workers: 8,
            power_off_after_deploy_failure: true,
            power_off_after_clean_failure: true,
            inspect_add_ports: AddPorts::Pxe,
            erase_devices_priority: None,
            require_tls: false,
            allow_md5_checksum: false,
            conductor_group: String::new(),
            api_url: None,
            heartbeat_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(60),
            hash_partition_exponent: ring::DEFAULT_PARTITION_EXPONENT,
            timeline: true,
            metrics: true,
            deploy_logs: deploy_logs::DeployLogs::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("Node {node} is locked by host {host}, please retry after the current operation is completed.")]
    Locked { node: String, host: String },
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("storage error")]
    Db(#[from] DbError),
}

pub type EResult<T> = Result<T, EngineError>;

/// `PUT /v1/nodes/{id}/states/provision` body. `Debug` masks the rescue password.
#[derive(Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    pub target: String,
    #[serde(default)]
    pub configdrive: Option<Value>,
    #[serde(default)]
    pub clean_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub deploy_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub service_steps: Option<Vec<Value>>,
    /// A runbook's UUID or name (1.92); the API replaces it with its steps.
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub disable_ramdisk: Option<bool>,
    #[serde(default)]
    pub rescue_password: Option<String>,
}

impl std::fmt::Debug for ProvisionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionRequest")
            .field("target", &self.target)
            .field("configdrive", &self.configdrive.as_ref().map(|_| "…"))
            .field("clean_steps", &self.clean_steps)
            .field("deploy_steps", &self.deploy_steps)
            .field("service_steps", &self.service_steps)
            .field("runbook", &self.runbook)
            .field("disable_ramdisk", &self.disable_ramdisk)
            .field(
                "rescue_password",
                &self
                    .rescue_password
                    .as_ref()
                    .map(|_| ferrite_proto::MASKED_SECRET),
            )
            .finish()
    }
}

/// The config drive limit of CONTRACT.md §5 (base64 of gzip, so the text may be larger).
pub const CONFIGDRIVE_MAX: usize = 64 * 1024 * 1024 * 4 / 3 + 4;

/// Attempts [`Conductor::lock_waiting`] makes (Ironic's `node_locked_retry_attempts`).
pub const LOCK_ATTEMPTS: u32 = 3;
/// The pause between them (Ironic's `node_locked_retry_interval`).
pub const LOCK_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Conductor {
    pub db: Db,
    pub cfg: EngineConfig,
    pub drivers: Registry,
    /// The agent API: HTTP, or a scripted fake in unit tests.
    pub agent: Arc<dyn AgentApi>,
    pub tracker: TaskTracker,
    /// The files behind `/boot/` when the `ipxe` boot interface is enabled.
    pub boot_files: Option<ferrite_netboot::BootFiles>,
    /// Heartbeat times waiting to be written in a batch.
    pub heartbeats: HeartbeatBuffer,
    /// The live conductors and the hash ring, cached.
    pub membership: membership::Membership,
    /// The step timeline's writer (also an observer of every power call).
    pub timeline: Arc<timeline::Recorder>,
    /// This conductor's Prometheus metrics (also an observer of every power call).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Conductor {
    /// `ipxe`: the boot interface's settings; without them nodes cannot use `ipxe`.
    pub fn new(
        db: Db,
        cfg: EngineConfig,
        ipxe: Option<Arc<IpxeSettings>>,
    ) -> Result<Arc<Conductor>, crate::agent_client::AgentError> {
        let agent = Arc::new(AgentClient::new(cfg.agent_timeout)?);
        let boot_files = ipxe.as_ref().map(|s| s.files.clone());
        let ipxe = ipxe.map(|settings| {
            Arc::new(IpxeBoot {
                settings,
                db: db.clone(),
            })
        });
        let metrics = Arc::new(crate::metrics::Metrics::new(cfg.metrics));
        let timeline = Arc::new(timeline::Recorder::new(
            db.clone(),
            cfg.timeline,
            metrics.clone(),
        ));
        let mut drivers = Registry::standard(ipxe);
        drivers.observers = Arc::new([
            timeline.clone() as Arc<dyn PowerObserver>,
            metrics.clone() as Arc<dyn PowerObserver>,
        ]);
        Ok(Arc::new(Conductor {
            db,
            cfg,
            drivers,
            timeline,
            metrics,
            agent,
            tracker: TaskTracker::new(),
            boot_files,
            heartbeats: HeartbeatBuffer::default(),
            membership: Default::default(),
        }))
    }

    pub async fn node(&self, ident: &str) -> EResult<Node> {
        self.db
            .get_node(ident)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("Node {ident} could not be found.")))
    }

    /// Takes the node's lock, or says who holds it.
    pub async fn lock(&self, node: &Node) -> EResult<Node> {
        if !self.db.reserve(&node.uuid, &self.cfg.host).await? {
            let holder = self
                .db
                .get_node(&node.uuid)
                .await?
                .and_then(|n| n.reservation)
                .unwrap_or_else(|| "another conductor".into());
            return Err(EngineError::Locked {
                node: node.uuid.clone(),
                host: holder,
            });
        }
        self.node(&node.uuid).await
    }

    /// [`Conductor::lock`] for a user's request: a lock held by a short task (the power
    /// action the user just waited for still releasing it, a power sync) is tried again
    /// [`LOCK_ATTEMPTS`] times, [`LOCK_RETRY_INTERVAL`] apart, as Ironic's
    /// `node_locked_retry_attempts`/`_interval` (3, 1 s) do, before answering 409.
    pub async fn lock_waiting(&self, node: &Node) -> EResult<Node> {
        let mut attempt = 1;
        loop {
            match self.lock(node).await {
                Err(EngineError::Locked { .. }) if attempt < LOCK_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(LOCK_RETRY_INTERVAL).await;
                }
                other => return other,
            }
        }
    }

    pub async fn unlock(&self, uuid: &str) {
        if let Err(e) = self.db.release(uuid, &self.cfg.host).await {
            tracing::error!(node = uuid, error = %e, "cannot release the node's lock");
        }
    }

    /// Applies `event` and persists the new state before any work happens.
    pub async fn transition(&self, node: &mut Node, event: Event) -> EResult<()> {
        let manual = StepProgress::load(&node.driver_internal_info)?.manual_clean;
        let to = state::next_with(node.provision_state, event, manual)?;
        tracing::info!(node = %node.uuid, from = %node.provision_state, %event, %to, "transition");
        let from = node.provision_state;
        node.provision_state = to;
        node.target_provision_state = state::target_of(to, event, manual);
        let t = now();
        node.provision_updated_at = Some(t.clone());
        node.updated_at = Some(t);
        self.db.save_node(node).await?;
        let left = match event {
            Event::Fail => timeline::Outcome::Failed,
            Event::Abort => timeline::Outcome::Aborted,
            _ => timeline::Outcome::Ok,
        };
        self.metrics
            .transition(from.as_str(), to.as_str(), event.as_str());
        self.timeline
            .transition(node, from.as_str(), event.as_str(), left)
            .await;
        Ok(())
    }

    /// Moves a working or waiting node to its failed state with `last_error`. The agent
    /// of this boot loses its token (nothing may command it any more), and after a
    /// failed deploy or cleaning the node is powered off unless configured otherwise.
    pub async fn fail(&self, node: &mut Node, message: String) -> EResult<()> {
        tracing::warn!(node = %node.uuid, state = %node.provision_state, %message, "failing node");
        self.timeline
            .step_finished(&node.uuid, timeline::Outcome::Failed, Some(&message))
            .await;
        node.last_error = Some(message);
        // While the agent still runs (it is powered off below): its logs, named in
        // last_error.
        self.collect_logs_after_failure(node).await;
        StepProgress::edit(&mut node.driver_internal_info, StepProgress::stop_waiting)?;
        if matches!(node.provision_state, State::Rescuing | State::RescueWait) {
            // Ironic's rescuing_error_handler: the password's hash and the ramdisk's boot
            // files go; the node keeps its power.
            self.clean_up_failed_rescue(node).await;
        }
        self.db.clear_agent(&node.uuid).await?;
        node.agent_token = None;
        node.agent_url = None;
        node.agent_verify_ca = None;
        if self.powers_off_after_failure(node.provision_state) && !Self::keeps_power(node) {
            self.power_off_failed(node).await;
        }
        let event = if matches!(node.provision_state, State::CleanHold | State::DeployHold) {
            Event::Abort
        } else {
            Event::Fail
        };
        let event_type = history::event_type(node.provision_state);
        self.transition(node, event).await?;
        let message = node.last_error.clone().unwrap_or_default();
        if let Err(e) =
            history::record(self, node, history::Severity::Error, event_type, &message).await
        {
            tracing::error!(node = %node.uuid, error = %e, "cannot record the failure in the node's history");
        }
        Ok(())
    }

    /// Ironic's `disable_power_off` (1.95): the node is never powered off. Where a flow
    /// powers it off and on again it reboots instead; a plain power-off is skipped.
    pub(crate) fn keeps_power(node: &Node) -> bool {
        node.ext_flag("disable_power_off")
    }

    /// Fast track (Ironic's `[deploy]fast_track`) for this node: its
    /// `driver_info.fast_track` (a boolean, or a string as the CLI sets it), else the
    /// conductor's `--fast-track`. A value that is not a boolean means no fast track.
    pub(crate) fn fast_track(&self, node: &Node) -> bool {
        driver_info_flag(node, "fast_track").unwrap_or(self.cfg.fast_track)
    }

    /// Whether the deploy boots the written OS with kexec (`driver_info.ferrite_kexec`,
    /// Ferrite's own, off by default): the agent loads the kernel the image's boot loader
    /// names and jumps, instead of the node being power cycled through its firmware.
    pub(crate) fn kexec_wanted(node: &Node) -> bool {
        driver_info_flag(node, "ferrite_kexec").unwrap_or(false)
    }

    /// Whether the node's running agent may be used as it is, without booting it again
    /// (fast track, as Ironic's `is_fast_track`): fast track is on for the node, the node
    /// is powered on, and its agent looked up and heartbeated within `--fast-track-timeout`.
    pub(crate) fn agent_ready(&self, node: &Node) -> bool {
        self.fast_track(node)
            && node.power_state.as_deref() == Some(crate::drivers::POWER_ON)
            && node.agent_url.is_some()
            && node.agent_token.is_some()
            && node
                .agent_last_heartbeat
                .as_deref()
                .and_then(crate::model::age_secs)
                .is_some_and(|age| age <= self.cfg.fast_track_timeout.as_secs_f64())
    }

    fn powers_off_after_failure(&self, from: State) -> bool {
        match from {
            State::Deploying | State::WaitCallBack | State::DeployHold => {
                self.cfg.power_off_after_deploy_failure
            }
            State::Cleaning | State::CleanWait | State::CleanHold => {
                self.cfg.power_off_after_clean_failure
            }
            _ => false,
        }
    }

    /// Powers a failing node off; a BMC that refuses is added to `last_error`, as the
    /// node is failed either way.
    async fn power_off_failed(&self, node: &mut Node) {
        let result = match self.drivers.for_node(node) {
            Ok(d) => d.power.set_state(node, PowerTarget::Off).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => node.power_state = Some(crate::drivers::POWER_OFF.into()),
            Err(e) => {
                tracing::error!(node = %node.uuid, error = %e, "cannot power off the failed node");
                let last = node.last_error.take().unwrap_or_default();
                node.last_error = Some(format!(
                    "{last}. Also powering the node off after the failure failed: {e}"
                ));
            }
        }
    }

    /// Runs `f` on the locked node in a background task that releases the lock at the end.
    pub fn spawn_locked<F, Fut>(self: &Arc<Self>, uuid: String, f: F)
    where
        F: FnOnce(Arc<Conductor>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = EResult<()>> + Send + 'static,
    {
        use tracing::Instrument;
        let me = self.clone();
        // The work's log lines carry the node (and, through the span it was spawned from,
        // the request id of the verb that started it).
        let span = tracing::info_span!("work", node = %uuid);
        self.tracker.spawn(
            async move {
                if let Err(e) = f(me.clone(), uuid.clone()).await {
                    tracing::error!(node = %uuid, error = %crate::error_chain(&e), "background work failed");
                }
                me.unlock(&uuid).await;
            }
            .instrument(span),
        );
    }

    /// `PUT /v1/nodes/{id}/states/provision`.
    pub async fn provision(self: &Arc<Self>, ident: &str, req: ProvisionRequest) -> EResult<Node> {
        let node = self.node(ident).await?;
        let event = Event::from_target(&req.target)
            .filter(|e| e.is_user_verb())
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "Invalid provision target {:?}: use one of manage, provide, clean, inspect, \
                     adopt, active, deleted, rebuild, service, rescue, unrescue, abort, unhold",
                    req.target
                ))
            })?;
        state::next(node.provision_state, event).map_err(|e| {
            // Ironic's InvalidStateRequested, then which verbs the state allows.
            EngineError::Invalid(format!(
                "The requested action \"{}\" can not be performed on node \"{}\" while it is \
                 in state \"{}\". {e}",
                event.target_word(),
                node.uuid,
                node.provision_state
            ))
        })?;
        self.check_request(&node, event, &req)?;
        let mut node = self.lock_waiting(&node).await?;
        let from = node.provision_state;
        let result = self.start(&mut node, event, req).await;
        if result.is_ok() {
            let message = format!(
                "Provision verb \"{}\" moved the node from \"{from}\" to \"{}\"",
                event.target_word(),
                node.provision_state
            );
            let kind = history::event_type(node.provision_state);
            if let Err(e) =
                history::record(self, &node, history::Severity::Info, kind, &message).await
            {
                tracing::error!(node = %node.uuid, error = %e, "cannot record the verb in the node's history");
            }
        }
        match result {
            Ok(true) => {
                let uuid = node.uuid.clone();
                self.spawn_locked(uuid, |me, uuid| async move { me.drive(&uuid).await });
            }
            Ok(false) => self.unlock(&node.uuid).await,
            Err(e) => {
                self.unlock(&node.uuid).await;
                return Err(e);
            }
        }
        Ok(node)
    }

    fn check_request(&self, node: &Node, event: Event, req: &ProvisionRequest) -> EResult<()> {
        if req.clean_steps.is_some() && event != Event::Clean {
            return Err(EngineError::Invalid(
                "clean_steps is only allowed with target \"clean\"".into(),
            ));
        }
        if req.deploy_steps.is_some() && !matches!(event, Event::Deploy | Event::Rebuild) {
            return Err(EngineError::Invalid(
                "deploy_steps is only allowed with targets \"active\" and \"rebuild\"".into(),
            ));
        }
        if req.service_steps.is_some() && event != Event::Service {
            return Err(EngineError::Invalid(
                "service_steps is only allowed with target \"service\"".into(),
            ));
        }
        if req.rescue_password.is_some() && event != Event::Rescue {
            return Err(EngineError::Invalid(
                "\"rescue_password\" is only valid when setting target provision state to \
                 rescue"
                    .into(),
            ));
        }
        if event == Event::Rescue {
            if req
                .rescue_password
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
            {
                return Err(EngineError::Invalid(
                    "A non-empty \"rescue_password\" is required when setting target \
                     provision state to rescue"
                        .into(),
                ));
            }
            if node.maintenance {
                return Err(EngineError::Invalid(format!(
                    "The rescuing operation can't be performed on node {} because it's in \
                     maintenance mode.",
                    node.uuid
                )));
            }
            let d = self.drivers.for_node(node)?;
            d.power.validate(node)?;
            crate::drivers::validate_rescue(node, &d).map_err(|e| {
                EngineError::Invalid(format!(
                    "Failed to rescue instance {} for node {}: Validation failed: {}",
                    node.instance_uuid.as_deref().unwrap_or("None"),
                    node.uuid,
                    crate::error_chain(&e)
                ))
            })?;
        }
        if event == Event::Unrescue && node.maintenance {
            return Err(EngineError::Invalid(format!(
                "The unrescuing operation can't be performed on node {} because it's in \
                 maintenance mode.",
                node.uuid
            )));
        }
        if req.configdrive.is_some() && !matches!(event, Event::Deploy | Event::Rebuild) {
            return Err(EngineError::Invalid(
                "configdrive is only allowed with targets \"active\" and \"rebuild\"".into(),
            ));
        }
        if event == Event::Clean {
            let steps = req.clean_steps.as_ref().ok_or_else(|| {
                EngineError::Invalid(
                    "clean_steps is required for manual cleaning: give a list like \
                     [{\"interface\": \"deploy\", \"step\": \"erase_devices_metadata\"}]"
                        .into(),
                )
            })?;
            plan::parse_user_steps(steps, "clean_steps")
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        if event == Event::Service && node.maintenance {
            return Err(EngineError::Invalid(format!(
                "The service operation can't be performed on node {} because it's in \
                 maintenance mode.",
                node.uuid
            )));
        }
        if event == Event::Service {
            let steps = req.service_steps.as_ref().ok_or_else(|| {
                EngineError::Invalid(
                    "service_steps is required for servicing: give a list like \
                     [{\"interface\": \"power\", \"step\": \"reboot\"}]"
                        .into(),
                )
            })?;
            let steps = plan::parse_user_steps(steps, "service_steps")
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            let d = self.drivers.for_node(node)?;
            plan::service(steps, d.deploy.uses_agent())
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        if let Some(s) = &req.deploy_steps {
            plan::parse_user_steps(s, "deploy_steps")
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        match &req.configdrive {
            None => {}
            Some(Value::Object(o)) => {
                crate::configdrive::files(o, &node.uuid, node.name.as_deref())
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
            }
            Some(Value::String(s)) if s.len() <= CONFIGDRIVE_MAX => {}
            Some(Value::String(_)) => {
                return Err(EngineError::Invalid(
                    "configdrive is larger than 64 MiB: use an http(s) URL instead".into(),
                ))
            }
            Some(_) => {
                return Err(EngineError::Invalid(
                    "configdrive must be a string (base64 gzip or URL) or an object with \
                     meta_data, user_data, network_data, vendor_data"
                        .into(),
                ))
            }
        }
        if matches!(event, Event::Deploy | Event::Rebuild) {
            let d = self.drivers.for_node(node)?;
            d.deploy.validate(node)?;
            d.power.validate(node)?;
            d.boot.validate(node)?;
            if !self.cfg.allow_md5_checksum && crate::drivers::agent::checksum_is_md5(node) {
                return Err(EngineError::Invalid(
                    "image checksum is MD5, which this conductor refuses \
                     (--allow-md5-checksum true to accept); give image_os_hash_algo \
                     sha256 or sha512 with image_os_hash_value instead"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Applies a user verb to the locked node; true when background work must follow.
    async fn start(&self, node: &mut Node, event: Event, req: ProvisionRequest) -> EResult<bool> {
        // The state may have moved between the first check and the lock.
        state::next(node.provision_state, event)?;
        let mut progress = StepProgress::load(&node.driver_internal_info)?;
        match event {
            Event::Abort => {
                let what = match node.provision_state {
                    State::InspectWait => "Inspection",
                    State::CleanWait | State::CleanHold => "Cleaning",
                    State::ServiceWait | State::ServiceHold | State::ServiceFailed => "Servicing",
                    State::RescueWait => "Rescue",
                    _ => "Deployment",
                };
                progress.stop_waiting();
                self.timeline
                    .step_finished(&node.uuid, timeline::Outcome::Aborted, None)
                    .await;
                let servicing = matches!(
                    node.provision_state,
                    State::ServiceWait | State::ServiceHold | State::ServiceFailed
                );
                if servicing {
                    // Ironic's do_node_service_abort: the node goes back to active (through
                    // `service failed`), its service step and bookkeeping forgotten.
                    progress.user_service_steps = None;
                    progress.reset(Kind::Service);
                    node.extended.remove("service_step");
                }
                progress.store(&mut node.driver_internal_info);
                if node.provision_state == State::RescueWait {
                    // Ironic's _do_node_rescue_abort: the rescue is cleaned up.
                    self.clean_up_failed_rescue(node).await;
                    self.db.clear_agent(&node.uuid).await?;
                    node.agent_token = None;
                    node.agent_url = None;
                    node.agent_verify_ca = None;
                }
                if node.provision_state != State::ServiceFailed {
                    node.last_error = Some(format!("{what} was aborted by request."));
                }
                self.transition(node, event).await?;
                if servicing && node.provision_state == State::ServiceFailed {
                    self.transition(node, event).await?;
                }
                return Ok(false);
            }
            Event::Unhold => {
                self.transition(node, event).await?;
                // The hold step is finished: resume the steps without waiting for the agent.
                return Ok(true);
            }
            Event::Clean => {
                progress.manual_clean = true;
                progress.user_clean_steps = req.clean_steps;
                progress.reset(Kind::Clean);
                progress.store(&mut node.driver_internal_info);
            }
            Event::Service => {
                progress.user_service_steps = req.service_steps;
                progress.reset(Kind::Service);
                progress.store(&mut node.driver_internal_info);
                node.extended.remove("service_step");
            }
            Event::Rescue => {
                // Only the hash is kept (Ironic keeps the password too); the API masks it.
                let password = req.rescue_password.as_deref().unwrap_or_default();
                node.instance_info.insert(
                    rescue::HASHED_PASSWORD.into(),
                    Value::String(rescue::hash_password(password)),
                );
                // The agent of an earlier boot is forgotten (Ironic's wipe_token_and_url).
                self.db.clear_agent(&node.uuid).await?;
                node.agent_token = None;
                node.agent_url = None;
                node.agent_verify_ca = None;
            }
            Event::Provide => {
                progress.manual_clean = false;
                progress.user_clean_steps = None;
                progress.reset(Kind::Clean);
                progress.store(&mut node.driver_internal_info);
            }
            Event::Deploy | Event::Rebuild => {
                progress.user_deploy_steps = req.deploy_steps;
                progress.reset(Kind::Deploy);
                progress.store(&mut node.driver_internal_info);
                // A dict becomes the config drive image here, as Ironic builds it. A
                // rebuild without a new config drive writes the one of the last deploy
                // again (as Ironic does); a deploy without one has none.
                let cd = match req.configdrive {
                    Some(Value::Object(o)) => Some(Value::String(
                        crate::configdrive::build(&o, &node.uuid, node.name.as_deref())
                            .map_err(|e| EngineError::Invalid(crate::error_chain(&e)))?,
                    )),
                    other => other,
                };
                match cd {
                    Some(cd) => {
                        node.instance_info.insert("configdrive".into(), cd);
                    }
                    None if event == Event::Rebuild => {}
                    None => {
                        node.instance_info.remove("configdrive");
                    }
                }
            }
            _ => {}
        }
        node.last_error = None;
        self.transition(node, event).await?;
        Ok(node.provision_state.is_working())
    }

    /// `PUT /v1/nodes/{id}/states/power`.
    pub async fn set_power(self: &Arc<Self>, ident: &str, target: &str) -> EResult<()> {
        let t = PowerTarget::parse(target).ok_or_else(|| {
            EngineError::Invalid(format!(
                "Invalid power target {target:?}: use \"power on\", \"power off\", \"rebooting\", \
                 \"soft power off\" or \"soft rebooting\""
            ))
        })?;
        let node = self.node(ident).await?;
        let mut node = self.lock_waiting(&node).await?;
        node.target_power_state = Some(t.result().into());
        if let Err(e) = self.db.save_node(&node).await {
            self.unlock(&node.uuid).await;
            return Err(e.into());
        }
        self.spawn_locked(node.uuid.clone(), move |me, uuid| async move {
            let mut node = me.node(&uuid).await?;
            let result = match me.drivers.for_node(&node) {
                Ok(d) => d.power.set_state(&node, t).await,
                Err(e) => Err(e),
            };
            node.target_power_state = None;
            match result {
                Ok(()) => node.power_state = Some(t.result().into()),
                Err(e) => {
                    let e = crate::error_chain(&e);
                    node.last_error = Some(format!("Failed to change power state: {e}"))
                }
            }
            node.updated_at = Some(now());
            me.db.save_node(&node).await?;
            Ok(())
        });
        Ok(())
    }

    /// `PUT /v1/nodes/{id}/management/boot_device`.
    pub async fn set_boot_device(
        &self,
        ident: &str,
        device: &str,
        persistent: bool,
    ) -> EResult<()> {
        let node = self.node(ident).await?;
        let mut node = self.lock_waiting(&node).await?;
        let r = async {
            let d = self.drivers.for_node(&node)?;
            d.management
                .set_boot_device(&node, device, persistent)
                .await?;
            node.driver_internal_info.insert(
                "boot_device".into(),
                json!({"boot_device": device, "persistent": persistent}),
            );
            self.db.save_node(&node).await?;
            Ok(())
        }
        .await;
        self.unlock(&node.uuid).await;
        r
    }

    /// Locks, edits with `f`, saves and unlocks.
    pub async fn update<F>(&self, ident: &str, f: F) -> EResult<Node>
    where
        F: FnOnce(&mut Node) -> EResult<()>,
    {
        let node = self.node(ident).await?;
        let mut node = self.lock_waiting(&node).await?;
        let r = async {
            f(&mut node)?;
            node.updated_at = Some(now());
            self.db.save_node(&node).await?;
            Ok(())
        }
        .await;
        self.unlock(&node.uuid).await;
        r.map(|_| node)
    }

    /// Waits for background work to finish (graceful shutdown).
    pub async fn drain(&self, timeout: Duration) {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutting down with work in progress; those nodes fail on restart");
        }
        if let Err(e) = self.flush_heartbeats().await {
            tracing::error!(error = %crate::error_chain(&e), "writing heartbeat times failed");
        }
    }
}

/// A boolean of the node's `driver_info` (a JSON boolean, or a string as the CLI sets it,
/// read as Ironic's `bool_from_string`); `None` when absent. A value that is not a boolean
/// reads as false, with a warning.
fn driver_info_flag(node: &Node, key: &str) -> Option<bool> {
    match node.driver_info.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => {
                tracing::warn!(node = %node.uuid, key, value = %s,
                               "driver_info value is not a boolean: read as false");
                Some(false)
            }
        },
        Some(other) => {
            tracing::warn!(node = %node.uuid, key, value = %other,
                           "driver_info value is not a boolean: read as false");
            Some(false)
        }
    }
}

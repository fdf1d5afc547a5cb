//! State shared by the agent API, the heartbeat loop and the commands: identity, the
//! agent token, the command registry and results, configuration, system hooks and the
//! progress value reported in heartbeats.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore, SemaphorePermit};

pub mod hardware;
pub mod registry;

use crate::job::CommandStore;
pub use crate::system::SystemHooks;
pub use crate::system::{RealSystemHooks, RecordingHooks, SystemAction, SystemError};
pub use hardware::HardwareManager;
pub use registry::Registry;

/// Agent tokens shorter than this are refused (CONTRACT.md §1).
pub const MIN_TOKEN_LEN: usize = 32;

/// Default request body limit. A config drive may be 64 MiB of gzip; base64 makes that
/// ~86 MiB inside the `standby.prepare_image` body, plus `image_info`. 128 MiB covers it
/// (and is IPA's effective limit) while still bounding what one request can make us hold.
pub const DEFAULT_MAX_BODY_BYTES: usize = 128 << 20;

/// Agent settings the API and the commands read.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of the sysfs/procfs/dev tree for the inventory and the log collection
    /// (`/` on a real machine, a fixture tree in tests).
    pub root: PathBuf,
    /// The only disk destructive steps may touch when it is named explicitly (a file or
    /// loop device in tests and standalone use). `None`: pick by the ramdisk rules.
    pub target_disk: Option<PathBuf>,
    /// Largest accepted request body, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// The agent's own log file, included by `log.collect_system_logs` when present.
    pub log_file: Option<PathBuf>,
    /// `ipa-collect-lldp`: how long the inventory listens for LLDP (`ipa-lldp-timeout`);
    /// `None`: it does not.
    pub lldp: Option<std::time::Duration>,
    /// Where `rescue.finalize_rescue` writes `etc/passwd` and `etc/shadow` for the rescue
    /// user (a temp dir in tests). `None`: `/`, and only inside the ramdisk.
    pub rescue_root: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            target_disk: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            log_file: None,
            lldp: None,
            rescue_root: None,
        }
    }
}

/// What the agent is doing, for the heartbeat (`agent_status`, `agent_status_message`).
/// Long-running steps (the image writer) update it; the heartbeat reads the latest value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentProgress {
    pub agent_status: Option<String>,
    pub agent_status_message: Option<String>,
}

/// Why an agent token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("agent token refused: it has {len} characters, at least {MIN_TOKEN_LEN} are required")]
    TooShort { len: usize },
    #[error("agent token refused: a different token is already set and tokens are set once")]
    AlreadySet,
    #[error("agent token refused: {MASKED:?} is the masked placeholder, not a token")]
    Masked,
}

const MASKED: &str = ferrite_proto::MASKED_SECRET;

/// Shared by the API server, heartbeat and commands; lives in an `Arc`.
pub struct AgentState {
    started_at: f64,
    version: String,
    token: OnceLock<String>,
    pub config: AgentConfig,
    pub hooks: Arc<dyn SystemHooks>,
    pub registry: Registry,
    pub commands: CommandStore,
    /// Hardware managers offering clean/deploy steps, best first.
    pub managers: Vec<Arc<dyn HardwareManager>>,
    progress: watch::Sender<AgentProgress>,
    /// What `standby.get_partition_uuids` answers: set by the last image write.
    pub partition_uuids: std::sync::Mutex<Option<serde_json::Value>>,
    /// The node as the conductor last showed it (lookup, or the `node` argument of the
    /// step commands), as IPA's `hardware.cache_node`: root device hints come from it.
    node: std::sync::Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
    locked_down: watch::Sender<bool>,
    /// `rescue.finalize_rescue` ran: the heartbeat stops, the API keeps serving.
    rescued: watch::Sender<bool>,
    heartbeat_now: Notify,
    /// The iSCSI target `iscsi.start_iscsi_target` started, if any.
    pub(crate) iscsi: crate::iscsi_target::Export,
    /// KiB of request bodies that may be in memory at once (see `reserve_body`).
    body_budget: Semaphore,
    body_budget_kib: u32,
}

/// Request bodies held in memory at once may total this many times the body limit.
const BODY_BUDGET_FACTOR: u64 = 2;

impl AgentState {
    // `AgentState::new` (the standard commands and managers) is in the `commands` module,
    // which sits above this layer.

    /// State with an explicit command registry and hardware managers (tests, extensions).
    pub fn with_parts(
        config: AgentConfig,
        hooks: Arc<dyn SystemHooks>,
        registry: Registry,
        managers: Vec<Arc<dyn HardwareManager>>,
    ) -> Self {
        let body_budget_kib = u32::try_from(
            (config.max_body_bytes as u64)
                .div_ceil(1024)
                .saturating_mul(BODY_BUDGET_FACTOR)
                .max(1),
        )
        .unwrap_or(u32::MAX)
        .min(Semaphore::MAX_PERMITS as u32);
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self {
            started_at,
            version: env!("CARGO_PKG_VERSION").to_string(),
            token: OnceLock::new(),
            config,
            hooks,
            registry,
            commands: CommandStore::default(),
            managers,
            progress: watch::channel(AgentProgress::default()).0,
            partition_uuids: std::sync::Mutex::new(None),
            node: std::sync::Mutex::new(None),
            locked_down: watch::channel(false).0,
            rescued: watch::channel(false).0,
            heartbeat_now: Notify::new(),
            iscsi: Default::default(),
            body_budget: Semaphore::new(body_budget_kib as usize),
            body_budget_kib,
        }
    }

    /// Reserve memory for a request body of `bytes`; waits while other bodies use the
    /// budget. `None` only if the budget was closed.
    pub(crate) async fn reserve_body(&self, bytes: u64) -> Option<SemaphorePermit<'_>> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.body_budget_kib);
        self.body_budget.acquire_many(kib).await.ok()
    }

    /// KiB of body budget free now (tests observe the memory bound with it).
    pub fn body_budget_available_kib(&self) -> usize {
        self.body_budget.available_permits()
    }

    /// Unix time (seconds, fractional) the agent started.
    pub fn started_at(&self) -> f64 {
        self.started_at
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The token the conductor handed out at lookup (or `ipa-agent-token`); `None` until
    /// then, and while it is `None` every command is refused.
    pub fn agent_token(&self) -> Option<&str> {
        self.token.get().map(String::as_str)
    }

    /// Sets the agent token, once. Setting the same token again is a no-op.
    pub fn set_agent_token(&self, token: &str) -> Result<(), TokenError> {
        if token == MASKED {
            return Err(TokenError::Masked);
        }
        let len = token.chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { len });
        }
        let stored = self.token.get_or_init(|| token.to_string());
        if stored == token {
            Ok(())
        } else {
            Err(TokenError::AlreadySet)
        }
    }

    /// Whether `offered` (from `?agent_token=`) grants access: only an exact match of the
    /// token set, compared in constant time. Without a token nothing is allowed (IPA's
    /// `validate_agent_token`): an agent nobody handed a token to obeys nobody.
    pub fn token_allows(&self, offered: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (self.agent_token(), offered) {
            (None, _) | (Some(_), None) => false,
            (Some(expected), Some(offered)) => {
                bool::from(expected.as_bytes().ct_eq(offered.as_bytes()))
            }
        }
    }

    /// Keeps `node` (`properties`, `instance_info`, …) for the disk choice.
    pub fn cache_node(&self, node: serde_json::Map<String, serde_json::Value>) {
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(node);
    }

    /// The node last cached, if any.
    pub fn cached_node(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest progress value.
    pub fn progress(&self) -> AgentProgress {
        self.progress.borrow().clone()
    }

    /// Replace the progress value and wake the heartbeat.
    pub fn set_progress(&self, progress: AgentProgress) {
        self.progress.send_replace(progress);
        self.heartbeat_now.notify_one();
    }

    /// Watch the progress value (the heartbeat can react to changes).
    pub fn subscribe_progress(&self) -> watch::Receiver<AgentProgress> {
        self.progress.subscribe()
    }

    /// Resolves when something happened the conductor should hear about now (an async
    /// command finished, progress changed); the heartbeat loop selects on it.
    pub async fn heartbeat_requested(&self) {
        self.heartbeat_now.notified().await
    }

    pub(crate) fn request_heartbeat(&self) {
        self.heartbeat_now.notify_one();
    }

    /// `system.lockdown` was run: the API refuses commands and stops serving, the
    /// heartbeat stops, and the ramdisk runner brings the network down
    /// (`hooks.lockdown_network()`), as IPA does.
    pub fn is_locked_down(&self) -> bool {
        *self.locked_down.borrow()
    }

    pub(crate) fn lock_down(&self) {
        self.locked_down.send_replace(true);
    }

    /// `rescue.finalize_rescue` set the rescue password: the node is in the tenant's
    /// hands, so the agent stops heartbeating (nothing more for the conductor to do) but
    /// keeps its API up.
    pub fn is_rescued(&self) -> bool {
        *self.rescued.borrow()
    }

    pub(crate) fn finish_rescue(&self) {
        self.rescued.send_replace(true);
    }

    /// Resolves once the rescue was finalized.
    pub async fn wait_rescued(&self) {
        let mut rx = self.rescued.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Resolves once the agent is locked down.
    pub async fn wait_locked_down(&self) {
        let mut rx = self.locked_down.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|locked| *locked).await;
    }
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("started_at", &self.started_at)
            .field("version", &self.version)
            .field("token_set", &self.token.get().is_some())
            .field("config", &self.config)
            .field("locked_down", &self.is_locked_down())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AgentState {
        AgentState::new(AgentConfig::default(), Arc::new(RecordingHooks::new()))
    }

    #[test]
    fn no_token_means_closed() {
        let s = state();
        assert_eq!(s.agent_token(), None);
        assert!(!s.token_allows(None));
        assert!(!s.token_allows(Some("")));
        assert!(!s.token_allows(Some("0123456789abcdef0123456789abcdef")));
    }

    #[test]
    fn token_rules() {
        let s = state();
        assert_eq!(
            s.set_agent_token("short"),
            Err(TokenError::TooShort { len: 5 })
        );
        assert_eq!(s.set_agent_token(MASKED), Err(TokenError::Masked));
        assert_eq!(s.agent_token(), None);
        let token = "0123456789abcdef0123456789abcdef";
        s.set_agent_token(token).unwrap();
        s.set_agent_token(token).unwrap();
        assert_eq!(
            s.set_agent_token("fedcba9876543210fedcba9876543210"),
            Err(TokenError::AlreadySet)
        );
        assert!(s.token_allows(Some(token)));
        assert!(!s.token_allows(None));
        assert!(!s.token_allows(Some("0123456789abcdef0123456789abcdeX")));
        assert!(!s.token_allows(Some(&token[..31])));
        assert!(!s.token_allows(Some("")));
    }

    #[tokio::test]
    async fn lockdown_and_progress_are_observable() {
        let s = Arc::new(state());
        assert!(!s.is_locked_down());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_locked_down().await }
        });
        s.lock_down();
        waiter.await.unwrap();
        assert!(s.is_locked_down());

        let mut rx = s.subscribe_progress();
        s.set_progress(AgentProgress {
            agent_status: Some("start".into()),
            agent_status_message: None,
        });
        rx.changed().await.unwrap();
        assert_eq!(s.progress().agent_status.as_deref(), Some("start"));
    }
}

//! The hardware manager interface (IPA's): a source of clean and deploy steps. It lives
//! with [`AgentState`], which holds the managers; the `steps` module implements the standard
//! one above this layer.

use std::sync::Arc;

use ferrite_proto::steps::{Step, StepKind};
use serde_json::{Map, Value};

use super::AgentState;
use crate::job::CommandFuture;

/// A source of steps. The image/disk code implements `execute_step` for its steps.
pub trait HardwareManager: Send + Sync + 'static {
    /// Key in `clean_steps`/`deploy_steps` (IPA uses the class name).
    fn class_name(&self) -> &str;
    /// Key in `hardware_manager_version`.
    fn name(&self) -> &str;
    fn version(&self) -> &str;
    /// The steps this manager offers.
    fn steps(&self, kind: StepKind) -> Vec<Step>;
    /// Start `step` with its `args`; `None` when this manager does not implement it
    /// (the next manager is tried).
    fn execute_step(
        &self,
        kind: StepKind,
        step: &str,
        args: Map<String, Value>,
        state: Arc<AgentState>,
    ) -> Option<CommandFuture> {
        let _ = (kind, step, args, state);
        None
    }
}

//! Ferrite's deploy agent: hardware inventory, the IPA-compatible agent API, lookup and
//! heartbeat to the conductor, and writing images to disk. Layers, top down: `api` →
//! `commands` → `steps` → `install` → `state` (the shared `AgentState`, with the command
//! registry and hardware manager types it holds) → `job`, `image` → `disk`; no module
//! refers back up (`tests/module_cycles.rs`). The pipeline and on-disk formats are the
//! `ferrite-image` crate.

pub mod api;
pub mod bootloader;
pub mod cli;
pub mod cmdline;
pub mod coldplug;
pub mod commands;
pub mod disk;
pub mod fuzzing;
pub mod heartbeat;
pub mod image;
pub mod install;
pub mod inventory;
pub mod iscsi_target;
pub mod job;
pub mod kexec;
pub mod run;
pub mod state;
pub mod steps;
pub mod system;
pub mod tarball;
pub mod tls;

#![recursion_limit = "256"]
//! Ferrite conductor: Ironic-compatible REST API, provision state machine, storage, steps
//! engine, drivers and the `ferrite` CLI.

pub mod agent_client;
pub mod api;
pub mod cli;
pub mod configdrive;
pub mod db;
pub mod drivers;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod server;
pub mod state;
pub mod tls;
pub mod ui;

/// An error with its causes, one line: `a: b: c` (the one formatter agent and conductor
/// share).
pub use ferrite_proto::error::chain as error_chain;

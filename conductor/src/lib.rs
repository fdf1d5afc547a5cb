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
pub mod model;
pub mod server;
pub mod state;

/// An error with its causes, one line: `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

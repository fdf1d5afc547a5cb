//! Ferrite's deploy agent: hardware inventory, the IPA-compatible agent API, lookup and
//! heartbeat to the conductor, and (later) writing images to disk.

pub mod cli;
pub mod inventory;

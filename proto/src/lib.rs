//! Wire types of the Ferrite/Ironic protocols (see shared/CONTRACT.md). No I/O lives here,
//! but for the API accept loop the agent and the conductor share (feature `server`).

pub mod agent;
pub mod commands;
#[cfg(feature = "crypt")]
pub mod crypt;
pub mod error;
pub mod image;
pub mod inventory;
pub mod lookup;
pub mod steps;
#[cfg(feature = "server")]
pub mod tls;

/// The Ironic API microversion the agent asks for in lookup and heartbeat.
pub const IRONIC_API_VERSION: &str = "1.68";
/// Header carrying the Ironic API microversion.
pub const API_VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Version";
/// Value shown instead of a token that was already handed out.
pub const MASKED_SECRET: &str = "******";

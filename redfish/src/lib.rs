//! A Redfish client for the conductor: typed models of the resources Ferrite uses
//! ([`model`]), an HTTP transport with sessions or basic auth, TLS verification and bounded
//! retries ([`client`]), the operations on a system ([`system`]: power, boot override,
//! inventory, virtual media, task monitors), vendor quirks as a table ([`quirks`]) and
//! Ironic's `driver_info` keys ([`driver_info`]). With the `emulator` feature, [`emulator`]
//! launches sushy-tools' `sushy-emulator` for tests.

pub mod client;
pub mod driver_info;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod model;
pub mod quirks;
pub mod system;

pub use client::{AuthType, Client, ClientConfig, RetryPolicy, TlsVerify};
pub use driver_info::{DriverInfoError, RedfishDriverInfo};
pub use error::RedfishError;
pub use model::{BootMode, BootSource, PowerState, ResetType};
pub use quirks::Quirks;
pub use system::{BootOverride, Disk, Inventory, Nic, PowerAction, PowerWait, SystemRef};

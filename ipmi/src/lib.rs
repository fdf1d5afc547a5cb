//! IPMI 2.0 over LAN (RMCP+, "lanplus"): a pure codec in [`codec`] and a tokio UDP client in
//! [`client`]; [`lan`] finds a BMC's own addresses; with the `device` feature, [`dev`] talks
//! to the local BMC through `/dev/ipmi0`; with the `sim` feature, [`sim`] launches
//! OpenIPMI's `ipmi_sim` for tests.

pub mod client;
pub mod codec;
#[cfg(feature = "device")]
pub mod dev;
pub mod driver_info;
pub mod lan;
pub mod power;
#[cfg(feature = "sim")]
pub mod sim;

pub use client::{Client, ClientConfig, ClientError, Session};
pub use codec::commands::{BootDevice, BootOptions, ChassisControl, PowerState};
pub use codec::{CipherSuite, DecodeError, Privilege};
pub use driver_info::{DriverInfoError, IpmiDriverInfo};
pub use power::{poll_power, set_power, PowerAction, PowerError, PowerWait};

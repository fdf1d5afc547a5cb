//! IPMI 2.0 over LAN (RMCP+, "lanplus"): a pure codec in [`codec`] and a tokio UDP client in
//! [`client`]; with the `sim` feature, [`sim`] launches OpenIPMI's `ipmi_sim` for tests.

pub mod client;
pub mod codec;
pub mod driver_info;
pub mod power;
#[cfg(feature = "sim")]
pub mod sim;

pub use client::{Client, ClientConfig, ClientError, Session};
pub use codec::commands::{BootDevice, BootOptions, ChassisControl, PowerState};
pub use codec::{CipherSuite, DecodeError, Privilege};
pub use driver_info::{DriverInfoError, IpmiDriverInfo};
pub use power::{poll_power, set_power, PowerAction, PowerError, PowerWait};

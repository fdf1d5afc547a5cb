//! Network boot for the `ipxe` boot interface: the iPXE scripts ([`ipxe`]), the per-node
//! files behind `/boot/` ([`files`]) and the dnsmasq host file for known ports
//! ([`dnsmasq`]). Pure text and file handling; the conductor serves them over HTTP.

pub mod dnsmasq;
pub mod files;
pub mod ipxe;
pub mod iso;
pub mod mac;
pub mod network_data;

pub use files::{BootFiles, FilesError, Served};
pub use ipxe::{DeployBoot, KernelParams};
pub use mac::Mac;

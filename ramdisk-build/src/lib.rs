//! Builds Ferrite's boot artifacts: the deploy ramdisk (Debian kernel, the modules it needs,
//! busybox, the static agent and an init script, as a reproducible gzip'd cpio) and the test
//! OS image that the end-to-end tests deploy.

pub mod coldplug;
pub mod cpio;
pub mod deb;
pub mod firmware;
pub mod initramfs;
pub mod kmod;
pub mod partition_image;
pub mod profile;
pub mod ramdisk;
pub mod test_image;

use std::path::PathBuf;

pub use profile::Profile;
pub use ramdisk::{Manifest, RamdiskBuilder};
pub use test_image::{TestImage, TestImageBuilder};

/// What went wrong while building; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    #[error("archive path {0:?} is not a clean relative path")]
    BadArchivePath(String),
    #[error("archive path {0:?} is added twice, or under a non-directory")]
    ArchiveConflict(String),
    #[error("not a newc cpio archive: {0}")]
    BadArchive(String),
    #[error("kernel module {name:?} is neither in {dir} nor built in: check the module list")]
    MissingModule { name: String, dir: PathBuf },
    #[error("{path} is not a usable kernel module: {why}")]
    BadModule { path: PathBuf, why: String },
    #[error("the {profile} module list (ramdisk-build/modules/{profile}.txt) is malformed: {why}")]
    BadProfile { profile: String, why: String },
    #[error("kernel modules depend on each other in a cycle: {0}")]
    ModuleCycle(String),
    #[error(
        "`apt-get download {package}` failed: {output}\nrun `apt-get update`; if the mirror \
         no longer has this version, update the pin in ramdisk-build/src/deb.rs"
    )]
    Download { package: String, output: String },
    #[error(
        "{package}: sha256 is {actual}, the pin says {expected}; the mirror changed the file: \
         check it and update the pin in ramdisk-build/src/deb.rs"
    )]
    Checksum {
        package: String,
        expected: String,
        actual: String,
    },
    #[error("{tool}: {why}")]
    Tool { tool: String, why: String },
    #[error("building the GRUB EFI loader of the test OS image failed")]
    Grub(#[source] ferrite_netboot::iso::IsoError),
    #[error("missing input {path}: {hint}")]
    MissingInput { path: PathBuf, hint: String },
    #[error("the initramfs is {size} bytes, over the {budget}-byte budget: {hint}")]
    OverBudget {
        size: u64,
        budget: u64,
        hint: String,
    },
}

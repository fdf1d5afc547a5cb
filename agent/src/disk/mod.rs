//! Disks: block device ioctls, the safety gate for destructive work, signature wiping.

pub mod blkdev;
pub mod configdrive;
pub mod gpt;
pub mod hints;
pub mod io;
pub mod iso9660;
pub mod layout;
pub mod mkfs;
pub mod nvme;
pub mod nvme_dev;
pub mod probe;
pub mod readback;
pub mod safety;
pub mod table_write;
pub mod vfat_build;
pub mod wipe;

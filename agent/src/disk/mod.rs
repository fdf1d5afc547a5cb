//! Disks: block device ioctls, the safety gate for destructive work, signature wiping.

pub mod blkdev;
pub mod configdrive;
pub mod gpt;
pub mod hints;
pub mod io;
pub mod probe;
pub mod safety;
pub mod wipe;

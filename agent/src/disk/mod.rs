//! Disks: block device ioctls, the safety gate for destructive work, signature wiping.

pub mod blkdev;
pub mod gpt;
pub mod safety;
pub mod wipe;

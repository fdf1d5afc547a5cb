//! Disks: block device ioctls, NVMe admin commands, probing and read-back, root device
//! hints, and the safety gate for destructive work. On-disk formats (GPT, layouts, config
//! drives) are `ferrite_image::disk`'s.

pub mod blkdev;
pub mod hints;
pub mod nvme;
pub mod nvme_dev;
pub mod probe;
pub mod readback;
pub mod safety;

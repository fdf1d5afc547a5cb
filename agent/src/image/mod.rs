//! Images onto this machine's disks: the device side of a deploy. The pipeline and the
//! on-disk formats are `ferrite_image`'s; here are the O_DIRECT `writer` (a `BlockSink`),
//! whole-disk and partition-image deploys with the safety gate and re-reads, the config
//! drive onto a local disk, and the standalone `write-image` command.

pub mod configdrive;
pub mod deploy;
pub mod partition;
pub mod standalone;
pub mod writer;

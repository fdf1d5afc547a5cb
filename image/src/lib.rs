//! Ferrite's image library, shared by the agent (local disks) and the conductor (remote
//! LUNs over iSCSI): the streaming image pipeline and the on-disk formats it writes.
//!
//! The pipeline is one stream adaptor per file: `http` (source) → `checksum` →
//! `decompress` → `qcow2` → `holdback` → `sparse` → a [`BlockSink`]. `pipeline` stacks
//! them; `stream` resolves an `image_info` and runs the stack. [`disk`] holds the on-disk
//! formats (partition tables, filesystems, config drives) written through
//! [`disk::io::DiskIo`]. Devices (O_DIRECT writers, ioctls, the safety gate) are not here:
//! they are the agent's; this crate has no `unsafe`.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod decompress;
pub mod disk;
pub mod fuzzing;
pub mod holdback;
pub mod http;
pub mod offload;
pub mod pipeline;
pub mod progress;
pub mod qcow2;
pub mod sink;
pub mod source;
pub mod sparse;
pub mod stream;

pub use pipeline::{write_image, ImageError, Input, Outcome};
pub use progress::{Phase, Progress};
pub use sink::BlockSink;
pub use stream::stream_image;

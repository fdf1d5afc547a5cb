//! The image pipeline, one stream adaptor per file: `http` (source) → `checksum` →
//! `decompress` → `qcow2` → `holdback` → `sparse` → `writer` (a `BlockSink`).
//! `pipeline` stacks them; `deploy` adds target selection, safety and the disk fix-ups.

pub mod checksum;
pub mod decompress;

pub mod holdback;
pub mod http;
pub mod offload;
pub mod partition;
pub mod pipeline;
pub mod progress;
pub mod qcow2;
pub mod sink;
pub mod source;
pub mod sparse;
pub mod writer;

pub use pipeline::{write_image, ImageError, Input, Outcome};
pub use progress::{Phase, Progress};
pub use sink::BlockSink;
pub mod deploy;
pub mod standalone;

//! A small, read-only TFTP server for chainloading iPXE: the packet codec in [`packet`]
//! (RFC 1350 with RFC 2347 option negotiation, RFC 2348 blksize, RFC 2349 timeout and
//! tsize) and the tokio server in [`server`], confined to one directory.

pub mod netascii;
pub mod packet;
pub mod path;
pub mod server;

pub use server::{Server, ServerConfig, TransferLog, TransferRecord};

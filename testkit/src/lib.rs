//! Test helpers shared by Ferrite's crates: free ports, polling with a deadline, a reaper
//! for child processes, an in-memory image HTTP server and the fuzz corpus replay.
//!
//! A dev-dependency only (no binary links it), so it may panic where a test should fail.

pub mod fuzz;
pub mod http;
pub mod port;
pub mod process;
pub mod wait;

pub use port::{free_tcp_port, free_udp_port, with_free_port};
pub use process::Reaped;
pub use wait::{wait_until, wait_until_async};

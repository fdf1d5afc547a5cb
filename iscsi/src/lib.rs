//! ferrite-iscsi: iSCSI (RFC 7143) over TCP. A pure PDU codec ([`pdu`], [`text`], [`chap`]),
//! a target serving a file or block device as LUN 0 ([`target`]), and an initiator
//! ([`initiator`]) that logs in (optionally with CHAP), reads, writes, syncs and unmaps.

pub mod aligned;
pub mod chap;
pub mod crc32c;
#[doc(hidden)]
pub mod fuzzing;
pub mod initiator;
pub mod io;
pub mod pdu;
pub mod scsi;
pub mod target;
pub mod text;

pub use chap::Credentials;
pub use initiator::{Initiator, InitiatorError, LoginOptions};
pub use target::{Target, TargetConfig, TargetError};

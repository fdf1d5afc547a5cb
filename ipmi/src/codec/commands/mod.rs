//! The IPMI commands Ferrite uses: request builders and response parsers (no I/O).

use super::DecodeError;

mod app;
mod chassis;
mod transport;

pub use app::*;
pub use chassis::*;
pub use transport::*;

pub const NETFN_CHASSIS: u8 = 0x00;
pub const NETFN_APP: u8 = 0x06;
pub const NETFN_TRANSPORT: u8 = 0x0c;

/// The channel number meaning "the channel this request came in on".
pub const CURRENT_CHANNEL: u8 = 0x0e;

pub(crate) fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), DecodeError> {
    if b.len() < n {
        return Err(DecodeError::Truncated {
            what,
            need: n,
            got: b.len(),
        });
    }
    Ok(())
}

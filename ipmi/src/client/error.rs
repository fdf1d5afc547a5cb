//! Errors of the UDP client: each says what failed and what to check next.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::codec::DecodeError;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot use a UDP socket for the BMC at {addr}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "BMC at {addr} did not answer {what} ({attempts} attempts, {per_attempt:?} each): \
         check the address and port, that IPMI over LAN is enabled, and the network path"
    )]
    Timeout {
        addr: SocketAddr,
        what: &'static str,
        attempts: u32,
        per_attempt: Duration,
    },
    #[error(
        "nothing listens on the BMC address {addr} (ICMP port unreachable): check ipmi_address \
         and ipmi_port, and that the BMC is up"
    )]
    Refused { addr: SocketAddr },
    #[error("the BMC at {addr} refused {stage}: {reason} (RMCP+ status {code:#04x})")]
    SessionRefused {
        addr: SocketAddr,
        stage: &'static str,
        code: u8,
        reason: &'static str,
    },
    #[error(
        "wrong password for user {user:?} on the BMC at {addr} (its RAKP 2 auth code does not \
         match ours): check ipmi_password"
    )]
    WrongPassword { addr: SocketAddr, user: String },
    #[error(
        "the BMC at {addr} sent a wrong RAKP 4 integrity check value: wrong BMC key (K_g) or a \
         spoofed reply"
    )]
    BadRakp4 { addr: SocketAddr },
    #[error(
        "the BMC at {addr} chose algorithms other than the ones proposed for cipher suite \
         {suite} (auth {auth}, integrity {integrity}, confidentiality {confidentiality})"
    )]
    AlgorithmMismatch {
        addr: SocketAddr,
        suite: u8,
        auth: u8,
        integrity: u8,
        confidentiality: u8,
    },
    #[error("{command} failed on the BMC at {addr}: {reason} (completion code {code:#04x})")]
    Completion {
        addr: SocketAddr,
        command: &'static str,
        code: u8,
        reason: &'static str,
    },
    #[error("malformed {command} reply from the BMC at {addr}")]
    Malformed {
        addr: SocketAddr,
        command: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("user name {0:?} is longer than the 16 bytes IPMI allows")]
    UserNameTooLong(String),
}

impl ClientError {
    /// The BMC refused the proposed cipher suite's algorithms.
    pub fn is_unsupported_suite(&self) -> bool {
        matches!(
            self,
            ClientError::SessionRefused {
                code: 0x04 | 0x05 | 0x06 | 0x07 | 0x10 | 0x11,
                ..
            } | ClientError::AlgorithmMismatch { .. }
        )
    }

    /// Errors after which a reused session is presumed dead and worth one re-open.
    pub(crate) fn may_be_stale_session(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::Completion {
                    code: 0xd4 | 0xd5,
                    ..
                }
        )
    }
}

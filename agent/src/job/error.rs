//! `CommandError`: why a command was refused or failed, mapped onto IPA's error objects
//! (`{"type", "code", "message", "details"}`) and HTTP status codes.

use std::error::Error as StdError;

use ferrite_proto::commands::CommandFailure;
use serde_json::Value;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An agent command error. The variants mirror IPA's `RESTError` subclasses.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A parameter is missing, unknown or of the wrong type (IPA
    /// `InvalidCommandParamsError`, 400).
    #[error("parameter `{field}`: {reason}")]
    InvalidParams { field: String, reason: String },
    /// The command name is malformed or unknown (IPA `InvalidCommandError`, 400).
    #[error("{0}")]
    InvalidCommand(String),
    /// Another command is still running (IPA `AgentIsBusy`, 409).
    #[error("executing command {0}")]
    Busy(String),
    /// `system.lockdown` ran: no further commands (503).
    #[error("the agent is locked down (system.lockdown) and accepts no further commands")]
    LockedDown,
    /// The hardware managers' versions differ from those the conductor saw when it listed
    /// the steps (IPA `VersionMismatch`, 409; the command's status says so too).
    #[error("Current versions: {agent}, versions used by ironic: {conductor}")]
    VersionMismatch { agent: Value, conductor: Value },
    /// The command ran and failed (IPA `CommandExecutionError`, 500).
    #[error("{message}")]
    Failed {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl CommandError {
    pub fn invalid_params(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParams {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A failure with a message saying what failed; the cause goes into `source`.
    pub fn failed(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Failed {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A failure without an underlying error value.
    pub fn failed_msg(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            source: None,
        }
    }

    /// IPA's class name for this error (`type` in the error object).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "InvalidCommandParamsError",
            Self::InvalidCommand(_) => "InvalidCommandError",
            Self::Busy(_) => "AgentIsBusy",
            Self::LockedDown => "AgentIsLockedDown",
            Self::VersionMismatch { .. } => "VersionMismatch",
            Self::Failed { .. } => "CommandExecutionError",
        }
    }

    /// HTTP status when the error is the answer to a request.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidParams { .. } | Self::InvalidCommand(_) => 400,
            Self::Busy(_) | Self::VersionMismatch { .. } => 409,
            Self::LockedDown => 503,
            Self::Failed { .. } => 500,
        }
    }

    /// IPA's fixed message for the error class.
    pub fn title(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "Invalid command parameters",
            Self::InvalidCommand(_) => "Invalid command",
            Self::Busy(_) => "Agent is busy",
            Self::LockedDown => "Agent is locked down",
            Self::VersionMismatch { .. } => {
                "Hardware managers version mismatch, reload agent with correct version"
            }
            Self::Failed { .. } => "Command execution failed",
        }
    }

    /// This error and its causes, joined with ": ".
    pub fn details(&self) -> String {
        ferrite_proto::error::chain(self)
    }

    /// `"<title>: <details>"`, as IPA renders `str(error)` in `faultstring`.
    pub fn faultstring(&self) -> String {
        format!("{}: {}", self.title(), self.details())
    }

    /// The error object stored in `command_error`.
    pub fn to_value(&self) -> Value {
        let failure = CommandFailure {
            kind: self.kind().into(),
            code: self.status_code(),
            message: self.title().into(),
            details: self.details(),
        };
        serde_json::to_value(failure).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_objects_match_ipa() {
        let e = CommandError::failed(
            "writing image to /dev/sdz",
            std::io::Error::other("disk vanished"),
        );
        assert_eq!(
            e.to_value(),
            json!({"type": "CommandExecutionError", "code": 500,
                   "message": "Command execution failed",
                   "details": "writing image to /dev/sdz: disk vanished"})
        );
        let busy = CommandError::Busy("standby.prepare_image".into());
        assert_eq!(busy.status_code(), 409);
        assert_eq!(
            busy.faultstring(),
            "Agent is busy: executing command standby.prepare_image"
        );
        let p = CommandError::invalid_params("image_info.urls", "invalid type: string");
        assert_eq!(p.status_code(), 400);
        assert!(p.faultstring().contains("`image_info.urls`"));
    }
}

//! IPMI completion codes (IPMI 2.0 table 5-2) as readable text.

/// A readable reason for a non-zero completion code. `cmd_specific` gives the meaning of
/// 0x80–0xBE for the command at hand when the caller knows it.
pub fn completion_text(code: u8, cmd_specific: Option<&'static str>) -> &'static str {
    match code {
        0x00 => "command completed normally",
        0x80..=0xbe => cmd_specific.unwrap_or("command-specific error"),
        0xc0 => "node busy (retry later)",
        0xc1 => "invalid or unsupported command",
        0xc2 => "command invalid for the given LUN",
        0xc3 => "timeout while processing the command",
        0xc4 => "out of space",
        0xc5 => "reservation cancelled or invalid reservation ID",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xca => "cannot return the number of requested data bytes",
        0xcb => "requested sensor, data or record not present",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for the specified sensor or record type",
        0xce => "command response could not be provided",
        0xcf => "cannot execute duplicated request",
        0xd0 => "SDR repository in update mode",
        0xd1 => "device in firmware update mode",
        0xd2 => "BMC initialization in progress",
        0xd3 => "destination unavailable",
        0xd4 => "insufficient privilege level (use an operator or administrator account)",
        0xd5 => "command not supported in the present state",
        0xd6 => "command sub-function disabled or unavailable",
        0xff => "unspecified error",
        _ => "unknown completion code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_text() {
        assert!(completion_text(0xd4, None).contains("privilege"));
        assert_eq!(
            completion_text(0x80, Some("parameter not supported")),
            "parameter not supported"
        );
        assert_eq!(completion_text(0x81, None), "command-specific error");
        assert_eq!(completion_text(0xcc, None), "invalid data field in request");
        assert_eq!(completion_text(0x55, None), "unknown completion code");
    }
}

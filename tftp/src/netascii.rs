//! Netascii encoding (RFC 764 as used by RFC 1350): LF → CR LF, CR → CR NUL, streamed.

/// Converts `input` to netascii, appending to `out`.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ends() {
        let mut out = Vec::new();
        super::encode(b"a\nb\rc", &mut out);
        assert_eq!(out, b"a\r\nb\r\0c");
    }
}

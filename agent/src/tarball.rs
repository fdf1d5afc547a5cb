//! A minimal ustar writer: regular files only, enough for `log.collect_system_logs`.
//! Pure: writes into any `io::Write`.

use std::io::{self, Write};

const BLOCK: usize = 512;

/// Writes a ustar archive of regular files.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Append a regular file (mode 0644). `name` must be ASCII-safe, relative, < 100 bytes.
    pub fn append(&mut self, name: &str, mtime: u64, data: &[u8]) -> io::Result<()> {
        let header = header(name, mtime, data.len() as u64)?;
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])
    }

    /// Write the two zero end blocks and hand back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

/// The 512-byte ustar header of a regular file.
pub fn header(name: &str, mtime: u64, size: u64) -> io::Result<[u8; BLOCK]> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar entry {name:?}: {why}"),
        )
    };
    if name.is_empty() || name.len() >= 100 || name.starts_with('/') || name.contains('\0') {
        return Err(bad(
            "name must be relative, non-empty and shorter than 100 bytes",
        ));
    }
    if size >= 8 << 30 {
        return Err(bad("files of 8 GiB or more do not fit a ustar header"));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.min(0o77777777777));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    Ok(h)
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_checksum() {
        let h = header("proc/cmdline", 1_700_000_000, 5).unwrap();
        assert_eq!(&h[..12], b"proc/cmdline");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..263], b"ustar\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn archive_layout() {
        let mut w = TarWriter::new(Vec::new());
        w.append("a.txt", 0, b"hello").unwrap();
        w.append("empty", 0, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 512 + 512 + 512 + 1024);
        assert_eq!(&bytes[512..517], b"hello");
        assert!(bytes[bytes.len() - 1024..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(header("/etc/passwd", 0, 0).is_err());
        assert!(header("", 0, 0).is_err());
        assert!(header(&"x".repeat(100), 0, 0).is_err());
    }
}

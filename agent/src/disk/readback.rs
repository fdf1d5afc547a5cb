//! Does a disk read back zeroes? Reads it all when small, else evenly spread 1 MiB
//! samples (first and last MiB included), with `O_DIRECT` so stale cache pages of the
//! content before an erase cannot answer for the device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Bytes read per sample.
pub const SAMPLE_BYTES: u64 = 1 << 20;
/// At most this many samples (64 MiB read); smaller disks are read whole.
pub const MAX_SAMPLES: u64 = 64;

/// What the read-back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readback {
    pub bytes_read: u64,
    /// Offset of the first non-zero byte seen, if any.
    pub first_nonzero: Option<u64>,
}

impl Readback {
    pub fn all_zero(&self) -> bool {
        self.first_nonzero.is_none()
    }
}

/// Sample offsets (each `SAMPLE_BYTES` long, the last one possibly shorter) covering a
/// disk of `size` bytes: every chunk when it has at most `MAX_SAMPLES`, else the first,
/// the last and evenly spaced ones between, aligned to 4 KiB.
pub fn sample_offsets(size: u64) -> Vec<u64> {
    let chunks = size.div_ceil(SAMPLE_BYTES);
    if chunks <= MAX_SAMPLES {
        return (0..chunks).map(|i| i * SAMPLE_BYTES).collect();
    }
    let last = size - SAMPLE_BYTES;
    (0..MAX_SAMPLES - 1)
        .map(|i| (last / (MAX_SAMPLES - 1) * i) & !4095)
        .chain(std::iter::once(last & !4095))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .or_else(|_| File::open(path))
}

/// Read the samples of `path` (`size` bytes) and look for non-zero bytes.
pub fn check_zeroes(path: &Path, size: u64) -> io::Result<Readback> {
    let file = open_direct(path)?;
    // O_DIRECT wants an aligned buffer: over-allocate and start at the aligned offset.
    let mut raw = vec![0u8; (SAMPLE_BYTES + 4096) as usize];
    let start = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[start..start + SAMPLE_BYTES as usize];
    let mut out = Readback {
        bytes_read: 0,
        first_nonzero: None,
    };
    for offset in sample_offsets(size) {
        let len = SAMPLE_BYTES.min(size - offset);
        // Round a short tail up to the sector for O_DIRECT; the device ends there anyway.
        let want = len.div_ceil(4096) * 4096;
        let mut got = 0usize;
        while (got as u64) < len {
            let n = file.read_at(&mut buf[got..want as usize], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let got = got.min(len as usize);
        out.bytes_read += got as u64;
        if let Some(i) = buf[..got].iter().position(|&b| b != 0) {
            out.first_nonzero = Some(offset + i as u64);
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_disks_are_read_whole_and_large_ones_sampled() {
        assert_eq!(sample_offsets(3 << 20), vec![0, 1 << 20, 2 << 20]);
        assert_eq!(sample_offsets((1 << 20) + 512), vec![0, 1 << 20]);
        let big = 1u64 << 40;
        let s = sample_offsets(big);
        assert_eq!(s.len() as u64, MAX_SAMPLES);
        assert_eq!(s[0], 0);
        assert_eq!(*s.last().unwrap(), big - SAMPLE_BYTES);
        assert!(s.iter().all(|o| o % 4096 == 0 && o + SAMPLE_BYTES <= big));
    }

    #[test]
    fn finds_a_non_zero_byte_and_passes_zeroes() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let size = (5 << 20) + 4096;
        f.as_file().set_len(size).unwrap();
        let r = check_zeroes(f.path(), size).unwrap();
        assert!(r.all_zero());
        assert_eq!(r.bytes_read, size);
        f.as_file().write_all_at(&[7], size - 1).unwrap();
        let r = check_zeroes(f.path(), size).unwrap();
        assert_eq!(r.first_nonzero, Some(size - 1));
    }
}

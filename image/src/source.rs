//! Local image sources (a file path, for standalone use and tests) and the byte counter
//! that feeds progress.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::progress::Progress;
use super::qcow2::RangeRead;

/// Range reads of a local image file.
pub struct FileRanges(pub File);

impl RangeRead for FileRanges {
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let mut n = 0;
        while n < len {
            match self.0.read_at(&mut out[n..], offset + n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        out.truncate(n);
        Ok(out)
    }
}

/// Open a local image: the reader, its length and a Range reader over the same file.
pub fn open_file(path: &Path) -> io::Result<(File, u64, FileRanges)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let r = FileRanges(f.try_clone()?);
    Ok((f, len, r))
}

/// Counts the bytes read from the transport into the shared progress.
pub struct CountingReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R, progress: Progress) -> CountingReader<R> {
        CountingReader { inner, progress }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_downloaded(n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.progress.add_downloaded(n as u64);
        self.inner.consume(n);
    }
}

//! Zero-run skipping: forwards only the non-zero parts of writes when the target
//! already reads back zeroes.

use std::io;

use super::sink::BlockSink;

/// Granularity of zero detection: runs are skipped in whole, aligned 4 KiB blocks.
pub const SPARSE_BLOCK: usize = 4096;

/// Wraps a sink; when the sink `reads_zero()`, all-zero 4 KiB blocks are not written.
pub struct SparseSink<S> {
    inner: S,
    /// Bytes not written because they were zero.
    pub skipped: u64,
}

impl<S: BlockSink> SparseSink<S> {
    pub fn new(inner: S) -> SparseSink<S> {
        SparseSink { inner, skipped: 0 }
    }
    pub fn into_inner(self) -> S {
        self.inner
    }
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

/// True when every byte of `buf` is zero (ORs 64-byte blocks; the compiler vectorises it).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut blocks = buf.chunks_exact(64);
    for block in &mut blocks {
        let mut acc = 0u64;
        for word in block.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            acc |= u64::from_ne_bytes(w);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

impl<S: BlockSink> BlockSink for SparseSink<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if !self.inner.reads_zero() {
            return self.inner.write_at(offset, buf);
        }
        // Split at 4 KiB boundaries of the target so that skipped runs are aligned.
        let mut pos = 0usize;
        let mut run_start: Option<usize> = None;
        while pos < buf.len() {
            let abs = offset + pos as u64;
            let to_boundary = SPARSE_BLOCK - (abs % SPARSE_BLOCK as u64) as usize;
            let end = (pos + to_boundary).min(buf.len());
            let zero = is_zero(&buf[pos..end]);
            match (zero, run_start) {
                (true, Some(s)) => {
                    self.inner.write_at(offset + s as u64, &buf[s..pos])?;
                    run_start = None;
                    self.skipped += (end - pos) as u64;
                }
                (true, None) => self.skipped += (end - pos) as u64,
                (false, None) => run_start = Some(pos),
                (false, Some(_)) => {}
            }
            pos = end;
        }
        if let Some(s) = run_start {
            self.inner.write_at(offset + s as u64, &buf[s..])?;
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.inner.reads_zero() {
            self.skipped += len;
            return Ok(());
        }
        self.inner.write_zeroes(offset, len)
    }

    fn reads_zero(&self) -> bool {
        self.inner.reads_zero()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemSink;

    #[test]
    fn skips_zero_blocks_only_when_target_reads_zero() {
        let mut img = vec![0u8; 5 * SPARSE_BLOCK];
        img[SPARSE_BLOCK + 7] = 1; // block 1 non-zero
        img[4 * SPARSE_BLOCK] = 2; // block 4 non-zero
        let mut s = SparseSink::new(MemSink::new(img.len(), true));
        s.write_at(0, &img).unwrap();
        assert_eq!(s.inner.data, img);
        assert_eq!(
            s.inner.writes,
            vec![
                (SPARSE_BLOCK as u64, SPARSE_BLOCK),
                (4 * SPARSE_BLOCK as u64, SPARSE_BLOCK)
            ]
        );
        assert_eq!(s.skipped, 3 * SPARSE_BLOCK as u64);

        let mut s = SparseSink::new(MemSink::new(img.len(), false));
        s.write_at(0, &img).unwrap();
        assert_eq!(s.inner.data, img);
        assert_eq!(s.inner.writes, vec![(0, img.len())]);
    }

    #[test]
    fn unaligned_writes_keep_every_non_zero_byte() {
        let mut img = vec![0u8; 3 * SPARSE_BLOCK + 100];
        img[10] = 9;
        img[3 * SPARSE_BLOCK + 50] = 9;
        let mut s = SparseSink::new(MemSink::new(img.len() + 300, true));
        s.write_at(300, &img).unwrap();
        assert_eq!(&s.inner.data[300..], &img[..]);
        assert!(s.skipped > 0);
    }

    #[test]
    fn is_zero_sees_a_single_bit() {
        for len in [0usize, 1, 7, 8, 63, 64, 65, 4096, 4100] {
            let mut b = vec![0u8; len];
            assert!(is_zero(&b));
            if len > 0 {
                b[len - 1] = 0x80;
                assert!(!is_zero(&b), "len {len}");
                b[len - 1] = 0;
                b[len / 2] = 1;
                assert!(!is_zero(&b), "len {len}");
            }
        }
    }
}

//! "Nothing bootable until verified": keeps the first MiB of the image in memory and
//! writes it only when the caller says the image checked out.

use std::io;

use super::sink::BlockSink;

/// How much of the start of the disk is held back (boot sector, GPT, boot loaders' start).
pub const HOLD_BACK: u64 = 1 << 20;

pub struct HoldBack<S> {
    inner: S,
    head: Vec<u8>,
    /// Highest end offset written into the held-back region.
    head_extent: u64,
}

impl<S: BlockSink> HoldBack<S> {
    pub fn new(inner: S) -> HoldBack<S> {
        let n = HOLD_BACK.min(inner.size()) as usize;
        HoldBack {
            inner,
            head: vec![0; n],
            head_extent: 0,
        }
    }

    /// Write the held-back head: zeroes where the image had nothing, up to `image_len`.
    pub fn commit(&mut self, image_len: u64) -> io::Result<()> {
        let n = (self.head.len() as u64).min(image_len.max(self.head_extent)) as usize;
        self.inner.write_at(0, &self.head[..n])
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: BlockSink> BlockSink for HoldBack<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.inner.size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write of {} bytes at {offset} is past the end of the {}-byte target",
                    buf.len(),
                    self.inner.size()
                ),
            ));
        }
        let head_len = self.head.len() as u64;
        if offset < head_len {
            let split = (head_len - offset).min(buf.len() as u64) as usize;
            self.head[offset as usize..offset as usize + split].copy_from_slice(&buf[..split]);
            self.head_extent = self.head_extent.max(offset + split as u64);
            if split < buf.len() {
                self.inner.write_at(head_len, &buf[split..])?;
            }
            return Ok(());
        }
        self.inner.write_at(offset, buf)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let head_len = self.head.len() as u64;
        let end = offset.saturating_add(len);
        if offset < head_len {
            let stop = end.min(head_len);
            self.head[offset as usize..stop as usize].fill(0);
            self.head_extent = self.head_extent.max(stop);
            if end > head_len {
                self.inner.write_zeroes(head_len, end - head_len)?;
            }
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
    fn head_reaches_the_target_only_on_commit() {
        let size = 3 << 20;
        let img: Vec<u8> = (0..2 * HOLD_BACK as usize)
            .map(|i| (i % 251) as u8 + 1)
            .collect();
        let mut h = HoldBack::new(MemSink::new(size, false));
        h.write_at(0, &img[..1000]).unwrap();
        h.write_at(1000, &img[1000..]).unwrap();
        assert!(h.inner.data[..HOLD_BACK as usize]
            .iter()
            .all(|&b| b == 0xAA));
        assert_eq!(
            &h.inner.data[HOLD_BACK as usize..img.len()],
            &img[HOLD_BACK as usize..]
        );
        h.commit(img.len() as u64).unwrap();
        assert_eq!(&h.inner.data[..img.len()], &img[..]);
    }

    #[test]
    fn commit_writes_zeroes_over_gaps_in_the_head() {
        let mut h = HoldBack::new(MemSink::new(2 << 20, false));
        h.write_at(4096, &[7; 512]).unwrap();
        h.commit(2 << 20).unwrap();
        assert!(h.inner.data[..4096].iter().all(|&b| b == 0));
        assert_eq!(&h.inner.data[4096..4608], &[7; 512][..]);
        assert!(h.inner.data[4608..HOLD_BACK as usize]
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn writes_past_the_end_fail() {
        let mut h = HoldBack::new(MemSink::new(4096, false));
        let e = h.write_at(4000, &[1; 200]).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}

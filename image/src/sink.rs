//! `BlockSink`: where a deploy writes its bytes (a file, a block device, later an iSCSI LUN).

use std::io;

/// A random-access byte sink of fixed size. The image pipeline writes through a stack of
/// these (hold-back, sparse, staging) down to a real device. Implementations need not be
/// aligned-friendly: the writer takes care of O_DIRECT alignment.
pub trait BlockSink: Send {
    /// Size of the target in bytes; writes past it fail.
    fn size(&self) -> u64;
    /// Write `buf` at byte `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Make `offset..offset+len` read back as zeroes, by the cheapest means available
    /// (punch/zero range, `BLKZEROOUT`, or writing zeroes).
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// True when regions never written read back as zeroes (a fresh sparse file, a device
    /// zeroed beforehand), so runs of zeroes in the image may be skipped.
    fn reads_zero(&self) -> bool;
    /// Wait until everything written is on stable storage.
    fn flush(&mut self) -> io::Result<()>;
}

impl<S: BlockSink + ?Sized> BlockSink for Box<S> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
    fn reads_zero(&self) -> bool {
        (**self).reads_zero()
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

impl<S: BlockSink + ?Sized> BlockSink for &mut S {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
    fn reads_zero(&self) -> bool {
        (**self).reads_zero()
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

/// An in-memory sink for unit tests of the layers above the writer.
#[derive(Debug, Clone)]
pub struct MemSink {
    pub data: Vec<u8>,
    pub zeroed: bool,
    /// Every `write_at` as (offset, len), to check what a layer forwarded.
    pub writes: Vec<(u64, usize)>,
    pub flushed: bool,
}

impl MemSink {
    pub fn new(size: usize, zeroed: bool) -> MemSink {
        MemSink {
            data: vec![if zeroed { 0 } else { 0xAA }; size],
            zeroed,
            writes: vec![],
            flushed: false,
        }
    }
}

fn bounds(size: u64, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(offset as usize..end as usize),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("write of {len} bytes at {offset} is past the end of a {size}-byte target"),
        )),
    }
}

impl BlockSink for MemSink {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let r = bounds(self.size(), offset, buf.len() as u64)?;
        self.data[r].copy_from_slice(buf);
        self.writes.push((offset, buf.len()));
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let r = bounds(self.size(), offset, len)?;
        self.data[r].fill(0);
        Ok(())
    }
    fn reads_zero(&self) -> bool {
        self.zeroed
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushed = true;
        Ok(())
    }
}

/// A window of a sink: offsets are relative to `base`, the size is `len`. A partition
/// image is written through one onto its partition.
pub struct Window<S> {
    pub inner: S,
    pub base: u64,
    pub len: u64,
}

impl<S: BlockSink> Window<S> {
    fn check(&self, offset: u64, len: u64) -> io::Result<u64> {
        bounds(self.len, offset, len)?;
        Ok(self.base + offset)
    }
}

impl<S: BlockSink> BlockSink for Window<S> {
    fn size(&self) -> u64 {
        self.len
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let at = self.check(offset, buf.len() as u64)?;
        self.inner.write_at(at, buf)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let at = self.check(offset, len)?;
        self.inner.write_zeroes(at, len)
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

    #[test]
    fn a_window_shifts_writes_and_stops_at_its_end() {
        let mut w = Window {
            inner: MemSink::new(100, false),
            base: 40,
            len: 20,
        };
        w.write_at(0, &[1; 5]).unwrap();
        w.write_zeroes(15, 5).unwrap();
        assert_eq!(&w.inner.data[40..45], &[1; 5]);
        assert_eq!(&w.inner.data[55..60], &[0; 5]);
        assert_eq!(w.inner.data[60], 0xAA);
        assert!(w.write_at(18, &[1; 3]).is_err());
        assert!(w.write_zeroes(10, 11).is_err());
    }
}

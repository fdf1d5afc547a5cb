//! The store behind LUN 0: a regular file or block device, optionally opened with O_DIRECT.
//! Every access is bounds-checked here, so nothing is ever written outside the LUN.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::aligned::AlignedBuf;

/// Alignment O_DIRECT needs for buffers, offsets and lengths (covers 4Kn devices).
const DIRECT_ALIGN: usize = crate::aligned::ALIGN;

#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("cannot open {path} as the LUN backing store")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, not a whole number of {block}-byte blocks, or empty")]
    BadSize {
        path: PathBuf,
        size: u64,
        block: u32,
    },
    #[error("I/O at byte {offset} (+{len}) is outside the LUN of {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("I/O error on the LUN backing store")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct Backing {
    file: File,
    path: PathBuf,
    size: u64,
    block_size: u32,
    direct: bool,
}

impl Backing {
    /// Opens `path` read-write. Its size must be a positive multiple of 512 bytes.
    pub fn open(path: &Path, direct: bool) -> Result<Backing, BackingError> {
        let mut oo = OpenOptions::new();
        oo.read(true).write(true);
        if direct {
            oo.custom_flags(libc::O_DIRECT);
        }
        let file = oo.open(path).map_err(|source| BackingError::Open {
            path: path.into(),
            source,
        })?;
        // SEEK_END gives the size of block devices as well as files.
        let size = {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::End(0))?
        };
        let block_size = 512;
        if size == 0 || size % block_size as u64 != 0 {
            return Err(BackingError::BadSize {
                path: path.into(),
                size,
                block: block_size,
            });
        }
        Ok(Backing {
            file,
            path: path.into(),
            size,
            block_size,
            direct,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    pub fn blocks(&self) -> u64 {
        self.size / self.block_size as u64
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BackingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BackingError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn needs_bounce(&self, buf: &[u8], offset: u64) -> bool {
        self.direct
            && (!(buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                || !buf.len().is_multiple_of(DIRECT_ALIGN)
                || !offset.is_multiple_of(DIRECT_ALIGN as u64))
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BackingError> {
        self.check(offset, buf.len() as u64)?;
        if self.needs_bounce(buf, offset) {
            let (start, mut tmp) = self.bounce(offset, buf.len());
            self.file.read_exact_at(tmp.as_mut(), start)?;
            let skip = (offset - start) as usize;
            buf.copy_from_slice(&tmp.as_ref()[skip..skip + buf.len()]);
            return Ok(());
        }
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BackingError> {
        self.check(offset, buf.len() as u64)?;
        if self.needs_bounce(buf, offset) {
            // Read-modify-write of the aligned span around the request.
            let (start, mut tmp) = self.bounce(offset, buf.len());
            self.file.read_exact_at(tmp.as_mut(), start)?;
            let skip = (offset - start) as usize;
            tmp.as_mut()[skip..skip + buf.len()].copy_from_slice(buf);
            self.file.write_all_at(tmp.as_ref(), start)?;
            return Ok(());
        }
        self.file.write_all_at(buf, offset)?;
        Ok(())
    }

    fn bounce(&self, offset: u64, len: usize) -> (u64, AlignedBuf) {
        let a = DIRECT_ALIGN as u64;
        let start = offset / a * a;
        let end = (offset + len as u64).div_ceil(a) * a;
        (start, AlignedBuf::zeroed((end - start) as usize))
    }

    /// Deallocates a range so that it reads back as zeros (hole punch / discard), falling
    /// back to writing zeros where the store cannot deallocate.
    pub fn unmap(&self, offset: u64, len: u64) -> Result<(), BackingError> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if punch_hole(&self.file, offset, len).is_ok() {
            return Ok(());
        }
        self.write_zeros(offset, len)
    }

    pub fn write_zeros(&self, offset: u64, len: u64) -> Result<(), BackingError> {
        self.check(offset, len)?;
        let chunk = AlignedBuf::zeroed(1 << 20);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            self.write_at(&chunk.as_ref()[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<(), BackingError> {
        self.file.sync_data()?;
        Ok(())
    }
}

fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate only reads its integer arguments; the fd is owned by `file`.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            l,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_and_bad_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lun");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let b = Backing::open(&p, false).unwrap();
        assert_eq!(b.blocks(), 8);
        assert!(matches!(
            b.write_at(&[1u8; 512], 4096),
            Err(BackingError::OutOfRange { .. })
        ));
        assert!(matches!(
            b.write_at(&[1u8; 512], u64::MAX - 10),
            Err(BackingError::OutOfRange { .. })
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        std::fs::write(&p, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            Backing::open(&p, false),
            Err(BackingError::BadSize { .. })
        ));
    }

    #[test]
    fn unmap_reads_back_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lun");
        std::fs::write(&p, vec![0xabu8; 1 << 20]).unwrap();
        let b = Backing::open(&p, false).unwrap();
        b.unmap(4096, 8192).unwrap();
        let mut buf = vec![1u8; 16384];
        b.read_at(&mut buf, 0).unwrap();
        assert!(buf[..4096].iter().all(|&x| x == 0xab));
        assert!(buf[4096..12288].iter().all(|&x| x == 0));
        assert!(buf[12288..].iter().all(|&x| x == 0xab));
    }
}

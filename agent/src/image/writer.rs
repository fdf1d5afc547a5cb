//! The device writer: aligned `O_DIRECT` writes from a thread, with two buffers in
//! flight (one filling, one being written), `fsync` on flush.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use ferrite_image::BlockSink;
use ferrite_iscsi::aligned::AlignedBuf;
use nix::fcntl::{fallocate, FallocateFlags};

use crate::disk::blkdev;

/// Alignment of buffers, offsets and lengths for `O_DIRECT` (fits 512 and 4Kn disks).
pub const ALIGN: u64 = 4096;
/// Size of each of the two staging buffers.
pub const STAGE_BYTES: usize = 4 << 20;

/// How [`Target::zero_range_by`] made a range read back zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroedBy {
    /// The range was empty.
    Nothing,
    /// `fallocate(PUNCH_HOLE)` on the block device: a device write-zeroes allowed to unmap.
    DeviceUnmap,
    /// `BLKZEROOUT`: a device write-zeroes keeping the blocks, or the kernel's zero writes.
    BlkZeroOut,
    /// A hole punched in a regular file.
    FileHole,
    /// Zeroes written by us.
    Written,
}

impl ZeroedBy {
    /// A short description for step results.
    pub fn describe(self) -> &'static str {
        match self {
            ZeroedBy::Nothing => "nothing to zero",
            ZeroedBy::DeviceUnmap => "device write-zeroes with unmap (fallocate PUNCH_HOLE)",
            ZeroedBy::BlkZeroOut => "device write-zeroes (BLKZEROOUT)",
            ZeroedBy::FileHole => "hole punched in the file",
            ZeroedBy::Written => "zeroes written",
        }
    }
}

/// The opened target: a regular file or a block device.
pub struct Target {
    pub path: PathBuf,
    /// Opened with `O_DIRECT` when the filesystem allows it.
    direct: File,
    /// The same file without `O_DIRECT`, for unaligned heads and tails.
    buffered: File,
    pub size: u64,
    pub is_block_device: bool,
    pub o_direct: bool,
}

impl Target {
    /// Open `path` for writing (it must exist: a disk, or a file that stands for one).
    pub fn open(path: &Path) -> io::Result<Target> {
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let (direct, o_direct) = match direct {
            Ok(f) => (f, true),
            // tmpfs and some FUSE filesystems refuse O_DIRECT; write through the cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                (OpenOptions::new().read(true).write(true).open(path)?, false)
            }
            Err(e) => return Err(e),
        };
        let buffered = OpenOptions::new().read(true).write(true).open(path)?;
        let is_block_device = blkdev::is_block_device(&buffered)?;
        let size = (&buffered).seek(SeekFrom::End(0))?;
        Ok(Target {
            path: path.to_owned(),
            direct,
            buffered,
            size,
            is_block_device,
            o_direct,
        })
    }

    /// The file without `O_DIRECT` (for reads of small regions, ioctls).
    pub fn file(&self) -> &File {
        &self.buffered
    }

    /// Make the range read back zeroes: punch a hole, `BLKZEROOUT`, or write zeroes.
    pub fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero_range_by(offset, len).map(|_| ())
    }

    /// As [`Target::zero_range`], saying how it was done. On a block device the first try
    /// is `fallocate(PUNCH_HOLE)`, which the kernel turns into a device write-zeroes that
    /// may deallocate (thin and virtual disks give the space back; it never falls back to
    /// writing), then `BLKZEROOUT` (write-zeroes that keeps the blocks allocated, or the
    /// kernel's own zero writes), then plain writes.
    pub fn zero_range_by(&self, offset: u64, len: u64) -> io::Result<ZeroedBy> {
        if len == 0 {
            return Ok(ZeroedBy::Nothing);
        }
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if self.is_block_device {
            if offset.is_multiple_of(512) && len.is_multiple_of(512) {
                if fallocate(self.buffered.as_fd(), punch, offset as i64, len as i64).is_ok() {
                    return Ok(ZeroedBy::DeviceUnmap);
                }
                if blkdev::zero_out(&self.buffered, offset, len).is_ok() {
                    return Ok(ZeroedBy::BlkZeroOut);
                }
            }
        } else if fallocate(self.buffered.as_fd(), punch, offset as i64, len as i64).is_ok() {
            return Ok(ZeroedBy::FileHole);
        }
        let zeros = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.buffered.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(ZeroedBy::Written)
    }

    /// Write `data`, which belongs at `offset`; `data` starts `offset % ALIGN` bytes into
    /// a 4 KiB-aligned buffer, so the aligned middle goes out with O_DIRECT as is.
    fn write_split(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let mid_start = offset.next_multiple_of(ALIGN).min(end);
        let mid_end = (end / ALIGN * ALIGN).max(mid_start);
        let idx = |o: u64| (o - offset) as usize;
        if mid_start > offset {
            self.buffered
                .write_all_at(&data[..idx(mid_start)], offset)?;
        }
        if mid_end > mid_start {
            self.direct
                .write_all_at(&data[idx(mid_start)..idx(mid_end)], mid_start)?;
        }
        if end > mid_end {
            self.buffered.write_all_at(&data[idx(mid_end)..], mid_end)?;
        }
        Ok(())
    }
}

enum Job {
    Write {
        offset: u64,
        buf: AlignedBuf,
        len: usize,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    Sync(mpsc::Sender<io::Result<()>>),
}

/// `BlockSink` over a [`Target`]: contiguous writes are gathered into 4 MiB aligned
/// buffers and written by a thread while the next buffer fills.
pub struct DirectWriter {
    size: u64,
    reads_zero: bool,
    cur: Option<AlignedBuf>,
    /// Target offset of the first byte gathered in `cur` (at index `cur_off % ALIGN`).
    cur_off: u64,
    cur_len: usize,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<AlignedBuf>,
    errors: Receiver<io::Error>,
    thread: Option<JoinHandle<()>>,
    pub bytes_written: u64,
}

impl DirectWriter {
    /// Start the writer thread. `reads_zero` says the caller zeroed the target (or it is a
    /// fresh sparse file), so the sparse layer may skip zero runs.
    pub fn new(target: Target, reads_zero: bool) -> DirectWriter {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(1);
        let (free_tx, free_rx) = mpsc::channel();
        let (err_tx, err_rx) = mpsc::channel();
        for _ in 0..2 {
            let _ = free_tx.send(AlignedBuf::zeroed(STAGE_BYTES + ALIGN as usize));
        }
        let size = target.size;
        let thread = std::thread::Builder::new()
            .name("image-writer".into())
            .spawn(move || writer_thread(target, job_rx, free_tx, err_tx))
            .ok();
        DirectWriter {
            size,
            reads_zero,
            cur: None,
            cur_off: 0,
            cur_len: 0,
            jobs: Some(job_tx),
            free: free_rx,
            errors: err_rx,
            thread,
            bytes_written: 0,
        }
    }

    fn dead() -> io::Error {
        io::Error::other("the image writer thread stopped")
    }

    fn check(&self) -> io::Result<()> {
        match self.errors.try_recv() {
            Ok(e) => Err(e),
            Err(_) if self.thread.is_none() => Err(Self::dead()),
            Err(_) => Ok(()),
        }
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.jobs
            .as_ref()
            .ok_or_else(Self::dead)?
            .send(job)
            .map_err(|_| self.errors.try_recv().unwrap_or_else(|_| Self::dead()))
    }

    fn submit(&mut self) -> io::Result<()> {
        if let Some(buf) = self.cur.take() {
            if self.cur_len > 0 {
                let len = self.cur_len;
                self.cur_len = 0;
                return self.send(Job::Write {
                    offset: self.cur_off,
                    buf,
                    len,
                });
            }
            self.cur = Some(buf);
        }
        Ok(())
    }

    fn take_buffer(&mut self) -> io::Result<AlignedBuf> {
        self.free
            .recv()
            .map_err(|_| self.errors.try_recv().unwrap_or_else(|_| Self::dead()))
    }

    /// Wait until every job sent so far is done and synced.
    fn barrier(&mut self) -> io::Result<()> {
        self.submit()?;
        let (tx, rx) = mpsc::channel();
        self.send(Job::Sync(tx))?;
        rx.recv().map_err(|_| Self::dead())??;
        self.check()
    }
}

impl BlockSink for DirectWriter {
    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&mut self, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
        self.check()?;
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write of {} bytes at {offset} is past the end of the {}-byte target",
                    data.len(),
                    self.size
                ),
            ));
        }
        self.bytes_written += data.len() as u64;
        while !data.is_empty() {
            let contiguous = self.cur.is_some() && offset == self.cur_off + self.cur_len as u64;
            if !contiguous {
                self.submit()?;
            }
            if self.cur.is_none() {
                self.cur = Some(self.take_buffer()?);
                self.cur_off = offset;
                self.cur_len = 0;
            }
            let start = (self.cur_off % ALIGN) as usize + self.cur_len;
            let room = STAGE_BYTES + ALIGN as usize - start;
            let n = room.min(data.len());
            if let Some(buf) = self.cur.as_mut() {
                buf.as_mut()[start..start + n].copy_from_slice(&data[..n]);
            }
            self.cur_len += n;
            offset += n as u64;
            data = &data[n..];
            if n == room {
                self.submit()?;
            }
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check()?;
        self.submit()?;
        self.send(Job::Zero { offset, len })
    }

    fn reads_zero(&self) -> bool {
        self.reads_zero
    }

    fn flush(&mut self) -> io::Result<()> {
        self.barrier()
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_thread(
    target: Target,
    jobs: Receiver<Job>,
    free: mpsc::Sender<AlignedBuf>,
    errors: mpsc::Sender<io::Error>,
) {
    let mut failed = false;
    for job in jobs {
        match job {
            Job::Write { offset, buf, len } => {
                if !failed {
                    let start = (offset % ALIGN) as usize;
                    if let Err(e) = target.write_split(offset, &buf.as_ref()[start..start + len]) {
                        failed = true;
                        let _ = errors.send(with_path(e, &target.path, "writing"));
                    }
                }
                let _ = free.send(buf);
            }
            Job::Zero { offset, len } => {
                if !failed {
                    if let Err(e) = target.zero_range(offset, len) {
                        failed = true;
                        let _ = errors.send(with_path(e, &target.path, "zeroing"));
                    }
                }
            }
            Job::Sync(done) => {
                let r = if failed {
                    Err(io::Error::other("an earlier write failed"))
                } else {
                    target
                        .direct
                        .sync_all()
                        .map_err(|e| with_path(e, &target.path, "syncing"))
                };
                let _ = done.send(r);
            }
        }
    }
}

fn with_path(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

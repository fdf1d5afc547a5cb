//! `IscsiDisk`: a remote LUN reached with our iSCSI initiator, as a [`BlockSink`] for the
//! image pipeline and a [`DiskIo`] for the partition-table and config-drive code, so a
//! deploy over iSCSI runs the very pipeline that writes local disks.
//!
//! Callers are blocking threads (the pipeline's); the initiator lives in a tokio task that
//! takes jobs in order. Contiguous writes gather into 4 MiB buffers, sent as tagged WRITEs
//! with up to [`IN_FLIGHT`] outstanding while the next buffer fills. Reads, syncs,
//! unaligned writes and writes overlapping one in flight wait for the outstanding writes
//! first (simple task attributes let a target reorder them); the first failure fails the
//! write path with its message.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrite_image::disk::io::DiskIo;
use ferrite_image::BlockSink;
use ferrite_iscsi::{Initiator, InitiatorError, LoginOptions};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

/// Bytes gathered before a WRITE goes out, and the largest WRITE sent.
const STAGE_BYTES: usize = 4 << 20;
/// WRITEs outstanding at once. Memory: these, the job queue (2) and the buffer being
/// filled, each up to [`STAGE_BYTES`]: 28 MiB at most.
pub const IN_FLIGHT: usize = 4;
/// Overrides [`IN_FLIGHT`] (1–16), for measuring (e.g. conductor/examples/deploy_timing
/// with 1, the one-at-a-time behaviour, against the default).
pub const IN_FLIGHT_ENV: &str = "FERRITE_ISCSI_WRITES_IN_FLIGHT";

/// The WRITEs to keep outstanding: [`IN_FLIGHT`] unless [`IN_FLIGHT_ENV`] says otherwise.
fn in_flight_limit() -> usize {
    std::env::var(IN_FLIGHT_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(IN_FLIGHT, |n| n.clamp(1, 16))
}
/// Blocks per UNMAP descriptor (our target's and most targets' limit is larger).
const UNMAP_CHUNK_BLOCKS: u64 = 1 << 20;

enum Job {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    Read {
        offset: u64,
        len: usize,
        reply: oneshot::Sender<io::Result<Vec<u8>>>,
    },
    Sync(oneshot::Sender<io::Result<()>>),
    Logout(oneshot::Sender<io::Result<()>>),
}

struct Stage {
    buf: Vec<u8>,
    offset: u64,
}

/// A logged-in LUN. Use it from blocking threads only (it blocks on the network task).
pub struct IscsiDisk {
    jobs: mpsc::Sender<Job>,
    stage: Mutex<Stage>,
    /// The first error of the network task; later jobs fail with it.
    failed: Arc<Mutex<Option<String>>>,
    size: u64,
    block_size: u32,
    reads_zero: bool,
    pub bytes_written: u64,
    /// The most WRITEs that were outstanding together.
    peak: Arc<AtomicUsize>,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// A command on the LUN failed. The pipeline and the disk code speak `io::Result`, so it
/// travels as the inner error of an `io::Error` (whose source is then this one's source):
/// [`crate::error_chain`] shows `iSCSI I/O failed: <the initiator's error>: <its causes>`.
#[derive(Debug, thiserror::Error)]
#[error("iSCSI I/O failed")]
pub struct LunIoError(#[source] pub InitiatorError);

fn io_err(e: InitiatorError) -> io::Error {
    io::Error::other(LunIoError(e))
}

/// The error a job gets once the network task has stopped.
fn ended(failed: &Mutex<Option<String>>) -> io::Error {
    let f = failed.lock().unwrap_or_else(|p| p.into_inner());
    other(
        f.clone()
            .unwrap_or_else(|| "the iSCSI session ended".into()),
    )
}

/// Send the gathered buffer as one write and start a new one at `next`.
fn send_stage(
    jobs: &mpsc::Sender<Job>,
    failed: &Mutex<Option<String>>,
    stage: &mut Stage,
    next: u64,
) -> io::Result<()> {
    let s = std::mem::replace(
        stage,
        Stage {
            buf: Vec::with_capacity(STAGE_BYTES),
            offset: next,
        },
    );
    jobs.blocking_send(Job::Write {
        offset: s.offset,
        data: s.buf,
    })
    .map_err(|_| ended(failed))
}

impl IscsiDisk {
    /// Log in to `addr` and take LUN 0. With `zero_first`, and when the LUN says unmapped
    /// blocks read back as zeros (LBPRZ), the whole LUN is unmapped first so that runs of
    /// zeroes in the image need not be sent (the remote twin of a fresh sparse file).
    pub async fn connect(
        addr: SocketAddr,
        opts: &LoginOptions,
        zero_first: bool,
    ) -> Result<IscsiDisk, InitiatorError> {
        let mut init = Initiator::connect(addr, opts).await?;
        let block_size = init.block_size();
        let blocks = init.blocks();
        let reads_zero = zero_first && init.unmap_zeroes();
        if reads_zero {
            let mut lba = 0;
            while lba < blocks {
                let n = (blocks - lba).min(UNMAP_CHUNK_BLOCKS);
                init.unmap(lba, n as u32).await?;
                lba += n;
            }
        }
        let (tx, rx) = mpsc::channel(2);
        let failed = Arc::new(Mutex::new(None));
        let peak = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(init, rx, failed.clone(), peak.clone()));
        Ok(IscsiDisk {
            jobs: tx,
            stage: Mutex::new(Stage {
                buf: Vec::new(),
                offset: 0,
            }),
            failed,
            size: blocks * block_size as u64,
            block_size,
            reads_zero,
            bytes_written: 0,
            peak,
        })
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The most WRITEs that have been outstanding together so far.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn error(&self) -> io::Error {
        ended(&self.failed)
    }

    fn check(&self) -> io::Result<()> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(other(e.clone())),
            None => Ok(()),
        }
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.jobs.blocking_send(job).map_err(|_| self.error())
    }

    /// Send the gathered buffer, if any.
    fn submit(&self, stage: &mut Stage) -> io::Result<()> {
        if stage.buf.is_empty() {
            return Ok(());
        }
        let next = stage.offset + stage.buf.len() as u64;
        send_stage(&self.jobs, &self.failed, stage, next)
    }

    fn lock_stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bounds(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at {offset} are past the end of the {}-byte LUN",
                    self.size
                ),
            )),
        }
    }

    fn request<T>(&self, job: impl FnOnce(oneshot::Sender<io::Result<T>>) -> Job) -> io::Result<T> {
        {
            let mut stage = self.lock_stage();
            self.submit(&mut stage)?;
        }
        let (tx, rx) = oneshot::channel();
        self.send(job(tx))?;
        rx.blocking_recv().map_err(|_| self.error())?
    }

    /// Flush, log out and close the session.
    pub fn logout(self) -> io::Result<()> {
        self.request(Job::Logout)
    }
}

impl BlockSink for IscsiDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&mut self, offset: u64, mut data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.bounds(offset, data.len() as u64)?;
        self.bytes_written += data.len() as u64;
        let mut offset = offset;
        let (jobs, failed) = (&self.jobs, &self.failed);
        let stage = self.stage.get_mut().unwrap_or_else(|p| p.into_inner());
        while !data.is_empty() {
            let contiguous = offset == stage.offset + stage.buf.len() as u64;
            if !stage.buf.is_empty() && !contiguous {
                send_stage(jobs, failed, stage, offset)?;
            }
            if stage.buf.is_empty() {
                stage.offset = offset;
            }
            let n = (STAGE_BYTES - stage.buf.len()).min(data.len());
            stage.buf.extend_from_slice(&data[..n]);
            offset += n as u64;
            data = &data[n..];
            if stage.buf.len() == STAGE_BYTES {
                send_stage(jobs, failed, stage, offset)?;
            }
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check()?;
        self.bounds(offset, len)?;
        let mut stage = self.lock_stage();
        self.submit(&mut stage)?;
        self.send(Job::Zero { offset, len })
    }

    fn reads_zero(&self) -> bool {
        self.reads_zero
    }

    fn flush(&mut self) -> io::Result<()> {
        self.request(Job::Sync)
    }
}

impl FileExt for IscsiDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(self.size.saturating_sub(offset) as usize);
        if len == 0 {
            return Ok(0);
        }
        let data = self.request(|reply| Job::Read { offset, len, reply })?;
        buf[..len].copy_from_slice(&data);
        Ok(len)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.check()?;
        self.bounds(offset, buf.len() as u64)?;
        let mut stage = self.lock_stage();
        self.submit(&mut stage)?;
        self.send(Job::Write {
            offset,
            data: buf.to_vec(),
        })?;
        Ok(buf.len())
    }
}

impl DiskIo for IscsiDisk {
    fn sync(&self) -> io::Result<()> {
        self.request(Job::Sync)
    }
}

/// The network task: runs jobs in order, keeping up to [`IN_FLIGHT`] writes outstanding;
/// after the first failure it only reports it.
async fn run(
    init: Initiator,
    mut jobs: mpsc::Receiver<Job>,
    failed: Arc<Mutex<Option<String>>>,
    peak: Arc<AtomicUsize>,
) {
    let mut net = Net {
        init,
        failed,
        peak,
        limit: in_flight_limit(),
        ranges: HashMap::new(),
        zeros: Bytes::new(),
    };
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => {
                net.drain().await;
                return;
            }
            Err(TryRecvError::Empty) if net.init.in_flight() > 0 => {
                // Nothing queued: collect a finished write instead of idling.
                net.reap_one().await;
                continue;
            }
            Err(TryRecvError::Empty) => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        match job {
            Job::Write { offset, data } => {
                if net.broken().is_none() {
                    if let Err(e) = net.write(offset, Bytes::from(data)).await {
                        net.fail(&e);
                    }
                }
            }
            Job::Zero { offset, len } => {
                if net.broken().is_none() {
                    if let Err(e) = net.zero(offset, len).await {
                        net.fail(&e);
                    }
                }
            }
            Job::Read { offset, len, reply } => {
                net.drain().await;
                let r = match net.broken() {
                    Some(e) => Err(e),
                    None => read_bytes(&mut net.init, offset, len).await,
                };
                let _ = reply.send(r);
            }
            Job::Sync(reply) => {
                net.drain().await;
                let r = match net.broken() {
                    Some(e) => Err(e),
                    None => net.init.sync().await.map_err(io_err),
                };
                if let Err(e) = &r {
                    net.fail(e);
                }
                let _ = reply.send(r);
            }
            Job::Logout(reply) => {
                net.drain().await;
                let r = match net.broken() {
                    Some(e) => Err(e),
                    None => match net.init.sync().await {
                        Ok(()) => net.init.logout().await.map_err(io_err),
                        Err(e) => Err(io_err(e)),
                    },
                };
                let _ = reply.send(r);
                return;
            }
        }
    }
}

/// The initiator with the byte ranges of the writes in flight.
struct Net {
    init: Initiator,
    failed: Arc<Mutex<Option<String>>>,
    peak: Arc<AtomicUsize>,
    /// WRITEs to keep outstanding.
    limit: usize,
    /// Tag → byte range of each outstanding WRITE.
    ranges: HashMap<u64, (u64, u64)>,
    /// Shared zeroes for [`Job::Zero`], allocated on first use.
    zeros: Bytes,
}

impl Net {
    fn fail(&self, e: &io::Error) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert_with(|| crate::error_chain(e));
    }

    fn broken(&self) -> Option<io::Error> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(other)
    }

    /// Collects one finished write (the first failure is kept).
    async fn reap_one(&mut self) {
        if let Some(c) = self.init.next_completion().await {
            self.ranges.remove(&c.tag);
            if let Err(e) = c.result {
                self.fail(&io_err(e));
            }
        }
    }

    /// Waits for every outstanding write.
    async fn drain(&mut self) {
        while self.init.in_flight() > 0 {
            self.reap_one().await;
        }
    }

    /// Sends whole blocks at a block-aligned `offset` as tagged WRITEs of at most
    /// [`STAGE_BYTES`], waiting first for room and for overlapping writes in flight.
    async fn write_aligned(&mut self, offset: u64, data: Bytes) -> io::Result<()> {
        let bs = self.init.block_size() as usize;
        let chunk = (STAGE_BYTES / bs * bs).max(bs);
        let mut at = 0;
        while at < data.len() {
            let n = chunk.min(data.len() - at);
            let (start, end) = (offset + at as u64, offset + (at + n) as u64);
            if self.ranges.values().any(|&(s, e)| s < end && start < e) {
                self.drain().await;
            }
            while self.init.in_flight() >= self.limit {
                self.reap_one().await;
            }
            if let Some(e) = self.broken() {
                return Err(e);
            }
            let tag = self
                .init
                .submit_write(start / bs as u64, data.slice(at..at + n))
                .await
                .map_err(io_err)?;
            self.ranges.insert(tag, (start, end));
            self.peak
                .fetch_max(self.init.in_flight(), Ordering::Relaxed);
            at += n;
        }
        Ok(())
    }

    /// Writes bytes at any offset: aligned runs go out tagged; partial blocks at either
    /// end are read, merged and written back whole once the writes in flight are done.
    async fn write(&mut self, offset: u64, data: Bytes) -> io::Result<()> {
        let bs = self.init.block_size() as u64;
        let end = offset + data.len() as u64;
        if offset.is_multiple_of(bs) && end.is_multiple_of(bs) {
            return self.write_aligned(offset, data).await;
        }
        self.drain().await;
        if let Some(e) = self.broken() {
            return Err(e);
        }
        write_bytes(&mut self.init, offset, &data).await
    }

    async fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.zeros.is_empty() {
            self.zeros = Bytes::from(vec![0u8; STAGE_BYTES]);
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(STAGE_BYTES as u64) as usize;
            let zeros = self.zeros.slice(..n);
            self.write(offset + done, zeros).await?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Reads whole blocks covering `offset..offset+len` and returns those bytes.
async fn read_bytes(init: &mut Initiator, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let bs = init.block_size() as u64;
    let first = offset / bs;
    let end = (offset + len as u64).div_ceil(bs);
    let max_blocks = (STAGE_BYTES as u64 / bs).max(1);
    let mut out = Vec::with_capacity(((end - first) * bs) as usize);
    let mut lba = first;
    while lba < end {
        let n = (end - lba).min(max_blocks);
        out.extend_from_slice(&init.read(lba, n as u32).await.map_err(io_err)?);
        lba += n;
    }
    let skip = (offset - first * bs) as usize;
    Ok(out[skip..skip + len].to_vec())
}

/// Read-modify-write of a range with partial blocks, one command at a time (nothing else
/// is in flight when this runs).
async fn write_bytes(init: &mut Initiator, offset: u64, data: &[u8]) -> io::Result<()> {
    let bs = init.block_size() as u64;
    let end = offset + data.len() as u64;
    let first = offset / bs;
    let last = end.div_ceil(bs);
    let mut buf = vec![0u8; ((last - first) * bs) as usize];
    let head = read_bytes(init, first * bs, bs as usize).await?;
    buf[..bs as usize].copy_from_slice(&head);
    if last - 1 > first {
        let tail = read_bytes(init, (last - 1) * bs, bs as usize).await?;
        let at = buf.len() - bs as usize;
        buf[at..].copy_from_slice(&tail);
    }
    let skip = (offset - first * bs) as usize;
    buf[skip..skip + data.len()].copy_from_slice(data);
    let chunk = (STAGE_BYTES as u64 / bs * bs).max(bs) as usize;
    let mut lba = first;
    for part in buf.chunks(chunk) {
        init.write(lba, part).await.map_err(io_err)?;
        lba += part.len() as u64 / bs;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_errors_travel_typed_inside_io_errors() {
        let e = io_err(InitiatorError::Timeout(std::time::Duration::from_secs(3)));
        assert!(e.get_ref().is_some_and(|i| i.is::<LunIoError>()), "{e:?}");
        assert_eq!(
            crate::error_chain(&e),
            "iSCSI I/O failed: the iSCSI target sent nothing for 3s while a response was due; \
             it may be hung or the network is down"
        );
        // Wrapped once more, as the pipeline does: nothing repeats.
        let wrapped = ferrite_image::ImageError::Write(e);
        assert_eq!(
            crate::error_chain(&wrapped),
            "writing the disk: iSCSI I/O failed: the iSCSI target sent nothing for 3s while a \
             response was due; it may be hung or the network is down"
        );
    }
}

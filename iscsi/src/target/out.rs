//! A connection's output side: a writer thread that gathers queued segments into `writev`
//! calls, so reading the next blocks from the store overlaps sending the previous ones, and
//! Data-In payloads go to the socket straight from pooled read buffers (no copy).

use std::io::{IoSlice, Write};
use std::net::TcpStream;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};

use crate::aligned::AlignedBuf;
use crate::io::IoError;

/// Segments queued ahead of the socket; bounds memory per connection.
const QUEUE: usize = 64;
/// Most segments and bytes gathered into one writev.
const BATCH_SEGMENTS: usize = 64;
const BATCH_BYTES: usize = 1 << 20;

pub struct Out {
    tx: Option<SyncSender<Bytes>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Out {
    pub fn new(sock: TcpStream) -> std::io::Result<Out> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("iscsi-conn-tx".into())
            .spawn(move || writer(sock, rx))?;
        Ok(Out {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn send(&self, b: Bytes) -> Result<(), IoError> {
        if b.is_empty() {
            return Ok(());
        }
        match &self.tx {
            Some(tx) => tx.send(b).map_err(|_| IoError::Closed),
            None => Err(IoError::Closed),
        }
    }

    /// Waits until everything queued is on the socket (or the socket failed).
    pub fn finish(&mut self) -> Result<(), IoError> {
        self.tx.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r.map_err(IoError::Io),
            Some(Err(_)) => Err(IoError::Closed),
            None => Ok(()),
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn writer(mut sock: TcpStream, rx: Receiver<Bytes>) -> std::io::Result<()> {
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH_SEGMENTS);
    while let Ok(first) = rx.recv() {
        let mut bytes = first.len();
        batch.push(first);
        while batch.len() < BATCH_SEGMENTS && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(b) => {
                    bytes += b.len();
                    batch.push(b);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        write_all(&mut sock, &mut batch)?;
        batch.clear();
    }
    Ok(())
}

fn write_all(sock: &mut TcpStream, batch: &mut [Bytes]) -> std::io::Result<()> {
    let mut at = 0;
    while at < batch.len() {
        let slices: Vec<IoSlice<'_>> = batch[at..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = match sock.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let b = &mut batch[at];
            let k = n.min(b.len());
            b.advance(k);
            n -= k;
            if b.is_empty() {
                at += 1;
            }
        }
        while at < batch.len() && batch[at].is_empty() {
            at += 1;
        }
    }
    Ok(())
}

/// Buffers kept for reuse per connection (each at most READ_CHUNK).
const POOL_BUFFERS: usize = 24;

/// Aligned read buffers that return to the pool when the last `Bytes` slice of them is sent.
#[derive(Default)]
pub struct Pool {
    free: Mutex<Vec<AlignedBuf>>,
}

struct Pooled {
    buf: Option<AlignedBuf>,
    len: usize,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b.as_ref()[..self.len],
            None => &[],
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < POOL_BUFFERS {
                free.push(b);
            }
        }
    }
}

impl Pool {
    /// A buffer of at least `need` bytes: a pooled one when one is large enough, else a
    /// new one rounded up to 64 KiB (allocating and faulting in fresh pages per command
    /// costs more than the read itself).
    pub fn get(&self, need: usize) -> AlignedBuf {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = free.iter().rposition(|b| b.len() >= need) {
            return free.swap_remove(i);
        }
        drop(free);
        AlignedBuf::zeroed(need.div_ceil(1 << 16) << 16)
    }

    /// Freezes the first `len` bytes of `buf` into `Bytes` that give `buf` back when dropped.
    pub fn freeze(self: &Arc<Self>, buf: AlignedBuf, len: usize) -> Bytes {
        Bytes::from_owner(Pooled {
            buf: Some(buf),
            len,
            pool: self.clone(),
        })
    }
}

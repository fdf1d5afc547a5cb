//! A digest computed on its own thread, so that hashing (the costliest stage of a raw
//! image write) overlaps with decompression, conversion and copying on the pipeline thread.
//! Bytes are copied into one of a few pooled 1 MiB buffers and handed over; memory stays
//! bounded at `POOL × BUF_BYTES` because the caller waits for a free buffer.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::checksum::Hasher;

/// Size of each hand-over buffer.
pub const BUF_BYTES: usize = 1 << 20;
/// Buffers in the pool: one filling, the others queued or being hashed.
const POOL: usize = 3;

/// Feeds a [`Hasher`] running on the `image-hash` thread; hashes inline if the thread
/// cannot be started.
pub struct OffloadHasher {
    engine: Engine,
}

enum Engine {
    Inline(Hasher),
    Thread {
        pending: Vec<u8>,
        /// Buffers in circulation (pending, queued, being hashed, returned): at most POOL.
        allocated: usize,
        jobs: SyncSender<Vec<u8>>,
        free: Receiver<Vec<u8>>,
        thread: JoinHandle<Hasher>,
    },
    /// The thread went away (only a panic can do that): the digest is lost.
    Lost,
}

impl OffloadHasher {
    pub fn new(hasher: Hasher) -> OffloadHasher {
        let (job_tx, job_rx) = mpsc::sync_channel::<Vec<u8>>(POOL - 1);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let fallback = hasher.clone();
        let mut h = hasher;
        let spawned = std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || {
                for mut buf in job_rx {
                    h.update(&buf);
                    buf.clear();
                    // The reader may be gone already; the buffer is just dropped then.
                    let _ = free_tx.send(buf);
                }
                h
            });
        let engine = match spawned {
            Ok(thread) => Engine::Thread {
                pending: Vec::with_capacity(BUF_BYTES),
                allocated: 1,
                jobs: job_tx,
                free: free_rx,
                thread,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the hashing thread; hashing inline");
                Engine::Inline(fallback)
            }
        };
        OffloadHasher { engine }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let Engine::Thread {
            pending,
            allocated,
            jobs,
            free,
            ..
        } = &mut self.engine
        else {
            if let Engine::Inline(h) = &mut self.engine {
                h.update(data);
            }
            return;
        };
        while !data.is_empty() {
            let n = (BUF_BYTES - pending.len()).min(data.len());
            pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if pending.len() < BUF_BYTES {
                continue;
            }
            // A free buffer if one came back, a new one while the pool is not full,
            // else wait for the hasher to finish one (this bounds the memory).
            let next = match free.try_recv() {
                Ok(b) => Some(b),
                Err(_) if *allocated < POOL => {
                    *allocated += 1;
                    Some(Vec::with_capacity(BUF_BYTES))
                }
                Err(_) => free.recv().ok(),
            };
            let sent = next.is_some_and(|next| jobs.send(std::mem::replace(pending, next)).is_ok());
            if !sent {
                tracing::error!("the hashing thread stopped; the image will fail verification");
                self.engine = Engine::Lost;
                return;
            }
        }
    }

    /// Wait for the thread and return the digest in hex, or None if it was lost.
    pub fn finish_hex(self) -> Option<String> {
        match self.engine {
            Engine::Inline(h) => Some(h.finish_hex()),
            Engine::Thread {
                pending,
                jobs,
                thread,
                ..
            } => {
                if !pending.is_empty() && jobs.send(pending).is_err() {
                    return None;
                }
                drop(jobs);
                thread.join().ok().map(Hasher::finish_hex)
            }
            Engine::Lost => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Algo;

    #[test]
    fn same_digest_as_inline_for_any_split() {
        let data: Vec<u8> = (0..3 * BUF_BYTES + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for algo in [Algo::Md5, Algo::Sha256, Algo::Sha512] {
            let mut inline = Hasher::new(algo);
            inline.update(&data);
            let want = inline.finish_hex();
            for piece in [1usize, 4095, 65536, BUF_BYTES, BUF_BYTES + 1, data.len()] {
                let mut h = OffloadHasher::new(Hasher::new(algo));
                for c in data.chunks(piece) {
                    h.update(c);
                }
                assert_eq!(
                    h.finish_hex().as_deref(),
                    Some(want.as_str()),
                    "{algo:?} {piece}"
                );
            }
        }
    }

    #[test]
    fn empty_input_hashes_to_the_empty_digest() {
        let h = OffloadHasher::new(Hasher::new(Algo::Sha256));
        assert_eq!(
            h.finish_hex().as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}

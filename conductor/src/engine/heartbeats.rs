//! Buffered `agent_last_heartbeat` writes: a heartbeat that changes nothing else only
//! notes its time here; the first note schedules a batch write one second later (times
//! are also written before every timeout check and at shutdown), so a steady stream of
//! heartbeats costs one indexed read each instead of a write that contends for SQLite's
//! single writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Conductor, EResult};

/// How long a heartbeat's time stays unwritten at most (while the conductor runs).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Times of heartbeats not yet written, newest per node.
pub struct HeartbeatBuffer {
    pending: Mutex<HashMap<String, String>>,
    /// A write is scheduled and will take what is pending.
    scheduled: AtomicBool,
    /// Serialises flushes so an older batch never lands after a newer one.
    flush_lock: tokio::sync::Mutex<()>,
}

impl Default for HeartbeatBuffer {
    fn default() -> Self {
        HeartbeatBuffer {
            pending: Mutex::new(HashMap::new()),
            scheduled: AtomicBool::new(false),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl HeartbeatBuffer {
    /// Notes a heartbeat of `uuid` at `at`; true when no write is scheduled yet (the caller
    /// schedules one).
    pub fn note(&self, uuid: &str, at: String) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match p.get_mut(uuid) {
            Some(t) => *t = at,
            None => {
                p.insert(uuid.to_string(), at);
            }
        }
        drop(p);
        // After the insert: a write that clears the flag later still takes this entry.
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Drops a pending time (its node's agent row was just written or cleared).
    pub fn forget(&self, uuid: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uuid);
    }

    fn take(&self) -> Vec<(String, String)> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect()
    }

    /// Puts back times whose write failed, unless a newer heartbeat arrived meanwhile.
    fn restore(&self, beats: Vec<(String, String)>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (uuid, at) in beats {
            p.entry(uuid).or_insert(at);
        }
    }

    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Conductor {
    /// Writes the buffered heartbeat times now.
    pub async fn flush_heartbeats(&self) -> EResult<()> {
        let b = &self.heartbeats;
        let _one = b.flush_lock.lock().await;
        let beats = b.take();
        if beats.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.db.save_last_heartbeats(&beats).await {
            b.restore(beats);
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes what is pending [`FLUSH_INTERVAL`] from now, in the background.
    pub(super) fn schedule_flush(self: &Arc<Self>) {
        let me = self.clone();
        self.tracker.spawn(async move {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            // Before taking: a heartbeat noted from now on schedules the next write.
            me.heartbeats.scheduled.store(false, Ordering::Release);
            if let Err(e) = me.flush_heartbeats().await {
                tracing::error!(error = %crate::error_chain(&e), "writing heartbeat times failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_time_per_node() {
        let b = HeartbeatBuffer::default();
        assert!(b.note("a", "t1".into()), "the first note schedules a write");
        assert!(
            !b.note("a", "t2".into()),
            "one write is scheduled at a time"
        );
        b.note("b", "t1".into());
        assert_eq!(b.len(), 2);
        let mut taken = b.take();
        taken.sort();
        assert_eq!(
            taken,
            vec![("a".into(), "t2".into()), ("b".into(), "t1".into())]
        );
        assert!(b.is_empty());
        b.scheduled.store(false, Ordering::Release);
        assert!(
            b.note("a", "t3".into()),
            "after a write, the next note schedules one"
        );
    }

    #[test]
    fn restore_does_not_overwrite_newer_times() {
        let b = HeartbeatBuffer::default();
        b.note("a", "t1".into());
        let taken = b.take();
        b.note("a", "t2".into());
        b.restore(taken);
        assert_eq!(b.take(), vec![("a".into(), "t2".into())]);
        b.note("c", "t1".into());
        b.forget("c");
        assert!(b.is_empty());
    }
}

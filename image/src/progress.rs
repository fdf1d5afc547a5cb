//! Progress of an image write (phase, bytes, rate), shared with the API and heartbeat.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Downloading,
    Verifying,
    Committing,
    Syncing,
    Partitioning,
    Done,
    Failed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Downloading => "downloading",
            Phase::Verifying => "verifying",
            Phase::Committing => "committing",
            Phase::Syncing => "syncing",
            Phase::Partitioning => "partitioning",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    downloaded: u64,
    total: Option<u64>,
    started: Instant,
}

/// Cheap to clone; every clone sees the same numbers.
#[derive(Debug, Clone)]
pub struct Progress(Arc<Mutex<State>>);

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress(Arc::new(Mutex::new(State {
            phase: Phase::Starting,
            downloaded: 0,
            total: None,
            started: Instant::now(),
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn set_phase(&self, phase: Phase) {
        self.with(|s| s.phase = phase);
    }

    pub fn phase(&self) -> Phase {
        self.with(|s| s.phase)
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.with(|s| s.total = total);
    }

    pub fn add_downloaded(&self, n: u64) {
        self.with(|s| s.downloaded += n);
    }

    pub fn downloaded(&self) -> u64 {
        self.with(|s| s.downloaded)
    }

    /// `{"phase", "bytes_done", "bytes_total", "rate_bytes_per_s", "elapsed_s"}`.
    pub fn snapshot(&self) -> Value {
        self.with(|s| {
            let secs = s.started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                s.downloaded as f64 / secs
            } else {
                0.0
            };
            json!({
                "phase": s.phase.name(),
                "bytes_done": s.downloaded,
                "bytes_total": s.total,
                "rate_bytes_per_s": rate.round(),
                "elapsed_s": (secs * 10.0).round() / 10.0,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_phase_and_bytes() {
        let p = Progress::new();
        p.set_total(Some(100));
        p.clone().add_downloaded(40);
        p.set_phase(Phase::Verifying);
        let s = p.snapshot();
        assert_eq!(s["phase"], "verifying");
        assert_eq!(s["bytes_done"], 40);
        assert_eq!(s["bytes_total"], 100);
    }
}

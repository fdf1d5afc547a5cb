//! Counters of a fleet run and heartbeat latencies, and a snapshot of them (what
//! `GET /sim/stats` answers and the fleet bench reads).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

use crate::{Fleet, Running};

#[derive(Default)]
pub struct Stats {
    lookups: AtomicU64,
    lookup_errors: AtomicU64,
    heartbeats: AtomicU64,
    heartbeat_errors: AtomicU64,
    inspections: AtomicU64,
    commands: AtomicU64,
    bmc_answered: AtomicU64,
    bmc_dropped: AtomicU64,
    power_actions: AtomicU64,
    /// Heartbeat round trips, microseconds.
    heartbeat_us: Mutex<Vec<u32>>,
}

/// The counters and machine states at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatsSnapshot {
    pub nodes: usize,
    pub lookups: u64,
    pub lookup_errors: u64,
    pub heartbeats: u64,
    pub heartbeat_errors: u64,
    pub inspections: u64,
    pub commands: u64,
    pub bmc_answered: u64,
    pub bmc_dropped: u64,
    pub power_actions: u64,
    pub heartbeat_p50_ms: f64,
    pub heartbeat_p99_ms: f64,
    pub heartbeat_max_ms: f64,
    /// Machines by what runs: off, booting, agent, os.
    pub off: usize,
    pub booting: usize,
    pub agent: usize,
    pub os: usize,
    /// Image writes finished (all nodes) and the most any one node did.
    pub writes: u64,
    pub max_writes_per_node: u32,
    pub agent_deaths: u64,
}

impl Stats {
    pub fn lookup(&self, ok: bool) {
        if ok {
            &self.lookups
        } else {
            &self.lookup_errors
        }
        .fetch_add(1, Relaxed);
    }
    pub fn heartbeat(&self, ok: bool, micros: u64) {
        if ok {
            &self.heartbeats
        } else {
            &self.heartbeat_errors
        }
        .fetch_add(1, Relaxed);
        self.heartbeat_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(micros.min(u32::MAX as u64) as u32);
    }
    pub fn inspection(&self) {
        self.inspections.fetch_add(1, Relaxed);
    }
    pub fn command(&self) {
        self.commands.fetch_add(1, Relaxed);
    }
    pub fn bmc_answered(&self) {
        self.bmc_answered.fetch_add(1, Relaxed);
    }
    pub fn bmc_dropped(&self) {
        self.bmc_dropped.fetch_add(1, Relaxed);
    }
    pub fn power_action(&self) {
        self.power_actions.fetch_add(1, Relaxed);
    }

    /// Forgets the heartbeat latencies so far (a bench measures one phase).
    pub fn reset_latencies(&self) {
        self.heartbeat_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn snapshot(&self, fleet: &Fleet) -> StatsSnapshot {
        let mut lat = self
            .heartbeat_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1000.0
        };
        let mut snap = StatsSnapshot {
            nodes: fleet.machines.len(),
            lookups: self.lookups.load(Relaxed),
            lookup_errors: self.lookup_errors.load(Relaxed),
            heartbeats: self.heartbeats.load(Relaxed),
            heartbeat_errors: self.heartbeat_errors.load(Relaxed),
            inspections: self.inspections.load(Relaxed),
            commands: self.commands.load(Relaxed),
            bmc_answered: self.bmc_answered.load(Relaxed),
            bmc_dropped: self.bmc_dropped.load(Relaxed),
            power_actions: self.power_actions.load(Relaxed),
            heartbeat_p50_ms: pct(0.5),
            heartbeat_p99_ms: pct(0.99),
            heartbeat_max_ms: pct(1.0),
            off: 0,
            booting: 0,
            agent: 0,
            os: 0,
            writes: 0,
            max_writes_per_node: 0,
            agent_deaths: 0,
        };
        for m in &fleet.machines {
            let s = m.state();
            match &s.running {
                Running::Off => snap.off += 1,
                Running::Booting => snap.booting += 1,
                Running::Agent(_) => snap.agent += 1,
                Running::Os => snap.os += 1,
            }
            snap.writes += s.writes as u64;
            snap.max_writes_per_node = snap.max_writes_per_node.max(s.writes);
            snap.agent_deaths += s.deaths as u64;
        }
        snap
    }
}

//! The simulated agent of one boot: lookup by the machine's MACs (retried with randomised
//! backoff, as the real agent), the inspection post when the conductor is inspecting the
//! node, then heartbeats that carry its callback URL and token, early after a command has
//! ended. It dies with its boot (power off, reset) or by failure injection.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrite_proto::agent::CommandResult;
use ferrite_proto::inventory::{self, Inventory};
use ferrite_proto::lookup::{Heartbeat, InspectionData, LookupResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::machine::Machine;
use crate::Fleet;

/// The API version the simulated agent asks for (the real agent's fallback).
pub const API_VERSION: &str = "1.68";
/// `driver_internal_info` key the conductor sets while inspecting (masked in lookups).
const INSPECTION_TOKEN: &str = "inspection_token";
/// The real agent's lookup backoff cap.
const LOOKUP_CAP: Duration = Duration::from_secs(60);

/// One boot of the agent ramdisk.
pub struct AgentBoot {
    pub generation: u64,
    /// Cancelled when the agent stops: power off, reset, lockdown or injected death.
    life: CancellationToken,
    token: Mutex<Option<String>>,
    pub(crate) commands: Mutex<Vec<CommandResult>>,
    pub(crate) busy: AtomicBool,
    /// Signalled when an asynchronous command ends (the agent heartbeats early).
    pub(crate) finished: Notify,
    /// Boot time, seconds since the Unix epoch (the agent's `/v1/status`).
    pub started_unix: f64,
}

impl AgentBoot {
    pub fn new(generation: u64, boot: CancellationToken) -> AgentBoot {
        AgentBoot {
            generation,
            life: boot.child_token(),
            token: Mutex::new(None),
            commands: Mutex::new(vec![]),
            busy: AtomicBool::new(false),
            finished: Notify::new(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        }
    }

    pub fn alive(&self) -> bool {
        !self.life.is_cancelled()
    }

    /// The agent process dies (the machine stays powered on, hung).
    pub fn die(&self) {
        self.life.cancel();
    }

    pub(crate) fn life(&self) -> &CancellationToken {
        &self.life
    }

    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_token(&self, t: &str) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.to_string());
    }

    /// Whether a request's `agent_token` may command this agent (none before lookup).
    pub fn token_allows(&self, offered: Option<&str>) -> bool {
        match (self.token(), offered) {
            (Some(t), Some(o)) => ferrite_ipmi::codec::crypto::ct_eq(t.as_bytes(), o.as_bytes()),
            _ => false,
        }
    }
}

/// Sleeps `d` unless the agent stops first; false when it stopped.
async fn pause(agent: &AgentBoot, d: Duration) -> bool {
    tokio::select! {
        _ = agent.life.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The agent's whole life in one boot.
pub async fn run(fleet: Arc<Fleet>, machine: Arc<Machine>, agent: Arc<AgentBoot>) {
    let mut rng = StdRng::seed_from_u64(
        fleet.cfg.seed ^ (machine.index as u64) << 20 ^ agent.generation.wrapping_mul(7919),
    );
    let Some(found) = lookup(&fleet, &machine, &agent, &mut rng).await else {
        return;
    };
    let uuid = found.node.uuid.clone();
    if found
        .node
        .driver_internal_info
        .contains_key(INSPECTION_TOKEN)
    {
        inspect(&fleet, &machine, &agent).await;
    }
    let timeout = found.config.heartbeat_timeout.unwrap_or(300.0).max(1.0);
    heartbeats(&fleet, &machine, &agent, &uuid, timeout, &mut rng).await;
}

async fn lookup(
    fleet: &Fleet,
    machine: &Machine,
    agent: &AgentBoot,
    rng: &mut StdRng,
) -> Option<LookupResponse> {
    let url = format!(
        "{}/v1/lookup?addresses={}",
        fleet.cfg.conductor_url.trim_end_matches('/'),
        machine.macs.join(",")
    );
    let mut wait = fleet.cfg.lookup_interval;
    loop {
        if !agent.alive() {
            return None;
        }
        let r = fleet
            .http
            .get(&url)
            .header("X-OpenStack-Ironic-API-Version", API_VERSION)
            .send()
            .await;
        let answer = match r {
            Ok(r) if r.status() == reqwest::StatusCode::OK => r.json::<LookupResponse>().await.ok(),
            _ => None,
        };
        match answer {
            Some(found) => {
                let token = found.config.agent_token.clone().unwrap_or_default();
                if token != ferrite_proto::MASKED_SECRET && !token.is_empty() {
                    agent.set_token(&token);
                }
                if agent.token().is_some() {
                    fleet.stats.lookup(true);
                    return Some(found);
                }
                // A masked token and none held: look up again, as the real agent does.
                fleet.stats.lookup(false);
            }
            None => fleet.stats.lookup(false),
        }
        let jittered = wait.mul_f64(rng.random_range(0.5..1.5));
        if !pause(agent, jittered).await {
            return None;
        }
        wait = (wait * 2).min(LOOKUP_CAP);
    }
}

/// The inventory of the simulated server (two NICs, one 100 GiB disk).
pub fn inventory(fleet: &Fleet, machine: &Machine) -> Inventory {
    let interfaces = machine
        .macs
        .iter()
        .enumerate()
        .map(|(i, mac)| inventory::Interface {
            name: format!("eth{i}"),
            mac_address: Some(mac.clone()),
            ipv4_address: (i == 0).then(|| "127.0.0.1".to_string()),
            has_carrier: true,
            speed_mbps: Some(25_000),
            driver: Some("sim".into()),
            ..Default::default()
        })
        .collect();
    Inventory {
        cpu: inventory::Cpu {
            model_name: "ferrite-sim virtual CPU".into(),
            frequency: "2400".into(),
            count: 8,
            architecture: "x86_64".into(),
            flags: vec!["lm".into(), "vmx".into()],
            socket_count: Some(1),
        },
        memory: inventory::Memory {
            total: 32 << 30,
            physical_mb: Some(32 * 1024),
        },
        interfaces,
        disks: vec![inventory::Disk {
            name: "/dev/sda".into(),
            model: Some("SIMDISK".into()),
            size: 100 << 30,
            rotational: false,
            serial: Some(format!("SIM{:08}", machine.index)),
            logical_sectors: Some(512),
            physical_sectors: Some(4096),
            ..Default::default()
        }],
        system_vendor: inventory::SystemVendor {
            product_name: "ferrite-sim".into(),
            serial_number: format!("SN{:08}", machine.index),
            manufacturer: "Ferrite".into(),
            firmware: Default::default(),
        },
        boot: inventory::Boot {
            current_boot_mode: "uefi".into(),
            pxe_interface: machine.macs.first().cloned(),
        },
        bmc_address: Some(fleet.cfg.bind_ip.to_string()),
        bmc_v6address: None,
        bmc_mac: None,
        hostname: Some(format!("sim-{:05}", machine.index)),
    }
}

/// Posts the inventory to the conductor's inspection callback with the lookup's token.
async fn inspect(fleet: &Fleet, machine: &Machine, agent: &AgentBoot) {
    let url = format!(
        "{}/v1/continue_inspection",
        fleet.cfg.conductor_url.trim_end_matches('/')
    );
    let data = InspectionData {
        inventory: inventory(fleet, machine),
        root_disk: None,
        boot_interface: machine.macs.first().cloned(),
        agent_token: agent.token(),
        extras: Default::default(),
        ferrite: Default::default(),
    };
    for attempt in 0..5u32 {
        if !agent.alive() {
            return;
        }
        match fleet
            .http
            .post(&url)
            .header("X-OpenStack-Ironic-API-Version", API_VERSION)
            .json(&data)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                fleet.stats.inspection();
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(node = machine.index, status = %r.status(), "inspection data refused");
                return;
            }
            _ => {
                if !pause(agent, fleet.cfg.lookup_interval * (attempt + 1)).await {
                    return;
                }
            }
        }
    }
}

async fn heartbeats(
    fleet: &Fleet,
    machine: &Machine,
    agent: &AgentBoot,
    uuid: &str,
    heartbeat_timeout: f64,
    rng: &mut StdRng,
) {
    let url = format!(
        "{}/v1/heartbeat/{uuid}",
        fleet.cfg.conductor_url.trim_end_matches('/')
    );
    let body = Heartbeat {
        callback_url: format!("{}/node/{}", fleet.agent_base, machine.index),
        agent_token: agent.token().unwrap_or_default(),
        agent_version: format!("ferrite-sim boot {}", agent.generation),
        agent_verify_ca: None,
        agent_status: None,
        agent_status_message: None,
    };
    loop {
        if !agent.alive() {
            return;
        }
        let sent = Instant::now();
        let r = fleet
            .http
            .post(&url)
            .header("X-OpenStack-Ironic-API-Version", API_VERSION)
            .json(&body)
            .send()
            .await;
        let ok = matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED);
        if agent.alive() {
            fleet.stats.heartbeat(ok, sent.elapsed().as_micros() as u64);
        }
        let wait = match (ok, fleet.cfg.heartbeat_interval) {
            (true, Some(d)) => d,
            (true, None) => Duration::from_secs_f64(heartbeat_timeout * rng.random_range(0.3..0.6)),
            // After an error: 5–10 s, or sooner when the configured period is shorter.
            (false, period) => {
                let d = Duration::from_secs_f64(rng.random_range(5.0..10.0));
                period.map_or(d, |p| p.min(d))
            }
        };
        tokio::select! {
            _ = agent.life.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = agent.finished.notified() => {
                let gap = fleet.cfg.early_heartbeat_gap.saturating_sub(sent.elapsed());
                if !pause(agent, gap).await {
                    return;
                }
            }
        }
    }
}

//! ferrite-sim: thousands of simulated servers in one tokio process. Each has an IPMI BMC
//! ([`bmc`]: RMCP+ "lanplus" on its own 127.0.0.1 UDP port, our codec's BMC side) and, when
//! it boots from the network, an agent ([`agent`]) that speaks the real lookup, heartbeat,
//! inspection and command protocol over HTTP. The conductor drives them like real servers;
//! nothing in it knows they are simulated. [`Sim::start`] is the library entry point tests
//! use in-process; the `ferrite-sim` binary wraps it.

pub mod agent;
pub mod bmc;
pub mod commands;
pub mod enroll;
pub mod http;
pub mod machine;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use enroll::{EnrollError, NodeSpec};
pub use machine::{Machine, Running};
pub use stats::{Stats, StatsSnapshot};

/// Everything a fleet is made of; [`SimConfig::default`] is a small, fast fleet.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of simulated servers.
    pub nodes: usize,
    /// The conductor's API (lookup, heartbeat, inspection, enrollment).
    pub conductor_url: String,
    /// IPMI user and password every BMC accepts.
    pub username: String,
    pub password: String,
    /// Power on to agent (or OS) running.
    pub boot_time: Duration,
    /// Simulated image size and disk write rate: a write takes size / rate.
    pub image_size: u64,
    pub write_rate: u64,
    /// Time each clean step (`erase_devices`, `erase_devices_metadata`) takes. Not zero by
    /// default: a command that ends before the conductor has let go of the node makes the
    /// agent's early heartbeat find it locked, and the next one comes a heartbeat period
    /// later (as with the real agent).
    pub erase_time: Duration,
    /// Heartbeat period; `None` does what the real agent does (the conductor's
    /// heartbeat_timeout × uniform(0.3, 0.6)).
    pub heartbeat_interval: Option<Duration>,
    /// Least time between two heartbeats when a command has just ended (the real agent: 5 s).
    pub early_heartbeat_gap: Duration,
    /// First lookup retry pause (doubles up to 60 s, randomised), as `ipa-lookup-interval`.
    pub lookup_interval: Duration,
    /// Seed of every random choice (failures, jitter): the same seed, the same fleet.
    pub seed: u64,
    /// Probability that an agent dies in the middle of an image write.
    pub agent_death_probability: f64,
    /// Node indexes whose agent dies during their first image write, whatever the probability.
    pub agent_death_nodes: Vec<usize>,
    /// Probability that a BMC leaves a request unanswered (the client retries).
    pub bmc_drop_probability: f64,
    /// Probability that a node has a slow disk, and how much slower it writes.
    pub slow_disk_probability: f64,
    pub slow_disk_factor: f64,
    /// Address the BMCs and the agents' API bind to (one port each BMC, one for all agents).
    pub bind_ip: std::net::IpAddr,
    /// First BMC UDP port; 0 lets the kernel pick each one.
    pub bmc_base_port: u16,
    /// The agents' shared HTTP listener port (0: any).
    pub agent_port: u16,
    /// The nodes' boot interface at enrollment: `fake` (nothing network-boots; Ferrite's
    /// `ipmi` type offers it) or `ipxe` (OpenStack Ironic's `ipmi` type has no `fake` boot:
    /// it stages the deploy kernel and ramdisk the simulator serves, which nobody boots).
    pub boot_interface: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10,
            conductor_url: "http://127.0.0.1:6385".into(),
            username: "admin".into(),
            password: "password".into(),
            boot_time: Duration::from_secs(5),
            image_size: 1 << 30,
            write_rate: 100 << 20,
            erase_time: Duration::from_secs(1),
            heartbeat_interval: None,
            early_heartbeat_gap: Duration::from_secs(5),
            lookup_interval: Duration::from_secs(1),
            seed: 0,
            agent_death_probability: 0.0,
            agent_death_nodes: vec![],
            bmc_drop_probability: 0.0,
            slow_disk_probability: 0.0,
            slow_disk_factor: 10.0,
            bind_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            bmc_base_port: 0,
            agent_port: 0,
            boot_interface: "fake".into(),
        }
    }
}

impl SimConfig {
    /// How long writing the image takes on a disk of `slowdown` (1 = normal).
    pub fn write_time(&self, slowdown: f64) -> Duration {
        let secs = self.image_size as f64 / self.write_rate.max(1) as f64;
        Duration::from_secs_f64(secs * slowdown)
    }
}

#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot bind the BMC of node {index} to UDP {addr}")]
    BindBmc {
        index: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the agents' HTTP listener to {addr}")]
    BindHttp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What every machine task shares: the configuration, the HTTP client towards the
/// conductor, the agents' base URL and the counters.
pub struct Fleet {
    pub cfg: SimConfig,
    pub machines: Vec<Arc<Machine>>,
    pub http: reqwest::Client,
    /// `http://<bind ip>:<port>`; an agent's callback URL is this plus `/node/<index>`.
    pub agent_base: String,
    pub stats: Stats,
    pub stop: CancellationToken,
}

impl Fleet {
    pub fn machine(&self, index: usize) -> Option<&Arc<Machine>> {
        self.machines.get(index)
    }
}

/// A running fleet; stops (every BMC, agent and the HTTP listener) on drop.
pub struct Sim {
    pub fleet: Arc<Fleet>,
}

impl Sim {
    /// Binds every BMC and the agents' listener, then starts serving. Nodes are powered off.
    pub async fn start(cfg: SimConfig) -> Result<Sim, SimError> {
        let stop = CancellationToken::new();
        let mut sockets = Vec::with_capacity(cfg.nodes);
        for index in 0..cfg.nodes {
            let port = match cfg.bmc_base_port {
                0 => 0,
                base => base.wrapping_add(index as u16),
            };
            let addr = SocketAddr::new(cfg.bind_ip, port);
            let sock =
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|source| SimError::BindBmc {
                        index,
                        addr,
                        source,
                    })?;
            sockets.push(sock);
        }
        let http_addr = SocketAddr::new(cfg.bind_ip, cfg.agent_port);
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|source| SimError::BindHttp {
                addr: http_addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| SimError::BindHttp {
            addr: http_addr,
            source,
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(SimError::Client)?;
        let machines = sockets
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let port = s.local_addr().map(|a| a.port()).unwrap_or_default();
                Arc::new(Machine::new(index, port, &cfg))
            })
            .collect();
        let fleet = Arc::new(Fleet {
            agent_base: format!("http://{local}"),
            cfg,
            machines,
            http,
            stats: Stats::default(),
            stop: stop.clone(),
        });
        for (index, sock) in sockets.into_iter().enumerate() {
            tokio::spawn(bmc::serve(fleet.clone(), index, sock));
        }
        let router = http::router(fleet.clone());
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the agents' HTTP listener stopped");
            }
        });
        Ok(Sim { fleet })
    }

    /// The node list: what to enroll (driver_info with each BMC's port, ports with MACs).
    pub fn nodes(&self) -> Vec<NodeSpec> {
        enroll::specs(&self.fleet)
    }

    /// Enrolls every node and its ports through the conductor's API; their UUIDs.
    pub async fn enroll(&self, concurrency: usize) -> Result<Vec<String>, EnrollError> {
        enroll::enroll(&self.fleet, &self.fleet.cfg.conductor_url, concurrency).await
    }

    /// The agents' shared listener, `http://ip:port`.
    pub fn agent_url(&self) -> &str {
        &self.fleet.agent_base
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.fleet.stats.snapshot(&self.fleet)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.fleet.stop.cancel();
        for m in &self.fleet.machines {
            m.power_off();
        }
    }
}

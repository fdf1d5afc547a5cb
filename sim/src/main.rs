//! `ferrite-sim`: runs a fleet of simulated servers until interrupted; prints the node
//! list (or enrolls it in the conductor) so a real conductor can drive them.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrite_sim::{Sim, SimConfig};

/// Simulated servers (IPMI BMCs on UDP, agents over HTTP) for a Ferrite or Ironic conductor.
#[derive(Debug, Parser)]
#[command(name = "ferrite-sim", version)]
struct Args {
    /// Number of simulated servers.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The conductor's API URL (lookup, heartbeat, inspection; enrollment with --enroll).
    #[arg(long, default_value = "http://127.0.0.1:6385")]
    conductor: String,
    /// Enroll the nodes and their ports through the conductor's API at start (prints
    /// `ENROLLED <count> <seconds>`).
    #[arg(long)]
    enroll: bool,
    /// Requests in flight at once while enrolling.
    #[arg(long, default_value_t = 64)]
    enroll_concurrency: usize,
    /// Write the node list (POST /v1/nodes bodies and MACs) as JSON to this file ("-": stdout).
    #[arg(long)]
    emit_nodes: Option<String>,
    /// IPMI user name and password of every BMC.
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long, default_value = "password")]
    password: String,
    /// Seconds from power on to the agent (or OS) running.
    #[arg(long, default_value_t = 5.0)]
    boot_time: f64,
    /// Simulated image size in MiB and write rate in MiB/s.
    #[arg(long, default_value_t = 1024)]
    image_mib: u64,
    #[arg(long, default_value_t = 100)]
    write_mib_s: u64,
    /// Seconds each clean step takes.
    #[arg(long, default_value_t = 1.0)]
    erase_time: f64,
    /// Heartbeat period in seconds (default: as the real agent, from the conductor's
    /// heartbeat_timeout).
    #[arg(long)]
    heartbeat_interval: Option<f64>,
    /// Least seconds between two heartbeats after a command ended (the real agent: 5).
    #[arg(long, default_value_t = 5.0)]
    early_heartbeat_gap: f64,
    /// First lookup retry pause in seconds.
    #[arg(long, default_value_t = 1.0)]
    lookup_interval: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability that an agent dies in the middle of an image write.
    #[arg(long, default_value_t = 0.0)]
    agent_death_probability: f64,
    /// Node indexes whose agent dies during their first write (comma-separated).
    #[arg(long, value_delimiter = ',')]
    agent_death_nodes: Vec<usize>,
    /// Probability that a BMC leaves a request unanswered.
    #[arg(long, default_value_t = 0.0)]
    bmc_drop_probability: f64,
    /// Probability of a slow disk, and its slowdown factor.
    #[arg(long, default_value_t = 0.0)]
    slow_disk_probability: f64,
    #[arg(long, default_value_t = 10.0)]
    slow_disk_factor: f64,
    /// Address to bind the BMCs and the agents' listener to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// First BMC port (node i listens on base + i); 0: any free ports.
    #[arg(long, default_value_t = 0)]
    bmc_base_port: u16,
    /// The agents' HTTP port (0: any).
    #[arg(long, default_value_t = 0)]
    agent_port: u16,
    /// Boot interface of the enrolled nodes: fake (Ferrite), ipxe (OpenStack Ironic, whose
    /// ipmi type has no fake boot).
    #[arg(long, default_value = "fake")]
    boot_interface: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let cfg = SimConfig {
        nodes: a.nodes,
        conductor_url: a.conductor,
        username: a.username,
        password: a.password,
        boot_time: Duration::from_secs_f64(a.boot_time),
        image_size: a.image_mib << 20,
        write_rate: (a.write_mib_s << 20).max(1),
        erase_time: Duration::from_secs_f64(a.erase_time),
        heartbeat_interval: a.heartbeat_interval.map(Duration::from_secs_f64),
        early_heartbeat_gap: Duration::from_secs_f64(a.early_heartbeat_gap),
        lookup_interval: Duration::from_secs_f64(a.lookup_interval),
        seed: a.seed,
        agent_death_probability: a.agent_death_probability,
        agent_death_nodes: a.agent_death_nodes,
        bmc_drop_probability: a.bmc_drop_probability,
        slow_disk_probability: a.slow_disk_probability,
        slow_disk_factor: a.slow_disk_factor,
        bind_ip: a.bind,
        bmc_base_port: a.bmc_base_port,
        agent_port: a.agent_port,
        boot_interface: a.boot_interface,
    };
    let sim = Sim::start(cfg).await.context("starting the fleet")?;
    eprintln!(
        "ferrite-sim: {} nodes, agents at {}, stats at {}/sim/stats",
        sim.fleet.machines.len(),
        sim.agent_url(),
        sim.agent_url()
    );
    if let Some(path) = &a.emit_nodes {
        let json = serde_json::to_string_pretty(&sim.nodes())?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("writing {path}"))?;
        }
    }
    if a.enroll {
        let t = std::time::Instant::now();
        let uuids = sim
            .enroll(a.enroll_concurrency)
            .await
            .context("enrolling the fleet")?;
        // On stdout for a parent process (the fleet bench reads it).
        println!("ENROLLED {} {:.3}", uuids.len(), t.elapsed().as_secs_f64());
    }
    // READY on stdout's last line lets a parent wait for it.
    println!("READY {}", sim.agent_url());
    wait_for_signal().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

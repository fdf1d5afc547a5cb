//! `cargo xtask bench ipmi`: power status against ipmi_sim, ferrite's client (new session
//! per call, and one reused session) vs `ipmitool -I lanplus -C 3 … power status`, and 50
//! simulated BMCs polled concurrently vs 50 concurrent ipmitool processes.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrite_ipmi::sim::SimBmc;
use ferrite_ipmi::{CipherSuite, Client, ClientConfig, PowerState};

use super::Record;

const IPMITOOL_CALLS: u32 = 20;
const NEW_SESSION_CALLS: u32 = 200;
const REUSED_CALLS: u32 = 1000;
const FLEET: usize = 50;
const FLEET_ROUNDS: usize = 5;

fn ipmitool_cmd(bmc: &SimBmc) -> Command {
    let mut c = Command::new("ipmitool");
    c.args(bmc.ipmitool_args()).args(["power", "status"]);
    c
}

fn check_ipmitool(out: &Output) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("Chassis Power is off") {
        bail!(
            "ipmitool power status failed or disagrees: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn config(bmc: &SimBmc) -> ClientConfig {
    let mut c = ClientConfig::new(bmc.addr(), bmc.username(), bmc.password());
    c.timeout = Duration::from_secs(1);
    // Same suite as the baseline's `-C 3` (no suite 17 attempt first).
    c.cipher_suite = Some(CipherSuite::Suite3);
    c
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run() -> anyhow::Result<Vec<Record>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // No chassis_control program: ipmi_sim keeps the power state itself. With the program,
    // every status costs a fork+exec of a shell script (~5 ms) on the BMC side, which would
    // measure ipmi_sim rather than the clients.
    let bmc = SimBmc::builder()
        .without_chassis_control()
        .start()
        .context("starting ipmi_sim (Debian package openipmi)")?;

    // Baseline: ipmitool, one process per call, as Ironic's ipmitool driver runs it.
    check_ipmitool(&ipmitool_cmd(&bmc).output().context("running ipmitool")?)?;
    let start = Instant::now();
    for _ in 0..IPMITOOL_CALLS {
        check_ipmitool(&ipmitool_cmd(&bmc).output()?)?;
    }
    let ipmitool_ms = ms(start.elapsed()) / IPMITOOL_CALLS as f64;

    let cfg = config(&bmc);
    let (new_ms, reused_ms) = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..NEW_SESSION_CALLS {
            let client = Client::new(cfg.clone());
            if client.power_state().await? != PowerState::Off {
                bail!("ferrite disagrees with ipmitool on the power state");
            }
            client.close().await?;
        }
        let new_ms = ms(start.elapsed()) / NEW_SESSION_CALLS as f64;
        let client = Client::new(cfg.clone());
        client.connect().await?;
        let start = Instant::now();
        for _ in 0..REUSED_CALLS {
            if client.power_state().await? != PowerState::Off {
                bail!("ferrite disagrees with ipmitool on the power state");
            }
        }
        let reused_ms = ms(start.elapsed()) / REUSED_CALLS as f64;
        client.close().await?;
        anyhow::Ok((new_ms, reused_ms))
    })?;
    drop(bmc);

    let fleet: Vec<SimBmc> = (0..FLEET)
        .map(|_| SimBmc::builder().without_chassis_control().start())
        .collect::<Result<_, _>>()
        .context("starting 50 ipmi_sim BMCs")?;
    let mut ferrite_rounds = Vec::new();
    let mut ipmitool_rounds = Vec::new();
    for _ in 0..FLEET_ROUNDS {
        let start = Instant::now();
        let children: Vec<_> = fleet
            .iter()
            .map(|b| ipmitool_cmd(b).stdout(std::process::Stdio::piped()).spawn())
            .collect::<Result<_, _>>()?;
        for c in children {
            check_ipmitool(&c.wait_with_output()?)?;
        }
        ipmitool_rounds.push(ms(start.elapsed()));

        let cfgs: Vec<ClientConfig> = fleet.iter().map(config).collect();
        let elapsed = rt.block_on(async move {
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for cfg in cfgs {
                set.spawn(async move {
                    let client = Client::new(cfg);
                    let state = client.power_state().await?;
                    client.close().await?;
                    anyhow::Ok(state)
                });
            }
            while let Some(r) = set.join_next().await {
                if r?? != PowerState::Off {
                    bail!("ferrite disagrees with ipmitool on the power state");
                }
            }
            anyhow::Ok(start.elapsed())
        })?;
        ferrite_rounds.push(ms(elapsed));
    }
    drop(fleet);

    let base = "ipmitool -I lanplus -C 3 power status";
    Ok(vec![
        Record::new(
            "power status, new session per call",
            "ms/call",
            new_ms,
            "lower",
        )
        .baseline(base, ipmitool_ms)
        .notes(format!(
            "{NEW_SESSION_CALLS} calls (open session, RAKP, status, close) vs \
                 {IPMITOOL_CALLS} ipmitool processes, one ipmi_sim on loopback \
                 (power state kept by ipmi_sim, no chassis_control program)"
        )),
        Record::new(
            "power status, reused session",
            "ms/call",
            reused_ms,
            "lower",
        )
        .baseline(base, ipmitool_ms)
        .notes(format!("{REUSED_CALLS} calls in one session")),
        Record::new(
            "power status of 50 BMCs polled concurrently",
            "ms wall",
            median(ferrite_rounds),
            "lower",
        )
        .baseline("50 concurrent ipmitool processes", median(ipmitool_rounds))
        .notes(format!(
            "{FLEET} ipmi_sim processes, new session each, median of {FLEET_ROUNDS} rounds"
        )),
    ])
}

//! `cargo xtask bench ipmi`: power status against ipmi_sim, ferrite's client (new session
//! per call, and one reused session) vs `ipmitool -I lanplus -C 3 … power status` (one
//! process per call, what Ironic's ipmitool driver pays) and vs pyghmi in-process (the
//! Python library with persistent sessions: library to library), and 50 simulated BMCs
//! polled concurrently vs 50 concurrent ipmitool processes.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrite_ipmi::sim::SimBmc;
use ferrite_ipmi::{CipherSuite, Client, ClientConfig, PowerState};

use super::{Record, Size};

/// The in-process Python baseline, run with target/pyghmi-venv's interpreter.
const PYGHMI_SCRIPT: &str = include_str!("py/pyghmi_power.py");
/// Past this a pyghmi run is taken as hung (at 20 calls it finished in ~15 s at load ~20).
const PYGHMI_TIMEOUT_SECS: u64 = 60;

/// Calls and rounds of one run.
struct Counts {
    ipmitool: u32,
    new_session: u32,
    reused: u32,
    fleet: usize,
    fleet_rounds: usize,
}

impl Counts {
    fn of(size: Size) -> Counts {
        size.pick(
            Counts {
                ipmitool: 20,
                new_session: 200,
                reused: 1000,
                fleet: 50,
                fleet_rounds: 5,
            },
            Counts {
                ipmitool: 2,
                new_session: 3,
                reused: 5,
                fleet: 3,
                fleet_rounds: 1,
            },
        )
    }
}

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

/// pyghmi's figures: ms per call with a new session each, and in one session.
fn pyghmi(bmc: &SimBmc, c: &Counts) -> anyhow::Result<(f64, f64)> {
    let python = super::venv_python("pyghmi-venv", "pyghmi")?;
    // pyghmi 1.6 hangs here at 200 or 1000 calls on a loaded machine (faulthandler: the
    // main thread waits in Session.awaitresponse for a wake-up from its I/O thread that
    // never comes; at 20 calls its retries show as 0.1-0.7 s per call): the baseline
    // then has no figure and says why, instead of hanging the bench.
    let out = Command::new("timeout")
        .args(["--kill-after=5", &PYGHMI_TIMEOUT_SECS.to_string()])
        .arg(&python)
        .arg("-c")
        .arg(PYGHMI_SCRIPT)
        .args([
            "127.0.0.1",
            &bmc.port().to_string(),
            bmc.username(),
            bmc.password(),
        ])
        .args([c.new_session.to_string(), c.reused.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the pyghmi baseline failed ({}): {}",
            match out.status.code() {
                Some(124) | Some(137) => format!("no result within {PYGHMI_TIMEOUT_SECS} s"),
                _ => out.status.to_string(),
            },
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the pyghmi baseline's output")?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
    Ok((num("new_session_ms")?, num("reused_ms")?))
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    let c = Counts::of(size);
    let (ipmitool_calls, new_session_calls, reused_calls, fleet_size, fleet_rounds) =
        (c.ipmitool, c.new_session, c.reused, c.fleet, c.fleet_rounds);
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
    for _ in 0..ipmitool_calls {
        check_ipmitool(&ipmitool_cmd(&bmc).output()?)?;
    }
    let ipmitool_ms = ms(start.elapsed()) / ipmitool_calls as f64;
    let (pyghmi_new_ms, pyghmi_reused_ms, pyghmi_note) = match pyghmi(&bmc, &c) {
        Ok((n, r)) => (n, r, String::new()),
        Err(e) => (
            f64::NAN,
            f64::NAN,
            format!("; pyghmi gave no figure: {e:#}"),
        ),
    };

    let cfg = config(&bmc);
    let (new_ms, reused_ms) = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..new_session_calls {
            let client = Client::new(cfg.clone());
            if client.power_state().await? != PowerState::Off {
                bail!("ferrite disagrees with ipmitool on the power state");
            }
            client.close().await?;
        }
        let new_ms = ms(start.elapsed()) / new_session_calls as f64;
        let client = Client::new(cfg.clone());
        client.connect().await?;
        let start = Instant::now();
        for _ in 0..reused_calls {
            if client.power_state().await? != PowerState::Off {
                bail!("ferrite disagrees with ipmitool on the power state");
            }
        }
        let reused_ms = ms(start.elapsed()) / reused_calls as f64;
        client.close().await?;
        anyhow::Ok((new_ms, reused_ms))
    })?;
    drop(bmc);

    let fleet: Vec<SimBmc> = (0..fleet_size)
        .map(|_| SimBmc::builder().without_chassis_control().start())
        .collect::<Result<_, _>>()
        .with_context(|| format!("starting {fleet_size} ipmi_sim BMCs"))?;
    let mut ferrite_rounds = Vec::new();
    let mut ipmitool_rounds = Vec::new();
    for _ in 0..fleet_rounds {
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
    let py = "pyghmi in-process (Python)";
    let checked = "every call's answer checked: power off, as ipmi_sim holds it";
    let one_bmc =
        "one ipmi_sim on loopback (power state kept by ipmi_sim, no chassis_control program)";
    Ok(vec![
        Record::new(
            "power status, new session per call",
            "ms/call",
            new_ms,
            "lower",
        )
        .baseline(base, ipmitool_ms)
        .notes(format!(
            "{new_session_calls} calls (open session, RAKP, status, close) vs \
                 {ipmitool_calls} ipmitool processes, one per call (what Ironic's ipmitool \
                 driver pays: mostly process start); {one_bmc}"
        ))
        .verified(checked),
        Record::new(
            "power status, new session per call, vs pyghmi",
            "ms/call",
            new_ms,
            "lower",
        )
        .baseline(py, pyghmi_new_ms)
        .notes(format!(
            "{new_session_calls} calls each side, library to library: open session, RAKP, \
             status, close; pyghmi logs out after each call so the next opens its own \
             session; {one_bmc}{pyghmi_note}"
        ))
        .verified(checked),
        Record::new(
            "power status, reused session",
            "ms/call",
            reused_ms,
            "lower",
        )
        .baseline(base, ipmitool_ms)
        .notes(format!(
            "{reused_calls} calls in one session vs one ipmitool process per call"
        ))
        .verified(checked),
        Record::new(
            "power status, reused session, vs pyghmi",
            "ms/call",
            reused_ms,
            "lower",
        )
        .baseline(py, pyghmi_reused_ms)
        .notes(format!(
            "{reused_calls} calls in one session each side, library to library; \
             {one_bmc}{pyghmi_note}"
        ))
        .verified(checked),
        Record::new(
            &format!("power status of {fleet_size} BMCs polled concurrently"),
            "ms wall",
            median(ferrite_rounds),
            "lower",
        )
        .baseline(
            &format!("{fleet_size} concurrent ipmitool processes"),
            median(ipmitool_rounds),
        )
        .notes(format!(
            "{fleet_size} ipmi_sim processes, new session each, median of {fleet_rounds} rounds"
        ))
        .verified(checked),
    ])
}

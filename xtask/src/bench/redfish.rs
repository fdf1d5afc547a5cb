//! `cargo xtask bench redfish`: against sushy-emulator (fake systems driver), ferrite's
//! Redfish client vs python sushy in-process (the library Ironic uses), in the same run:
//! power status with a new client per call and with one reused client, and setting the
//! boot device. Rounds alternate which side goes first; every answer is checked. At full
//! size also enroll → active through virtual media vs iPXE ([`super::redfish_vmedia`]).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrite_redfish::emulator::{Emulator, FakeSystem};
use ferrite_redfish::{BootOverride, BootSource, Client, ClientConfig, PowerState, SystemRef};

use super::{Record, Size};

const SUSHY_SCRIPT: &str = include_str!("py/sushy_redfish.py");
const USER: &str = "admin";
const PASSWORD: &str = "password";

struct Counts {
    rounds: usize,
    new_client: u32,
    reused: u32,
    boot: u32,
}

impl Counts {
    fn of(size: Size) -> Counts {
        size.pick(
            Counts {
                rounds: 4,
                new_client: 50,
                reused: 200,
                boot: 50,
            },
            Counts {
                rounds: 2,
                new_client: 2,
                reused: 3,
                boot: 2,
            },
        )
    }
}

#[derive(Default)]
struct Figures {
    new_ms: Vec<f64>,
    reused_ms: Vec<f64>,
    /// CPU time of the client's own process per reused-client power read.
    reused_cpu_ms: Vec<f64>,
    boot_ms: Vec<f64>,
}

/// CPU time this process has used (all its threads): the client's own cost, without the
/// emulator's (another process).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn config(bmc: &Emulator) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig::new(bmc.url().parse()?, USER, PASSWORD))
}

/// The boot target the emulator holds now (read with plain HTTP, not either client).
async fn emulator_target(bmc: &Emulator) -> anyhow::Result<String> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}{}", bmc.url(), bmc.system_path(0)))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["Boot"]["BootSourceOverrideTarget"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn ferrite_round(bmc: &Emulator, c: &Counts, f: &mut Figures) -> anyhow::Result<()> {
    let cfg = config(bmc)?;
    let sys = SystemRef {
        path: bmc.system_path(0),
    };
    let start = Instant::now();
    for _ in 0..c.new_client {
        let client = Client::new(cfg.clone())?;
        if client.power_state(&sys).await? != PowerState::Off {
            bail!("ferrite reads a power state other than the emulator's Off");
        }
    }
    f.new_ms.push(ms(start.elapsed()) / c.new_client as f64);
    let client = Client::new(cfg)?;
    client.power_state(&sys).await?;
    let start = Instant::now();
    let cpu = process_cpu();
    for _ in 0..c.reused {
        if client.power_state(&sys).await? != PowerState::Off {
            bail!("ferrite reads a power state other than the emulator's Off");
        }
    }
    f.reused_cpu_ms
        .push(ms(process_cpu().saturating_sub(cpu)) / c.reused as f64);
    f.reused_ms.push(ms(start.elapsed()) / c.reused as f64);
    let targets = [BootSource::Pxe, BootSource::Hdd];
    let start = Instant::now();
    for i in 0..c.boot {
        let target = targets[i as usize % 2];
        client
            .set_boot(
                &sys,
                BootOverride {
                    target,
                    persistent: false,
                    mode: None,
                },
            )
            .await?;
    }
    f.boot_ms.push(ms(start.elapsed()) / c.boot as f64);
    let want = ["Pxe", "Hdd"][(c.boot as usize - 1) % 2];
    let got = emulator_target(bmc).await?;
    if got != want {
        bail!("after ferrite's boot-device sets the emulator holds {got:?}, not {want:?}");
    }
    Ok(())
}

fn sushy_round(bmc: &Emulator, c: &Counts, f: &mut Figures) -> anyhow::Result<()> {
    let python = super::venv_python("sushy-venv", "sushy")?;
    let out = Command::new("timeout")
        .args(["--kill-after=5", "300"])
        .arg(&python)
        .arg("-c")
        .arg(SUSHY_SCRIPT)
        .args([&bmc.url(), USER, PASSWORD, &bmc.system_path(0)])
        .args([c.new_client, c.reused, c.boot].map(|n| n.to_string()))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the sushy baseline failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the sushy baseline's output")?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
    f.new_ms.push(num("new_ms")?);
    f.reused_ms.push(num("reused_ms")?);
    f.reused_cpu_ms.push(num("reused_cpu_ms")?);
    f.boot_ms.push(num("boot_ms")?);
    let want = ["pxe", "hdd"][(c.boot as usize - 1) % 2];
    let last = v["last_target"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !last.contains(want) {
        bail!("after sushy's boot-device sets it reads {last:?}, not {want:?}");
    }
    Ok(())
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    let c = Counts::of(size);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bmc = Emulator::builder()
        .system(FakeSystem::new("bench-0"))
        .user(USER, PASSWORD)
        .start()
        .context("starting sushy-emulator (target/sushy-venv: run `cargo xtask deps`)")?;
    let (mut fe, mut py) = (Figures::default(), Figures::default());
    for round in 0..c.rounds {
        if round % 2 == 0 {
            rt.block_on(ferrite_round(&bmc, &c, &mut fe))?;
            sushy_round(&bmc, &c, &mut py)?;
        } else {
            sushy_round(&bmc, &c, &mut py)?;
            rt.block_on(ferrite_round(&bmc, &c, &mut fe))?;
        }
    }
    drop(bmc);
    let base = "python sushy 5.14 in-process";
    let setup = format!(
        "one sushy-emulator 2.2.0 (fake driver, basic auth: it offers no sessions) on \
         loopback; {} rounds alternating which side goes first, median of the rounds' \
         per-call means; both sides in their default auth mode",
        c.rounds
    );
    let checked = "every power read checked against the emulator's Off; after each round's \
                   boot sets, the emulator's BootSourceOverrideTarget read back (ferrite: \
                   plain HTTP GET; sushy: its own refresh)";
    let mut records = vec![
        Record::new(
            "power status, new client per call",
            "ms/call",
            median(fe.new_ms),
            "lower",
        )
        .baseline(base, median(py.new_ms))
        .notes(format!(
            "{} calls a round each side: a new client (service root) and a read of the \
                 system; {setup}",
            c.new_client
        ))
        .verified(checked),
        Record::new(
            "power status, reused client",
            "ms/call",
            median(fe.reused_ms),
            "lower",
        )
        .baseline(base, median(py.reused_ms))
        .notes(format!(
            "{} calls a round each side: one GET of the system each (sushy: refresh); \
                 {setup}",
            c.reused
        ))
        .verified(checked),
        Record::new(
            "power status, reused client: client CPU",
            "ms/call",
            median(fe.reused_cpu_ms),
            "lower",
        )
        .baseline(base, median(py.reused_cpu_ms))
        .notes(format!(
            "the same {} calls: CPU time of the client's own process per call (ferrite: \
             CLOCK_PROCESS_CPUTIME_ID of the bench process, its tokio runtime included; sushy: \
             time.process_time() of its python process), the emulator's CPU not counted: \
             what the client costs, where the wall time above is mostly the emulator's; \
             {setup}",
            c.reused
        ))
        .verified(checked),
        Record::new(
            "set boot device (once)",
            "ms/call",
            median(fe.boot_ms),
            "lower",
        )
        .baseline(base, median(py.boot_ms))
        .notes(format!(
            "{} calls a round each side, alternating Pxe and Hdd, one PATCH each; {setup}",
            c.boot
        ))
        .verified(checked),
    ];
    records.extend(super::redfish_vmedia::run(size)?);
    Ok(records)
}

//! `cargo xtask bench iscsi`: sequential 1 GiB write and read over loopback against our
//! target (the static agent's `iscsi-target`) and against tgtd, on the same backing file,
//! in the same run, alternating rounds; then conductor deploy time through the `iscsi`
//! deploy interface vs `direct` (see `iscsi_deploy`). tgtd is the baseline twice: with the
//! negotiation limits our target offers (tgtadm target params; the bench checks that the
//! initiator negotiated the same values with both), and at its stock settings.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrite_iscsi::text::{Offer, Params};
use ferrite_iscsi::{Initiator, LoginOptions};

use super::{Record, Size};

const GIB: u64 = 1 << 30;
const ROUNDS: usize = 3;
/// Bytes per WRITE/READ command of our initiator.
const CHUNK: usize = 1 << 20;
/// Tagged WRITEs: bytes per command and commands in flight (as `IscsiDisk` sends them).
const TAGGED_CHUNK: usize = 4 << 20;
const TAGGED_DEPTH: usize = 4;
/// iscsi-perf: requests in flight, blocks per request, seconds per run.
const PERF_DEPTH: &str = "16";
const PERF_BLOCKS: &str = "256";
const PERF_SECS: u64 = 8;
const OUR_IQN: &str = "iqn.2026-01.org.ferrite:bench";
const TGT_IQN: &str = "iqn.2026-01.org.ferrite:bench-tgtd";
const INITIATOR: &str = "iqn.2026-01.org.ferrite:bench-initiator";

#[derive(Default)]
struct Results {
    write: Vec<f64>,
    tagged: Vec<f64>,
    read: Vec<f64>,
    perf: Vec<f64>,
    /// What our initiator negotiated with this target (the last login).
    negotiated: Option<Params>,
}

/// tgtd's configurations: with our target's limits, or as installed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TgtdLimits {
    Ours,
    Stock,
}

/// The limits that decide how many PDUs and round trips a write takes, as "key value" text.
fn limits(p: &Params) -> String {
    format!(
        "MaxRecvDataSegmentLength {} (target) / {} (initiator), MaxBurstLength {}, \
         FirstBurstLength {}, ImmediateData {}, InitialR2T {}",
        p.peer_max_recv_data,
        p.max_recv_data,
        p.max_burst,
        p.first_burst,
        yes(p.immediate_data),
        yes(p.initial_r2t)
    )
}

fn yes(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    // The smoke size: 64 MiB, one round, iscsi-perf for 3 s (its first average comes
    // after ~2 s).
    let (bytes, rounds, perf_secs) = size.pick((GIB, ROUNDS, PERF_SECS), (64 << 20, 1, 3));
    let agent = crate::build_agent()?;
    for tool in ["tgtd", "tgtadm", "iscsi-perf"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!("{tool} is missing: run `cargo xtask deps` (Debian packages tgt, libiscsi-bin)");
        }
    }
    let dir = crate::util::project_root().join("target/bench/iscsi");
    std::fs::create_dir_all(&dir)?;
    let lun = dir.join("lun.img");
    let _ = std::fs::remove_file(&lun);
    // Allocate every block first, so that neither target pays for the filesystem's first
    // writes into a sparse file.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&lun)?;
        let block = vec![0x5au8; CHUNK];
        for _ in 0..(bytes as usize / CHUNK) {
            f.write_all(&block)?;
        }
        f.sync_all()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let mut ours = Results::default();
    let mut tgt = Results::default();
    let mut stock = Results::default();
    for round in 0..rounds {
        println!("iscsi bench: round {} of {rounds}", round + 1);
        // Rotate which target goes first, against cache and ordering effects.
        for which in (0..3).map(|i| (i + round) % 3) {
            if which == 0 {
                let s = OurTarget::start(&agent, &lun)?;
                measure(&rt, &mut ours, s.addr, OUR_IQN, 0, bytes, perf_secs)?;
            } else {
                let (limits, r) = match which {
                    1 => (TgtdLimits::Ours, &mut tgt),
                    _ => (TgtdLimits::Stock, &mut stock),
                };
                let s = Tgtd::start(&lun, limits)?;
                measure(&rt, r, s.addr, TGT_IQN, 1, bytes, perf_secs)?;
            }
        }
    }
    let _ = std::fs::remove_file(&lun);
    let (Some(with_ours), Some(with_tgtd), Some(with_stock)) =
        (ours.negotiated, tgt.negotiated, stock.negotiated)
    else {
        bail!("no login was measured");
    };
    if with_ours != with_tgtd {
        bail!(
            "tgtd did not take our target's limits: with ours {}; with tgtd {}",
            limits(&with_ours),
            limits(&with_tgtd)
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let negotiated = format!(
        "negotiated with both ours and tgtd: {}; tgtd at stock settings negotiated {}",
        limits(&with_ours),
        limits(&with_stock)
    );
    let rec = |metric: &str, unit: &str, o: &[f64], t: &[f64], st: &[f64], notes: &str| {
        Record::new(metric, unit, mean(o), "higher")
            .baseline(
                "tgtd 1.0.85 (Debian tgt) with our target's limits, same file, same run",
                mean(t),
            )
            .notes(format!(
                "{notes}; mean of {rounds} rotated rounds; ours {o:.0?}, tgtd {t:.0?}, tgtd at \
                 stock settings {st:.0?} (mean {:.0}); {negotiated}",
                mean(st)
            ))
            .verified(
                "every READ compared with what was written; the last tagged WRITE read back; \
                 iscsi-perf exited cleanly",
            )
    };
    let mut records = vec![
        rec(
            "sequential write 1 GiB",
            "MiB/s",
            &ours.write,
            &tgt.write,
            &stock.write,
            "ferrite initiator, 1 MiB WRITE(16) commands one at a time, then SYNCHRONIZE CACHE; \
             1 GiB preallocated file on this machine's disk (page cache warm)",
        ),
        rec(
            "sequential write 1 GiB, tagged WRITEs in flight",
            "MiB/s",
            &ours.tagged,
            &tgt.tagged,
            &stock.tagged,
            &format!(
                "ferrite initiator, {} MiB WRITE(16) commands, {TAGGED_DEPTH} in flight (as \
                 IscsiDisk sends them), then SYNCHRONIZE CACHE",
                TAGGED_CHUNK >> 20
            ),
        ),
        rec(
            "sequential read 1 GiB",
            "MiB/s",
            &ours.read,
            &tgt.read,
            &stock.read,
            "ferrite initiator, 1 MiB READ(16) commands one at a time",
        ),
        rec(
            "sequential read, libiscsi iscsi-perf",
            "MB/s",
            &ours.perf,
            &tgt.perf,
            &stock.perf,
            &format!(
                "iscsi-perf -m {PERF_DEPTH} -b {PERF_BLOCKS} for {perf_secs} s (its own average; it wraps at the LUN's end)"
            ),
        ),
    ];
    records.extend(super::iscsi_deploy::records(size)?);
    Ok(records)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    r: &mut Results,
    addr: SocketAddr,
    iqn: &str,
    lun: u8,
    bytes: u64,
    perf_secs: u64,
) -> anyhow::Result<()> {
    let (w, rd, tw) = rt.block_on(async {
        let opts = LoginOptions::new(INITIATOR, iqn);
        let mut s = Initiator::connect_lun(addr, &opts, lun)
            .await
            .context("login")?;
        r.negotiated = Some(*s.params());
        let bs = s.block_size() as u64;
        let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8 | 1).collect();
        let t0 = Instant::now();
        for i in 0..(bytes as usize / CHUNK) {
            s.write((i * CHUNK) as u64 / bs, &data)
                .await
                .context("write")?;
        }
        s.sync().await.context("sync")?;
        let w = bytes as f64 / 1048576.0 / t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        for i in 0..(bytes as usize / CHUNK) {
            let got = s
                .read((i * CHUNK) as u64 / bs, (CHUNK as u64 / bs) as u32)
                .await
                .context("read")?;
            if got != data {
                bail!("read back different data at chunk {i}");
            }
        }
        let rd = bytes as f64 / 1048576.0 / t0.elapsed().as_secs_f64();
        let big = bytes::Bytes::from(
            (0..TAGGED_CHUNK)
                .map(|i| (i % 241) as u8 | 1)
                .collect::<Vec<u8>>(),
        );
        let t0 = Instant::now();
        for i in 0..(bytes as usize / TAGGED_CHUNK) {
            while s.in_flight() >= TAGGED_DEPTH {
                if let Some(c) = s.next_completion().await {
                    c.result.context("tagged write")?;
                }
            }
            s.submit_write((i * TAGGED_CHUNK) as u64 / bs, big.clone())
                .await
                .context("tagged write")?;
        }
        s.wait_all().await.context("tagged write")?;
        s.sync().await.context("sync")?;
        let tw = bytes as f64 / 1048576.0 / t0.elapsed().as_secs_f64();
        let got = s
            .read(
                bytes / bs - TAGGED_CHUNK as u64 / bs,
                (TAGGED_CHUNK as u64 / bs) as u32,
            )
            .await
            .context("read")?;
        if got != big {
            bail!("the last tagged write read back different data");
        }
        s.logout().await?;
        anyhow::Ok((w, rd, tw))
    })?;
    r.write.push(w);
    r.tagged.push(tw);
    r.read.push(rd);
    r.perf.push(iscsi_perf(
        &format!("iscsi://{addr}/{iqn}/{lun}"),
        perf_secs,
    )?);
    Ok(())
}

/// Runs iscsi-perf for `secs` and returns its final average MB/s.
fn iscsi_perf(url: &str, secs: u64) -> anyhow::Result<f64> {
    let mut child = Command::new("iscsi-perf")
        .args(["-m", PERF_DEPTH, "-b", PERF_BLOCKS, url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iscsi-perf")?;
    let guard = Instant::now();
    while guard.elapsed() < Duration::from_secs(secs) {
        if child.try_wait()?.is_some() {
            bail!("iscsi-perf exited early against {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid with SIGINT, which iscsi-perf handles by
    // printing its summary.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.rsplit("iops average").next().unwrap_or("");
    let mbs = last
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    mbs.with_context(|| format!("no average in iscsi-perf output: {text}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if t0.elapsed() > Duration::from_secs(15) {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

struct OurTarget {
    child: Child,
    addr: SocketAddr,
}

impl OurTarget {
    fn start(agent: &Path, lun: &Path) -> anyhow::Result<OurTarget> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let child = Command::new(agent)
            .args([
                "iscsi-target",
                "--iqn",
                OUR_IQN,
                "--listen",
                &addr.to_string(),
                "--backing",
            ])
            .arg(lun)
            .stderr(Stdio::null())
            .spawn()
            .context("starting ferrite-agent iscsi-target")?;
        let t = OurTarget { child, addr };
        wait_listening(addr)?;
        Ok(t)
    }
}

impl Drop for OurTarget {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child; it then closes sessions and exits.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

struct Tgtd {
    child: Child,
    control: String,
    addr: SocketAddr,
}

impl Tgtd {
    fn adm(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("tgtadm")
            .args(["-C", &self.control])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("tgtadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn start(lun: &Path, limits: TgtdLimits) -> anyhow::Result<Tgtd> {
        let port = free_port()?;
        let control = (10000 + std::process::id() % 20000).to_string();
        let child = Command::new("tgtd")
            .args([
                "-f",
                "-C",
                &control,
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tgtd")?;
        let t = Tgtd {
            child,
            control,
            addr: format!("127.0.0.1:{port}").parse()?,
        };
        let t0 = Instant::now();
        while t
            .adm(&["--lld", "iscsi", "--op", "show", "--mode", "target"])
            .is_err()
        {
            if t0.elapsed() > Duration::from_secs(15) {
                bail!("tgtd did not come up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let lun = lun.to_str().context("path is not UTF-8")?;
        t.adm(&[
            "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN,
        ])?;
        t.adm(&[
            "--lld",
            "iscsi",
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            lun,
        ])?;
        if limits == TgtdLimits::Ours {
            // What our target offers; tgtd's stock values are 8 KiB segments and 256 KiB
            // bursts, which cost it extra PDUs and R2T round trips per write.
            let o = Offer::default();
            let mrdsl = o.max_recv_data.to_string();
            let params = [
                ("MaxRecvDataSegmentLength", mrdsl.clone()),
                ("MaxXmitDataSegmentLength", mrdsl),
                ("MaxBurstLength", o.max_burst.to_string()),
                ("FirstBurstLength", o.first_burst.to_string()),
            ];
            for (name, value) in &params {
                t.adm(&[
                    "--lld", "iscsi", "--op", "update", "--mode", "target", "--tid", "1", "--name",
                    name, "--value", value,
                ])?;
            }
        }
        t.adm(&[
            "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])?;
        wait_listening(t.addr)?;
        Ok(t)
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while targets exist: take it offline, delete the target,
        // then the system, which makes it exit.
        let lld = ["--lld", "iscsi"];
        let _ = self.adm(
            &[
                &lld[..],
                &[
                    "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
                ],
            ]
            .concat(),
        );
        let _ = self.adm(
            &[
                &lld[..],
                &[
                    "--op", "delete", "--force", "--mode", "target", "--tid", "1",
                ],
            ]
            .concat(),
        );
        let _ = self.adm(&[&lld[..], &["--op", "delete", "--mode", "system"]].concat());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Raw image onto a pre-sized file: ferrite vs `curl | dd` at its best and with `O_DIRECT`,
//! and the physical limit (fio's O_DIRECT sequential write of the same block size to the
//! same target; sha256 on one core), alternating the order every round.

use anyhow::{bail, Context};

use super::tools::{self, median, rate, MIB};
use super::{Ctx, Record};

/// ferrite's O_DIRECT write size (agent/src/image/writer.rs STAGE_BYTES), used by dd and fio.
const BLOCK: &str = "4M";

#[derive(Clone, Copy)]
enum Side {
    Ferrite,
    DdBuffered,
    DdDirect,
    Fio,
}

/// The lower of what the target takes and what one core hashes, MiB/s, with its name.
pub struct Limit {
    pub mib_s: f64,
    pub name: String,
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<(Vec<Record>, Limit)> {
    let bytes = ctx.sizes.image;
    let rounds = ctx.sizes.rounds;
    tools::need_space(&ctx.dir, bytes, 2048 * MIB)?;
    let url = ctx.server.url(super::RAW_NAME);
    let target = ctx.dir.join("raw-target.img");
    let sides = [Side::Ferrite, Side::DdBuffered, Side::DdDirect, Side::Fio];
    let (mut ours, mut dd, mut dd_direct, mut fio) = (vec![], vec![], vec![], vec![]);
    let mut rss = 0f64;
    for round in 0..rounds {
        for k in 0..sides.len() {
            let side = sides[(round + k) % sides.len()];
            tools::fresh(&target, bytes)?;
            match side {
                Side::Ferrite => {
                    let m = ctx.ferrite(&target, &url, &ctx.raw_sha)?;
                    tools::verify(&target, &ctx.raw_sha, "ferrite")?;
                    ours.push(rate(bytes, m.secs));
                    rss = rss.max(m.rss_mib);
                }
                Side::DdBuffered | Side::DdDirect => {
                    let direct = matches!(side, Side::DdDirect);
                    let oflag = if direct { " oflag=direct" } else { "" };
                    let m = tools::measured(&mut tools::shell(&format!(
                        "curl -sf {url} | dd of={} bs={BLOCK} iflag=fullblock{oflag} \
                         conv=fsync,notrunc status=none",
                        target.display()
                    )))?;
                    tools::verify(&target, &ctx.raw_sha, "curl | dd")?;
                    if direct { &mut dd_direct } else { &mut dd }.push(rate(bytes, m.secs));
                }
                Side::Fio => fio.push(fio_write(&target, bytes)?),
            }
        }
    }
    let _ = std::fs::remove_file(&target);
    let (sha_mib_s, sha_name) = sha256_one_core(ctx)?;
    let fio_mib_s = median(&fio);
    let limit = if fio_mib_s < sha_mib_s {
        Limit {
            mib_s: fio_mib_s,
            name: format!("fio O_DIRECT sequential write bs={BLOCK}, same target (the lower)"),
        }
    } else {
        Limit {
            mib_s: sha_mib_s,
            name: format!("sha256 on one core, {sha_name} (the lower)"),
        }
    };

    let mib = bytes / MIB;
    let ours = median(&ours);
    let runs = format!(
        "median of {rounds} rounds, the order of ferrite, dd buffered, dd O_DIRECT and fio \
         rotating every round; each side writes into a fresh pre-sized {mib} MiB file on this \
         machine's disk from the same loopback HTTP server; incompressible data"
    );
    let checked = "sha256 of the target after every run equals the source's, for every side";
    let records = vec![
        Record::new(
            &format!("raw {mib} MiB image to file, throughput"),
            "MiB/s",
            ours,
            "higher",
        )
        .baseline(
            &format!("curl -sf URL | dd bs={BLOCK} iflag=fullblock conv=fsync,notrunc (buffered)"),
            median(&dd),
        )
        .notes(format!(
            "{runs}; ferrite: O_DIRECT {BLOCK} writes from a writer thread, sha256 of the \
                 stream, fsync; dd: page cache, one fsync at the end (dd at its best)"
        ))
        .verified(checked),
        Record::new(
            &format!("raw {mib} MiB image to file, throughput vs dd O_DIRECT"),
            "MiB/s",
            ours,
            "higher",
        )
        .baseline(
            &format!(
                "curl -sf URL | dd bs={BLOCK} iflag=fullblock oflag=direct conv=fsync,notrunc"
            ),
            median(&dd_direct),
        )
        .notes(format!(
            "{runs}; dd O_DIRECT: each {BLOCK} write waits while nothing downloads (dd's \
             slowest configuration, the old baseline)"
        ))
        .verified(checked),
        Record::new(
            &format!("raw {mib} MiB: ferrite peak RSS"),
            "MiB",
            rss,
            "lower",
        )
        .notes("whole agent process (runtime, HTTP client, buffers), from wait4")
        .verified(checked),
        Record::new(
            &format!("raw {mib} MiB: ferrite vs what the target can take"),
            "MiB/s",
            ours,
            "higher",
        )
        .baseline(
            &format!("fio O_DIRECT sequential write bs={BLOCK}, same target"),
            fio_mib_s,
        )
        .notes(format!(
            "fio --rw=write --bs={BLOCK} --direct=1 --ioengine=psync --end_fsync=1 into the \
             same fresh pre-sized file, its own bandwidth figure, median of {rounds}; {runs}"
        ))
        .verified("fio reported all bytes written; ferrite as above"),
        Record::new(
            &format!("raw {mib} MiB: ferrite vs sha256 on one core"),
            "MiB/s",
            ours,
            "higher",
        )
        .baseline(&format!("sha256 on one core ({sha_name})"), sha_mib_s)
        .notes(
            "the source in tmpfs hashed by openssl dgst -sha256 and by sha256sum; bytes per \
             CPU second (user + system), so other load on the machine does not count; the \
             faster of the two",
        )
        .verified("both digests equal the source's"),
        Record::new(
            &format!("raw {mib} MiB: fraction of the physical limit (goal >= 0.9)"),
            "MiB/s",
            ours,
            "higher",
        )
        .baseline(&limit.name, limit.mib_s)
        .notes(format!(
            "the ratio is ferrite's rate as a fraction of min(fio {fio_mib_s:.0}, sha256 \
             {sha_mib_s:.0}) MiB/s; goal >= 0.9"
        ))
        .verified(checked),
    ];
    Ok((records, limit))
}

/// fio's sequential O_DIRECT write of `bytes` into `target` (fresh first), MiB/s.
fn fio_write(target: &std::path::Path, bytes: u64) -> anyhow::Result<f64> {
    let out = tools::timed("fio")
        .args([
            "--name=seqwrite",
            "--rw=write",
            &format!("--bs={BLOCK}"),
            "--direct=1",
            "--ioengine=psync",
            "--end_fsync=1",
            &format!("--size={bytes}"),
            "--output-format=json",
        ])
        .arg(format!("--filename={}", target.display()))
        .output()
        .context("running fio")?;
    if !out.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // fio may print notes before its JSON.
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .find('{')
        .map(|i| &text[i..])
        .context("no JSON from fio")?;
    let v: serde_json::Value = serde_json::from_str(json).context("fio's JSON")?;
    let write = &v["jobs"][0]["write"];
    let (written, bw) = (write["io_bytes"].as_u64(), write["bw_bytes"].as_f64());
    match (written, bw) {
        (Some(w), Some(bw)) if w == bytes && bw > 0.0 => Ok(bw / MIB as f64),
        _ => bail!("fio wrote {written:?} of {bytes} bytes at {bw:?} B/s"),
    }
}

/// The faster of openssl's and coreutils' sha256 of the source per CPU second, MiB/s.
fn sha256_one_core(ctx: &Ctx) -> anyhow::Result<(f64, String)> {
    let raw = ctx.srv.join(super::RAW_NAME);
    let digest_file = ctx.srv.join("digest.txt");
    let mut best = (0f64, String::new());
    for (prog, args) in [
        ("openssl", &["dgst", "-sha256", "-r"][..]),
        ("sha256sum", &[][..]),
    ] {
        let name = format!("{prog} {}", args.join(" ")).trim_end().to_string();
        let m = tools::measured(
            tools::timed(prog)
                .args(args)
                .arg(&raw)
                .stdout(std::fs::File::create(&digest_file)?),
        )?;
        let text = std::fs::read_to_string(&digest_file)?;
        if text.split_whitespace().next() != Some(ctx.raw_sha.as_str()) {
            bail!("{name} disagrees with the source's sha256: {text}");
        }
        let r = rate(ctx.sizes.image, m.cpu_secs.max(1e-3));
        if r > best.0 {
            best = (r, name);
        }
    }
    let _ = std::fs::remove_file(&digest_file);
    Ok(best)
}

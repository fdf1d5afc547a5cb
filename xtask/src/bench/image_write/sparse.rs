//! One sparse image (mostly holes) onto a block device: a loop device over a fresh sparse
//! file the bench creates, written by ferrite (from the qcow2, and from the raw), by
//! `qemu-img convert` (IPA's tmpfs way, and straight over HTTP) and by `bmaptool copy`
//! (the sparse-write reference: raw image + block map), alternating the order.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::tools::{self, median, Loop, MIB};
use super::{Ctx, Record};

const RAW_NAME: &str = "sparse.img";
const QCOW2_NAME: &str = "sparse.qcow2";
const BMAP_NAME: &str = "sparse.bmap";
/// Data extents spread over the virtual size.
const EXTENTS: u64 = 16;

#[derive(Clone, Copy, PartialEq)]
enum Side {
    FerriteQcow2,
    FerriteRaw,
    QemuIpa,
    QemuHttp,
    Bmaptool,
}

const SIDES: [Side; 5] = [
    Side::FerriteQcow2,
    Side::FerriteRaw,
    Side::QemuIpa,
    Side::QemuHttp,
    Side::Bmaptool,
];

pub fn measure(ctx: &Ctx) -> anyhow::Result<Vec<Record>> {
    let (virt, data) = (ctx.sizes.sparse_virtual, ctx.sizes.sparse_data);
    let rounds = ctx.sizes.rounds;
    tools::need_space(&ctx.dir, virt, 2048 * MIB)?;
    let raw = ctx.srv.join(RAW_NAME);
    make_sparse(&raw, virt, data)?;
    let raw_sha = tools::sha256(&raw)?;
    let q_sha = super::to_qcow2(&raw, &ctx.srv.join(QCOW2_NAME))?;
    let bmap = ctx.srv.join(BMAP_NAME);
    crate::util::run(
        tools::timed("bmaptool")
            .args(["create", "-o"])
            .arg(&bmap)
            .arg(&raw)
            .stderr(Stdio::null()),
    )?;
    let (raw_url, q_url) = (ctx.server.url(RAW_NAME), ctx.server.url(QCOW2_NAME));
    let backing = ctx.dir.join("loop-backing.img");
    tools::Loop::detach_leftovers(&backing);
    let tmpfs_copy = ctx.srv.join("ipa-tmpfs-copy.qcow2");
    let mut secs: Vec<Vec<f64>> = vec![vec![]; SIDES.len()];
    for round in 0..rounds {
        for k in 0..SIDES.len() {
            let i = (round + k) % SIDES.len();
            tools::fresh(&backing, virt)?;
            let disk = Loop::attach(&backing)?;
            let dev = disk.dev.as_path();
            let t = match SIDES[i] {
                Side::FerriteQcow2 => ctx.ferrite(dev, &q_url, &q_sha)?.secs,
                Side::FerriteRaw => ctx.ferrite(dev, &raw_url, &raw_sha)?.secs,
                Side::QemuIpa => {
                    let start = Instant::now();
                    tools::measured(
                        tools::timed("curl")
                            .args(["-sf", "-o"])
                            .arg(&tmpfs_copy)
                            .arg(&q_url),
                    )?;
                    convert(
                        tools::timed("qemu-img")
                            .args(["convert", "-n", "-f", "qcow2"])
                            .arg(&tmpfs_copy),
                        dev,
                    )?;
                    let _ = std::fs::remove_file(&tmpfs_copy);
                    start.elapsed().as_secs_f64()
                }
                Side::QemuHttp => {
                    let source = format!(
                        "driver=qcow2,file.driver=http,file.url={}",
                        ctx.server.url(QCOW2_NAME)
                    );
                    // One coroutine: see the qcow2 section.
                    convert(
                        tools::timed("qemu-img").args([
                            "convert",
                            "-m",
                            "1",
                            "-n",
                            "--image-opts",
                            &source,
                        ]),
                        dev,
                    )?
                }
                Side::Bmaptool => {
                    tools::measured(
                        tools::timed("bmaptool")
                            .args(["copy", "--bmap"])
                            .arg(&bmap)
                            .arg(&raw_url)
                            .arg(dev)
                            .stderr(Stdio::null()),
                    )?
                    .secs
                }
            };
            tools::verify(dev, &raw_sha, side_name(SIDES[i]))?;
            secs[i].push(t);
            drop(disk);
        }
    }
    let _ = std::fs::remove_file(&backing);

    let shape = format!("{} MiB virtual, {} MiB data", virt / MIB, data / MIB);
    let t = |s: Side| median(&secs[SIDES.iter().position(|x| *x == s).unwrap_or(0)]);
    let runs = format!(
        "median of {rounds} rounds, the order of the five sides rotating every round; the \
         target is a loop device over a fresh sparse file on this machine's disk (it reads \
         zeroes before each run); ferrite writes or BLKZEROOUTs the zero runs, qemu-img \
         -n zeroes what is unallocated, bmaptool leaves unmapped ranges untouched (its \
         contract)"
    );
    let checked = "sha256 of the whole loop device after every run equals the sparse raw \
                   image's, for every side";
    let rec = |metric: &str, ours: Side, theirs: Side, name: &str, note: &str| {
        Record::new(
            &format!("sparse image ({shape}) to a block device, {metric}"),
            "s",
            t(ours),
            "lower",
        )
        .baseline(name, t(theirs))
        .notes(format!("{note}; {runs}"))
        .verified(checked)
    };
    Ok(vec![
        rec(
            "ferrite qcow2 vs IPA's way",
            Side::FerriteQcow2,
            Side::QemuIpa,
            "curl qcow2 to tmpfs + qemu-img convert -n -O raw -t none",
            "both from the qcow2 of the image",
        ),
        rec(
            "ferrite qcow2 vs qemu-img over HTTP",
            Side::FerriteQcow2,
            Side::QemuHttp,
            "qemu-img convert -m 1 -n -O raw -t none reading the qcow2 URL (curl driver)",
            "both from the qcow2 of the image; qemu-img with -m 1: its 7.2 curl driver hangs \
             now and then with the default 8 coroutines",
        ),
        rec(
            "ferrite qcow2 vs bmaptool",
            Side::FerriteQcow2,
            Side::Bmaptool,
            "bmaptool copy --bmap (raw image URL + its block map)",
            "ferrite from the qcow2; bmaptool downloads the whole raw image and writes only \
             the mapped ranges, checking their sha256 from the bmap",
        ),
        rec(
            "ferrite raw vs bmaptool",
            Side::FerriteRaw,
            Side::Bmaptool,
            "bmaptool copy --bmap (raw image URL + its block map)",
            "both download the whole raw image; ferrite finds the zero runs itself and \
             verifies the image's sha256, bmaptool is told them by the bmap",
        ),
    ])
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::FerriteQcow2 => "ferrite (qcow2)",
        Side::FerriteRaw => "ferrite (raw)",
        Side::QemuIpa => "curl to tmpfs + qemu-img convert",
        Side::QemuHttp => "qemu-img convert over HTTP",
        Side::Bmaptool => "bmaptool copy",
    }
}

/// Finishes a `qemu-img convert` command line writing raw onto `dev`; its wall seconds.
fn convert(cmd: &mut Command, dev: &Path) -> anyhow::Result<f64> {
    let m = tools::measured(
        cmd.args(["-O", "raw", "-t", "none"])
            .arg(dev)
            .stderr(Stdio::piped()),
    )?;
    Ok(m.secs)
}

/// A sparse file of `virt` bytes with `data` random bytes in EXTENTS spread-out runs.
fn make_sparse(path: &Path, virt: u64, data: u64) -> anyhow::Result<()> {
    let f = File::create(path)?;
    f.set_len(virt)?;
    let chunk = data / EXTENTS;
    let mut w = BufWriter::new(&f);
    for i in 0..EXTENTS {
        w.seek(SeekFrom::Start(i * (virt / EXTENTS)))?;
        tools::fill_random(&mut w, chunk, 100 + i)?;
    }
    w.flush()?;
    Ok(())
}

//! A qcow2 image holding the raw image's data onto a pre-sized file: ferrite streaming it
//! from HTTP vs IPA's way (download to tmpfs, then `qemu-img convert`) vs `qemu-img
//! convert` reading straight over HTTP (its curl driver, Debian qemu-block-extra),
//! alternating the order every round.

use std::process::Stdio;
use std::time::Instant;

use super::raw::Limit;
use super::tools::{self, median, rate, MIB};
use super::{Ctx, Record};

const QCOW2_NAME: &str = "data.qcow2";
/// qemu-img's curl driver reads ahead this much per request (its default is 256 KiB).
const QEMU_READAHEAD: u64 = 4 << 20;

#[derive(Clone, Copy)]
enum Side {
    Ferrite,
    Ipa,
    QemuHttp,
}

pub fn measure(ctx: &Ctx, limit: &Limit) -> anyhow::Result<Vec<Record>> {
    let bytes = ctx.sizes.image;
    let rounds = ctx.sizes.rounds;
    let qcow2 = ctx.srv.join(QCOW2_NAME);
    let q_sha = super::to_qcow2(&ctx.srv.join(super::RAW_NAME), &qcow2)?;
    let url = ctx.server.url(QCOW2_NAME);
    let target = ctx.dir.join("qcow2-target.img");
    let tmpfs_copy = ctx.srv.join("ipa-tmpfs-copy.qcow2");
    let sides = [Side::Ferrite, Side::Ipa, Side::QemuHttp];
    let (mut ours, mut ipa, mut qemu_http) = (vec![], vec![], vec![]);
    let (mut rss_ours, mut rss_ipa, mut rss_qemu_http) = (0f64, 0f64, 0f64);
    let mut tmpfs_bytes = 0;
    for round in 0..rounds {
        for k in 0..sides.len() {
            let side = sides[(round + k) % sides.len()];
            tools::fresh(&target, bytes)?;
            match side {
                Side::Ferrite => {
                    let m = ctx.ferrite(&target, &url, &q_sha)?;
                    tools::verify(&target, &ctx.raw_sha, "ferrite")?;
                    ours.push(m.secs);
                    rss_ours = rss_ours.max(m.rss_mib);
                }
                Side::Ipa => {
                    let start = Instant::now();
                    let curl = tools::measured(
                        tools::timed("curl")
                            .args(["-sf", "-o"])
                            .arg(&tmpfs_copy)
                            .arg(&url),
                    )?;
                    let convert = tools::measured(
                        tools::timed("qemu-img")
                            .args(["convert", "-n", "-f", "qcow2", "-O", "raw", "-t", "none"])
                            .arg(&tmpfs_copy)
                            .arg(&target),
                    )?;
                    ipa.push(start.elapsed().as_secs_f64());
                    tmpfs_bytes = std::fs::metadata(&tmpfs_copy)?.len();
                    let _ = std::fs::remove_file(&tmpfs_copy);
                    tools::verify(&target, &ctx.raw_sha, "curl to tmpfs + qemu-img convert")?;
                    rss_ipa = rss_ipa.max(curl.rss_mib.max(convert.rss_mib));
                }
                Side::QemuHttp => {
                    let source = format!(
                        "driver=qcow2,file.driver=http,file.url={},file.readahead={QEMU_READAHEAD}",
                        ctx.server.url(QCOW2_NAME)
                    );
                    let m = tools::measured(
                        tools::timed("qemu-img")
                            .args(["convert", "-m", "1", "-n", "--image-opts", &source])
                            .args(["-O", "raw", "-t", "none"])
                            .arg(&target)
                            .stderr(Stdio::piped()),
                    )?;
                    tools::verify(&target, &ctx.raw_sha, "qemu-img convert over HTTP")?;
                    qemu_http.push(m.secs);
                    rss_qemu_http = rss_qemu_http.max(m.rss_mib);
                }
            }
        }
    }
    let _ = std::fs::remove_file(&target);

    let mib = bytes / MIB;
    let runs = format!(
        "median of {rounds} rounds, the order of the three sides rotating every round; each \
         writes a fresh pre-sized {mib} MiB file on this machine's disk from the same \
         loopback HTTP server"
    );
    let checked = "sha256 of the target after every run equals the raw source's, for every side";
    let t_ours = median(&ours);
    Ok(vec![
        Record::new(&format!("qcow2 ({mib} MiB data) deploy wall time"), "s", t_ours, "lower")
            .baseline(
                "curl to tmpfs + qemu-img convert -n -O raw -t none (IPA's way)",
                median(&ipa),
            )
            .notes(format!(
                "{runs}; ferrite streams qcow2 to raw from HTTP with Range-first table reads \
                 and verifies sha256; IPA downloads the whole image to tmpfs first (and \
                 checks its checksum there, not timed here)"
            ))
            .verified(checked),
        Record::new(
            &format!("qcow2 ({mib} MiB data) deploy wall time vs qemu-img over HTTP"),
            "s",
            t_ours,
            "lower",
        )
        .baseline(
            &format!(
                "qemu-img convert -m 1 -n -O raw -t none reading the URL (curl driver, \
                 readahead {} MiB)",
                QEMU_READAHEAD / MIB
            ),
            median(&qemu_http),
        )
        .notes(format!(
            "{runs}; the strongest streaming baseline: no tmpfs copy, qemu-img fetches the \
             clusters it needs with Range requests; -m 1 (one coroutine): with qemu-img's \
             default of 8 its 7.2 curl driver hangs in ~1 run of 3 here (all replies \
             received, nothing polled; busybox httpd as the server too); it verifies nothing"
        ))
        .verified(checked),
        Record::new(&format!("qcow2 ({mib} MiB data) peak RSS"), "MiB", rss_ours, "lower")
            .baseline("max(curl, qemu-img) RSS (IPA's way)", rss_ipa)
            .notes(format!(
                "from wait4; IPA's way also holds the whole image in tmpfs ({} MiB of RAM) \
                 during the convert, not counted in its RSS; qemu-img over HTTP: {:.1} MiB",
                tmpfs_bytes / MIB,
                rss_qemu_http
            ))
            .verified(checked),
        Record::new(
            &format!("qcow2 ({mib} MiB data): fraction of the physical limit (goal >= 0.9)"),
            "MiB/s",
            rate(bytes, t_ours),
            "higher",
        )
        .baseline(&limit.name, limit.mib_s)
        .notes("ferrite's qcow2 deploy as data MiB/s over its wall time; the limit is the raw section's")
        .verified(checked),
    ])
}

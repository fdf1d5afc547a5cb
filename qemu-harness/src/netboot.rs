//! Network boot of a UEFI node, done by the harness the way the node's iPXE would do it.
//!
//! A SeaBIOS node PXE-boots for real: its NIC's iPXE ROM takes the boot file URL from QEMU's
//! user-network DHCP and runs the script. OVMF cannot do that here: its PXE client fetches
//! a TFTP boot file, and an iPXE loaded that way would ask DHCP again and get itself
//! (QEMU's DHCP cannot tell iPXE from the firmware, and Debian's 2019 iPXE has no
//! `autoexec.ipxe`). So when a UEFI node with a [`crate::spec::VmSpec::netboot`] script is
//! powered on with boot device `pxe`, the chassis program runs the iPXE script itself —
//! `chain`, `goto`, `kernel`, `initrd`, `boot`, with `${mac}` and `${mac:hexhyp}` — fetches
//! the kernel and initrd the script names (with curl) and starts QEMU with them as
//! `-kernel`/`-initrd`/`-append`: OVMF then starts the kernel's EFI stub, and the ramdisk
//! runs on UEFI firmware (efivarfs and all) with the command line the script gave.
//! What is not exercised: the firmware's own network stack.

use std::path::Path;
use std::process::Command;

use crate::spec::DirectKernel;
use crate::Error;

/// How many `chain`s and `goto`s a script may take before it is called a loop.
const MAX_STEPS: usize = 64;

/// Runs the iPXE script at `url` for the NIC `mac`; downloads into `dir`.
///
/// URLs as the guest sees them (`10.0.2.2`, QEMU's address for the host) are fetched from
/// the host's loopback.
pub fn resolve(url: &str, mac: &str, dir: &Path) -> Result<DirectKernel, Error> {
    let mut base = expand(url, mac);
    let mut script = fetch_text(&base)?;
    let mut kernel: Option<(String, String)> = None;
    let mut initrd: Option<String> = None;
    let mut steps = 0;
    let mut pc = 0;
    loop {
        let lines: Vec<&str> = script.lines().collect();
        let Some(raw) = lines.get(pc) else {
            return Err(no_boot(&base, "the script ended without `boot`"));
        };
        pc += 1;
        // `cmd || fallback`: the command is tried; its fallback only runs on failure, which
        // here is an error anyway.
        let line = expand(raw.split(" || ").next().unwrap_or("").trim(), mac);
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else { continue };
        let mut args: Vec<&str> = vec![];
        while let Some(w) = words.next() {
            match w {
                // iPXE's options that take a value.
                "--timeout" | "--name" | "-t" | "-n" => {
                    words.next();
                }
                _ if w.starts_with("--") => {}
                _ => args.push(w),
            }
        }
        match cmd {
            "goto" | "chain" => {
                steps += 1;
                if steps > MAX_STEPS {
                    return Err(no_boot(&base, "more than 64 chains or gotos: a loop"));
                }
                let target = args.first().copied().unwrap_or_default();
                if cmd == "goto" {
                    let label = format!(":{target}");
                    pc = lines
                        .iter()
                        .position(|l| l.trim() == label)
                        .ok_or_else(|| no_boot(&base, &format!("no label {label}")))?;
                } else {
                    base = join(&base, target);
                    script = fetch_text(&base)?;
                    pc = 0;
                }
            }
            "kernel" => {
                let (url, rest) = args
                    .split_first()
                    .ok_or_else(|| no_boot(&base, "`kernel` without a URL"))?;
                kernel = Some((join(&base, url), rest.join(" ")));
            }
            "initrd" => {
                let url = args
                    .first()
                    .ok_or_else(|| no_boot(&base, "`initrd` without a URL"))?;
                initrd = Some(join(&base, url));
            }
            "boot" => {
                let (k, append) =
                    kernel.ok_or_else(|| no_boot(&base, "`boot` before any `kernel`"))?;
                let i = initrd.ok_or_else(|| no_boot(&base, "`boot` without an `initrd`"))?;
                let kernel_path = dir.join("netboot.kernel");
                let initrd_path = dir.join("netboot.initrd");
                download(&k, &kernel_path)?;
                download(&i, &initrd_path)?;
                return Ok(DirectKernel {
                    kernel: kernel_path,
                    initrd: initrd_path,
                    append,
                });
            }
            "sanboot" | "exit" | "poweroff" | "reboot" => {
                return Err(no_boot(
                    &base,
                    &format!("the script asks for `{cmd}`, not a kernel"),
                ))
            }
            // set, imgfree, echo, isset, iseq, inc, sleep, prompt, #!ipxe, labels, comments.
            _ => {}
        }
    }
}

/// `${mac}` (colons) and `${mac:hexhyp}` (hyphens), as iPXE expands them for the NIC.
/// The first NIC is the one booting, so `${netid}` is 0.
fn expand(s: &str, mac: &str) -> String {
    s.replace("${netid}", "0")
        .replace("${mac:hexhyp}", &mac.replace(':', "-"))
        .replace("${mac}", mac)
        .replace("${net0/mac:hexhyp}", &mac.replace(':', "-"))
        .replace("${net0/mac}", mac)
}

/// `target` relative to the script at `base`, as iPXE resolves it.
fn join(base: &str, target: &str) -> String {
    if target.contains("://") {
        return target.to_string();
    }
    if let Some(rest) = target.strip_prefix('/') {
        let origin_end = base
            .find("://")
            .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(base.len());
        return format!("{}/{rest}", &base[..origin_end]);
    }
    match base.rfind('/') {
        Some(i) => format!("{}/{target}", &base[..i]),
        None => target.to_string(),
    }
}

/// The guest's view of the host (QEMU user networking) is the host's loopback.
fn host_url(url: &str) -> String {
    url.replacen("://10.0.2.2", "://127.0.0.1", 1)
}

fn no_boot(script: &str, why: &str) -> Error {
    Error::Tool {
        tool: "netboot".into(),
        why: format!("{script}: {why}"),
    }
}

fn curl(url: &str) -> Command {
    let mut c = Command::new("curl");
    c.args(["-fsS", "--max-time", "120", "--retry", "2", &host_url(url)]);
    c
}

fn fetch_text(url: &str) -> Result<String, Error> {
    let out = curl(url).output().map_err(curl_missing)?;
    if !out.status.success() {
        return Err(no_boot(
            url,
            &format!("fetching failed: {}", String::from_utf8_lossy(&out.stderr)),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn download(url: &str, to: &Path) -> Result<(), Error> {
    let out = curl(url).arg("-o").arg(to).output().map_err(curl_missing)?;
    if !out.status.success() {
        return Err(no_boot(
            url,
            &format!("download failed: {}", String::from_utf8_lossy(&out.stderr)),
        ));
    }
    Ok(())
}

fn curl_missing(e: std::io::Error) -> Error {
    Error::Tool {
        tool: "curl".into(),
        why: format!("cannot run it ({e}): install the Debian package curl (`cargo xtask deps`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_as_ipxe_does() {
        let b = "http://10.0.2.2:80/boot/pxelinux.cfg/52-54-00-00-00-01";
        assert_eq!(
            join(b, "x.ipxe"),
            "http://10.0.2.2:80/boot/pxelinux.cfg/x.ipxe"
        );
        assert_eq!(join(b, "/k"), "http://10.0.2.2:80/k");
        assert_eq!(join(b, "http://h/k"), "http://h/k");
        assert_eq!(
            expand("c/${mac:hexhyp} BOOTIF=${mac}", "52:54:00:00:00:01"),
            "c/52-54-00-00-00-01 BOOTIF=52:54:00:00:00:01"
        );
        assert_eq!(host_url("http://10.0.2.2:8/a"), "http://127.0.0.1:8/a");
    }

    /// Ironic's boot.ipxe and per-node script, as its templates render them, served by the
    /// harness's HTTP server: the kernel line's arguments become the command line.
    #[test]
    fn runs_ironics_scripts() {
        let www = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let w = www.path();
        std::fs::create_dir_all(w.join("pxelinux.cfg")).unwrap();
        std::fs::create_dir_all(w.join("uuid1")).unwrap();
        let server = crate::http::HttpServer::start(w).unwrap();
        let port = server.port();
        std::fs::write(
            w.join("boot.ipxe"),
            format!(
                "#!ipxe\nset netid:int32 -1\n:loop\ninc netid || chain \
                 http://10.0.2.2:{port}/pxelinux.cfg/${{mac:hexhyp}} || goto old_rom\n\
                 isset ${{net${{netid}}/mac}} || goto loop_done\n\
                 echo Attempting to boot from MAC ${{net${{netid}}/mac:hexhyp}}\n\
                 chain http://10.0.2.2:{port}/pxelinux.cfg/${{net${{netid}}/mac:hexhyp}} || goto loop\n\
                 exit 0\n:loop_done\nreboot\n:old_rom\nreboot\n"
            ),
        )
        .unwrap();
        std::fs::write(
            w.join("pxelinux.cfg/52-54-00-00-00-01"),
            format!(
                "#!ipxe\nset attempts:int32 10\ngoto deploy\n:deploy\nimgfree\nkernel \
                 --timeout 60000 http://10.0.2.2:{port}/uuid1/deploy_kernel selinux=0 text \
                 ipa-api-url=http://10.0.2.2:6385 BOOTIF=${{mac}} initrd=deploy_ramdisk || \
                 goto retry\ninitrd --timeout 60000 /uuid1/deploy_ramdisk || goto retry\nboot\n\
                 :retry\nsleep 1\ngoto deploy\n"
            ),
        )
        .unwrap();
        std::fs::write(w.join("uuid1/deploy_kernel"), b"KERNEL\0bytes").unwrap();
        std::fs::write(w.join("uuid1/deploy_ramdisk"), b"INITRD").unwrap();
        let k = resolve(
            &format!("http://10.0.2.2:{port}/boot.ipxe"),
            "52:54:00:00:00:01",
            out.path(),
        )
        .unwrap();
        assert_eq!(
            k.append,
            "selinux=0 text ipa-api-url=http://10.0.2.2:6385 BOOTIF=52:54:00:00:00:01 \
             initrd=deploy_ramdisk"
        );
        assert_eq!(std::fs::read(&k.kernel).unwrap(), b"KERNEL\0bytes");
        assert_eq!(std::fs::read(&k.initrd).unwrap(), b"INITRD");

        // A node Ironic has no script for: the chain fails, and says where.
        let e = resolve(
            &format!("http://10.0.2.2:{port}/boot.ipxe"),
            "52:54:00:00:00:02",
            out.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("52-54-00-00-00-02"), "{e}");
        // A whole-disk boot script: no kernel to hand over.
        std::fs::write(
            w.join("disk.ipxe"),
            "#!ipxe\nsanboot --no-describe || exit 0\n",
        )
        .unwrap();
        let e = resolve(
            &format!("http://10.0.2.2:{port}/disk.ipxe"),
            "52:54:00:00:00:01",
            out.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sanboot"), "{e}");
    }
}

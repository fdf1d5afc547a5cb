//! The parts every Ferrite initramfs shares: busybox with its applet links, the device nodes
//! the kernel needs before devtmpfs, kernel modules with their load order, and compression.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::cpio::Archive;
use crate::kmod::{modules_dep, Module};
use crate::Error;

/// All entries carry this mtime, so builds are reproducible.
pub const MTIME: u32 = 0;

/// The list of modules `/init` loads, in order, one `.ko` path a line.
pub const LOAD_LIST: &str = "etc/ferrite/modules";

/// Adds busybox at `bin/busybox` and a link for each applet it reports.
pub fn add_busybox(archive: &mut Archive, busybox: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(busybox)
        .map_err(|e| Error::Io(format!("reading busybox {}", busybox.display()), e))?;
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::Tool {
            tool: busybox.display().to_string(),
            why: format!("cannot run it to list applets ({e})"),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: busybox.display().to_string(),
            why: "`busybox --list-full` failed".into(),
        });
    }
    archive.file("bin/busybox", bytes, 0o755)?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet == "linuxrc" {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = if applet.starts_with("bin/") && depth == 1 {
            "busybox".to_string()
        } else {
            format!("{}bin/busybox", "../".repeat(depth))
        };
        archive.symlink(applet, &target)?;
    }
    Ok(())
}

/// Directories and the nodes the kernel opens before `/init` runs.
pub fn add_skeleton(archive: &mut Archive) -> Result<(), Error> {
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "root",
        "var/log",
        "etc/ferrite",
    ] {
        archive.dir(d, 0o755)?;
    }
    archive.dir("tmp", 0o1777)?;
    archive.char_dev("dev/console", 5, 1, 0o600)?;
    archive.char_dev("dev/null", 1, 3, 0o666)?;
    archive.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    )?;
    archive.file("etc/group", b"root:x:0:\n".to_vec(), 0o644)?;
    Ok(())
}

/// Adds the modules under `lib/modules/<release>/`, a `modules.dep` for busybox modprobe, and
/// [`LOAD_LIST`] for `/init`.
pub fn add_modules(archive: &mut Archive, release: &str, modules: &[Module]) -> Result<(), Error> {
    let base = format!("lib/modules/{release}");
    let mut list = String::new();
    for m in modules {
        archive.file(&format!("{base}/{}", m.rel_path), m.data.clone(), 0o644)?;
        list.push_str(&format!("/{base}/{}\n", m.rel_path));
    }
    archive.file(
        &format!("{base}/modules.dep"),
        modules_dep(modules).into_bytes(),
        0o644,
    )?;
    archive.file(LOAD_LIST, list.into_bytes(), 0o644)?;
    Ok(())
}

/// gzip (the kernel's `CONFIG_RD_GZIP`) with a zero header mtime: same input, same bytes.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(|e| Error::Io("compressing the initramfs".into(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_applets_become_relative_links() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            return; // the pinned busybox is exercised by the ramdisk tests
        }
        let mut a = Archive::new();
        add_busybox(&mut a, busybox).unwrap();
        assert_eq!(
            a.get("bin/sh").unwrap().kind,
            crate::cpio::Kind::Symlink("busybox".into())
        );
        assert_eq!(
            a.get("sbin/udhcpc").unwrap().kind,
            crate::cpio::Kind::Symlink("../bin/busybox".into())
        );
        assert!(a.get("usr/bin/tee").is_some());
    }

    #[test]
    fn a_missing_busybox_names_the_path() {
        let e = add_busybox(&mut Archive::new(), Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/busybox"), "{e}");
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        use std::io::Read;
        let data = b"hello initramfs ".repeat(1000);
        let a = gzip(&data).unwrap();
        assert_eq!(a, gzip(&data).unwrap());
        let mut back = vec![];
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}

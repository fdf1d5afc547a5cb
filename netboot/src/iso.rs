//! Bootable ISO images for virtual-media boot: the deploy kernel and ramdisk with the node's
//! kernel command line baked in, bootable in UEFI (El Torito EFI entry: a small FAT image
//! holding GRUB) and in BIOS (isolinux). The kernel and ramdisk are on the ISO9660 tree once;
//! both loaders read them from there.
//!
//! Built with Debian's tools, as Ironic builds its ISOs: `xorriso` writes the ISO9660 tree,
//! the El Torito catalogue and the hybrid MBR/GPT (fiddly formats that a well-kept tool already
//! gets right for every firmware), `grub-mkimage` makes the EFI loader from the
//! `grub-efi-amd64-bin` modules (syslinux.efi 6.04 faults on current OVMF). The FAT image is
//! ours (`ferrite_image::disk::vfat_build`). [`grub_efi`] is shared with the test OS image.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_image::disk::iso9660::Entry;
use ferrite_image::disk::vfat_build;

/// Where Debian's `isolinux` and `syslinux-common` packages put the BIOS loader.
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// The hybrid MBR boot code (the ISO also boots when written to a USB stick).
pub const ISOHDPFX_BIN: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
/// The GRUB modules `grub-mkimage` links (Debian `grub-efi-amd64-bin`).
pub const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";

/// The ISO's GRUB config. The EFI loader finds its filesystem by this path (`search
/// --file`), so it must be a name no deployed disk has: with `/EFI/BOOT/grub.cfg` (the test
/// OS image's, and a common removable-media path), a node that already has an OS booted
/// the CD's GRUB into the disk's config instead of the ramdisk.
pub const ISO_GRUB_CFG: &str = "/EFI/BOOT/ferrite-iso.cfg";

/// GRUB modules in the EFI loader: enough to find a FAT or ISO9660 filesystem, read its
/// config and boot Linux, with the serial console.
const GRUB_MODULES: &[&str] = &[
    "normal",
    "linux",
    "configfile",
    "fat",
    "iso9660",
    "part_gpt",
    "part_msdos",
    "search",
    "search_fs_file",
    "serial",
    "terminal",
    "echo",
    "test",
    "efi_gop",
    "all_video",
];

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{what}: {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {tool}: install the Debian package {package} (`cargo xtask deps`)")]
    Missing {
        tool: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("the EFI boot image could not be built")]
    Fat(#[source] vfat_build::VfatError),
    #[error("the kernel command line must be one line without quotes: {0:?}")]
    BadCmdline(String),
}

/// What goes on a boot ISO.
#[derive(Debug, Clone)]
pub struct BootIso<'a> {
    pub kernel: &'a Path,
    pub ramdisk: &'a Path,
    /// Kernel command line (the node's `ipa-api-url=…` and the rest).
    pub cmdline: &'a str,
    /// Volume label (at most 32 characters are kept).
    pub label: &'a str,
}

fn run(cmd: &mut Command, package: &'static str) -> Result<(), IsoError> {
    let tool = cmd.get_program().to_string_lossy().to_string();
    let out = cmd
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .map_err(|source| IsoError::Missing {
            tool: tool.clone(),
            package,
            source,
        })?;
    if !out.status.success() {
        return Err(IsoError::Tool {
            tool,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn io<T>(what: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T, IsoError> {
    r.map_err(|source| IsoError::Io {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The GRUB config that boots `kernel` and `initrd` (paths on the filesystem GRUB's embedded
/// config found) with `cmdline`, on the serial console too, without a menu delay.
pub fn grub_cfg(kernel: &str, initrd: &str, cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=0\n\
         menuentry ferrite {{\n  linux {kernel} {cmdline}\n  initrd {initrd}\n}}\n"
    )
}

/// Writes to `out` a GRUB EFI executable (`BOOTX64.EFI`) whose embedded config finds the
/// filesystem holding `config` (an absolute path such as `/EFI/BOOT/grub.cfg`) and runs it.
pub fn grub_efi(config: &str, work: &Path, out: &Path) -> Result<(), IsoError> {
    let embed = work.join("grub-embed.cfg");
    let dir = config.rsplit_once('/').map_or("/", |(d, _)| d);
    io(
        "writing the GRUB embedded config",
        &embed,
        std::fs::write(
            &embed,
            format!(
                "search --no-floppy --file --set=root {config}\n\
                 set prefix=($root){dir}\n\
                 configfile ($root){config}\n"
            ),
        ),
    )?;
    run(
        Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-d", GRUB_EFI_MODULES, "-p", dir, "-c"])
            .arg(&embed)
            .arg("-o")
            .arg(out)
            .args(GRUB_MODULES),
        "grub-efi-amd64-bin",
    )
}

fn checked_cmdline(cmdline: &str) -> Result<&str, IsoError> {
    if cmdline.contains(['\n', '\r', '"', '\'', '{', '}', ';', '$', '\\']) {
        return Err(IsoError::BadCmdline(cmdline.to_string()));
    }
    Ok(cmdline)
}

/// Builds the boot ISO `iso.out` in a scratch directory under `work` (removed afterwards).
pub fn build(iso: &BootIso<'_>, work: &Path, out: &Path) -> Result<(), IsoError> {
    let cmdline = checked_cmdline(iso.cmdline)?;
    let scratch = io("creating a scratch directory", work, scratch_dir(work))?;
    let r = build_in(iso, cmdline, &scratch, out);
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

fn scratch_dir(work: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(work)?;
    for i in 0..100u32 {
        let p = work.join(format!(".iso-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free scratch directory name"))
}

fn build_in(iso: &BootIso<'_>, cmdline: &str, scratch: &Path, out: &Path) -> Result<(), IsoError> {
    let root = scratch.join("root");
    let boot = root.join("EFI/BOOT");
    let isolinux = root.join("isolinux");
    for d in [&boot, &isolinux] {
        io("creating a directory", d, std::fs::create_dir_all(d))?;
    }
    // Hard links when the inputs are on the same filesystem, else copies.
    for (src, name) in [(iso.kernel, "vmlinuz"), (iso.ramdisk, "initrd")] {
        let dst = root.join(name);
        if std::fs::hard_link(src, &dst).is_err() {
            io("copying a boot file", src, std::fs::copy(src, &dst))?;
        }
    }
    let cfg = grub_cfg("/vmlinuz", "/initrd", cmdline);
    io(
        "writing the ISO's GRUB config",
        &boot,
        std::fs::write(root.join(&ISO_GRUB_CFG[1..]), &cfg),
    )?;
    let isolinux_cfg = format!(
        "SERIAL 0 115200\nDEFAULT ferrite\nPROMPT 0\nTIMEOUT 0\nLABEL ferrite\n  \
         KERNEL /vmlinuz\n  INITRD /initrd\n  APPEND {cmdline}\n"
    );
    io(
        "writing isolinux.cfg",
        &isolinux,
        std::fs::write(isolinux.join("isolinux.cfg"), isolinux_cfg),
    )?;
    for src in [ISOLINUX_BIN, LDLINUX_C32] {
        let src = Path::new(src);
        let dst = isolinux.join(src.file_name().unwrap_or_default());
        std::fs::copy(src, &dst).map_err(|source| IsoError::Missing {
            tool: src.display().to_string(),
            package: "isolinux and syslinux-common",
            source,
        })?;
    }
    // The El Torito EFI image: a FAT filesystem with GRUB as the removable-media loader.
    let efi = scratch.join("bootx64.efi");
    grub_efi(ISO_GRUB_CFG, scratch, &efi)?;
    let loader = io("reading the GRUB loader", &efi, std::fs::read(&efi))?;
    let entries = [
        Entry {
            path: "EFI".into(),
            data: None,
        },
        Entry {
            path: "EFI/BOOT".into(),
            data: None,
        },
        Entry {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            data: Some(loader),
        },
    ];
    let fat = vfat_build::build("EFIBOOT", &entries, 512, 64 << 20).map_err(IsoError::Fat)?;
    let efi_img = root.join("efiboot.img");
    io(
        "writing the EFI boot image",
        &efi_img,
        std::fs::write(&efi_img, fat),
    )?;
    let label: String = iso
        .label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect();
    run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V"])
            .arg(if label.is_empty() { "FERRITE" } else { &label })
            .args([
                "-b",
                "isolinux/isolinux.bin",
                "-c",
                "isolinux/boot.cat",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "-eltorito-alt-boot",
                "-e",
                "efiboot.img",
                "-no-emul-boot",
                "-isohybrid-gpt-basdat",
                "-isohybrid-mbr",
                ISOHDPFX_BIN,
                "-o",
            ])
            .arg(out)
            .arg(&root),
        "xorriso",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_kernel_with_the_command_line() {
        let c = grub_cfg("/vmlinuz", "/initrd", "console=ttyS0 ipa-api-url=http://x");
        assert!(
            c.contains("linux /vmlinuz console=ttyS0 ipa-api-url=http://x\n"),
            "{c}"
        );
        assert!(c.contains("initrd /initrd\n"));
        assert!(c.contains("set timeout=0"));
    }

    #[test]
    fn command_lines_that_could_escape_the_config_are_refused() {
        for bad in ["a\nb", "a\"b", "x; reboot", "${root}", "a}b"] {
            assert!(checked_cmdline(bad).is_err(), "{bad:?}");
        }
        assert!(checked_cmdline("console=ttyS0 ipa-api-url=https://h:6385/").is_ok());
    }

    #[test]
    fn builds_an_iso_with_both_loaders_and_the_files_once() {
        if std::process::Command::new("xorriso")
            .arg("-version")
            .output()
            .is_err()
        {
            panic!("xorriso is missing: run `cargo xtask deps`");
        }
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("k");
        let r = d.path().join("r");
        std::fs::write(&k, vec![7u8; 100_000]).unwrap();
        std::fs::write(&r, vec![9u8; 50_000]).unwrap();
        let out = d.path().join("boot.iso");
        build(
            &BootIso {
                kernel: &k,
                ramdisk: &r,
                cmdline: "console=ttyS0 ipa-api-url=http://10.0.2.2:1/",
                label: "node-1",
            },
            d.path(),
            &out,
        )
        .unwrap();
        let data = std::fs::read(&out).unwrap();
        assert!(ferrite_image::disk::iso9660::is_iso(&data));
        // Hybrid: an MBR boot signature for USB-stick style boot.
        assert_eq!(&data[510..512], &[0x55, 0xAA]);
        let (label, files) = ferrite_image::disk::iso9660::read(&data).unwrap();
        assert_eq!(label, "node-1");
        let names: Vec<&str> = files.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "vmlinuz",
            "initrd",
            "EFI/BOOT/ferrite-iso.cfg",
            "isolinux/isolinux.cfg",
            "efiboot.img",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let cfg = files
            .iter()
            .find(|e| e.path == "EFI/BOOT/ferrite-iso.cfg")
            .and_then(|e| e.data.clone())
            .unwrap();
        assert!(String::from_utf8(cfg)
            .unwrap()
            .contains("ipa-api-url=http://10.0.2.2:1/"));
        // The scratch directory is gone.
        let mut left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["boot.iso", "k", "r"]);
    }
}

//! The partition-image flavour of the test OS: one ext4 root filesystem (no partition
//! table), built with `mke2fs -d` (no root, no loop device), carrying the same kernel and
//! marker-printing initramfs as the whole-disk image under `/boot`, and GRUB from Debian's
//! packages: a UEFI loader at `/boot/efi/EFI/ferrite/grubx64.efi` and the BIOS `boot.img` +
//! `core.img` under `/boot/grub/i386-pc/` (as grub-install leaves them). Both GRUBs carry an
//! embedded config that finds this filesystem by its UUID and reads `/boot/grub/grub.cfg`,
//! so they boot wherever the deploy puts the filesystem. The agent installs them
//! (`image.install_bootloader`). Unlike the whole-disk image it is not byte-reproducible:
//! `mke2fs -d` copies the staged files' ctimes.

use std::path::Path;
use std::process::Command;

use crate::ramdisk::write_atomic;
use crate::test_image::run_tool;
use crate::Error;

pub const PARTITION_FILE: &str = "ferrite-test-os-partition.img";
/// The root filesystem's UUID, fixed so the embedded GRUB configs can search for it.
pub const ROOT_FS_UUID: &str = "f3e7a1d0-5e1f-4c2b-9a7d-0000000f0017";
/// The UEFI loader's path in the image (and, after the deploy, on the ESP under `/EFI`).
pub const EFI_LOADER: &str = "boot/efi/EFI/ferrite/grubx64.efi";
const SIZE_MIB: u32 = 64;
const GRUB_EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";
const GRUB_PC_DIR: &str = "/usr/lib/grub/i386-pc";
/// Modules both GRUBs need to find the ext4 root and boot Linux from it over serial.
const COMMON_MODULES: &[&str] = &[
    "normal",
    "linux",
    "configfile",
    "ext2",
    "part_gpt",
    "part_msdos",
    "search",
    "search_fs_uuid",
    "serial",
    "terminal",
    "echo",
    "test",
];

fn embedded_config() -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {ROOT_FS_UUID}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n"
    )
}

fn mkimage(format: &str, dir: &str, extra: &[&str], embed: &Path, out: &Path) -> Result<(), Error> {
    let package = if format == "i386-pc" {
        "grub-pc-bin"
    } else {
        "grub-efi-amd64-bin"
    };
    run_tool(
        Command::new("grub-mkimage")
            .args(["-O", format, "-d", dir, "-p", "/boot/grub", "-c"])
            .arg(embed)
            .arg("-o")
            .arg(out)
            .args(COMMON_MODULES)
            .args(extra),
        package,
    )
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::Io(format!("creating {}", d.display()), e))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::Io(format!("copying {} to {}", from.display(), to.display()), e))
}

/// Builds the partition image at `out` from the kernel and initramfs, staging its tree
/// under `work`.
pub fn build(kernel: &Path, initrd: &Path, work: &Path, out: &Path) -> Result<(), Error> {
    let tree = work.join("partition-root");
    let _ = std::fs::remove_dir_all(&tree);
    let boot = tree.join("boot");
    copy(kernel, &boot.join("vmlinuz"))?;
    copy(initrd, &boot.join("initrd.img"))?;
    let grub = boot.join("grub");
    std::fs::create_dir_all(grub.join("i386-pc"))
        .map_err(|e| Error::Io(format!("creating {}", grub.display()), e))?;
    let cfg = ferrite_netboot::iso::grub_cfg("/boot/vmlinuz", "/boot/initrd.img", "console=ttyS0");
    write_atomic(&grub, "grub.cfg", cfg.as_bytes())?;
    let embed = write_atomic(work, "grub-root-embed.cfg", embedded_config().as_bytes())?;

    let efi = tree.join(EFI_LOADER);
    std::fs::create_dir_all(efi.parent().unwrap_or(&tree))
        .map_err(|e| Error::Io(format!("creating {}", efi.display()), e))?;
    mkimage("x86_64-efi", GRUB_EFI_DIR, &["efi_gop"], &embed, &efi)?;

    let boot_img = Path::new(GRUB_PC_DIR).join("boot.img");
    if !boot_img.is_file() {
        return Err(Error::MissingInput {
            path: boot_img,
            hint: "install the Debian package grub-pc-bin (`cargo xtask deps`)".into(),
        });
    }
    copy(&boot_img, &grub.join("i386-pc/boot.img"))?;
    mkimage(
        "i386-pc",
        GRUB_PC_DIR,
        &["biosdisk"],
        &embed,
        &grub.join("i386-pc/core.img"),
    )?;

    let _ = std::fs::remove_file(out);
    run_tool(
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "ferrite-root",
                "-U",
                ROOT_FS_UUID,
            ])
            // GRUB 2.06 refuses these newer defaults.
            .args(["-O", "^metadata_csum_seed,^orphan_file"])
            .args(["-E", &format!("root_owner=0:0,hash_seed={ROOT_FS_UUID}")])
            .arg("-d")
            .arg(&tree)
            .arg(out)
            .arg(format!("{SIZE_MIB}M"))
            .env("E2FSPROGS_FAKE_TIME", "1"),
        "e2fsprogs",
    )
}

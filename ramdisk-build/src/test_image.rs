//! The test OS image the end-to-end tests deploy: an MBR disk with one FAT partition holding
//! the Debian kernel and a busybox initramfs whose init prints `FERRITE-DEPLOYED uuid=…
//! hostname=…` from the config drive. It boots in both firmware modes: BIOS through syslinux
//! (MBR code, active partition), UEFI through GRUB at the removable-media path
//! `EFI/BOOT/BOOTX64.EFI` (the partition is typed as an EFI system partition, 0xEF, so
//! `install_bootloader` finds it and the firmware takes it). Built with mtools and syslinux's
//! mtools installer, so it needs neither root nor loop devices. Next to it, the partition
//! image of the same OS (`partition_image`).

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_image::disk::mbr::{self, Partition};

use crate::cpio::Archive;
use crate::deb::{self, sha256_hex};
use crate::initramfs;
use crate::kmod::ModuleTree;
use crate::ramdisk::{read, write_atomic};
use crate::Error;

pub const RAW_FILE: &str = "ferrite-test-os.raw";
pub const QCOW2_FILE: &str = "ferrite-test-os.qcow2";
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Drivers for the disk the OS boots from and the filesystems of a config drive.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "sr_mod",
    "ahci",
    "nvme",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "isofs",
];

const INIT: &str = include_str!("scripts/test-os-init.sh");
const MBR_CODE: &str = "/usr/lib/syslinux/mbr/mbr.bin";
/// The GRUB config of the UEFI boot path, on the FAT partition.
const GRUB_CFG: &str = "/EFI/BOOT/grub.cfg";
const SECTOR: u64 = 512;
/// The first partition starts at 1 MiB, as partitioning tools align it.
const FIRST_SECTOR: u32 = 2048;

const SYSLINUX_CFG: &str = "\
SERIAL 0 115200
DEFAULT ferrite
PROMPT 0
TIMEOUT 0
LABEL ferrite
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0
";

/// The built image files and their checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    pub raw: PathBuf,
    pub raw_sha256: String,
    pub qcow2: PathBuf,
    pub qcow2_sha256: String,
    /// The partition image (`partition_image`): the root filesystem alone.
    pub partition: PathBuf,
    pub partition_sha256: String,
}

/// Builds the test OS image into `out_dir`.
#[derive(Debug, Clone)]
pub struct TestImageBuilder {
    out_dir: PathBuf,
    cache_dir: PathBuf,
    size_mib: u32,
}

/// Runs a tool, turning a missing binary or a failure into an error that names the package.
pub(crate) fn run_tool(cmd: &mut Command, package: &str) -> Result<(), Error> {
    let tool = cmd.get_program().to_string_lossy().to_string();
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .map_err(|e| Error::Tool {
            tool: tool.clone(),
            why: format!(
                "cannot start it ({e}): install the Debian package {package} (`cargo xtask deps`)"
            ),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool,
            why: format!(
                "{:?} failed ({}): {}",
                cmd.get_args().collect::<Vec<_>>(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

fn mtools_target(image: &Path, offset: u64) -> String {
    format!("{}@@{}", image.display(), offset)
}

/// Formats the FAT filesystem of a partition inside `image` (mtools, no loop device).
fn format_fat(image: &Path, p: &Partition, label: &str) -> Result<(), Error> {
    run_tool(
        Command::new("mformat")
            .arg("-i")
            .arg(mtools_target(image, p.start as u64 * SECTOR))
            .args(["-T", &p.sectors.to_string()])
            .args(["-h", "64", "-s", "32"])
            .args(["-H", &p.start.to_string()])
            .args(["-N", "46455252", "-v", label])
            .arg("::"),
        "mtools",
    )
}

/// Copies `files` (name in the filesystem, source path) into a FAT partition, creating dirs.
fn copy_in(
    image: &Path,
    p: &Partition,
    dirs: &[&str],
    files: &[(&str, &Path)],
) -> Result<(), Error> {
    let target = mtools_target(image, p.start as u64 * SECTOR);
    for d in dirs {
        run_tool(
            Command::new("mmd")
                .arg("-i")
                .arg(&target)
                .arg(format!("::{d}")),
            "mtools",
        )?;
    }
    for (name, src) in files {
        run_tool(
            Command::new("mcopy")
                .arg("-i")
                .arg(&target)
                .arg(src)
                .arg(format!("::{name}")),
            "mtools",
        )?;
    }
    Ok(())
}

fn sector0(image: &Path) -> Result<[u8; 512], Error> {
    use std::io::Read;
    let mut s = [0u8; 512];
    std::fs::File::open(image)
        .and_then(|mut f| f.read_exact(&mut s))
        .map_err(|e| Error::Io(format!("reading the MBR of {}", image.display()), e))?;
    Ok(s)
}

fn write_sector0(image: &Path, s: &[u8; 512]) -> Result<(), Error> {
    use std::io::{Seek, Write};
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .and_then(|mut f| {
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(s)
        })
        .map_err(|e| Error::Io(format!("writing the MBR of {}", image.display()), e))
}

impl TestImageBuilder {
    pub fn new(out_dir: impl Into<PathBuf>) -> TestImageBuilder {
        let out_dir = out_dir.into();
        let cache_dir = out_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("ramdisk-cache");
        TestImageBuilder {
            out_dir,
            cache_dir,
            size_mib: 32,
        }
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> TestImageBuilder {
        self.cache_dir = dir.into();
        self
    }

    /// The raw image's size; the default 32 MiB holds the kernel and initramfs.
    pub fn size_mib(mut self, mib: u32) -> TestImageBuilder {
        self.size_mib = mib;
        self
    }

    fn initramfs(&self, kernel_dir: &Path, busybox: &Path) -> Result<Vec<u8>, Error> {
        let tree = ModuleTree::scan(&kernel_dir.join("lib/modules").join(deb::KERNEL_RELEASE))?;
        let modules = tree.closure(MODULES)?;
        let mut archive = Archive::new();
        initramfs::add_skeleton(&mut archive)?;
        initramfs::add_busybox(&mut archive, busybox)?;
        initramfs::add_modules(&mut archive, deb::KERNEL_RELEASE, &modules)?;
        archive.file("init", INIT.as_bytes().to_vec(), 0o755)?;
        initramfs::gzip(&archive.to_bytes(initramfs::MTIME))
    }

    /// Builds the raw image, converts it to qcow2, and writes `SHA256SUMS`.
    pub fn build(&self) -> Result<TestImage, Error> {
        let mbr_code = read(Path::new(MBR_CODE)).map_err(|_| Error::MissingInput {
            path: MBR_CODE.into(),
            hint: "install the Debian package syslinux-common (`cargo xtask deps`)".into(),
        })?;
        let kernel_dir = deb::KERNEL.unpack(&self.cache_dir)?;
        let busybox_dir = deb::BUSYBOX.unpack(&self.cache_dir)?;
        let initrd = self.initramfs(&kernel_dir, &busybox_dir.join("bin/busybox"))?;

        let work = self.out_dir.join("work");
        std::fs::create_dir_all(&work)
            .map_err(|e| Error::Io(format!("creating {}", work.display()), e))?;
        let initrd_path = write_atomic(&work, "initrd.img", &initrd)?;
        let cfg_path = write_atomic(&work, "syslinux.cfg", SYSLINUX_CFG.as_bytes())?;
        let grub_cfg = ferrite_netboot::iso::grub_cfg("/vmlinuz", "/initrd.img", "console=ttyS0");
        let grub_cfg_path = write_atomic(&work, "grub.cfg", grub_cfg.as_bytes())?;
        let grub_efi = work.join("BOOTX64.EFI");
        ferrite_netboot::iso::grub_efi(GRUB_CFG, &work, &grub_efi).map_err(Error::Grub)?;
        let kernel_path = kernel_dir.join(format!("boot/vmlinuz-{}", deb::KERNEL_RELEASE));

        let raw = work.join(RAW_FILE);
        let total = self.size_mib as u64 * 1024 * 1024;
        let file = std::fs::File::create(&raw)
            .map_err(|e| Error::Io(format!("creating {}", raw.display()), e))?;
        file.set_len(total)
            .map_err(|e| Error::Io(format!("sizing {}", raw.display()), e))?;
        drop(file);
        let part = Partition {
            bootable: true,
            kind: mbr::EFI_SYSTEM,
            start: FIRST_SECTOR,
            sectors: (total / SECTOR) as u32 - FIRST_SECTOR,
        };
        let mut s0 = [0u8; 512];
        let code = mbr_code.len().min(440);
        s0[..code].copy_from_slice(&mbr_code[..code]);
        s0[440..444].copy_from_slice(b"FeRt"); // fixed disk signature: reproducible
        mbr::write_table(&mut s0, &[Some(part), None, None, None]);
        write_sector0(&raw, &s0)?;
        format_fat(&raw, &part, "FERRITE-OS")?;
        run_tool(
            Command::new("syslinux")
                .args(["--offset", &(part.start as u64 * SECTOR).to_string()])
                .arg("--install")
                .arg(&raw),
            "syslinux",
        )?;
        copy_in(
            &raw,
            &part,
            &["EFI", "EFI/BOOT"],
            &[
                ("vmlinuz", &kernel_path),
                ("initrd.img", &initrd_path),
                ("syslinux.cfg", &cfg_path),
                ("EFI/BOOT/BOOTX64.EFI", &grub_efi),
                (&GRUB_CFG[1..], &grub_cfg_path),
            ],
        )?;

        let qcow2 = work.join(QCOW2_FILE);
        let _ = std::fs::remove_file(&qcow2);
        run_tool(
            Command::new("qemu-img")
                .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&qcow2),
            "qemu-utils",
        )?;
        let partition = work.join(crate::partition_image::PARTITION_FILE);
        crate::partition_image::build(&kernel_path, &initrd_path, &work, &partition)?;
        let partition_sha256 = sha256_hex(&read(&partition)?);
        let raw_sha256 = sha256_hex(&read(&raw)?);
        let qcow2_sha256 = sha256_hex(&read(&qcow2)?);
        let out_raw = self.out_dir.join(RAW_FILE);
        let out_qcow2 = self.out_dir.join(QCOW2_FILE);
        let out_partition = self.out_dir.join(crate::partition_image::PARTITION_FILE);
        for (from, to) in [
            (&raw, &out_raw),
            (&qcow2, &out_qcow2),
            (&partition, &out_partition),
        ] {
            std::fs::rename(from, to)
                .map_err(|e| Error::Io(format!("moving {} into place", to.display()), e))?;
        }
        let sums = format!(
            "{raw_sha256}  {RAW_FILE}\n{qcow2_sha256}  {QCOW2_FILE}\n{partition_sha256}  {}\n",
            crate::partition_image::PARTITION_FILE
        );
        write_atomic(&self.out_dir, SUMS_FILE, sums.as_bytes())?;
        Ok(TestImage {
            raw: out_raw,
            raw_sha256,
            qcow2: out_qcow2,
            qcow2_sha256,
            partition: out_partition,
            partition_sha256,
        })
    }
}

/// Adds a config drive to a raw disk image as a real deploy would leave it: a new partition
/// after the last one, FAT, labelled `config-2`, holding `openstack/latest/meta_data.json`.
pub fn add_config_drive(image: &Path, meta_data_json: &str) -> Result<(), Error> {
    const SIZE_SECTORS: u32 = 16 * 2048; // 16 MiB
    let mut s0 = sector0(image)?;
    let mut parts = mbr::read_table(&s0).ok_or_else(|| Error::MissingInput {
        path: image.to_path_buf(),
        hint: "it has no MBR partition table".into(),
    })?;
    let slot = parts
        .iter()
        .position(Option::is_none)
        .ok_or_else(|| Error::MissingInput {
            path: image.to_path_buf(),
            hint: "all four MBR entries are used; no room for a config drive".into(),
        })?;
    let end = parts
        .iter()
        .flatten()
        .map(|p| p.start + p.sectors)
        .max()
        .unwrap_or(FIRST_SECTOR);
    let start = end.div_ceil(2048) * 2048;
    let part = Partition {
        bootable: false,
        kind: mbr::FAT16_LBA,
        start,
        sectors: SIZE_SECTORS,
    };
    let needed = (start + SIZE_SECTORS) as u64 * SECTOR;
    let len = std::fs::metadata(image)
        .map_err(|e| Error::Io(format!("reading {}", image.display()), e))?
        .len();
    if len < needed {
        std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .and_then(|f| f.set_len(needed))
            .map_err(|e| Error::Io(format!("growing {}", image.display()), e))?;
    }
    parts[slot] = Some(part);
    mbr::write_table(&mut s0, &parts);
    write_sector0(image, &s0)?;
    format_fat(image, &part, "config-2")?;
    let dir = tempdir_near(image)?;
    let meta = dir.join("meta_data.json");
    std::fs::write(&meta, meta_data_json)
        .map_err(|e| Error::Io(format!("writing {}", meta.display()), e))?;
    let result = copy_in(
        image,
        &part,
        &["openstack", "openstack/latest"],
        &[("openstack/latest/meta_data.json", &meta)],
    );
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Writes a standalone config drive image: a FAT filesystem labelled `config-2` with
/// `openstack/latest/meta_data.json`, as the agent accepts from an http(s) URL.
pub fn config_drive_image(path: &Path, meta_data_json: &str) -> Result<(), Error> {
    let part = Partition {
        bootable: false,
        kind: mbr::FAT16_LBA,
        start: 0,
        sectors: 8 * 2048, // 8 MiB
    };
    std::fs::File::create(path)
        .and_then(|f| f.set_len(part.sectors as u64 * SECTOR))
        .map_err(|e| Error::Io(format!("creating {}", path.display()), e))?;
    format_fat(path, &part, "config-2")?;
    let dir = tempdir_near(path)?;
    let meta = dir.join("meta_data.json");
    let result = std::fs::write(&meta, meta_data_json)
        .map_err(|e| Error::Io(format!("writing {}", meta.display()), e))
        .and_then(|_| {
            copy_in(
                path,
                &part,
                &["openstack", "openstack/latest"],
                &[("openstack/latest/meta_data.json", &meta)],
            )
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir_near(image: &Path) -> Result<PathBuf, Error> {
    let dir = image.with_extension(format!("cfgdrive-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

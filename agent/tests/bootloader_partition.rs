//! Partition images become bootable (`image.install_bootloader` after
//! `standby.prepare_image`), through the agent API onto sparse files: the partition test
//! OS image's builder makes a real ext4 root carrying Debian's GRUB (EFI loader, BIOS
//! boot.img and core.img). UEFI: the ESP gets the image's loader at its own path and the
//! removable-media path, and efivarfs (a directory here) the boot entry. BIOS, on GPT and
//! on MBR: the MBR carries boot.img pointing at core.img, core.img sits in the BIOS boot
//! partition or after the MBR with its blocklist set. mtools and sfdisk read the results
//! back independently.

mod common;
mod imaging;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Agent;
use ferrite_agent::bootloader::grub_setup;
use ferrite_agent::state::AgentConfig;
use ferrite_ramdisk_build::partition_image::{self, ROOT_FS_UUID};
use ferrite_testkit::http::{ImageServer, Mode};
use imaging::*;
use serde_json::{json, Value};

/// The partition test OS image, with stand-ins for the kernel and initramfs (the boot
/// loaders are the real ones).
fn partition_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    std::fs::write(&initrd, b"not an initramfs").unwrap();
    let out = dir.join(partition_image::PARTITION_FILE);
    partition_image::build(&kernel, &initrd, dir, &out).unwrap();
    let tree = dir.join("partition-root");
    let bytes = std::fs::read(&out).unwrap();
    (tree, bytes)
}

struct Deployed {
    agent: Agent,
    disk: PathBuf,
    root: tempfile::TempDir,
    written: Value,
}

/// Writes the image with `image_info` extras through an agent whose firmware is UEFI when
/// `uefi`, on a fresh sparse disk.
async fn deploy(dir: &Path, srv: &ImageServer, image: &[u8], extra: Value, uefi: bool) -> Deployed {
    let url = srv.put("root.ext4", image.to_vec(), Mode::Range);
    let disk = sparse_disk(dir, "disk", 1024 * MIB);
    let root = tempfile::tempdir().unwrap();
    if uefi {
        std::fs::create_dir_all(root.path().join("sys/firmware/efi/efivars")).unwrap();
    }
    let config = AgentConfig {
        root: root.path().to_owned(),
        target_disk: Some(disk.clone()),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let mut ii = json!({
        "id": "part-img", "urls": [url], "disk_format": "raw", "image_type": "partition",
        "os_hash_algo": "sha256", "os_hash_value": sha256_hex(image), "root_mb": 128,
    });
    ii.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (code, written) = agent
        .command(
            "?wait=true",
            "standby.prepare_image",
            json!({"image_info": ii}),
        )
        .await;
    assert_eq!(code, 200, "{written}");
    assert_eq!(written["command_status"], "SUCCEEDED", "{written}");
    Deployed {
        agent,
        disk,
        root,
        written,
    }
}

/// The word `key=value` of prepare_image's message, as Ironic reads it.
fn word(written: &Value, key: &str) -> Option<String> {
    written["command_result"]["result"]
        .as_str()?
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(|w| w.trim_end_matches([';', ',']).to_owned())
}

async fn install(d: &Deployed, params: Value) -> Value {
    let (code, res) = d
        .agent
        .command("?wait=true", "image.install_bootloader", params)
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    res["command_result"].clone()
}

/// A file from the FAT filesystem at byte `offset` of `disk`, read by mtools.
fn mtools_read(disk: &Path, offset: u64, path: &str, out: &Path) -> Vec<u8> {
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.display()))
        .arg(format!("::{path}"))
        .arg(out));
    std::fs::read(out).unwrap()
}

fn partitions(disk: &Path) -> Vec<Value> {
    let t = sfdisk_json(disk).expect("sfdisk reads the table");
    t["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone()
}

fn read_at(disk: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; len];
    std::fs::File::open(disk)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uefi_copies_the_images_loader_to_the_esp_and_sets_the_boot_entry() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (tree, image) = partition_image(dir.path());
    let d = deploy(
        dir.path(),
        &srv,
        &image,
        json!({"deploy_boot_mode": "uefi"}),
        true,
    )
    .await;
    let root_uuid = word(&d.written, "root_uuid").unwrap();
    assert_eq!(root_uuid, ROOT_FS_UUID, "{}", d.written);
    let efi_uuid = word(&d.written, "efi_system_partition_uuid").expect("ESP UUID in the message");

    // A root UUID no partition has, while the ESP is empty: a clear failure.
    let (_, res) = d
        .agent
        .command(
            "?wait=true",
            "image.install_bootloader",
            json!({"root_uuid": "00000000-1111-2222-3333-444444444444"}),
        )
        .await;
    assert_eq!(res["command_status"], "FAILED", "{res}");
    assert!(
        res.to_string().contains("holds the root filesystem"),
        "{res}"
    );

    let r = install(
        &d,
        json!({"root_uuid": root_uuid, "efi_system_part_uuid": efi_uuid, "target_boot_mode": "uefi"}),
    )
    .await;
    assert_eq!(r["ferrite_loader"], "\\EFI\\ferrite\\grubx64.efi", "{r}");
    assert_eq!(r["ferrite_boot_entry"], "Boot0000", "{r}");
    assert_eq!(
        r["ferrite_esp_files"],
        json!(["EFI/ferrite/grubx64.efi", "EFI/BOOT/BOOTX64.EFI"]),
        "{r}"
    );

    // The ESP, read back by mtools: the loader at both paths, byte for byte the image's.
    let parts = partitions(&d.disk);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    let esp_at = parts[0]["start"].as_u64().unwrap() * 512;
    let loader = std::fs::read(tree.join(partition_image::EFI_LOADER)).unwrap();
    assert_eq!(&loader[..2], b"MZ", "a PE image");
    for path in ["EFI/ferrite/grubx64.efi", "EFI/BOOT/BOOTX64.EFI"] {
        let got = mtools_read(&d.disk, esp_at, path, &dir.path().join("got.efi"));
        assert!(got == loader, "{path} differs from the image's loader");
    }
    // fsck.fat finds the ESP clean after our writes.
    let esp_len = parts[0]["size"].as_u64().unwrap() * 512;
    let esp = dir.path().join("esp.fat");
    std::fs::write(&esp, read_at(&d.disk, esp_at, esp_len as usize)).unwrap();
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(&esp)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck.fat: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    // efivarfs: Boot0000 names the loader on the ESP's GPT partition, first in BootOrder.
    let vars = d.root.path().join("sys/firmware/efi/efivars");
    let entry = std::fs::read(vars.join("Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c")).unwrap();
    let ucs2: Vec<u8> = "\\EFI\\ferrite\\grubx64.efi"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(entry.windows(ucs2.len()).any(|w| w == ucs2));
    let order = std::fs::read(vars.join("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c")).unwrap();
    assert_eq!(&order[4..], &[0, 0]);

    // Again (Ironic retries): the loader is on the ESP now; nothing is copied, same entry.
    let again = install(
        &d,
        json!({"root_uuid": root_uuid, "target_boot_mode": "uefi"}),
    )
    .await;
    assert_eq!(again["ferrite_boot_entry"], "Boot0000", "{again}");
    assert_eq!(again["ferrite_esp_files"], json!([]), "{again}");
}

/// BIOS GRUB on `d`'s disk from the image `tree`: boot.img in the MBR pointing at
/// `core_lba`, the table kept, core.img there with its blocklist.
fn assert_grub_installed(d: &Deployed, tree: &Path, core_lba: u64, before: &[u8]) {
    let boot = std::fs::read(tree.join("boot/grub/i386-pc/boot.img")).unwrap();
    let core = std::fs::read(tree.join("boot/grub/i386-pc/core.img")).unwrap();
    let mbr: [u8; 512] = read_at(&d.disk, 0, 512).try_into().unwrap();
    assert_eq!(
        &mbr[0x1b8..0x1fe],
        &before[0x1b8..0x1fe],
        "partition table kept"
    );
    assert_eq!(&mbr[..3], &boot[..3], "boot.img's jump");
    assert_eq!(&mbr[0x68..0x1b8], &boot[0x68..0x1b8], "boot.img's code");
    assert_eq!(
        &mbr[0x64..0x68],
        &[0xff, boot[0x65], 0x90, 0x90],
        "boot drive, no drive check"
    );
    let sectors = core.len().div_ceil(512);
    let placed = read_at(&d.disk, core_lba * 512, sectors * 512);
    let (lba, start, len, segment) = grub_setup::read_back(&mbr, &placed[..512]);
    assert_eq!(lba, core_lba);
    assert_eq!(
        (start, usize::from(len), segment),
        (core_lba + 1, sectors - 1, 0x820)
    );
    assert!(placed[512..core.len()] == core[512..], "core.img's body");
    assert_eq!(&placed[..0x1f4 - 12], &core[..0x1f4 - 12], "diskboot code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bios_sets_up_grub_from_the_image_on_gpt_and_mbr() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (tree, image) = partition_image(dir.path());

    // GPT: core.img into the 1 MiB BIOS boot partition.
    let d = deploy(
        dir.path(),
        &srv,
        &image,
        json!({"deploy_boot_mode": "bios", "disk_label": "gpt"}),
        false,
    )
    .await;
    let parts = partitions(&d.disk);
    assert_eq!(parts[0]["type"], "21686148-6449-6E6F-744E-656564454649");
    let before = read_at(&d.disk, 0, 512);
    let root_uuid = word(&d.written, "root_uuid").unwrap();
    let r = install(
        &d,
        json!({"root_uuid": root_uuid, "target_boot_mode": "bios"}),
    )
    .await;
    let bios_boot = parts[0]["start"].as_u64().unwrap();
    assert_eq!(r["ferrite_core_partition"], 1, "{r}");
    assert_eq!(r["ferrite_core_lba"], bios_boot, "{r}");
    assert_grub_installed(&d, &tree, bios_boot, &before);
    assert_eq!(partitions(&d.disk), parts, "sfdisk reads the same table");
    drop(d);

    // MBR: core.img into the gap after the MBR; Ironic's root_uuid left out (the agent's
    // own report is used).
    let dir2 = tempfile::tempdir().unwrap();
    let d = deploy(
        dir2.path(),
        &srv,
        &image,
        json!({"deploy_boot_mode": "bios", "disk_label": "msdos"}),
        false,
    )
    .await;
    let parts = partitions(&d.disk);
    let before = read_at(&d.disk, 0, 512);
    let r = install(&d, json!({"target_boot_mode": "bios"})).await;
    assert_eq!(r["ferrite_core_partition"], 0, "{r}");
    assert_eq!(r["ferrite_core_lba"], 1, "{r}");
    assert_grub_installed(&d, &tree, 1, &before);
    assert_eq!(partitions(&d.disk), parts, "sfdisk reads the same table");
}

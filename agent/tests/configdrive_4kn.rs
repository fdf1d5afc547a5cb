//! An ISO9660 config drive (made by genisoimage, as Ironic makes them) written to a disk
//! with 4096-byte sectors is rebuilt as VFAT labelled config-2; on 512-byte sectors it
//! stays ISO9660. blkid, fsck.fat and mtools read the result back.

mod imaging;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use ferrite_image::disk::configdrive::write_data;
use ferrite_image::disk::gpt::{read_table, Table};
use ferrite_image::disk::layout::{plan, BootMode, Label, Request};
use ferrite_image::disk::table_write;
use imaging::*;

const DISK: u64 = 512 * MIB;
const META: &str = r#"{"uuid": "node-4kn", "hostname": "four-k"}"#;

fn iso(dir: &Path) -> Vec<u8> {
    let src = dir.join("cd");
    std::fs::create_dir_all(src.join("openstack/latest")).unwrap();
    std::fs::write(src.join("openstack/latest/meta_data.json"), META).unwrap();
    std::fs::write(src.join("openstack/latest/user_data"), "#cloud-config\n").unwrap();
    let out = dir.join("cd.iso");
    run(Command::new("genisoimage")
        .args([
            "-quiet",
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-J",
            "-r",
        ])
        .args(["-V", "config-2", "-o"])
        .arg(&out)
        .arg(&src));
    std::fs::read(&out).unwrap()
}

/// A GPT disk with one root partition, laid out for `sector`-byte sectors.
fn gpt_disk(dir: &Path, name: &str, sector: u64) -> (std::path::PathBuf, std::fs::File) {
    let path = sparse_disk(dir, name, DISK);
    let req = Request {
        label: Label::Gpt,
        boot_mode: BootMode::Bios,
        root_mb: Some(64),
        swap_mb: 0,
        ephemeral_mb: 0,
        configdrive: true,
    };
    let layout = plan(&req, DISK, sector).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for p in table_write::gpt(&layout, uuid::Uuid::new_v4()) {
        f.write_all_at(&p.bytes, p.offset).unwrap();
    }
    (path, f)
}

fn config_partition_offset(f: &std::fs::File, sector: u64) -> (u64, u64) {
    let Table::Gpt { partitions, .. } = read_table(f, sector).unwrap() else {
        panic!("no GPT");
    };
    let p = partitions
        .iter()
        .find(|p| p.name == "config-2")
        .expect("config-2 partition");
    (
        p.first_lba * sector,
        (p.last_lba - p.first_lba + 1) * sector,
    )
}

fn blkid_type_label(disk: &Path, offset: u64) -> String {
    run(Command::new("blkid")
        .args(["-p", "-o", "export", "-s", "TYPE", "-s", "LABEL", "-O"])
        .arg(offset.to_string())
        .arg(disk))
}

#[test]
fn iso_config_drive_becomes_vfat_on_4kn_and_stays_iso_on_512() {
    let dir = tempfile::tempdir().unwrap();
    let data = iso(dir.path());

    let (path, f) = gpt_disk(dir.path(), "disk4k", 4096);
    let msg = write_data(&f, DISK, 4096, &data, "disk4k").unwrap();
    assert!(
        msg.contains("rebuilt as VFAT for 4096-byte sectors"),
        "{msg}"
    );
    let (at, len) = config_partition_offset(&f, 4096);
    let probe = blkid_type_label(&path, at);
    assert!(
        probe.contains("TYPE=vfat") && probe.contains("LABEL=config-2"),
        "{probe}"
    );
    let mut part = vec![0u8; len as usize];
    f.read_exact_at(&mut part, at).unwrap();
    let part_img = dir.path().join("part.img");
    std::fs::write(&part_img, &part).unwrap();
    assert_eq!(
        u16::from_le_bytes([part[11], part[12]]),
        4096,
        "FAT sector size"
    );
    run(Command::new("fsck.fat").arg("-n").arg(&part_img));
    let got = run(Command::new("mtype")
        .arg("-i")
        .arg(&part_img)
        .arg("::/openstack/latest/meta_data.json"));
    assert_eq!(got, META);

    let (path, f) = gpt_disk(dir.path(), "disk512", 512);
    let msg = write_data(&f, DISK, 512, &data, "disk512").unwrap();
    assert!(!msg.contains("rebuilt"), "{msg}");
    let (at, _) = config_partition_offset(&f, 512);
    let probe = blkid_type_label(&path, at);
    assert!(
        probe.contains("TYPE=iso9660") && probe.contains("LABEL=config-2"),
        "{probe}"
    );

    // A broken ISO on a 4Kn disk fails with a message that says what was attempted.
    let mut broken = data.clone();
    broken[16 * 2048 + 156 + 2..16 * 2048 + 156 + 6].copy_from_slice(&u32::MAX.to_le_bytes());
    broken[17 * 2048] = 255; // no Joliet descriptor to fall back on
    let (_, f) = gpt_disk(dir.path(), "disk4k-bad", 4096);
    let e = write_data(&f, DISK, 4096, &broken, "disk4k-bad").unwrap_err();
    assert!(e.to_string().contains("must be rebuilt as VFAT"), "{e}");
}

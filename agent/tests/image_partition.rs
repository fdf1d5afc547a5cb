//! Partition images (`image_type: partition`) onto sparse files: GPT + UEFI (ESP, swap,
//! root) through the library, MBR + BIOS with a config drive through the agent API, and
//! the refusals. sfdisk, blkid, fsck.fat and mtools read the result back independently.

mod common;
mod imaging;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::Agent;
use ferrite_agent::disk::safety::Choice;
use ferrite_agent::image::deploy::TargetDisk;
use ferrite_agent::image::partition::deploy_partition_image;
use ferrite_agent::state::AgentConfig;
use ferrite_image::Progress;
use ferrite_proto::image::ImageInfo;
use ferrite_testkit::http::{ImageServer, Mode};
use imaging::*;
use serde_json::json;

const ROOT_FS: u64 = 16 * MIB;
const DISK: u64 = 1024 * MIB;

/// An ext4 filesystem image holding /hello.txt, with a chosen UUID.
fn ext4_image(dir: &Path, uuid: &str) -> Vec<u8> {
    let content = dir.join("rootfs");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "from the partition image").unwrap();
    let img = dir.join("root.ext4");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(ROOT_FS)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid, "-L", "root", "-d"])
        .arg(&content)
        .arg(&img));
    std::fs::read(&img).unwrap()
}

/// blkid's low-level probe of whatever sits at `offset` bytes into `disk`.
fn blkid_at(disk: &Path, offset: u64) -> HashMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", "-O"])
        .arg(offset.to_string())
        .arg(disk)
        .output()
        .expect("blkid");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn info(url: &str, data: &[u8]) -> ImageInfo {
    ImageInfo {
        id: "part-img".into(),
        urls: vec![url.into()],
        disk_format: Some("raw".into()),
        image_type: Some("partition".into()),
        os_hash_algo: Some("sha256".into()),
        os_hash_value: Some(sha256_hex(data)),
        ..ImageInfo::default()
    }
}

fn target(disk: &Path) -> TargetDisk {
    TargetDisk {
        path: disk.to_owned(),
        choice: Choice::Explicit,
    }
}

#[test]
fn gpt_uefi_with_swap_has_esp_swap_root_and_reports_uuids() {
    let rt = runtime();
    let srv = ImageServer::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let fs_uuid = "6a1e4f0c-3b2d-4c5e-9f80-112233445566";
    let root_img = ext4_image(dir.path(), fs_uuid);
    let url = srv.put("root.ext4", root_img.clone(), Mode::Range);
    let disk = sparse_disk(dir.path(), "disk", DISK);
    let mut i = info(&url, &root_img);
    i.root_mb = Some(64);
    i.swap_mb = Some(16);
    let d = deploy_partition_image(
        rt.handle(),
        &i,
        &target(&disk),
        &fast_http(4),
        &Progress::new(),
        false,
    )
    .unwrap_or_else(|e| panic!("{}", ferrite_proto::error::chain(&e)));

    let table = sfdisk_json(&disk).expect("sfdisk reads the table");
    let pt = &table["partitiontable"];
    assert_eq!(pt["label"], "gpt", "{table}");
    assert_eq!(pt["id"].as_str().unwrap().to_lowercase(), d.disk_id);
    let parts = pt["partitions"].as_array().unwrap();
    let want = [
        (
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "efi-part",
            2048u64,
            550 * 2048u64,
        ),
        (
            "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
            "swap-part",
            2048 + 550 * 2048,
            16 * 2048,
        ),
        (
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "root",
            2048 + 566 * 2048,
            64 * 2048,
        ),
    ];
    assert_eq!(parts.len(), 3, "{table}");
    for (p, (ty, name, start, size)) in parts.iter().zip(want) {
        assert_eq!(p["type"], ty, "{table}");
        assert_eq!(p["name"], name, "{table}");
        assert_eq!(p["start"], start, "{table}");
        assert_eq!(p["size"], size, "{table}");
    }
    // sfdisk finds the backup GPT intact (it complains otherwise) at the disk's end.
    assert_eq!(pt["lastlba"].as_u64().unwrap() + 34, DISK / 512, "{table}");

    let root_at = 2048 * 512 + 566 * MIB;
    let bytes = std::fs::read(&disk).unwrap();
    assert!(
        bytes[root_at as usize..(root_at + ROOT_FS) as usize] == root_img[..],
        "root partition does not hold the image"
    );
    let root = blkid_at(&disk, root_at);
    assert_eq!(
        root.get("TYPE").map(String::as_str),
        Some("ext4"),
        "{root:?}"
    );
    assert_eq!(root.get("UUID").map(String::as_str), Some(fs_uuid));
    let esp = blkid_at(&disk, MIB);
    assert_eq!(esp.get("TYPE").map(String::as_str), Some("vfat"), "{esp:?}");
    assert_eq!(
        esp.get("VERSION").map(String::as_str),
        Some("FAT32"),
        "{esp:?}"
    );
    let swap = blkid_at(&disk, 551 * MIB);
    assert_eq!(
        swap.get("TYPE").map(String::as_str),
        Some("swap"),
        "{swap:?}"
    );

    // The ESP passes fsck.fat and mtools can use it.
    let esp_img = dir.path().join("esp.img");
    std::fs::write(&esp_img, &bytes[MIB as usize..(551 * MIB) as usize]).unwrap();
    drop(bytes);
    run(Command::new("fsck.fat").arg("-n").arg(&esp_img));
    let e = esp_img.to_str().unwrap();
    run(Command::new("mmd").args(["-i", e, "::/EFI"]));
    assert!(run(Command::new("mdir").args(["-i", e, "::/"])).contains("EFI"));

    let u = d.uuids(&disk);
    assert_eq!(u["root uuid"], fs_uuid, "{u}");
    assert_eq!(u["efi system partition uuid"], esp["UUID"].as_str(), "{u}");
    assert_eq!(
        u["root partuuid"].as_str().unwrap().to_uppercase(),
        parts[2]["uuid"].as_str().unwrap(),
        "{u}"
    );
    assert_eq!(u["partitions"]["root"], format!("{}3", disk.display()));
    assert_eq!(d.outcome.disk_bytes, ROOT_FS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbr_bios_with_config_drive_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let fs_uuid = "0b9f3c2a-1111-4222-8333-444455556666";
    let root_img = ext4_image(dir.path(), fs_uuid);
    let url = srv.put("root.ext4", root_img.clone(), Mode::NoRange);
    let disk = sparse_disk(dir.path(), "disk", 512 * MIB);
    let config = AgentConfig {
        target_disk: Some(disk.clone()),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let mut bad = serde_json::to_value(info(&url, &root_img)).unwrap();
    bad["image_type"] = json!("floppy");
    let (_, res) = agent
        .command(
            "?wait=true",
            "standby.prepare_image",
            json!({"image_info": bad}),
        )
        .await;
    assert_ne!(res["command_status"], "SUCCEEDED", "{res}");
    assert!(
        res.to_string().contains("use whole-disk or partition"),
        "{res}"
    );
    assert!(sfdisk_json(&disk).is_none());

    let mut ii = serde_json::to_value(info(&url, &root_img)).unwrap();
    ii["disk_label"] = json!("msdos");
    ii["deploy_boot_mode"] = json!("bios");
    ii["ephemeral_mb"] = json!(32);
    // Root takes the rest of the disk; the config drive goes after it.
    let cd = config_drive_b64(dir.path());
    let (code, res) = agent
        .command(
            "?wait=true",
            "standby.prepare_image",
            json!({"image_info": ii, "configdrive": cd}),
        )
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    assert_eq!(
        res["command_result"]["ferrite_image"]["image_type"],
        "partition"
    );
    assert_eq!(
        res["command_result"]["ferrite_image"]["boot_loader_installed"],
        false
    );

    let table = sfdisk_json(&disk).expect("sfdisk reads the table");
    let pt = &table["partitiontable"];
    assert_eq!(pt["label"], "dos", "{table}");
    let parts = pt["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "ephemeral, root, config drive: {table}");
    assert_eq!(parts[0]["type"], "83");
    assert_eq!(parts[1]["type"], "83");
    assert_eq!(
        parts[1]["bootable"], true,
        "root is active in BIOS mode: {table}"
    );
    let root_at = parts[1]["start"].as_u64().unwrap() * 512;
    assert_eq!(root_at, 33 * MIB);
    let root = blkid_at(&disk, root_at);
    assert_eq!(
        root.get("UUID").map(String::as_str),
        Some(fs_uuid),
        "{root:?}"
    );
    let cd_at = parts[2]["start"].as_u64().unwrap() * 512;
    let cdp = blkid_at(&disk, cd_at);
    assert_eq!(
        cdp.get("LABEL").map(String::as_str),
        Some("config-2"),
        "{cdp:?}"
    );

    let (code, uuids) = agent
        .command("", "standby.get_partition_uuids", json!({}))
        .await;
    assert_eq!(code, 200);
    let r = &uuids["command_result"];
    assert_eq!(r["root uuid"], fs_uuid, "{uuids}");
    let sig = pt["id"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x")
        .to_owned();
    assert_eq!(r["root partuuid"], format!("{sig}-02"), "{uuids}");
    assert!(r.get("efi system partition uuid").is_none(), "{uuids}");
}

/// A VFAT config drive labelled config-2 (mkfs.vfat), as base64 of gzip.
fn config_drive_b64(dir: &Path) -> String {
    use base64::Engine;
    let img = dir.join("cd.vfat");
    run(Command::new("mkfs.vfat")
        .args(["-n", "config-2", "-C"])
        .arg(&img)
        .arg("4096"));
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &std::fs::read(&img).unwrap()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[test]
fn refusals_leave_no_partition_table() {
    let rt = runtime();
    let srv = ImageServer::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let root_img = ext4_image(dir.path(), "7c1e4f0c-3b2d-4c5e-9f80-112233445566");
    let url = srv.put("root.ext4", root_img.clone(), Mode::Range);
    let disk = sparse_disk(dir.path(), "disk", DISK);
    let deploy = |i: &ImageInfo| {
        let e = deploy_partition_image(
            rt.handle(),
            i,
            &target(&disk),
            &fast_http(4),
            &Progress::new(),
            false,
        )
        .map(|_| ())
        .unwrap_err();
        ferrite_proto::error::chain(&e)
    };

    // A root partition too large for the disk: refused before the disk is touched.
    old_partition_table(&disk);
    let mut i = info(&url, &root_img);
    i.root_mb = Some(4096);
    let e = deploy(&i);
    assert!(
        e.contains("the partitions need") && e.contains("root_mb"),
        "{e}"
    );
    assert!(sfdisk_json(&disk).is_some(), "the disk was left as it was");

    // An image larger than its root partition.
    let mut i = info(&url, &root_img);
    i.root_mb = Some(8);
    let e = deploy(&i);
    assert!(e.contains("larger than"), "{e}");
    assert!(sfdisk_json(&disk).is_none(), "a table survived: {e}");

    // A wrong checksum: no table is written.
    old_partition_table(&disk);
    let mut i = info(&url, &root_img);
    i.os_hash_value = Some("0".repeat(64));
    let e = deploy(&i);
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(sfdisk_json(&disk).is_none(), "a table survived: {e}");

    // Unknown labels and boot modes name the field.
    let mut i = info(&url, &root_img);
    i.disk_label = Some("sun".into());
    assert!(deploy(&i).contains("disk_label"));
    let mut i = info(&url, &root_img);
    i.deploy_boot_mode = Some("legacy".into());
    assert!(deploy(&i).contains("deploy_boot_mode"));
}

#[test]
fn loop_device_old_data_is_overwritten_and_the_table_reread() {
    use std::os::unix::fs::FileExt;
    let rt = runtime();
    let srv = ImageServer::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let fs_uuid = "5d0c1b2a-3333-4444-8555-666677778888";
    let root_img = ext4_image(dir.path(), fs_uuid);
    let url = srv.put("root.ext4", root_img.clone(), Mode::Range);
    let backing = sparse_disk(dir.path(), "loop.img", DISK);
    old_partition_table(&backing);
    // Old data everywhere the new layout puts something: a block device is not zeroed
    // first, so the image's zero runs and the ESP's FATs must be written for real.
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap();
        let junk = vec![0x5a; (8 * MIB) as usize];
        for at in (MIB..700 * MIB).step_by(junk.len()) {
            f.write_all_at(&junk, at).unwrap();
        }
    }
    let lo = LoopDevice::attach(&backing);
    let mut i = info(&url, &root_img);
    i.root_mb = Some(64);
    let d = deploy_partition_image(
        rt.handle(),
        &i,
        &target(&lo.dev),
        &fast_http(4),
        &Progress::new(),
        false,
    )
    .unwrap_or_else(|e| panic!("{}", ferrite_proto::error::chain(&e)));
    assert!(d.partitions_reread, "BLKRRPART on the loop device");
    let table = sfdisk_json(&lo.dev).expect("sfdisk reads the loop device's table");
    assert_eq!(
        table["partitiontable"]["partitions"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let dev = std::fs::File::open(&lo.dev).unwrap();
    let root_at = 551 * MIB;
    let mut got = vec![0u8; ROOT_FS as usize];
    dev.read_exact_at(&mut got, root_at).unwrap();
    assert!(got == root_img, "root partition differs from the image");
    let mut esp = vec![0u8; (550 * MIB) as usize];
    dev.read_exact_at(&mut esp, MIB).unwrap();
    let esp_img = dir.path().join("esp.img");
    std::fs::write(&esp_img, &esp).unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&esp_img));
    assert_eq!(d.uuids(&lo.dev)["root uuid"], fs_uuid);
    assert_eq!(
        d.uuids(&lo.dev)["partitions"]["root"],
        format!("{}p2", lo.dev.display())
    );
}

//! A partition image deployed through the conductor: instance_info's sizes and the node's
//! capabilities reach the real agent (in-process, sparse-file disk) as IPA's image_info
//! fields, and the table it writes is read back by sfdisk; prepare_instance_boot has the
//! agent install the image's own GRUB (`image.install_bootloader`, BIOS). A rebuild asking to keep the
//! ephemeral partition is refused before anything is written.

mod common;

use std::process::Command;

use common::agent::agent_loop;
use common::{Api, Backend, Server};
use ferrite_ramdisk_build::partition_image;
use ferrite_testkit::http::{ImageServer, Mode};
use serde_json::{json, Value};
use sha2::Digest;

const MIB: u64 = 1 << 20;

fn sfdisk_json(disk: &std::path::Path) -> Value {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .expect("sfdisk (fdisk package) runs");
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sfdisk JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_image_follows_instance_info_and_capabilities() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let mac = "52:54:00:12:34:56".to_string();
    let disk = server.dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();

    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({
                "driver": "fake-hardware", "name": "part", "deploy_interface": "direct",
                "properties": {"capabilities": "boot_mode:bios,disk_label:gpt"},
            })),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    let port = json!({"address": mac, "node_uuid": "part"});
    assert_eq!(api.call("POST", "/v1/ports", Some(port)).await.0, 201);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        server.url.clone(),
        "part".into(),
        vec![mac],
        root,
        disk.clone(),
        stop_rx,
    ));
    assert_eq!(
        api.provision("part", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("part", "manageable").await;
    assert_eq!(
        api.provision("part", json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state("part", "available").await;

    // The partition test OS image: an ext4 root carrying Debian's GRUB (stand-ins for the
    // kernel and initramfs).
    let work = tempfile::tempdir().unwrap();
    let (kernel, initrd) = (work.path().join("vmlinuz"), work.path().join("initrd.img"));
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initrd, b"initrd").unwrap();
    let img_path = work.path().join(partition_image::PARTITION_FILE);
    partition_image::build(&kernel, &initrd, work.path(), &img_path).unwrap();
    let img = std::fs::read(&img_path).unwrap();
    let core = std::fs::read(
        work.path()
            .join("partition-root/boot/grub/i386-pc/core.img"),
    )
    .unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let images = ImageServer::start_on_current();
    let url = images.put("disk.raw", img.clone(), Mode::NoRange);
    let ii = json!({
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha,
        "image_type": "partition", "root_mb": 96, "swap_mb": "8",
        "capabilities": {"disk_label": "msdos"},
    });
    let patch = json!([{"op": "add", "path": "/instance_info", "value": ii}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/part", Some(patch)).await.0,
        200
    );
    assert_eq!(
        api.provision("part", json!({"target": "active"})).await.0,
        202
    );
    let node = api.wait_state("part", "active").await;
    assert!(node["last_error"].is_null(), "{}", node["last_error"]);

    // msdos from instance_info's capabilities (over the node's gpt); bios from the node's:
    // on MBR that makes root the active partition. Swap 8 MiB, root 96 MiB.
    let table = sfdisk_json(&disk);
    let pt = &table["partitiontable"];
    assert_eq!(pt["label"], "dos", "{table}");
    let parts = pt["partitions"].as_array().unwrap();
    let sizes: Vec<u64> = parts
        .iter()
        .map(|p| p["size"].as_u64().unwrap() * 512)
        .collect();
    assert!(
        sizes.contains(&(8 * MIB)),
        "a swap partition of 8 MiB: {table}"
    );
    let root = parts
        .iter()
        .find(|p| p["size"].as_u64().unwrap() * 512 == 96 * MIB)
        .unwrap_or_else(|| panic!("a root partition of 96 MiB: {table}"));
    assert_eq!(
        root["bootable"], true,
        "bios on MBR marks root active: {table}"
    );
    let at = root["start"].as_u64().unwrap() * 512;
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(
        &written[at as usize..at as usize + img.len()],
        &img[..],
        "the image is in the root partition"
    );
    let root_id = node["driver_internal_info"]["root_uuid_or_disk_id"]
        .as_str()
        .unwrap_or_else(|| panic!("root uuid recorded: {}", node["driver_internal_info"]));
    assert_eq!(root_id, partition_image::ROOT_FS_UUID);

    // prepare_instance_boot had the agent install the image's GRUB (BIOS, MBR): boot.img
    // in the MBR pointing at core.img in the gap after it, as the agent reported.
    let installed = &node["driver_internal_info"]["ferrite_bootloader"];
    assert_eq!(
        installed["ferrite_bootloader"], "grub-i386-pc",
        "{installed}"
    );
    assert_eq!(installed["ferrite_core_lba"], 1, "{installed}");
    assert_eq!(
        &written[0x5c..0x64],
        &1u64.to_le_bytes(),
        "boot.img points at LBA 1"
    );
    assert_eq!(&written[510..512], &[0x55, 0xaa]);
    assert!(
        written[1024..512 + core.len()] == core[512..],
        "core.img follows the MBR"
    );

    // Keeping the ephemeral partition is not supported: the rebuild fails, disk untouched.
    let patch =
        json!([{"op": "add", "path": "/instance_info/preserve_ephemeral", "value": "true"}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/part", Some(patch)).await.0,
        200
    );
    assert_eq!(
        api.provision("part", json!({"target": "rebuild"})).await.0,
        202
    );
    let node = api.wait_state("part", "deploy failed").await;
    let err = node["last_error"].as_str().unwrap_or("");
    assert!(err.contains("preserve_ephemeral"), "{err}");
    assert_eq!(
        sfdisk_json(&disk)["partitiontable"]["label"],
        "dos",
        "the refused rebuild left the table alone"
    );

    let _ = stop_tx.send(true);
    agent.await.unwrap();
    server.stop().await;
}

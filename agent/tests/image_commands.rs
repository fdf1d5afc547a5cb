//! `standby.prepare_image`, `standby.get_partition_uuids`, config drives and the disk
//! clean steps through the real agent API on loopback, onto sparse files named as the
//! agent's target disk.

mod common;
mod imaging;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::Agent;
use ferrite_agent::state::AgentConfig;
use ferrite_testkit::http::{ImageServer, Mode};
use imaging::*;
use serde_json::{json, Value};

const IMAGE: u64 = 8 * MIB;
const DISK: u64 = 100 * MIB;

async fn agent_for(disk: &Path) -> Agent {
    let config = AgentConfig {
        target_disk: Some(disk.to_owned()),
        ..AgentConfig::default()
    };
    Agent::start_with(config, None, None).await
}

fn image_info(url: &str, data: &[u8]) -> Value {
    json!({"id": "img-1", "urls": [url], "disk_format": "raw", "image_type": "whole-disk",
           "os_hash_algo": "sha256", "os_hash_value": sha256_hex(data)})
}

/// A VFAT config drive labelled config-2 holding openstack/latest/meta_data.json,
/// made with mkfs.vfat and mtools; returned as base64 of gzip.
fn config_drive(dir: &Path, meta: &str) -> String {
    let img = dir.join("cd.vfat");
    let _ = std::fs::remove_file(&img);
    run(Command::new("mkfs.vfat")
        .args(["-n", "config-2", "-C"])
        .arg(&img)
        .arg("4096"));
    let meta_path = dir.join("meta_data.json");
    std::fs::write(&meta_path, meta).unwrap();
    let i = img.to_str().unwrap();
    run(Command::new("mmd").args(["-i", i, "::/openstack", "::/openstack/latest"]));
    run(Command::new("mcopy")
        .args(["-i", i])
        .arg(&meta_path)
        .arg("::/openstack/latest/meta_data.json"));
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &std::fs::read(&img).unwrap()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

/// Read a file out of the FAT filesystem at `offset` bytes into `disk` (mtools: an
/// independent reader).
fn mtype(disk: &Path, offset: u64, file: &str) -> String {
    run(Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.display()))
        .arg(file))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_image_with_config_drive_on_gpt_then_partition_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (_, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, 11);
    let url = srv.put("disk.raw", raw.clone(), Mode::Range);
    let disk = sparse_disk(dir.path(), "target", DISK);
    let agent = agent_for(&disk).await;

    let cd = config_drive(dir.path(), r#"{"uuid": "node-gpt"}"#);
    let params = json!({"image_info": image_info(&url, &raw), "configdrive": cd});
    let (code, res) = agent
        .command("?wait=true", "standby.prepare_image", params)
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    let msg = res["command_result"]["result"].as_str().unwrap();
    assert!(
        msg.starts_with("prepare_image: image (img-1) written to device"),
        "{msg}"
    );
    assert!(msg.contains("config drive"), "{msg}");
    assert_eq!(res["command_result"]["ferrite_image"]["disk_bytes"], IMAGE);

    let table = sfdisk_json(&disk).expect("sfdisk reads the table");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parts.len(), 3, "{table}");
    assert_eq!(parts[2]["name"], "config-2", "{table}");
    let start = parts[2]["start"].as_u64().unwrap() * 512;
    assert_eq!(
        start + parts[2]["size"].as_u64().unwrap() * 512,
        DISK - 33 * 512,
        "at the end"
    );
    assert_eq!(
        mtype(&disk, start, "::/openstack/latest/meta_data.json"),
        r#"{"uuid": "node-gpt"}"#
    );

    let (code, uuids) = agent
        .command("", "standby.get_partition_uuids", json!({}))
        .await;
    assert_eq!(code, 200);
    let r = &uuids["command_result"];
    assert!(r["root uuid"].as_str().unwrap().starts_with("0x"), "{r}");
    let listed: Vec<&str> = r["ferrite_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["uuid"].as_str().unwrap())
        .collect();
    let oracle: Vec<String> = parts
        .iter()
        .map(|p| p["uuid"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(listed, oracle, "partition UUIDs agree with sfdisk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_drive_on_an_mbr_disk_and_reused_partition() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let raw_path = sparse_disk(dir.path(), "mbr.raw", IMAGE);
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&raw_path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"label: dos\n,4M,83\n").unwrap();
    assert!(child.wait().unwrap().success());
    let raw = std::fs::read(&raw_path).unwrap();
    let url = srv.put("mbr.raw", raw.clone(), Mode::NoRange);
    let disk = sparse_disk(dir.path(), "target", DISK);
    let agent = agent_for(&disk).await;

    let cd = config_drive(dir.path(), "first");
    let params = json!({"image_info": image_info(&url, &raw), "configdrive": cd});
    let (_, res) = agent
        .command("?wait=true", "standby.prepare_image", params)
        .await;
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    let table = sfdisk_json(&disk).unwrap();
    assert_eq!(table["partitiontable"]["label"], "dos");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parts.len(), 2, "{table}");
    let start = parts[1]["start"].as_u64().unwrap() * 512;
    assert_eq!(
        mtype(&disk, start, "::/openstack/latest/meta_data.json"),
        "first"
    );

    // A second config drive goes into the existing config-2 partition.
    let params = json!({"image_info": image_info(&url, &raw), "configdrive": config_drive(dir.path(), "second")});
    let (_, res) = agent
        .command("?wait=true", "standby.prepare_image", params)
        .await;
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    assert!(
        res["command_result"]["result"]
            .as_str()
            .unwrap()
            .contains("partition"),
        "{res}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_leave_no_table_and_the_agent_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (_, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, 12);
    let url = srv.put("disk.raw", raw.clone(), Mode::Range);
    let disk = sparse_disk(dir.path(), "target", DISK);
    old_partition_table(&disk);
    let agent = agent_for(&disk).await;

    let mut info = image_info(&url, &raw);
    info["os_hash_value"] = json!("f".repeat(64));
    let (_, res) = agent
        .command(
            "?wait=true",
            "standby.prepare_image",
            json!({"image_info": info}),
        )
        .await;
    assert_eq!(res["command_status"], "FAILED", "{res}");
    let details = res["command_error"]["details"].as_str().unwrap();
    assert!(details.contains("checksum mismatch"), "{details}");
    assert!(
        sfdisk_json(&disk).is_none(),
        "no partition table after a failed write"
    );
    agent.assert_serving().await;

    // Config drive that is not base64: the image is written, then the command fails.
    let params = json!({"image_info": image_info(&url, &raw), "configdrive": "%%% not base64 %%%"});
    let (_, res) = agent
        .command("?wait=true", "standby.prepare_image", params)
        .await;
    assert_eq!(res["command_status"], "FAILED", "{res}");
    assert!(
        res["command_error"]["details"]
            .as_str()
            .unwrap()
            .contains("neither base64"),
        "{res}"
    );

    // Too large: 65 MiB of zeroes gzip to almost nothing.
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vec![0u8; 65 << 20]).unwrap();
    let big = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let params = json!({"image_info": image_info(&url, &raw), "configdrive": big});
    let (_, res) = agent
        .command("?wait=true", "standby.prepare_image", params)
        .await;
    assert!(
        res["command_error"]["details"]
            .as_str()
            .unwrap()
            .contains("64 MiB"),
        "{res}"
    );
    agent.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_image_deploy_step_and_erase_clean_steps() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (_, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, 13);
    let url = srv.put("disk.raw", raw.clone(), Mode::Range);
    let disk = sparse_disk(dir.path(), "target", DISK);
    let agent = agent_for(&disk).await;
    let node = json!({"uuid": "n1", "properties": {}});

    let step = json!({"interface": "deploy", "step": "write_image", "priority": 80,
                      "args": {"image_info": image_info(&url, &raw)}});
    let (_, res) = agent
        .command(
            "?wait=true",
            "deploy.execute_deploy_step",
            json!({"step": step, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    assert!(sfdisk_json(&disk).is_some());
    // IPA's shape, which Ironic checks: the bare command name, the step as sent, and
    // prepare_image's own result nested in deploy_result.
    assert_eq!(res["command_name"], "execute_deploy_step");
    assert_eq!(res["command_result"]["deploy_step"], step, "{res}");
    assert!(
        res["command_result"]["deploy_result"]["result"]
            .as_str()
            .unwrap()
            .starts_with("prepare_image: image ("),
        "{res}"
    );

    let step = json!({"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "args": {}});
    let (_, res) = agent
        .command(
            "?wait=true",
            "clean.execute_clean_step",
            json!({"step": step, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    assert_eq!(res["command_name"], "execute_clean_step");
    assert_eq!(res["command_result"]["clean_step"], step, "{res}");
    assert_eq!(
        res["command_result"]["clean_result"]["erased"][0]["signatures"],
        json!(["gpt"]),
        "{res}"
    );
    assert!(sfdisk_json(&disk).is_none(), "metadata erased");

    // A Ceph BlueStore signature is refused unless forced.
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new().write(true).open(&disk).unwrap(),
        b"bluestore block device",
        0,
    )
    .unwrap();
    let (_, res) = agent
        .command(
            "?wait=true",
            "clean.execute_clean_step",
            json!({"step": step, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(res["command_status"], "FAILED", "{res}");
    assert!(
        res["command_error"]["details"]
            .as_str()
            .unwrap()
            .contains("ceph_bluestore"),
        "{res}"
    );
    let forced = json!({"interface": "deploy", "step": "erase_devices", "priority": 10, "args": {"force": true}});
    let (_, res) = agent
        .command(
            "?wait=true",
            "clean.execute_clean_step",
            json!({"step": forced, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    let erased = &res["command_result"]["clean_result"]["erased"][0];
    assert_eq!(erased["method"], "zeroed", "{res}");
    assert_eq!(erased["reads_back_zeroes"], true, "{res}");
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|&b| b == 0),
        "erase_devices zeroes the whole disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_visible_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
    let (_, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, 14);
    // 8 MiB in 64 KiB pieces every 20 ms: about 2.5 s of download.
    let url = srv.put("slow.raw", raw.clone(), Mode::Slow(20));
    let disk = sparse_disk(dir.path(), "target", DISK);
    let agent = agent_for(&disk).await;
    let (code, started) = agent
        .command(
            "?wait=false",
            "standby.prepare_image",
            json!({"image_info": image_info(&url, &raw)}),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let seen = ferrite_testkit::wait_until_async(
        "progress of the running write",
        std::time::Duration::from_secs(30),
        || {
            let (agent, id) = (&agent, &id);
            async move {
                let (_, r) = agent.get(&format!("/v1/commands/{id}")).await;
                let p = &r["command_result"]["ferrite_progress"];
                (r["command_status"] == "RUNNING" && p["bytes_done"].as_u64().unwrap_or(0) > 0)
                    .then(|| r.clone())
            }
        },
    )
    .await;
    let p = &seen["command_result"]["ferrite_progress"];
    assert_eq!(p["bytes_total"], IMAGE, "{seen}");
    assert_eq!(p["phase"], "downloading", "{seen}");
    let status = agent.state.progress();
    assert_eq!(status.agent_status.as_deref(), Some("start"));
    assert!(status
        .agent_status_message
        .unwrap()
        .starts_with("writing image: downloading"));
    let done = ferrite_testkit::wait_until_async(
        "the write to finish",
        std::time::Duration::from_secs(60),
        || {
            let (agent, id) = (&agent, &id);
            async move {
                let (_, r) = agent.get(&format!("/v1/commands/{id}")).await;
                (r["command_status"] != "RUNNING").then_some(r)
            }
        },
    )
    .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert_eq!(agent.state.progress().agent_status.as_deref(), Some("end"));
}

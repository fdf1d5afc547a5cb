//! The whole lifecycle with `fake-hardware` power/boot and the real ferrite-agent library
//! in-process on loopback (its API server, commands, clean steps and image writer), with a
//! sparse file as its disk: inspect, provide (clean), deploy with a config drive, undeploy.
//! Every agent "boot" is a fresh agent state that looks the node up for a new token.

mod common;

use std::io::Write;

use base64::Engine;
use common::agent::agent_loop;
use common::{Api, Backend, Server};
use ferrite_agent::heartbeat::inspect::{post_inventory, InspectTiming};
use ferrite_testkit::http::{ImageServer, Mode};
use serde_json::json;
use sha2::Digest;

/// `openstack/latest/meta_data.json` of the `config-2` VFAT partition the agent added.
fn config_drive_meta(disk: &[u8]) -> serde_json::Value {
    for e in 0..4 {
        let entry = &disk[0x1BE + 16 * e..0x1BE + 16 * (e + 1)];
        let start = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize * 512;
        let len = u32::from_le_bytes(entry[12..16].try_into().unwrap()) as usize * 512;
        if start == 0 || len == 0 {
            continue;
        }
        let mut part = std::io::Cursor::new(disk[start..start + len].to_vec());
        let Ok(fs) = fatfs::FileSystem::new(&mut part, fatfs::FsOptions::new()) else {
            continue;
        };
        assert_eq!(fs.volume_label(), "config-2");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut fs
                .root_dir()
                .open_file("openstack/latest/meta_data.json")
                .unwrap(),
            &mut text,
        )
        .unwrap();
        return serde_json::from_str(&text).unwrap();
    }
    panic!("no VFAT config drive partition in the MBR");
}

/// A 4 MiB whole-disk image with an MBR and one partition, served over HTTP.
fn image() -> Vec<u8> {
    let mut img = vec![0u8; 4 << 20];
    for (i, b) in img.iter_mut().enumerate().skip(1 << 20) {
        *b = (i % 251) as u8;
    }
    let e = 0x1BE;
    img[e + 4] = 0x83;
    img[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&4096u32.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

async fn lifecycle(backend: Backend) {
    let server = Server::start(backend, |_| {}).await;
    let api = Api::new(&server.url);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let inventory = ferrite_agent::inventory::collect(&root).expect("fixture inventory");
    let macs: Vec<String> = inventory
        .interfaces
        .iter()
        .filter_map(|i| i.mac_address.clone())
        .collect();
    assert!(!macs.is_empty(), "the fixture has a NIC");
    let disk = server.dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();

    let (s, n) = api.call("POST", "/v1/nodes", Some(json!({
        "driver": "fake-hardware", "name": "life", "deploy_interface": "direct", "inspect_interface": "agent",
    }))).await;
    assert_eq!(s, 201, "{n}");
    assert_eq!(
        api.call(
            "POST",
            "/v1/ports",
            Some(json!({"address": macs[0], "node_uuid": "life"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        api.provision("life", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("life", "manageable").await;

    // An inspection rule (1.96) runs on the posted data.
    let (s, rule) = api
        .call_v(
            "1.96",
            "POST",
            "/v1/inspection_rules",
            Some(json!({
                "conditions": [{"op": "eq", "args": {"values": [
                    "{inventory[cpu][architecture]}", inventory.cpu.architecture]}}],
                "actions": [
                    {"op": "add-trait", "args": {"name": "CUSTOM_INSPECTED"}},
                    {"op": "set-attribute", "args": {"path": "/extra/cpus",
                                                     "value": "{inventory[cpu][count]}"}},
                    {"op": "set-capability", "args": {"name": "rules", "value": "ran"}}]})),
        )
        .await;
    assert_eq!(s, 201, "{rule}");
    // Inspect: the agent posts its inventory.
    assert_eq!(
        api.provision("life", json!({"target": "inspect"})).await.0,
        202
    );
    api.wait_state("life", "inspect wait").await;
    // Inspection data needs a token: this agent looks the node up first.
    let (s, found) = api.get(&format!("/v1/lookup?addresses={}", macs[0])).await;
    assert_eq!(s, 200, "{found}");
    let token = found["config"]["agent_token"].as_str().unwrap().to_string();
    let r = post_inventory(
        &reqwest::Client::new(),
        &format!("{}/v1/continue_inspection", server.url)
            .parse()
            .unwrap(),
        &inventory,
        inventory.disks.first().cloned(),
        Default::default(),
        Some(&macs[0]),
        Some(&token),
        &InspectTiming::default(),
    )
    .await
    .expect("inspection accepted");
    let node = api.wait_state("life", "manageable").await;
    assert_eq!(r.uuid, node["uuid"]);
    assert_eq!(node["properties"]["cpus"], inventory.cpu.count);
    assert_eq!(node["properties"]["cpu_arch"], inventory.cpu.architecture);
    assert_eq!(node["traits"], json!(["CUSTOM_INSPECTED"]), "{node}");
    assert_eq!(
        node["extra"]["cpus"],
        inventory.cpu.count.to_string(),
        "{node}"
    );
    assert_eq!(node["properties"]["capabilities"], "rules:ran", "{node}");
    let rule_path = format!("/v1/inspection_rules/{}", rule["uuid"].as_str().unwrap());
    assert_eq!(api.call_v("1.96", "DELETE", &rule_path, None).await.0, 204);
    // A `fail` action fails the inspection with its message.
    let (s, rule) = api
        .call_v(
            "1.96",
            "POST",
            "/v1/inspection_rules",
            Some(json!({"actions": [{"op": "fail", "args": {"msg": "not this model"}}]})),
        )
        .await;
    assert_eq!(s, 201, "{rule}");
    assert_eq!(
        api.provision("life", json!({"target": "inspect"})).await.0,
        202
    );
    api.wait_state("life", "inspect wait").await;
    let (_, found) = api.get(&format!("/v1/lookup?addresses={}", macs[0])).await;
    let token = found["config"]["agent_token"].as_str().unwrap().to_string();
    post_inventory(
        &reqwest::Client::new(),
        &format!("{}/v1/continue_inspection", server.url)
            .parse()
            .unwrap(),
        &inventory,
        inventory.disks.first().cloned(),
        Default::default(),
        Some(&macs[0]),
        Some(&token),
        &InspectTiming::default(),
    )
    .await
    .expect("inspection data accepted");
    let failed = common::wait_until(
        "inspect failed",
        std::time::Duration::from_secs(30),
        || async {
            let n = api.node("life").await;
            (n["provision_state"] == "inspect failed" && n["reservation"].is_null()).then_some(n)
        },
    )
    .await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("not this model"),
        "{failed}"
    );
    let rule_path = format!("/v1/inspection_rules/{}", rule["uuid"].as_str().unwrap());
    assert_eq!(api.call_v("1.96", "DELETE", &rule_path, None).await.0, 204);
    assert_eq!(
        api.provision("life", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("life", "manageable").await;
    let (_, ports) = api.get("/v1/ports?node=life").await;
    assert_eq!(
        ports["ports"].as_array().unwrap().len(),
        1,
        "only the booting NIC has a port (add_ports = pxe)"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        server.url.clone(),
        "life".into(),
        macs.clone(),
        root.clone(),
        disk.clone(),
        stop_rx,
    ));

    // Provide: automated cleaning through the agent's clean steps.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .write_all(&image()[..512])
        .unwrap();
    assert_eq!(
        api.provision("life", json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state("life", "available").await;
    let head = std::fs::read(&disk).unwrap();
    assert!(
        head[510] != 0x55 || head[511] != 0xAA,
        "erase_devices_metadata wiped the partition table"
    );

    // Deploy with a config drive.
    let img = image();
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let images = ImageServer::start_on_current();
    let url = images.put("disk.raw", img.clone(), Mode::NoRange);
    let patch = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha, "image_disk_format": "raw"}}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/life", Some(patch)).await.0,
        200
    );
    // Ironic's dict form: the conductor builds the config-2 image from it.
    let cd = json!({"meta_data": {"hostname": "life"}, "user_data": "#cloud-config\n"});
    let (s, v) = api
        .provision("life", json!({"target": "active", "configdrive": cd}))
        .await;
    assert_eq!(s, 202, "{v}");
    let node = api.wait_state("life", "active").await;
    assert!(node["last_error"].is_null(), "{}", node["last_error"]);
    assert_eq!(node["power_state"], "power on");
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(
        &written[1 << 20..4 << 20],
        &img[1 << 20..],
        "the image is on the disk"
    );
    let meta = config_drive_meta(&written);
    assert_eq!(meta["hostname"], "life");
    assert_eq!(meta["uuid"], node["uuid"]);

    // Undeploy: tear down and clean again.
    assert_eq!(
        api.provision("life", json!({"target": "deleted"})).await.0,
        202
    );
    let node = api.wait_state("life", "available").await;
    assert_eq!(node["instance_info"], json!({}));
    let _ = stop_tx.send(true);
    agent.await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    lifecycle(Backend::Postgres).await;
}

/// `deploy_interface = iscsi`: the agent exports its disk, the conductor logs in with CHAP
/// and writes the image (and the config drive) through the shared pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_through_iscsi() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let inventory = ferrite_agent::inventory::collect(&root).expect("fixture inventory");
    let mac = inventory.interfaces[0].mac_address.clone().unwrap();
    let disk = server.dir.path().join("disk.img");
    // Old bytes everywhere: what the image leaves as zeroes must read back as zeroes.
    std::fs::write(&disk, vec![0x5au8; 256 << 20]).unwrap();

    // A bad portal port is refused when the deploy is asked for.
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({
                "driver": "fake-hardware", "name": "remote", "deploy_interface": "iscsi",
                "driver_info": {"ferrite_iscsi_port": 0},
            })),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    assert_eq!(n["deploy_interface"], "iscsi");
    let (s, _) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": mac, "node_uuid": "remote"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        api.provision("remote", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("remote", "manageable").await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        server.url.clone(),
        "remote".into(),
        vec![mac],
        root.clone(),
        disk.clone(),
        stop_rx,
    ));
    assert_eq!(
        api.provision("remote", json!({"target": "provide"}))
            .await
            .0,
        202
    );
    api.wait_state("remote", "available").await;

    let mut img = image();
    img[(2 << 20)..(3 << 20)].fill(0);
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let images = ImageServer::start_on_current();
    let url = images.put("disk.raw", img.clone(), Mode::NoRange);

    // A bad portal port is refused; a wrong checksum fails the deploy and wipes the disk.
    let patch = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64)}},
        {"op": "add", "path": "/driver_info/ferrite_iscsi_port", "value": "nope"}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/remote", Some(patch)).await.0,
        200
    );
    let (s, v) = api.provision("remote", json!({"target": "active"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("ferrite_iscsi_port"), "{v}");
    let patch = json!([{"op": "add", "path": "/driver_info/ferrite_iscsi_port", "value": 0}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/remote", Some(patch)).await.0,
        200
    );
    assert_eq!(
        api.provision("remote", json!({"target": "active"})).await.0,
        202
    );
    let node = api.wait_state("remote", "deploy failed").await;
    let err = node["last_error"].as_str().unwrap_or("");
    assert!(
        err.contains("write_image") && err.contains("checksum"),
        "{err}"
    );
    let head = std::fs::read(&disk).unwrap();
    assert!(
        head[..1 << 20].iter().all(|&b| b == 0),
        "wiped after the failure"
    );

    let patch = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha}}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/remote", Some(patch)).await.0,
        200
    );
    let cd_bytes: Vec<u8> = (0..96 * 1024).map(|i| (i % 7) as u8 + 1).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&cd_bytes).unwrap();
    let cd = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let (s, v) = api
        .provision("remote", json!({"target": "active", "configdrive": cd}))
        .await;
    assert_eq!(s, 202, "{v}");
    let node = api.wait_state("remote", "active").await;
    assert!(node["last_error"].is_null(), "{}", node["last_error"]);
    let w = &node["driver_internal_info"]["ferrite_iscsi_write"];
    assert_eq!(w["disk_bytes"], img.len() as u64, "{w}");
    assert!(w["zero_bytes_skipped"].as_u64().unwrap() >= 1 << 20, "{w}");
    assert!(
        w["configdrive_written"]
            .as_str()
            .unwrap()
            .contains("new MBR partition 2"),
        "{w}"
    );
    assert_eq!(w["partitions"], 2, "{w}");

    let written = std::fs::read(&disk).unwrap();
    assert_eq!(
        &written[512..img.len()],
        &img[512..],
        "the image is on the disk"
    );
    assert_eq!(&written[..446], &img[..446]);
    assert!(
        written[img.len()..(192 << 20)].iter().all(|&b| b == 0),
        "the LUN was zeroed before the write"
    );
    let cd_at = (256 << 20) - (64 << 20);
    assert_eq!(&written[cd_at..cd_at + cd_bytes.len()], &cd_bytes[..]);
    // The target is gone once the step is over.
    let port = w["portal"].as_str().unwrap().to_string();
    assert!(tokio::net::TcpStream::connect(port).await.is_err());
    let _ = stop_tx.send(true);
    agent.await.unwrap();
    server.stop().await;
}

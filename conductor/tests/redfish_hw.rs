//! The `redfish` hardware type against sushy-tools' sushy-emulator (fake systems driver)
//! through the REST API: enroll → manageable (verifying talks to the BMC), power on/off,
//! boot device and mode seen by the emulator, out-of-band inspection filling properties
//! and ports, and clear failures (missing address, wrong password, unknown system).

mod common;

use std::time::Duration;

use common::{fault, Api, Backend, Server};
use ferrite_redfish::emulator::{Emulator, FakeSystem};
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;

fn driver_info(bmc: &Emulator, system_id: &str, password: &str) -> Value {
    json!({
        "redfish_address": bmc.url(),
        "redfish_system_id": system_id,
        "redfish_username": "admin",
        "redfish_password": password,
        "redfish_verify_ca": false,
        "ferrite_power_wait": 30,
    })
}

async fn create(api: &Api, name: &str, info: Value, properties: Value) {
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(
                json!({"driver": "redfish", "name": name, "driver_info": info,
                        "properties": properties}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}

/// The system as the emulator reports it (read with plain HTTP, not our client).
async fn emulator_system(bmc: &Emulator, i: usize) -> Value {
    reqwest::Client::new()
        .get(format!("{}{}", bmc.url(), bmc.system_path(i)))
        .basic_auth("admin", Some("password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn set_power(api: &Api, node: &str, target: &str, want: &str) {
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/nodes/{node}/states/power"),
            Some(json!({"target": target})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // The fake driver applies a change 1-11 s after the request.
    common::wait_until(want, Duration::from_secs(40), || async {
        let n = api.node(node).await;
        assert!(n["last_error"].is_null(), "{}", n["last_error"]);
        n["power_state"] == want && n["target_power_state"].is_null()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_node_is_managed_powered_booted_and_inspected_through_the_api() {
    let bmc = Emulator::builder()
        .system(
            FakeSystem::new("rf-0")
                .macs(&["52:54:00:5e:00:01", "52:54:00:5e:00:02"])
                .cpus(4)
                .memory_gib(8)
                .disks(&[100 * GIB, 30 * GIB]),
        )
        .user("admin", "password")
        .start()
        .unwrap();
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);

    let (_, v) = api.get("/v1/drivers").await;
    let names: Vec<&str> = v["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"redfish"), "{v}");
    let (_, v) = api.get("/v1/drivers/redfish").await;
    assert_eq!(v["default_power_interface"], "redfish");
    assert_eq!(v["default_inspect_interface"], "redfish");

    let uuid = bmc.systems()[0].uuid.clone();
    create(
        &api,
        "rf-1",
        driver_info(&bmc, &uuid, "password"),
        json!({"capabilities": "boot_mode:uefi"}),
    )
    .await;
    let n = api.node("rf-1").await;
    assert_eq!(n["power_interface"], "redfish");
    assert_eq!(n["management_interface"], "redfish");
    assert_eq!(n["inspect_interface"], "redfish");
    assert_eq!(n["driver_info"]["redfish_password"], "******");
    let (_, v) = api.get("/v1/nodes/rf-1/validate").await;
    assert_eq!(v["power"]["result"], true, "{v}");
    assert_eq!(v["management"]["result"], true, "{v}");
    assert_eq!(v["inspect"]["result"], true, "{v}");

    assert_eq!(
        api.provision("rf-1", json!({"target": "manage"})).await.0,
        202
    );
    let n = api.wait_state("rf-1", "manageable").await;
    assert_eq!(n["power_state"], "power off");

    set_power(&api, "rf-1", "power on", "power on").await;
    assert_eq!(emulator_system(&bmc, 0).await["PowerState"], "On");

    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/rf-1/management/boot_device",
            Some(json!({"boot_device": "pxe", "persistent": false})),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let sys = emulator_system(&bmc, 0).await;
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(sys["Boot"]["BootSourceOverrideMode"], "UEFI");
    let (s, _) = api
        .call(
            "PUT",
            "/v1/nodes/rf-1/management/boot_device",
            Some(json!({"boot_device": "cdrom", "persistent": true})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        emulator_system(&bmc, 0).await["Boot"]["BootSourceOverrideTarget"],
        "Cd"
    );
    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/rf-1/management/boot_device",
            Some(json!({"boot_device": "floppy"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("choose one of"), "{v}");

    set_power(&api, "rf-1", "power off", "power off").await;
    assert_eq!(emulator_system(&bmc, 0).await["PowerState"], "Off");

    // Out-of-band inspection: no ramdisk, straight back to manageable.
    assert_eq!(
        api.provision("rf-1", json!({"target": "inspect"})).await.0,
        202
    );
    let n = api.wait_state("rf-1", "manageable").await;
    assert!(n["last_error"].is_null(), "{}", n["last_error"]);
    assert!(n["inspection_finished_at"].is_string(), "{n}");
    let p = &n["properties"];
    assert_eq!(p["cpus"], 4, "{p}");
    assert_eq!(p["memory_mb"], 8192, "{p}");
    assert_eq!(p["cpu_arch"], "x86_64", "{p}");
    assert_eq!(p["local_gb"], 99, "{p}");
    assert_eq!(p["capabilities"], "boot_mode:uefi", "{p}");
    let (_, v) = api.get("/v1/nodes/rf-1/ports").await;
    let mut macs: Vec<&str> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["address"].as_str())
        .collect();
    macs.sort();
    assert_eq!(macs, vec!["52:54:00:5e:00:01", "52:54:00:5e:00:02"]);
    // Inspecting again adds no duplicate ports.
    assert_eq!(
        api.provision("rf-1", json!({"target": "inspect"})).await.0,
        202
    );
    api.wait_state("rf-1", "manageable").await;
    let (_, v) = api.get("/v1/nodes/rf-1/ports").await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_failures_say_what_to_fix() {
    let bmc = Emulator::builder()
        .user("admin", "password")
        .start()
        .unwrap();
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let uuid = bmc.systems()[0].uuid.clone();
    create(
        &api,
        "wrong-pw",
        driver_info(&bmc, &uuid, "nope"),
        json!({}),
    )
    .await;
    create(
        &api,
        "no-system",
        driver_info(&bmc, "no-such-system", "password"),
        json!({}),
    )
    .await;
    create(
        &api,
        "no-address",
        json!({"redfish_username": "admin"}),
        json!({}),
    )
    .await;

    let (_, v) = api.get("/v1/nodes/no-address/validate").await;
    assert_eq!(v["power"]["result"], false, "{v}");
    assert!(
        v["power"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("redfish_address"),
        "{v}"
    );
    for (name, why) in [
        ("wrong-pw", "redfish_password"),
        ("no-system", "redfish_system_id"),
        ("no-address", "redfish_address"),
    ] {
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        let n = api.wait_state(name, "enroll").await;
        let err = n["last_error"].as_str().unwrap_or_default().to_string();
        eprintln!("{name}: {err}");
        assert!(err.contains(why), "{name}: {err}");
        assert!(!err.contains("nope"), "{name}: the password leaked: {err}");
    }
    server.stop().await;
}

/// The emulator's virtual CD (read with plain HTTP).
async fn emulator_cd(bmc: &Emulator, i: usize) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}{}/VirtualMedia/Cd",
            bmc.url(),
            bmc.system_path(i)
        ))
        .basic_auth("admin", Some("password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_virtual_media_builds_serves_and_inserts_the_boot_iso() {
    let bmc = Emulator::builder()
        .system(FakeSystem::new("vm-0").macs(&["52:54:00:5e:01:01"]))
        .user("admin", "password")
        .start()
        .unwrap();
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    // Local deploy files from the state directory (the default allowed path).
    let kernel = server.dir.path().join("vmlinuz");
    let ramdisk = server.dir.path().join("initrd");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    std::fs::write(&ramdisk, b"not really a ramdisk").unwrap();

    let uuid = bmc.systems()[0].uuid.clone();
    let mut info = driver_info(&bmc, &uuid, "password");
    info["deploy_kernel"] = json!(common::path_str(&kernel));
    info["deploy_ramdisk"] = json!(common::path_str(&ramdisk));
    info["kernel_append_params"] = json!("ferrite-test=1");
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(
                json!({"driver": "redfish", "name": "vm-1", "driver_info": info,
                        "boot_interface": "redfish-virtual-media",
                        "inspect_interface": "agent",
                        "network_data": {
                            "links": [{"id": "p0", "type": "phy",
                                       "ethernet_mac_address": "52:54:00:5e:01:01"}],
                            "networks": [{"id": "n0", "type": "ipv4", "link": "p0",
                                          "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
                                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                                      "gateway": "192.0.2.1"}]}]}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let node_uuid = v["uuid"].as_str().unwrap().to_string();
    let (s, v) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"node_uuid": node_uuid, "address": "52:54:00:5e:01:01"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = api.get("/v1/drivers/redfish").await;
    assert!(
        v["enabled_boot_interfaces"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("redfish-virtual-media"))),
        "{v}"
    );
    let (_, v) = api.get("/v1/nodes/vm-1/validate").await;
    assert_eq!(v["boot"]["result"], true, "{v}");

    // What to fix when the deploy ramdisk or the BMC is missing.
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "redfish", "name": "vm-bad",
                        "boot_interface": "redfish-virtual-media",
                        "driver_info": driver_info(&bmc, &uuid, "password"),
                        "network_data": {"networks": [{"id": "n0", "type": "ipv6"}]}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = api.get("/v1/nodes/vm-bad/validate").await;
    assert_eq!(v["boot"]["result"], false, "{v}");
    assert!(
        v["boot"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("deploy_kernel"),
        "{v}"
    );
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/vm-bad",
            Some(json!([
                {"op": "add", "path": "/driver_info/deploy_kernel", "value": "http://x/k"},
                {"op": "add", "path": "/driver_info/deploy_ramdisk", "value": "http://x/r"}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.get("/v1/nodes/vm-bad/validate").await;
    let why = v["boot"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("network_data") && why.contains("ipv6"), "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "redfish", "name": "vm-nobmc",
                        "boot_interface": "redfish-virtual-media",
                        "driver_info": {"deploy_kernel": "http://x/k", "deploy_ramdisk": "http://x/r"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = api.get("/v1/nodes/vm-nobmc/validate").await;
    let why = v["boot"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("redfish-virtual-media") && why.contains("redfish_address"),
        "{v}"
    );

    // Inspection through the agent: the ISO is built, served and inserted, boot from cd.
    assert_eq!(
        api.provision("vm-1", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("vm-1", "manageable").await;
    assert_eq!(
        api.provision("vm-1", json!({"target": "inspect"})).await.0,
        202
    );
    api.wait_state("vm-1", "inspect wait").await;
    let cd = emulator_cd(&bmc, 0).await;
    let want = format!("{}/boot/{node_uuid}/boot.iso", server.url);
    assert_eq!(cd["Image"], json!(want), "{cd}");
    assert_eq!(cd["Inserted"], true, "{cd}");
    assert_eq!(
        emulator_system(&bmc, 0).await["Boot"]["BootSourceOverrideTarget"],
        "Cd"
    );
    // The file behind the URL, with the ramdisk's parameters on its command line.
    let iso = std::fs::read(server.dir.path().join(format!("boot/{node_uuid}/boot.iso"))).unwrap();
    let served = reqwest::get(&want).await.unwrap().bytes().await.unwrap();
    assert_eq!(served.len(), iso.len());
    let text = String::from_utf8_lossy(&iso);
    for p in [
        format!("ipa-api-url={}", server.url),
        format!(
            "ipa-inspection-callback-url={}/v1/continue_inspection",
            server.url
        ),
        "BOOTIF=01-52-54-00-5e-01-01".into(),
        "ferrite-inspection-token=".into(),
        "ferrite-test=1".into(),
        "ferrite-net=52:54:00:5e:01:01,192.0.2.10/24,192.0.2.1,".into(),
    ] {
        assert!(text.contains(&p), "the ISO's grub.cfg has {p}");
    }
    assert!(!text.contains("${mac"), "no iPXE variable on the ISO");
    server.stop().await;
}

//! The `ipmi` hardware type against ipmi_sim through the REST API: enroll → manageable
//! (verifying talks to the BMC), power and boot-device changes seen by ipmitool, and the
//! clear failures (wrong password, BMC down, bad driver_info).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fault, Api, Backend, Server};
use ferrite_ipmi::sim::SimBmc;
use serde_json::{json, Value};

fn ipmitool(bmc: &SimBmc, args: &[&str]) -> String {
    let out = Command::new("ipmitool")
        .args(bmc.ipmitool_args())
        .args(args)
        .output()
        .expect("ipmitool (Debian package ipmitool)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn driver_info(bmc: &SimBmc, password: &str) -> Value {
    json!({
        "ipmi_address": "127.0.0.1",
        "ipmi_port": bmc.port(),
        "ipmi_username": bmc.username(),
        "ipmi_password": password,
        "ipmi_cipher_suite": "3",
        "ferrite_power_wait": 10,
    })
}

async fn create(api: &Api, name: &str, info: Value) {
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "ipmi", "name": name, "driver_info": info})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_node_enrolls_and_is_driven_through_the_api() {
    let bmc = SimBmc::builder().start().unwrap();
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    create(&api, "bmc-1", driver_info(&bmc, bmc.password())).await;
    let n = api.node("bmc-1").await;
    assert_eq!(n["power_interface"], "ipmitool");
    assert_eq!(n["driver_info"]["ipmi_password"], "******");

    assert_eq!(
        api.provision("bmc-1", json!({"target": "manage"})).await.0,
        202
    );
    let n = api.wait_state("bmc-1", "manageable").await;
    assert_eq!(n["power_state"], "power off");

    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/bmc-1/states/power",
            Some(json!({"target": "power on"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    common::wait_until("power on", Duration::from_secs(20), || async {
        api.node("bmc-1").await["power_state"] == "power on"
    })
    .await;
    assert!(ipmitool(&bmc, &["power", "status"]).contains("is on"));

    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/bmc-1/management/boot_device",
            Some(json!({"boot_device": "pxe", "persistent": false})),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    assert!(ipmitool(&bmc, &["chassis", "bootparam", "get", "5"]).contains("Force PXE"));
    assert_eq!(bmc.boot_device().as_deref(), Some("pxe"));

    let (s, _) = api
        .call(
            "PUT",
            "/v1/nodes/bmc-1/states/power",
            Some(json!({"target": "power off"})),
        )
        .await;
    assert_eq!(s, 202);
    common::wait_until("power off", Duration::from_secs(20), || async {
        api.node("bmc-1").await["power_state"] == "power off"
    })
    .await;
    assert!(ipmitool(&bmc, &["power", "status"]).contains("is off"));
    server.stop().await;
}

/// The periodic power sync records a change made behind Ferrite's back (ipmitool), and a
/// BMC that stops answering puts its node into maintenance with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_sync_follows_the_bmc_and_flags_a_dead_one() {
    let bmc = SimBmc::builder().start().unwrap();
    let server = Server::start(Backend::Sqlite, |c| {
        c.power_sync_interval = Some(0.3);
    })
    .await;
    let api = Api::new(&server.url);
    create(&api, "sync-1", driver_info(&bmc, bmc.password())).await;
    assert_eq!(
        api.provision("sync-1", json!({"target": "manage"})).await.0,
        202
    );
    let n = api.wait_state("sync-1", "manageable").await;
    assert_eq!(n["power_state"], "power off");

    assert!(ipmitool(&bmc, &["power", "on"]).contains("Up/On"));
    common::wait_until(
        "the sync to see power on",
        Duration::from_secs(30),
        || async { api.node("sync-1").await["power_state"] == "power on" },
    )
    .await;
    let n = api.node("sync-1").await;
    assert_eq!(n["maintenance"], false);

    drop(bmc);
    common::wait_until(
        "maintenance after failed reads",
        Duration::from_secs(60),
        || async { api.node("sync-1").await["maintenance"] == true },
    )
    .await;
    let n = api.node("sync-1").await;
    let reason = n["maintenance_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Power state sync failed 3 times"),
        "{reason}"
    );
    // The API stays usable while the sync runs: nodes are read without their lock.
    assert_eq!(api.call("DELETE", "/v1/nodes/sync-1", None).await.0, 204);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_fails_with_a_clear_reason() {
    let bmc = SimBmc::builder().start().unwrap();
    let down = SimBmc::builder().start().unwrap();
    let down_info = driver_info(&down, "password");
    drop(down);
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    create(&api, "wrong-pw", driver_info(&bmc, "nope")).await;
    create(&api, "down", down_info).await;
    create(&api, "no-address", json!({"ipmi_username": "admin"})).await;
    for (name, why) in [
        ("wrong-pw", "wrong password"),
        ("down", "BMC"),
        ("no-address", "ipmi_address"),
    ] {
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        let n = api.wait_state(name, "enroll").await;
        let err = n["last_error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains(why), "{name}: {err}");
    }
    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/wrong-pw/management/boot_device",
            Some(json!({"boot_device": "floppy"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("choose one of"));
    server.stop().await;
}

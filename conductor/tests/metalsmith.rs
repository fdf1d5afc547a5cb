//! metalsmith (PyPI, pinned in `target/clients-venv`) deploys and undeploys through a
//! conductor started here, as its Ansible role does (`metalsmith_deploy.py`, its Python
//! API: the CLI's output needs Neutron for IP addresses): a node is reserved by resource
//! class and trait through an allocation, provisioned with an HTTP whole-disk image and a
//! hostname (metalsmith builds the config drive), found again by hostname, and
//! unprovisioned; the allocation ends with the instance, as in Ironic. fake-hardware nodes.

use std::process::Command;

use serde_json::{json, Value};

mod common;
use common::{Api, Backend, Server};

async fn available(api: &Api, name: &str, traits: &[&str]) -> String {
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": name, "resource_class": "compute"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    if !traits.is_empty() {
        let (s, v) = api
            .call(
                "PUT",
                &format!("/v1/nodes/{name}/traits"),
                Some(json!({"traits": traits})),
            )
            .await;
        assert_eq!(s, 204, "{v}");
    }
    for verb in ["manage", "provide"] {
        let (s, v) = api.provision(name, json!({"target": verb})).await;
        assert_eq!(s, 202, "{verb}: {v}");
        common::wait_until(
            "the transition",
            std::time::Duration::from_secs(30),
            || async {
                let n = api.node(name).await;
                n["target_provision_state"].is_null() && n["reservation"].is_null()
            },
        )
        .await;
    }
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/nodes/{name}/states/power"),
            Some(json!({"target": "power off"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    common::wait_until("power off", std::time::Duration::from_secs(30), || async {
        let n = api.node(name).await;
        n["power_state"] == "power off" && n["reservation"].is_null()
    })
    .await;
    v["uuid"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| name.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metalsmith_deploys_and_undeploys_through_an_allocation() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../target/clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask deps` (it installs metalsmith there)",
        python.display()
    );
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    available(&api, "plain", &[]).await;
    available(&api, "gold", &["CUSTOM_GOLD"]).await;
    let gold = api.node("gold").await["uuid"].as_str().unwrap().to_string();

    let clouds = server.dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  ferrite:\n    auth_type: none\n    auth:\n      endpoint: {url}\n    \
             baremetal_endpoint_override: {url}\n    has_network: false\n    has_image: false\n    \
             has_compute: false\n",
            url = server.url
        ),
    )
    .unwrap();
    let script = root.join("tests/metalsmith_deploy.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg("ferrite")
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .env_remove("OS_CLOUD")
            .output()
            .expect("running metalsmith")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "metalsmith failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phases: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let phase = |name: &str| {
        phases
            .iter()
            .find(|p| p["phase"] == name)
            .unwrap_or_else(|| panic!("no {name} phase in {stdout}"))
            .clone()
    };
    // The trait picked the gold node; metalsmith saw it active under its hostname.
    assert_eq!(phase("reserved")["node"], gold.as_str());
    let active = phase("active");
    assert_eq!(
        (&active["state"], &active["hostname"]),
        (&json!("active"), &json!("web-1"))
    );
    assert_eq!(phase("shown")["active"], true);
    phase("undeployed");

    // Ferrite's side: back to available, the allocation gone with the instance.
    let n = api.node("gold").await;
    assert_eq!(n["provision_state"], "available", "{n}");
    assert!(
        n["allocation_uuid"].is_null() && n["instance_uuid"].is_null(),
        "{n}"
    );
    assert_eq!(n["instance_info"], json!({}), "{n}");
    let (s, v) = api.get("/v1/allocations").await;
    assert_eq!(s, 200);
    assert_eq!(v["allocations"], json!([]), "{v}");
    assert_eq!(api.node("plain").await["provision_state"], "available");
    server.stop().await;
}

//! The `ipxe` boot interface through the API: while a node waits for its agent, its port's
//! iPXE script boots the staged deploy kernel and ramdisk with the agent's parameters;
//! unknown MACs get the "not managed" answer; paths that try to leave `/boot/` are refused.

mod common;

use common::{Api, Backend, Server};
use serde_json::json;

async fn fetch(base: &str, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_scripts_follow_the_node() {
    let server = Server::start(Backend::Sqlite, |c| {
        c.kernel_params = Some("console=ttyS0".into());
    })
    .await;
    let api = Api::new(&server.url);
    let kernel = server.dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({
                "driver": "fake-hardware", "name": "pxe-1",
                "boot_interface": "ipxe", "inspect_interface": "agent",
                "driver_info": {
                    "deploy_kernel": kernel.display().to_string(),
                    "deploy_ramdisk": "http://images.invalid/ramdisk",
                    "kernel_append_params": "ipa-advertise-port=12345",
                },
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uuid = v["uuid"].as_str().unwrap().to_string();
    let (s, v) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": "52:54:00:aa:bb:01", "node_uuid": uuid})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    // Before any work: the chain script, and no script for the port yet.
    let (s, chain) = fetch(&server.url, "/boot/boot.ipxe").await;
    assert_eq!(s, 200);
    let chain = String::from_utf8(chain).unwrap();
    assert!(chain.starts_with("#!ipxe"), "{chain}");
    assert!(chain.contains(&format!("{}/boot/", server.url)), "{chain}");
    let (s, body) = fetch(&server.url, "/boot/52-54-00-aa-bb-01.ipxe").await;
    assert_eq!(s, 200);
    assert!(String::from_utf8(body).unwrap().contains("not managed"));

    // Inspection boots the agent: the script names the staged kernel and the parameters.
    assert_eq!(
        api.provision("pxe-1", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("pxe-1", "manageable").await;
    assert_eq!(
        api.provision("pxe-1", json!({"target": "inspect"})).await.0,
        202
    );
    api.wait_state("pxe-1", "inspect wait").await;
    let (s, body) = fetch(&server.url, "/boot/52-54-00-aa-bb-01.ipxe").await;
    assert_eq!(s, 200);
    let script = String::from_utf8(body).unwrap();
    let kernel_url = format!("{}/boot/{uuid}/deploy_kernel", server.url);
    for want in [
        kernel_url.as_str(),
        "http://images.invalid/ramdisk",
        &format!("ipa-api-url={}", server.url),
        &format!(
            "ipa-inspection-callback-url={}/v1/continue_inspection",
            server.url
        ),
        "console=ttyS0",
        "ipa-advertise-port=12345",
        "BOOTIF=01-${mac:hexhyp}",
    ] {
        assert!(script.contains(want), "{want:?} missing from:\n{script}");
    }
    let (s, body) = fetch(&server.url, &format!("/boot/{uuid}/deploy_kernel")).await;
    assert_eq!(s, 200);
    assert_eq!(body, b"not really a kernel");

    // Nothing outside the boot directory.
    for bad in [
        "/boot/..%2F..%2Fferrite.db",
        &format!("/boot/{uuid}/..%2F..%2Fferrite.db"),
        "/boot/%2e%2e/ferrite.db",
    ] {
        let (s, _) = fetch(&server.url, bad).await;
        assert!(s == 400 || s == 404, "{bad}: {s}");
    }

    // Abort: the node leaves inspection and its files go.
    assert_eq!(
        api.provision("pxe-1", json!({"target": "abort"})).await.0,
        202
    );
    api.wait_state("pxe-1", "inspect failed").await;
    server.stop().await;
}

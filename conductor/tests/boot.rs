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

/// `--tftp-listen`: the conductor's own TFTP server hands out its root's files (a real
/// tftp-hpa client) and nothing outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_serves_tftp_when_asked() {
    let root = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("undionly.kpxe"), &payload).unwrap();
    // `--tftp-listen` is the flag under test, so the conductor binds the address itself.
    // Should another process take the port first, `run` fails ("binding TFTP to …") and
    // the API never answers: the test fails loudly, it cannot pass by someone else's server
    // (the transfers below check our payload).
    let port = ferrite_testkit::free_udp_port();
    let root_path = root.path().to_path_buf();
    let server = Server::start(Backend::Sqlite, move |c| {
        c.tftp_listen = Some(([127, 0, 0, 1], port).into());
        c.tftp_root = Some(root_path);
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let get = |remote: &'static str, local: std::path::PathBuf| {
        let port = port.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("tftp")
                .args(["-m", "binary", "127.0.0.1", &port, "-c", "get", remote])
                .arg(&local)
                .output()
                .expect("tftp (Debian package tftp-hpa)")
        })
    };
    let local = out.path().join("got.kpxe");
    get("undionly.kpxe", local.clone()).await.unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), payload);
    let escaped = out.path().join("escaped");
    let r = get("../../etc/passwd", escaped.clone()).await.unwrap();
    let said = String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr);
    assert!(
        std::fs::metadata(&escaped)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "a file outside the TFTP root was served: {said}"
    );
    server.stop().await;
}

/// Booting the agent through `ipxe` without what it needs fails the node with a reason
/// that says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_without_a_kernel_or_a_port_fails_clearly() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let kernel = server.dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"k").unwrap();
    let cases = [
        (
            "no-kernel",
            json!({"deploy_ramdisk": "http://images.invalid/r"}),
            true,
            "driver_info.deploy_kernel is missing",
        ),
        (
            "no-port",
            json!({"deploy_kernel": kernel.display().to_string(), "deploy_ramdisk": "http://images.invalid/r"}),
            false,
            "no PXE-enabled port",
        ),
    ];
    for (name, info, with_port, why) in cases {
        let (s, v) = api
            .call(
                "POST",
                "/v1/nodes",
                Some(json!({
                    "driver": "fake-hardware", "name": name, "boot_interface": "ipxe",
                    "inspect_interface": "agent", "driver_info": info,
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        if with_port {
            let body = json!({"address": "52:54:00:aa:bb:0f", "node_uuid": v["uuid"]});
            assert_eq!(api.call("POST", "/v1/ports", Some(body)).await.0, 201);
        }
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        api.wait_state(name, "manageable").await;
        assert_eq!(
            api.provision(name, json!({"target": "inspect"})).await.0,
            202
        );
        let n = api.wait_state(name, "inspect failed").await;
        let err = n["last_error"].as_str().unwrap_or("");
        assert!(err.contains(why), "{name}: {err}");
    }
    server.stop().await;
}

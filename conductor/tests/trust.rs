//! Issue 15 on the conductor's side, over real sockets on a real SQLite file: what an
//! API user or a machine on the provisioning network must not be able to do.

mod common;

use common::{fault, Api, Backend, Server};
use serde_json::json;

async fn node_with_password(api: &Api) -> String {
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({
                "driver": "fake-hardware",
                "name": "n1",
                "driver_info": {"ipmi_password": "hunter2", "redfish": {"password": "r3d"}},
                "extra": {"deep": [{"api_token": "tok"}]},
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["uuid"].as_str().unwrap().to_string()
}

/// Finding 6: copy/move could carry `driver_info/ipmi_password` into `extra` (shown
/// unmasked) and copy could double a document per operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_cannot_copy_secrets_or_grow_without_bound() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    node_with_password(&api).await;
    let before = api.node("n1").await;
    for op in ["copy", "move"] {
        let (s, v) = api
            .call(
                "PATCH",
                "/v1/nodes/n1",
                Some(json!([{"op": op, "from": "/driver_info/ipmi_password",
                              "path": "/extra/leak"}])),
            )
            .await;
        assert_eq!(s, 400, "{op}: {v}");
        assert!(fault(&v).contains("use add, replace or remove"), "{v}");
    }
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/n1",
            Some(json!([{"op": "test", "path": "/extra", "value": {}}])),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    // Patches accumulate: 200 KiB twice is refused the second time.
    let chunk = "x".repeat(200 * 1024);
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/n1",
            Some(json!([{"op": "add", "path": "/extra/a", "value": chunk}])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/n1",
            Some(json!([{"op": "add", "path": "/extra/b", "value": chunk}])),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("the limit is 262144"), "{}", fault(&v));
    let after = api.node("n1").await;
    assert!(after["extra"].get("leak").is_none());
    assert!(after["extra"].get("b").is_none());
    assert_eq!(after["driver_info"], before["driver_info"]);
    server.stop().await;
}

/// Finding 6: secrets are masked at any depth, in every free-form dict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_secrets_are_masked_in_responses() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    node_with_password(&api).await;
    for path in [
        "/v1/nodes/n1",
        "/v1/nodes/detail",
        "/v1/nodes/n1?fields=driver_info,extra",
    ] {
        let (s, v) = api.get(path).await;
        assert_eq!(s, 200, "{v}");
        let text = v.to_string();
        for secret in ["hunter2", "r3d", "\"tok\""] {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
    }
    let v = api.node("n1").await;
    assert_eq!(v["driver_info"]["redfish"]["password"], "******");
    assert_eq!(v["extra"]["deep"][0]["api_token"], "******");
    server.stop().await;
}

async fn fetch(base: &str, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Finding 7 (Ironic's OSSA-2025-001): a local deploy kernel is linked under `/boot/` and
/// served without authentication, so it may only come from the allowed directories (the
/// state dir by default), never a system directory, never a private file such as the
/// database; and a URL cannot add commands to the iPXE script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_deploy_files_are_confined_and_urls_cannot_inject() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let db = server.dir.path().join("ferrite.db");
    let cases = [
        (
            "etc",
            json!("/etc/passwd"),
            json!("http://images.invalid/r"),
            "never served",
        ),
        (
            "db",
            json!(db.display().to_string()),
            json!("http://images.invalid/r"),
            "not readable by everyone",
        ),
        (
            "outside",
            json!(std::env::current_exe().unwrap().display().to_string()),
            json!("http://images.invalid/r"),
            "outside the directories local boot files may come from",
        ),
        (
            "inject",
            json!("http://images.invalid/k"),
            json!("http://images.invalid/r\nshell"),
            "contains whitespace",
        ),
    ];
    for (i, (name, kernel, ramdisk, why)) in cases.into_iter().enumerate() {
        let (s, v) = api
            .call(
                "POST",
                "/v1/nodes",
                Some(json!({
                    "driver": "fake-hardware", "name": name, "boot_interface": "ipxe",
                    "inspect_interface": "agent",
                    "driver_info": {"deploy_kernel": kernel, "deploy_ramdisk": ramdisk},
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let uuid = v["uuid"].as_str().unwrap().to_string();
        let mac = format!("52:54:00:aa:cc:{i:02x}");
        let body = json!({"address": mac, "node_uuid": uuid});
        assert_eq!(api.call("POST", "/v1/ports", Some(body)).await.0, 201);
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        api.wait_state(name, "manageable").await;
        let (s, v) = api.provision(name, json!({"target": "inspect"})).await;
        let err = if s == 202 {
            let n = api.wait_state(name, "inspect failed").await;
            n["last_error"].as_str().unwrap_or("").to_string()
        } else {
            assert_eq!(s, 400, "{v}");
            fault(&v)
        };
        assert!(err.contains(why), "{name}: {err}");
        let (s, body) = fetch(&server.url, &format!("/boot/{uuid}/deploy_kernel")).await;
        assert_eq!(s, 404, "{name}: served {}", String::from_utf8_lossy(&body));
        let (_, script) = fetch(
            &server.url,
            &format!("/boot/{}.ipxe", mac.replace(':', "-")),
        )
        .await;
        let script = String::from_utf8_lossy(&script);
        assert!(script.contains("not managed"), "{name}: {script}");
    }
    server.stop().await;
}

/// Finding 11: the SQLite file (BMC passwords, agent tokens) and its WAL are private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    node_with_password(&api).await;
    let mut seen = 0;
    for suffix in ["", "-wal", "-shm"] {
        let p = server.dir.path().join(format!("ferrite.db{suffix}"));
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{p:?}");
            seen += 1;
        }
    }
    assert!(seen >= 2, "the database and its WAL exist");
    server.stop().await;
}

fn inventory(nics: &[(&str, Option<&str>)]) -> serde_json::Value {
    let mut inv = ferrite_proto::inventory::Inventory::default();
    inv.cpu.count = 2;
    inv.cpu.architecture = "x86_64".into();
    inv.memory.total = 2 << 30;
    for (i, (mac, ip)) in nics.iter().enumerate() {
        inv.interfaces.push(ferrite_proto::inventory::Interface {
            name: format!("eth{i}"),
            mac_address: Some(mac.to_string()),
            ipv4_address: ip.map(str::to_string),
            ..Default::default()
        });
    }
    serde_json::to_value(inv).unwrap()
}

/// Finding 8: inspection data only with the node's token or its one-time inspection token
/// (which reaches the ramdisk on the kernel command line of its iPXE script); only the
/// booting NIC gets a port (Ironic's add_ports = pxe); lists are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_data_needs_a_token_and_adds_only_the_pxe_port() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let kernel = server.dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"k").unwrap();
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({
                "driver": "fake-hardware", "name": "insp", "boot_interface": "ipxe",
                "inspect_interface": "agent",
                "driver_info": {"deploy_kernel": kernel.display().to_string(),
                                "deploy_ramdisk": "http://images.invalid/r"},
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let boot_mac = "52:54:00:00:10:01";
    let body = json!({"address": boot_mac, "node_uuid": v["uuid"]});
    assert_eq!(api.call("POST", "/v1/ports", Some(body)).await.0, 201);
    let inspect = || async {
        for (target, state) in [("inspect", "inspect wait")] {
            assert_eq!(
                api.provision("insp", json!({"target": target})).await.0,
                202
            );
            api.wait_state("insp", state).await;
        }
        let (_, script) = fetch(&server.url, "/boot/52-54-00-00-10-01.ipxe").await;
        let script = String::from_utf8(script).unwrap();
        script
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ferrite-inspection-token="))
            .unwrap_or_else(|| panic!("no inspection token in\n{script}"))
            .to_string()
    };
    assert_eq!(
        api.provision("insp", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("insp", "manageable").await;
    let token = inspect().await;
    let node = api.node("insp").await;
    assert_eq!(node["driver_internal_info"]["inspection_token"], "******");
    // A lookup by the node's MAC (open to anyone on the provisioning network) does not
    // hand the inspection token out either.
    let (s, v) = api.get(&format!("/v1/lookup?addresses={boot_mac}")).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !v.to_string().contains(&token),
        "lookup leaked the token: {v}"
    );
    assert_eq!(
        v["node"]["driver_internal_info"]["inspection_token"],
        "******"
    );

    let nics = [
        (boot_mac, Some("10.0.0.5")),
        ("52:54:00:00:10:02", Some("10.0.1.5")),
        ("52:54:00:00:10:03", None),
    ];
    let post = |body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.call("POST", "/v1/continue_inspection", Some(body))
                .await
        }
    };
    let good =
        json!({"inventory": inventory(&nics), "boot_interface": boot_mac, "agent_token": token});
    let mut no_token = good.clone();
    no_token.as_object_mut().unwrap().remove("agent_token");
    let mut wrong = good.clone();
    wrong["agent_token"] = json!("x".repeat(token.len()));
    for bad in [no_token, wrong] {
        let (s, v) = post(bad).await;
        assert_eq!(s, 403, "{v}");
        assert!(
            fault(&v).contains("ferrite-inspection-token"),
            "{}",
            fault(&v)
        );
    }
    let many: Vec<(String, Option<&str>)> = (0..300)
        .map(|i| (format!("52:54:00:01:{:02x}:{:02x}", i / 256, i % 256), None))
        .collect();
    let many: Vec<(&str, Option<&str>)> = many.iter().map(|(m, ip)| (m.as_str(), *ip)).collect();
    let (s, v) = post(
        json!({"inventory": inventory(&many), "boot_interface": boot_mac,
                             "agent_token": token}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("at most 256"), "{}", fault(&v));
    // Nothing was stored by the refused posts.
    let node = api.node("insp").await;
    assert_eq!(node["provision_state"], "inspect wait");
    assert!(node["properties"].get("cpus").is_none(), "{node}");

    let (s, v) = post(good.clone()).await;
    assert_eq!(s, 202, "{v}");
    let node = api.wait_state("insp", "manageable").await;
    assert_eq!(node["properties"]["cpus"], 2);
    let (_, ports) = api.get("/v1/ports?node=insp").await;
    let addrs: Vec<&str> = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, [boot_mac], "only the booting NIC has a port");

    // The token was for one inspection: the next one gets another, the old one is refused.
    let second = inspect().await;
    assert_ne!(second, token);
    let (s, v) = post(good).await;
    assert_eq!(s, 403, "{v}");
    server.stop().await;
}

/// Finding 3: the first heartbeat of a boot pins the agent's URL and certificate; a token
/// holder cannot move them afterwards (where the conductor sends commands and secrets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_url_and_certificate_are_pinned_by_the_first_heartbeat() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "pin", "inspect_interface": "agent"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uuid = v["uuid"].as_str().unwrap().to_string();
    for (target, state) in [("manage", "manageable"), ("inspect", "inspect wait")] {
        assert_eq!(api.provision("pin", json!({"target": target})).await.0, 202);
        api.wait_state("pin", state).await;
    }
    let (s, v) = api.get(&format!("/v1/lookup?node_uuid={uuid}")).await;
    assert_eq!(s, 200, "{v}");
    let token = v["config"]["agent_token"].as_str().unwrap().to_string();
    let hb = |url: &str, ca: Option<&str>| {
        let mut b = json!({"callback_url": url, "agent_token": token, "agent_version": "t"});
        if let Some(ca) = ca {
            b["agent_verify_ca"] = json!(ca);
        }
        b
    };
    let path = format!("/v1/heartbeat/{uuid}");
    // Several first heartbeats of the same agent at once (its retries, a slow network):
    // all taken, the race's losers too, since they name the same URL and certificate.
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            let path = path.clone();
            let body = hb("https://10.0.0.5:9999", Some("CERT-A"));
            tokio::spawn(async move { api.call("POST", &path, Some(body)).await })
        })
        .collect();
    for r in racing {
        let (s, v) = r.await.unwrap();
        assert_eq!(s, 202, "{v}");
    }
    // The same again is fine.
    let (s, v) = api
        .call(
            "POST",
            &path,
            Some(hb("https://10.0.0.5:9999", Some("CERT-A"))),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    for (url, ca) in [
        ("https://10.6.6.6:9999", Some("CERT-A")),
        ("https://10.0.0.5:9999", Some("CERT-EVIL")),
        ("https://10.0.0.5:9999", None),
        ("http://10.0.0.5:9999", Some("CERT-A")),
    ] {
        let (s, v) = api.call("POST", &path, Some(hb(url, ca))).await;
        assert_eq!(s, 403, "{url} {ca:?}: {v}");
        assert!(fault(&v).contains("already heartbeated"), "{}", fault(&v));
    }
    let node = api.node("pin").await;
    assert_eq!(
        node["driver_internal_info"]["agent_url"],
        "https://10.0.0.5:9999"
    );
    server.stop().await;
}

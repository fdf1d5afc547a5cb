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

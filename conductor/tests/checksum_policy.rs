//! MD5 image checksums through the API: refused when a deploy is requested unless the
//! conductor runs with `--allow-md5-checksum true` (Ironic's `[agent]allow_md5_checksum`,
//! off by default).

mod common;

use common::{fault, Api, Backend, Server};
use serde_json::{json, Value};

const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A fake-hardware node in `available` (created at 1.10, the last microversion whose new
/// nodes start `available`; names need 1.5).
async fn available_node(api: &Api, name: &str) {
    let r = api
        .http
        .post(format!("{}/v1/nodes", api.base))
        .header("X-OpenStack-Ironic-API-Version", "1.10")
        .json(&json!({"driver": "fake-hardware", "name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(api.node(name).await["provision_state"], "available");
}

async fn set_image(api: &Api, name: &str, checksum: Value) {
    let mut ii = json!({"image_source": "http://images.invalid/disk.raw"});
    ii.as_object_mut()
        .unwrap()
        .extend(checksum.as_object().unwrap().clone());
    let patch = json!([{"op": "add", "path": "/instance_info", "value": ii}]);
    let (s, v) = api
        .call("PATCH", &format!("/v1/nodes/{name}"), Some(patch))
        .await;
    assert_eq!(s, 200, "{v}");
}

fn md5_ways() -> [Value; 3] {
    [
        json!({"image_checksum": MD5}),
        json!({"image_os_hash_algo": "md5", "image_os_hash_value": MD5}),
        // A named md5 is refused even when its value is malformed.
        json!({"image_os_hash_algo": "MD5", "image_os_hash_value": "nope"}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_checksums_are_refused_by_default() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    available_node(&api, "n1").await;
    for checksum in md5_ways() {
        set_image(&api, "n1", checksum.clone()).await;
        let (s, v) = api.provision("n1", json!({"target": "active"})).await;
        assert_eq!(s, 400, "{checksum}: {v}");
        let msg = fault(&v);
        assert!(
            msg.contains(
                "image checksum is MD5, which this conductor refuses \
                 (--allow-md5-checksum true to accept)"
            ),
            "{checksum}: {msg}"
        );
        assert_eq!(api.node("n1").await["provision_state"], "available");
    }
    // sha256, as os_hash or as a legacy 64-digit image_checksum, deploys.
    for (i, checksum) in [
        json!({"image_os_hash_algo": "sha256", "image_os_hash_value": SHA256}),
        json!({"image_checksum": SHA256}),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("sha-{i}");
        available_node(&api, &name).await;
        set_image(&api, &name, checksum.clone()).await;
        let (s, v) = api.provision(&name, json!({"target": "active"})).await;
        assert_eq!(s, 202, "{checksum}: {v}");
        api.wait_state(&name, "active").await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_checksums_deploy_when_allowed() {
    let server = Server::start(Backend::Sqlite, |c| c.allow_md5_checksum = Some(true)).await;
    let api = Api::new(&server.url);
    for (i, checksum) in md5_ways().into_iter().take(2).enumerate() {
        let name = format!("md5-{i}");
        available_node(&api, &name).await;
        set_image(&api, &name, checksum.clone()).await;
        let (s, v) = api.provision(&name, json!({"target": "active"})).await;
        assert_eq!(s, 202, "{checksum}: {v}");
        api.wait_state(&name, "active").await;
    }
    server.stop().await;
}

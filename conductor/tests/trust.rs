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

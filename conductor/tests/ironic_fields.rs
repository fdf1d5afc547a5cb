//! Node fields Ironic defines beyond the provisioning core, on SQLite and PostgreSQL: the
//! owner/lessee/project and conductor group filters (their SQL differs per backend), the
//! `retired` and `protected` rules, traits, and a trailing slash on a collection.
//! openstacksdk's own suite covers the rest (`openstack_clients.rs`).

mod common;

use common::{fault, Api, Backend, Server};
use serde_json::{json, Value};

async fn uuids(api: &Api, path: &str) -> Vec<String> {
    let (s, v) = api.call_v("1.86", "GET", path, None).await;
    assert_eq!(s, 200, "{path}: {v}");
    let mut out: Vec<String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn walk(backend: Backend) {
    let server = Server::start(backend, |_| {}).await;
    let api = Api::new(&server.url);
    for (name, extra) in [
        ("a", json!({"owner": "p1", "conductor_group": "Rack-1"})),
        ("b", json!({"lessee": "p1", "shard": "s2"})),
        ("c", json!({"owner": "p2"})),
    ] {
        let mut doc = json!({"driver": "fake-hardware", "name": name});
        doc.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = api.call_v("1.86", "POST", "/v1/nodes", Some(doc)).await;
        assert_eq!(s, 201, "{v}");
    }
    assert_eq!(uuids(&api, "/v1/nodes?owner=p1").await, ["a"]);
    assert_eq!(uuids(&api, "/v1/nodes?lessee=p1").await, ["b"]);
    assert_eq!(uuids(&api, "/v1/nodes?project=p1").await, ["a", "b"]);
    // Stored lower-case, as Ironic does; a node without a group is in "".
    assert_eq!(uuids(&api, "/v1/nodes?conductor_group=rack-1").await, ["a"]);
    assert_eq!(uuids(&api, "/v1/nodes?conductor_group=").await, ["b", "c"]);
    assert_eq!(uuids(&api, "/v1/nodes/?shard=s2").await, ["b"]);
    let (s, v) = api.call_v("1.86", "GET", "/v1/nodes/a", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["conductor_group"], "rack-1");
    assert_eq!(v["traits"], json!([]));
    assert_eq!(v["retired"], false);

    // Traits: set, add, remove; bad names refused.
    let (s, _) = api
        .call(
            "PUT",
            "/v1/nodes/a/traits",
            Some(json!({"traits": ["CUSTOM_B", "CUSTOM_A"]})),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call_v("1.86", "PUT", "/v1/nodes/a/traits/CUSTOM_C", None)
        .await;
    assert_eq!(s, 204);
    let (s, v) = api.call_v("1.37", "GET", "/v1/nodes/a/traits", None).await;
    assert_eq!(
        (s, &v["traits"]),
        (200, &json!(["CUSTOM_A", "CUSTOM_B", "CUSTOM_C"]))
    );
    let (s, v) = api
        .call_v("1.86", "PUT", "/v1/nodes/a/traits/lower", None)
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("CUSTOM_"), "{v}");
    let (s, _) = api
        .call("DELETE", "/v1/nodes/a/traits/CUSTOM_X", None)
        .await;
    assert_eq!(s, 404);

    // Retired: not in available, the reason goes with the flag, no provide while retired.
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/b",
            Some(json!([{"op": "add", "path": "/retired_reason", "value": "old"}])),
        )
        .await;
    assert_eq!(s, 400, "a reason without the flag: {v}");
    for verb in ["manage", "provide"] {
        let (s, v) = api
            .call(
                "PUT",
                "/v1/nodes/c/states/provision",
                Some(json!({"target": verb})),
            )
            .await;
        assert_eq!(s, 202, "{verb}: {v}");
        common::wait_until(
            "the transition",
            std::time::Duration::from_secs(30),
            || async {
                let n = api.call_v("1.86", "GET", "/v1/nodes/c", None).await.1;
                n["target_provision_state"].is_null() && n["reservation"].is_null()
            },
        )
        .await;
    }
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/c",
            Some(json!([{"op": "replace", "path": "/retired", "value": true}])),
        )
        .await;
    assert_eq!(s, 409, "retiring an available node: {v}");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/a",
            Some(json!([{"op": "replace", "path": "/retired", "value": true},
                   {"op": "add", "path": "/retired_reason", "value": "end of warranty"}])),
        )
        .await;
    assert_eq!(
        (s, &v["retired_reason"]),
        (200, &json!("end of warranty")),
        "{v}"
    );
    let (s, _) = api
        .call(
            "PUT",
            "/v1/nodes/a/states/provision",
            Some(json!({"target": "manage"})),
        )
        .await;
    assert_eq!(s, 202);
    common::wait_until("manageable", std::time::Duration::from_secs(30), || async {
        let n = api.call_v("1.86", "GET", "/v1/nodes/a", None).await.1;
        n["provision_state"] == "manageable" && n["reservation"].is_null()
    })
    .await;
    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/a/states/provision",
            Some(json!({"target": "provide"})),
        )
        .await;
    assert_eq!(s, 400, "providing a retired node: {v}");
    assert!(fault(&v).contains("retired"), "{v}");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/a",
            Some(json!([{"op": "replace", "path": "/retired", "value": false}])),
        )
        .await;
    assert_eq!((s, &v["retired_reason"]), (200, &Value::Null), "{v}");

    // Protected only when active.
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/b",
            Some(json!([{"op": "replace", "path": "/protected", "value": true}])),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // An interface Ferrite does not implement is refused with what it has.
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/b",
            Some(json!([{"op": "replace", "path": "/raid_interface", "value": "agent"}])),
        )
        .await;
    assert_eq!(s, 400);
    assert!(fault(&v).contains("no-raid"), "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ironic_node_fields_on_sqlite() {
    walk(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ironic_node_fields_on_postgres() {
    walk(Backend::Postgres).await;
}

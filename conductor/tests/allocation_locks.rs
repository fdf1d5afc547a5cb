//! An allocation's background pick and a node held by other work: Ironic retries nodes
//! found locked (`node_locked_retry_attempts`), and so does Ferrite, so an allocation
//! created just after a power action answered does not fail on the action's lock
//! (openstacksdk's `test_allocation_list` failed this way on CI). A lock held throughout
//! fails the allocation with a message that says so.

mod common;

use common::{Api, Backend, Server};
use ferrite_conductor::db::Db;
use serde_json::{json, Value};
use std::time::Duration;

async fn allocation(api: &Api, uuid: &str) -> Value {
    let (s, v) = api.get(&format!("/v1/allocations/{uuid}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn create(api: &Api) -> String {
    let (s, v) = api
        .call(
            "POST",
            "/v1/allocations",
            Some(json!({"resource_class": "rc-locks"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["uuid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_waits_for_a_locked_node() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "n", "resource_class": "rc-locks"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let node = v["uuid"].as_str().unwrap().to_string();
    for verb in ["manage", "provide"] {
        let (s, v) = api.provision("n", json!({"target": verb})).await;
        assert_eq!(s, 202, "{verb}: {v}");
        common::wait_until("the transition", Duration::from_secs(30), || async {
            let n = api.node("n").await;
            n["target_provision_state"].is_null() && n["reservation"].is_null()
        })
        .await;
    }
    let (s, v) = api
        .call(
            "PUT",
            "/v1/nodes/n/states/power",
            Some(json!({"target": "power off"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    common::wait_until("power off", Duration::from_secs(30), || async {
        let n = api.node("n").await;
        n["power_state"] == "power off" && n["reservation"].is_null()
    })
    .await;

    // Another conductor holds the node's lock, through the shared database.
    let url = format!(
        "sqlite://{}",
        server.dir.path().join("ferrite.db").display()
    );
    let db = Db::open(&url).await.unwrap();
    assert!(db.reserve(&node, "other-conductor").await.unwrap());

    // Held throughout: the allocation fails, and says the node was locked.
    let held = create(&api).await;
    let a = common::wait_until("the allocation to end", Duration::from_secs(30), || async {
        let a = allocation(&api, &held).await;
        (a["state"] != "allocating").then_some(a)
    })
    .await;
    assert_eq!(a["state"], "error", "{a}");
    let err = a["last_error"].as_str().unwrap();
    assert!(err.contains("stayed locked"), "{err}");
    assert!(api.node("n").await["allocation_uuid"].is_null());

    // Released while the allocation is still picking: it takes the node.
    let later = create(&api).await;
    assert_eq!(allocation(&api, &later).await["state"], "allocating");
    db.release(&node, "other-conductor").await.unwrap();
    let a = common::wait_until("the allocation to end", Duration::from_secs(30), || async {
        let a = allocation(&api, &later).await;
        (a["state"] != "allocating").then_some(a)
    })
    .await;
    assert_eq!(a["state"], "active", "{a}");
    assert_eq!(a["node_uuid"], node.as_str());
    assert_eq!(api.node("n").await["allocation_uuid"], later.as_str());
    server.stop().await;
}

//! Microversions 1.87–1.115 through the API on fake-hardware: servicing an active node
//! (steps, hold/unhold, abort, failure), runbooks applied to servicing and manual
//! cleaning, inspection rules, the newer port and portgroup fields and filters,
//! `disable_power_off` and `parent_node` given by name.

mod common;

use common::{fault, Api, Backend, Server};
use serde_json::{json, Value};

const V: &str = "1.115";

async fn call(api: &Api, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api.call_v(V, method, path, body).await
}

async fn provision(api: &Api, node: &str, body: Value) -> (u16, Value) {
    call(
        api,
        "PUT",
        &format!("/v1/nodes/{node}/states/provision"),
        Some(body),
    )
    .await
}

/// A fake-hardware node in `active` (created at 1.10, where nodes start `available`).
async fn active_node(api: &Api, name: &str) -> String {
    let (s, n) = api
        .call_v(
            "1.10",
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": name})),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    assert_eq!(
        provision(api, name, json!({"target": "active"})).await.0,
        202
    );
    api.wait_state(name, "active").await;
    n["uuid"].as_str().unwrap().to_owned()
}

async fn node(api: &Api, name: &str) -> Value {
    let (s, n) = call(api, "GET", &format!("/v1/nodes/{name}"), None).await;
    assert_eq!(s, 200, "{n}");
    n
}

async fn servicing(api: &Api) {
    active_node(api, "svc").await;
    // The verb and its fields need 1.87.
    let (s, v) = api
        .call_v(
            "1.86",
            "PUT",
            "/v1/nodes/svc/states/provision",
            Some(json!({"target": "service", "service_steps": []})),
        )
        .await;
    assert_eq!(s, 406, "{v}");
    for (body, why) in [
        (json!({"target": "service"}), "service_steps is required"),
        (
            json!({"target": "service", "service_steps": [{"interface": "power"}]}),
            "service_steps[0]",
        ),
        (
            json!({"target": "rebuild", "service_steps": []}),
            "only allowed with target \"service\"",
        ),
    ] {
        let (s, v) = provision(api, "svc", body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(fault(&v).contains(why), "{body}: {}", fault(&v));
    }
    // Power steps run on the conductor and the node returns to active.
    let (s, v) = provision(
        api,
        "svc",
        json!({"target": "service", "service_steps": [
            {"interface": "power", "step": "power_off"},
            {"interface": "power", "step": "power_on"},
            {"interface": "deploy", "step": "log_passthrough", "args": {"a": 1}}]}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    api.wait_state("svc", "active").await;
    let n = node(api, "svc").await;
    assert_eq!(n["power_state"], "power on", "{n}");
    assert_eq!(n["service_step"], json!({}), "{n}");
    assert!(n["last_error"].is_null(), "{n}");
    assert!(n["target_provision_state"].is_null(), "{n}");
    // Hold: the node waits in `service hold`, showing its step, until unhold.
    let hold = json!({"target": "service", "service_steps": [
        {"interface": "deploy", "step": "hold"},
        {"interface": "power", "step": "reboot"}]});
    assert_eq!(provision(api, "svc", hold.clone()).await.0, 202);
    api.wait_state("svc", "service hold").await;
    let n = node(api, "svc").await;
    assert_eq!(n["service_step"]["step"], "hold", "{n}");
    assert_eq!(n["target_provision_state"], "active", "{n}");
    assert_eq!(
        provision(api, "svc", json!({"target": "unhold"})).await.0,
        202
    );
    api.wait_state("svc", "active").await;
    assert_eq!(node(api, "svc").await["service_step"], json!({}));
    // Abort out of the hold: back to active (through `service failed`), as in Ironic.
    assert_eq!(provision(api, "svc", hold).await.0, 202);
    api.wait_state("svc", "service hold").await;
    assert_eq!(
        provision(api, "svc", json!({"target": "abort"})).await.0,
        202
    );
    let n = node(api, "svc").await;
    assert_eq!(n["provision_state"], "active", "{n}");
    assert_eq!(n["last_error"], "Servicing was aborted by request.", "{n}");
    assert_eq!(n["service_step"], json!({}), "{n}");
    // Not in maintenance (Ironic's NodeInMaintenance).
    let maint = |on: bool| json!([{"op": "replace", "path": "/maintenance", "value": on}]);
    assert_eq!(
        call(api, "PATCH", "/v1/nodes/svc", Some(maint(true)))
            .await
            .0,
        200
    );
    let (s, v) = provision(
        api,
        "svc",
        json!({"target": "service", "service_steps": [{"interface": "power", "step": "reboot"}]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("maintenance mode"), "{}", fault(&v));
    assert_eq!(
        call(api, "PATCH", "/v1/nodes/svc", Some(maint(false)))
            .await
            .0,
        200
    );
    // Servicing is only for active nodes.
    let (s, v) = call(
        api,
        "POST",
        "/v1/nodes",
        Some(json!({"driver": "fake-hardware", "name": "svc-enroll"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = provision(
        api,
        "svc-enroll",
        json!({"target": "service", "service_steps": [{"interface": "power", "step": "reboot"}]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        fault(&v).contains("\"service\" is not allowed in state \"enroll\""),
        "{}",
        fault(&v)
    );
    // An agent deploy (`direct`, adopted into active): ferrite-agent has no service steps,
    // so only the conductor's reserved steps are accepted.
    let (s, v) = call(
        api,
        "POST",
        "/v1/nodes",
        Some(json!({"driver": "fake-hardware", "name": "svc-agent", "deploy_interface": "direct"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        provision(api, "svc-agent", json!({"target": "manage"}))
            .await
            .0,
        202
    );
    api.wait_state("svc-agent", "manageable").await;
    assert_eq!(
        provision(api, "svc-agent", json!({"target": "adopt"}))
            .await
            .0,
        202
    );
    api.wait_state("svc-agent", "active").await;
    let (s, v) = provision(
        api,
        "svc-agent",
        json!({"target": "service", "service_steps": [
            {"interface": "raid", "step": "delete_configuration"}]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        fault(&v).contains("ferrite-agent has no service steps"),
        "{}",
        fault(&v)
    );
    let (s, v) = provision(
        api,
        "svc-agent",
        json!({"target": "service", "disable_ramdisk": true,
               "service_steps": [{"interface": "power", "step": "reboot"}]}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    api.wait_state("svc-agent", "active").await;
    let (s, v) = api
        .call_v(
            "1.107",
            "PUT",
            "/v1/nodes/svc-agent/states/provision",
            Some(json!({"target": "service", "disable_ramdisk": true,
                        "service_steps": [{"interface": "power", "step": "reboot"}]})),
        )
        .await;
    assert_eq!(s, 406, "disable_ramdisk with service needs 1.108: {v}");
    // A failing step: `service failed`, then abort returns the node to active with the
    // error kept.
    let (s, v) = call(
        api,
        "PATCH",
        "/v1/nodes/svc",
        Some(json!([{"op": "add", "path": "/disable_power_off", "value": true}])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        provision(
            api,
            "svc",
            json!({"target": "service", "service_steps": [{"interface": "power", "step": "power_off"}]})
        )
        .await
        .0,
        202
    );
    let n = wait_for(api, "svc", "service failed").await;
    assert!(
        n["last_error"]
            .as_str()
            .unwrap()
            .contains("disable_power_off"),
        "{n}"
    );
    // disable_power_off also refuses a direct power-off (Ironic's 409).
    let (s, v) = call(
        api,
        "PUT",
        "/v1/nodes/svc/states/power",
        Some(json!({"target": "power off"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        provision(api, "svc", json!({"target": "abort"})).await.0,
        202
    );
    let n = node(api, "svc").await;
    assert_eq!(n["provision_state"], "active", "{n}");
    assert!(
        n["last_error"]
            .as_str()
            .unwrap()
            .contains("disable_power_off"),
        "{n}"
    );
}

/// Waits for a failure state (which `Api::wait_state` treats as the end of a deploy).
async fn wait_for(api: &Api, name: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n = node(api, name).await;
        if n["provision_state"] == state && n["reservation"].is_null() {
            return n;
        }
        assert!(std::time::Instant::now() < deadline, "{n}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn runbooks(api: &Api) {
    active_node(api, "rb-node").await;
    let steps = json!([
        {"interface": "power", "step": "power_on", "args": {}, "order": 2},
        {"interface": "deploy", "step": "hold", "args": {}, "order": 1}]);
    // Before 1.112 a runbook's name is a trait; from 1.112 a logical name.
    let (s, v) = api
        .call_v(
            "1.92",
            "POST",
            "/v1/runbooks",
            Some(json!({"name": "rb-hold", "steps": steps})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, rb) = call(
        api,
        "POST",
        "/v1/runbooks",
        Some(json!({"name": "rb-hold", "steps": steps, "description": "hold then power on"})),
    )
    .await;
    assert_eq!(s, 201, "{rb}");
    assert_eq!(rb["traits"], json!([]));
    assert_eq!(rb["public"], false);
    assert_eq!(rb["disable_ramdisk"], false);
    assert!(rb["owner"].is_null());
    let (s, got) = call(api, "GET", "/v1/runbooks/rb-hold", None).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["uuid"], rb["uuid"]);
    // Below 1.112 neither description nor traits are shown.
    let (_, old) = api
        .call_v("1.92", "GET", "/v1/runbooks/rb-hold", None)
        .await;
    assert!(
        old.get("traits").is_none() && old.get("description").is_none(),
        "{old}"
    );
    // Traits are set through their own endpoints only.
    let (s, v) = call(
        api,
        "PATCH",
        "/v1/runbooks/rb-hold",
        Some(json!([{"op": "add", "path": "/traits", "value": ["CUSTOM_X"]}])),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let serve = json!({"target": "service", "runbook": "rb-hold"});
    let (s, v) = provision(api, "rb-node", serve.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("has no traits"), "{}", fault(&v));
    for (method, path, body) in [
        (
            "PUT",
            "/v1/runbooks/rb-hold/traits",
            Some(json!({"traits": ["CUSTOM_A", "CUSTOM_B"]})),
        ),
        ("DELETE", "/v1/runbooks/rb-hold/traits/CUSTOM_A", None),
        ("DELETE", "/v1/runbooks/rb-hold/traits/CUSTOM_A", None),
        ("PUT", "/v1/runbooks/rb-hold/traits/CUSTOM_SVC", None),
    ] {
        let (s, v) = call(api, method, path, body).await;
        assert_eq!(s, 204, "{method} {path}: {v}");
    }
    let (_, t) = call(api, "GET", "/v1/runbooks/rb-hold/traits", None).await;
    assert_eq!(t["traits"], json!(["CUSTOM_B", "CUSTOM_SVC"]));
    let (s, v) = call(api, "PUT", "/v1/runbooks/rb-hold/traits/lower", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = provision(api, "rb-node", serve.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("not been approved"), "{}", fault(&v));
    let (s, v) = call(api, "PUT", "/v1/nodes/rb-node/traits/CUSTOM_SVC", None).await;
    assert_eq!(s, 204, "{v}");
    let both = json!({"target": "service", "runbook": "rb-hold", "service_steps": []});
    let (s, v) = provision(api, "rb-node", both).await;
    assert_eq!(s, 400, "{v}");
    // The runbook's steps run in its order: hold first.
    assert_eq!(provision(api, "rb-node", serve).await.0, 202);
    api.wait_state("rb-node", "service hold").await;
    assert_eq!(
        provision(api, "rb-node", json!({"target": "unhold"}))
            .await
            .0,
        202
    );
    api.wait_state("rb-node", "active").await;
    // A runbook is for clean and service only.
    let (s, v) = provision(
        api,
        "rb-node",
        json!({"target": "rebuild", "runbook": "rb-hold"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(api, "DELETE", "/v1/runbooks/rb-hold", None).await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = call(api, "GET", "/v1/runbooks/rb-hold", None).await;
    assert_eq!(s, 404);
}

async fn inspection_rules(api: &Api) {
    let (s, v) = api
        .call_v("1.95", "GET", "/v1/inspection_rules", None)
        .await;
    assert_eq!(s, 404, "{v}");
    let rule = json!({
        "actions": [{"op": "set-attribute", "args": ["/driver", "idrac"]}],
        "conditions": [{"op": "eq", "args": ["node:memory_mb", 4096], "multiple": "all"}],
        "description": "d", "priority": 100, "sensitive": true,
    });
    let (s, r) = call(api, "POST", "/v1/inspection_rules", Some(rule)).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["phase"], "main");
    assert!(
        r["actions"].is_null(),
        "sensitive rules hide their logic: {r}"
    );
    let uuid = r["uuid"].as_str().unwrap();
    let (s, v) = call(
        api,
        "PATCH",
        &format!("/v1/inspection_rules/{uuid}"),
        Some(json!([{"op": "replace", "path": "/priority", "value": 150}])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["priority"], 150);
    let (_, l) = call(api, "GET", "/v1/inspection_rules?phase=main", None).await;
    assert_eq!(l["inspection_rules"][0]["uuid"], uuid, "{l}");
    assert_eq!(
        l["inspection_rules"][0].as_object().unwrap().len(),
        5,
        "uuid, priority, phase, description, links: {l}"
    );
    let (s, v) = call(
        api,
        "POST",
        "/v1/inspection_rules",
        Some(json!({"actions": [{"op": "explode", "args": []}]})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = call(api, "DELETE", &format!("/v1/inspection_rules/{uuid}"), None).await;
    assert_eq!(s, 204);
}

async fn ports_and_portgroups(api: &Api) {
    let parent = active_node(api, "pn-parent").await;
    // parent_node given by name is stored as the parent's UUID.
    let (s, v) = call(
        api,
        "POST",
        "/v1/nodes",
        Some(
            json!({"driver": "fake-hardware", "name": "pn-child", "parent_node": "pn-parent",
                    "conductor_group": "g1", "shard": "s1"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["parent_node"], parent);
    let (s, v) = call(
        api,
        "PATCH",
        "/v1/nodes/pn-child",
        Some(json!([{"op": "replace", "path": "/parent_node", "value": "nope"}])),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, pg) = call(
        api,
        "POST",
        "/v1/portgroups",
        Some(
            json!({"node_uuid": "pn-child", "name": "bond0", "category": "c",
                    "physical_network": "p"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{pg}");
    assert_eq!(pg["dynamic_portgroup"], false);
    // A port joins its node's portgroup (1.24), and is created by node name (1.94).
    let (s, p) = call(
        api,
        "POST",
        "/v1/ports",
        Some(
            json!({"address": "52:54:00:aa:bb:01", "node_ident": "pn-child",
                    "portgroup_uuid": "bond0", "name": "eth0", "description": "d",
                    "vendor": "v", "category": "c", "is_smartnic": true,
                    "available_for_dynamic_portgroup": true}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["portgroup_uuid"], pg["uuid"]);
    assert_eq!(p["name"], "eth0");
    assert_eq!(p["is_smartnic"], true);
    let (s, got) = call(api, "GET", "/v1/ports/eth0", None).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["uuid"], p["uuid"]);
    // Below their versions the fields are hidden and refused.
    let (_, old) = api
        .call_v(
            "1.87",
            "GET",
            &format!("/v1/ports/{}", p["uuid"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(
        old.get("name").is_none() && old.get("portgroup_uuid").is_some(),
        "{old}"
    );
    let (s, v) = api
        .call_v(
            "1.87",
            "POST",
            "/v1/ports",
            Some(json!({"address": "52:54:00:aa:bb:02", "node_uuid": "pn-child", "name": "x"})),
        )
        .await;
    assert_eq!(s, 406, "{v}");
    // Another node's portgroup is refused; names are unique.
    for body in [
        json!({"address": "52:54:00:aa:bb:03", "node_uuid": "pn-parent", "portgroup_uuid": "bond0"}),
        json!({"address": "52:54:00:aa:bb:04", "node_uuid": "pn-parent", "name": "eth0"}),
    ] {
        let (s, v) = call(api, "POST", "/v1/ports", Some(body.clone())).await;
        assert!(s == 400 || s == 409, "{body}: {s} {v}");
    }
    // The group's members (1.24): its sub-resource and the `portgroup` filter; a group
    // with members cannot be deleted.
    for path in [
        "/v1/portgroups/bond0/ports",
        "/v1/ports/detail?portgroup=bond0",
    ] {
        let (s, l) = call(api, "GET", path, None).await;
        assert_eq!(s, 200, "{path}: {l}");
        assert_eq!(l["ports"][0]["uuid"], p["uuid"], "{path}: {l}");
    }
    let (s, _) = api
        .call_v("1.23", "GET", "/v1/ports?portgroup=bond0", None)
        .await;
    assert_eq!(s, 406);
    let (s, v) = call(api, "DELETE", "/v1/portgroups/bond0", None).await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("contains ports"), "{}", fault(&v));
    let (s, v) = call(
        api,
        "PATCH",
        "/v1/ports/eth0",
        Some(json!([{"op": "remove", "path": "/portgroup_uuid"},
                    {"op": "replace", "path": "/vendor", "value": "w"}])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["portgroup_uuid"].is_null() && v["vendor"] == "w", "{v}");
    // conductor_groups (1.99) and shard filters narrow port and portgroup lists.
    let (_, l) = call(api, "GET", "/v1/ports?conductor_groups=g1,other", None).await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 1, "{l}");
    let (_, l) = call(api, "GET", "/v1/ports?conductor_groups=other", None).await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 0, "{l}");
    let (_, l) = call(api, "GET", "/v1/portgroups?shard=s1", None).await;
    assert_eq!(l["portgroups"].as_array().unwrap().len(), 1, "{l}");
    let (s, _) = api
        .call_v("1.105", "GET", "/v1/portgroups?shard=s1", None)
        .await;
    assert_eq!(s, 406);
    let (s, _) = call(
        api,
        "GET",
        "/v1/ports?conductor_groups=g1&node=pn-child",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (_, l) = call(api, "GET", "/v1/portgroups/bond0/ports", None).await;
    assert_eq!(l["ports"], json!([]), "{l}");
    let (s, v) = call(api, "DELETE", "/v1/portgroups/bond0", None).await;
    assert_eq!(s, 204, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_microversions_on_sqlite() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    servicing(&api).await;
    runbooks(&api).await;
    inspection_rules(&api).await;
    ports_and_portgroups(&api).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_microversions_on_postgres() {
    let server = Server::start(Backend::Postgres, |_| {}).await;
    let api = Api::new(&server.url);
    servicing(&api).await;
    runbooks(&api).await;
    ports_and_portgroups(&api).await;
    server.stop().await;
}

//! The REST API over a real socket on a real SQLite file and a real PostgreSQL: CRUD,
//! pagination, filters, JSON Patch, version negotiation, transitions and every bad input.

mod common;

use std::time::Duration;

use common::{fault, wait_until, Api, Backend, Server};
use serde_json::{json, Value};

async fn count(api: &Api) -> usize {
    api.get("/v1/nodes").await.1["nodes"]
        .as_array()
        .unwrap()
        .len()
}

async fn versions(api: &Api) {
    let (s, v) = api.get("/").await;
    assert_eq!(s, 200);
    assert_eq!(v["default_version"]["version"], "1.115");
    assert_eq!(v["versions"][0]["min_version"], "1.1");
    let r = api
        .http
        .get(format!("{}/v1/nodes", api.base))
        .header("X-OpenStack-Ironic-API-Version", "1.116")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    assert_eq!(
        r.headers()["X-OpenStack-Ironic-API-Maximum-Version"],
        "1.115"
    );
    // Every answer carries a request id (oslo's form, 1.107).
    let id = r.headers()["X-OpenStack-Request-Id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    assert_eq!(r.headers()["OpenStack-Request-Id"].to_str().unwrap(), id);
    assert!(fault(&r.json().await.unwrap()).contains("[1.1, 1.115]"));
    let r = api
        .http
        .get(format!("{}/v1/nodes", api.base))
        .header("X-OpenStack-Ironic-API-Version", "one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .http
        .get(format!("{}/v1", api.base))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["X-OpenStack-Ironic-API-Version"], "1.115");
    // A caller's own request id of that form is kept; another is replaced.
    let mine = "req-9c6f3d3e-2c6e-4a51-8a41-0f6f4e0c2b7a";
    for (given, kept) in [(mine, true), ("mine", false)] {
        let r = api
            .http
            .get(format!("{}/v1", api.base))
            .header("X-OpenStack-Request-Id", given)
            .send()
            .await
            .unwrap();
        let got = r.headers()["X-OpenStack-Request-Id"].to_str().unwrap();
        assert_eq!(got == given, kept, "{given} -> {got}");
    }
    // No header: the minimum version, where new nodes start `available` (Ironic < 1.11).
    // Node names came with 1.5: not acceptable before (as in Ironic).
    let r = api
        .http
        .post(format!("{}/v1/nodes", api.base))
        .json(&json!({"driver": "fake-hardware", "name": "old-client"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = api
        .http
        .post(format!("{}/v1/nodes", api.base))
        .json(&json!({"driver": "fake-hardware"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created = r.json::<Value>().await.unwrap();
    assert_eq!(created["provision_state"], "available");
    assert!(
        created.get("name").is_none(),
        "name is a 1.5 field: {created}"
    );
    let uuid = created["uuid"].as_str().unwrap();
    assert_eq!(
        api.call("DELETE", &format!("/v1/nodes/{uuid}"), None)
            .await
            .0,
        204
    );
    let (s, v) = api.get("/v1/nothing").await;
    assert_eq!(s, 404);
    fault(&v);
}

async fn bad_node_input(api: &Api) {
    let before = count(api).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": "x"}), 400, "driver"),
        (json!({"driver": "nope"}), 400, "not loaded"),
        (
            json!({"driver": "fake-hardware", "bogus": 1}),
            400,
            "unknown",
        ),
        (
            json!({"driver": "fake-hardware", "provision_state": "active"}),
            400,
            "read-only",
        ),
        (
            json!({"driver": "fake-hardware", "driver_info": "x"}),
            400,
            "expected an object",
        ),
        (
            json!({"driver": "fake-hardware", "name": 5}),
            400,
            "expected a string",
        ),
        (
            json!({"driver": "fake-hardware", "uuid": "not-a-uuid"}),
            400,
            "UUID",
        ),
        (
            json!({"driver": "fake-hardware", "name": "has space"}),
            400,
            "logical name",
        ),
        (
            json!({"driver": "fake-hardware", "instance_uuid": "x"}),
            400,
            "instance_uuid",
        ),
        (
            json!({"driver": "fake-hardware", "deploy_interface": "warp"}),
            400,
            "choose one of",
        ),
        (
            json!({"driver": "fake-hardware", "name": "node-0"}),
            409,
            "already exists",
        ),
        (json!([1, 2]), 400, "Invalid JSON"),
    ];
    for (body, status, why) in cases {
        let (s, v) = api.call("POST", "/v1/nodes", Some(body.clone())).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(fault(&v).contains(why), "{body}: {} lacks {why}", fault(&v));
    }
    let (s, v) = api
        .raw("POST", "/v1/nodes", b"{\"driver\": ".to_vec())
        .await;
    assert_eq!(s, 400);
    assert!(fault(&v).contains("Invalid JSON"));
    let (s, v) = api.raw("POST", "/v1/nodes", vec![]).await;
    assert_eq!(s, 400);
    assert!(fault(&v).contains("empty"));
    let mut big = b"{\"driver\": \"fake-hardware\", \"extra\": {\"x\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    big.extend(b"\"}}");
    let (s, v) = api.raw("POST", "/v1/nodes", big).await;
    assert_eq!(s, 413);
    assert!(fault(&v).contains("too large"));
    assert_eq!(count(api).await, before, "nothing stored by bad requests");
}

async fn crud_and_listing(api: &Api) -> Vec<String> {
    let mut uuids = vec![];
    for i in 0..5 {
        let (s, v) = api
            .call(
                "POST",
                "/v1/nodes",
                Some(json!({
                    "driver": "fake-hardware", "name": format!("node-{i}"),
                    "driver_info": {"ipmi_address": "10.0.0.1", "ipmi_password": "hunter2"},
                    "resource_class": if i % 2 == 0 { "even" } else { "odd" },
                    "properties": {"cpus": i},
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["provision_state"], "enroll");
        assert_eq!(v["driver_info"]["ipmi_password"], "******");
        assert_eq!(v["power_interface"], "fake");
        uuids.push(v["uuid"].as_str().unwrap().to_string());
    }
    // Show by uuid and by name, with fields.
    assert_eq!(api.node("node-3").await["uuid"], uuids[3]);
    assert_eq!(api.node(&uuids[3]).await["name"], "node-3");
    let (s, v) = api
        .get("/v1/nodes/node-3?fields=uuid,provision_state")
        .await;
    assert_eq!(s, 200);
    // The two fields and, as Ironic answers, the links.
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["links", "provision_state", "uuid"]);
    let (s, v) = api.get("/v1/nodes/no-such-node").await;
    assert_eq!(s, 404);
    assert!(fault(&v).contains("could not be found"));
    // Pagination through `next`.
    let mut seen = vec![];
    let mut path = "/v1/nodes?limit=2".to_string();
    loop {
        let (s, v) = api.get(&path).await;
        assert_eq!(s, 200, "{v}");
        for n in v["nodes"].as_array().unwrap() {
            seen.push(n["uuid"].as_str().unwrap().to_string());
            assert!(n.get("driver_info").is_none(), "short listing");
        }
        match v["next"].as_str() {
            Some(next) => path = next.strip_prefix(&api.base).unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen, uuids);
    // Filters, detail, fields.
    let (_, v) = api.get("/v1/nodes?resource_class=odd").await;
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    let (_, v) = api
        .get("/v1/nodes?provision_state=enroll&driver=fake-hardware&maintenance=false")
        .await;
    assert_eq!(v["nodes"].as_array().unwrap().len(), 5);
    let (_, v) = api.get("/v1/nodes?detail=true&limit=1").await;
    assert_eq!(v["nodes"][0]["driver_info"]["ipmi_password"], "******");
    let (_, v) = api.get("/v1/nodes/detail?limit=1").await;
    assert!(v["nodes"][0].get("properties").is_some());
    let (_, v) = api.get("/v1/nodes?fields=name").await;
    assert_eq!(v["nodes"][0]["name"], "node-0");
    assert_eq!(
        v["nodes"][0].as_object().unwrap().len(),
        2,
        "name and links"
    );
    for (q, why) in [
        ("fields=nope", "not valid"),
        ("detail=true&fields=name", "detail"),
        ("limit=-1", "limit"),
        ("marker=nope", "marker"),
        ("provision_state=bogus", "unknown provision state"),
        ("maintenance=maybe", "maintenance"),
        ("color=red", "Unknown argument"),
    ] {
        let (s, v) = api.get(&format!("/v1/nodes?{q}")).await;
        assert_eq!(s, 400, "{q}");
        assert!(fault(&v).contains(why), "{q}: {}", fault(&v));
    }
    uuids
}

async fn json_patch(api: &Api) {
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/nodes/node-1",
            Some(json!([
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "add", "path": "/driver_info/ipmi_username", "value": "admin"},
                {"op": "remove", "path": "/properties/cpus"},
                {"op": "add", "path": "/extra/rack", "value": "r1"},
                {"op": "replace", "path": "/deploy_interface", "value": "direct"},
            ])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["driver_info"]["ipmi_username"], "admin");
    assert_eq!(
        v["driver_info"]["ipmi_password"], "******",
        "secret kept, masked"
    );
    assert!(v["properties"].get("cpus").is_none());
    assert_eq!(v["extra"]["rack"], "r1");
    assert_eq!(v["deploy_interface"], "direct");
    let before = api.node("renamed").await;
    for (ops, why) in [
        (
            json!([{"op": "replace", "path": "/uuid", "value": "x"}]),
            "read-only",
        ),
        (
            json!([{"op": "replace", "path": "/provision_state", "value": "active"}]),
            "read-only",
        ),
        (
            json!([{"op": "remove", "path": "/extra/none"}]),
            "does not exist",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": 7}]),
            "expected a string",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "node-0"}]),
            "already exists",
        ),
        (
            json!([{"op": "replace", "path": "/deploy_interface", "value": "warp"}]),
            "choose one of",
        ),
        (json!([{"op": "jump", "path": "/name"}]), "is not supported"),
        (
            json!([{"op": "add", "path": "name", "value": 1}]),
            "must start with",
        ),
        (json!({"op": "add"}), "Invalid JSON"),
        (
            json!([{"op": "add", "path": "/name", "value": "x", "extra": 1}]),
            "Invalid JSON",
        ),
        (json!([]), "empty"),
    ] {
        let (s, v) = api
            .call("PATCH", "/v1/nodes/renamed", Some(ops.clone()))
            .await;
        assert!(s == 400 || s == 409, "{ops}: {s} {v}");
        assert!(fault(&v).contains(why), "{ops}: {}", fault(&v));
    }
    let after = api.node("renamed").await;
    assert_eq!(before["name"], after["name"]);
    assert_eq!(
        before["updated_at"], after["updated_at"],
        "failed patches store nothing"
    );
}

async fn ports(api: &Api, node: &str) {
    let (s, p) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": "52-54-00-AA-BB-01", "node_uuid": node})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["address"], "52:54:00:aa:bb:01");
    assert_eq!(p["pxe_enabled"], true);
    let uuid = p["uuid"].as_str().unwrap();
    for (body, status, why) in [
        (
            json!({"address": "52:54:00:aa:bb:01", "node_uuid": node}),
            409,
            "already exists",
        ),
        (
            json!({"address": "52:54:00:aa:bb", "node_uuid": node}),
            400,
            "MAC",
        ),
        (json!({"address": "52:54:00:aa:bb:02"}), 400, "node_uuid"),
        (
            json!({"address": "52:54:00:aa:bb:02", "node_uuid": "6ef8c2e5-94d4-4c73-b6b4-97d0b1aa0000"}),
            400,
            "could not be found",
        ),
        (
            json!({"address": "52:54:00:aa:bb:02", "node_uuid": node, "bogus": 1}),
            400,
            "unknown",
        ),
        (
            json!({"address": "52:54:00:aa:bb:02", "node_uuid": node, "pxe_enabled": "yes"}),
            400,
            "boolean",
        ),
    ] {
        let (s, v) = api.call("POST", "/v1/ports", Some(body.clone())).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(fault(&v).contains(why), "{body}: {}", fault(&v));
    }
    let (_, v) = api.get(&format!("/v1/nodes/{node}/ports")).await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    // A full page links to the next one through the same path, filters and fields.
    let (_, v) = api
        .get(&format!("/v1/nodes/{node}/ports?limit=1&fields=uuid"))
        .await;
    let next = v["next"].as_str().unwrap();
    assert!(
        next.ends_with(&format!(
            "/v1/nodes/{node}/ports?fields=uuid&limit=1&marker={uuid}"
        )),
        "{next}"
    );
    let (_, v) = api
        .get("/v1/ports?address=52:54:00:AA:BB:01&fields=uuid,node_uuid")
        .await;
    assert_eq!(v["ports"][0]["node_uuid"], node);
    let (s, v) = api
        .call(
            "PATCH",
            &format!("/v1/ports/{uuid}"),
            Some(json!([{"op": "replace", "path": "/pxe_enabled", "value": false}])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["pxe_enabled"], false);
    let (s, v) = api
        .call(
            "PATCH",
            &format!("/v1/ports/{uuid}"),
            Some(json!([{"op": "replace", "path": "/address", "value": "zz"}])),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = api.get("/v1/ports/not-a-uuid").await;
    assert_eq!(s, 400);
    assert_eq!(
        api.call("DELETE", &format!("/v1/ports/{uuid}"), None)
            .await
            .0,
        204
    );
    assert_eq!(api.get(&format!("/v1/ports/{uuid}")).await.0, 404);
}

async fn transitions(api: &Api) {
    let n = "node-2";
    let (s, v) = api.provision(n, json!({"target": "active"})).await;
    assert_eq!(s, 400);
    let msg = fault(&v);
    assert!(
        msg.contains("cannot go from enroll") && msg.contains("allowed verbs: manage"),
        "{msg}"
    );
    assert_eq!(api.provision(n, json!({"target": "manage"})).await.0, 202);
    api.wait_state(n, "manageable").await;
    for (body, why) in [
        (json!({"target": "fly"}), "Invalid provision target"),
        (json!({"target": "clean"}), "clean_steps is required"),
        (
            json!({"target": "clean", "clean_steps": [{"interface": "deploy"}]}),
            "clean_steps[0]",
        ),
        (
            json!({"target": "provide", "configdrive": "x"}),
            "configdrive is only allowed",
        ),
        (json!({"target": "provide", "surprise": 1}), "Invalid JSON"),
        (json!({"target": 5}), "Invalid JSON"),
    ] {
        let (s, v) = api.provision(n, body.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert!(fault(&v).contains(why), "{body}: {}", fault(&v));
    }
    assert_eq!(api.provision(n, json!({"target": "inspect"})).await.0, 202);
    let node = api.wait_state(n, "manageable").await;
    assert!(node["inspection_finished_at"].is_string());
    assert_eq!(api.provision(n, json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "erase_devices_metadata"}]})).await.0, 202);
    api.wait_state(n, "manageable").await;
    assert_eq!(api.provision(n, json!({"target": "provide"})).await.0, 202);
    api.wait_state(n, "available").await;
    for (cd, why) in [
        (json!({"metadata": {}}), "unknown key \"metadata\""),
        (json!({"meta_data": "h"}), "meta_data must be a JSON object"),
        (json!({"user_data": 5}), "user_data must be"),
    ] {
        let (s, v) = api
            .provision(n, json!({"target": "active", "configdrive": cd}))
            .await;
        assert_eq!(s, 400, "{cd}");
        assert!(fault(&v).contains(why), "{cd}: {}", fault(&v));
        assert_eq!(api.node(n).await["provision_state"], "available");
    }
    let (s, v) = api
        .provision(
            n,
            json!({"target": "active", "configdrive": {"meta_data": {"hostname": "h"}}}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let node = api.wait_state(n, "active").await;
    assert_eq!(node["power_state"], "power on");
    assert_eq!(node["instance_info"]["configdrive"], "******");
    assert_eq!(
        api.call("DELETE", &format!("/v1/nodes/{n}"), None).await.0,
        409,
        "active nodes are not deleted"
    );
    assert_eq!(api.provision(n, json!({"target": "deleted"})).await.0, 202);
    let node = api.wait_state(n, "available").await;
    assert_eq!(node["power_state"], "power off");
    assert_eq!(node["instance_info"], json!({}));
    // Power, boot device, maintenance, validate, states.
    assert_eq!(
        api.call(
            "PUT",
            &format!("/v1/nodes/{n}/states/power"),
            Some(json!({"target": "power on"}))
        )
        .await
        .0,
        202
    );
    common::wait_until("power on", std::time::Duration::from_secs(10), || async {
        api.node(n).await["power_state"] == "power on"
    })
    .await;
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/nodes/{n}/states/power"),
            Some(json!({"target": "sideways"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(fault(&v).contains("power off"));
    assert_eq!(
        api.call(
            "PUT",
            &format!("/v1/nodes/{n}/management/boot_device"),
            Some(json!({"boot_device": "pxe", "persistent": true}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api.get(&format!("/v1/nodes/{n}/management/boot_device"))
            .await
            .1,
        json!({"boot_device": "pxe", "persistent": true})
    );
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/nodes/{n}/management/boot_device"),
            Some(json!({"boot_device": "floppy"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(fault(&v).contains("not supported"));
    assert_eq!(
        api.call(
            "PUT",
            &format!("/v1/nodes/{n}/maintenance"),
            Some(json!({"reason": "fan"}))
        )
        .await
        .0,
        202
    );
    let node = api.node(n).await;
    assert_eq!(
        (
            node["maintenance"].clone(),
            node["maintenance_reason"].clone()
        ),
        (json!(true), json!("fan"))
    );
    let (_, v) = api.get("/v1/nodes?maintenance=true&fields=name").await;
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(v["nodes"][0]["name"], json!(n));
    assert_eq!(
        api.call("DELETE", &format!("/v1/nodes/{n}/maintenance"), None)
            .await
            .0,
        202
    );
    assert_eq!(api.node(n).await["maintenance"], false);
    let (_, v) = api.get(&format!("/v1/nodes/{n}/validate")).await;
    assert_eq!(v["power"]["result"], true);
    let (_, v) = api.get(&format!("/v1/nodes/{n}/states")).await;
    assert_eq!(v["provision_state"], "available");
    // direct deploy needs an image.
    let (s, v) = api.provision("renamed", json!({"target": "manage"})).await;
    assert_eq!(s, 202, "{v}");
    api.wait_state("renamed", "manageable").await;
}

async fn agent_endpoints(api: &Api) {
    let (s, v) = api.get("/v1/lookup?addresses=52:54:00:00:00:99").await;
    assert_eq!(s, 404);
    assert!(fault(&v).contains("No node"));
    let (s, _) = api.get("/v1/lookup?addresses=garbage").await;
    assert_eq!(s, 400);
    let (s, _) = api.get("/v1/lookup").await;
    assert_eq!(s, 400);
    let node = api.node("node-0").await;
    let (s, v) = api
        .get(&format!(
            "/v1/lookup?node_uuid={}",
            node["uuid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 404, "enroll does not expect an agent");
    assert!(fault(&v).contains("does not expect an agent"));
    let hb = json!({"callback_url": "http://127.0.0.1:9", "agent_token": "x".repeat(43), "agent_version": "t"});
    let (s, _) = api
        .call("POST", "/v1/heartbeat/no-such-node", Some(hb.clone()))
        .await;
    assert_eq!(s, 404);
    let (s, v) = api.call("POST", "/v1/heartbeat/node-0", Some(hb)).await;
    assert_eq!(s, 403);
    assert!(fault(&v).contains("token"));
    let (s, _) = api
        .call(
            "POST",
            "/v1/heartbeat/node-0",
            Some(json!({"callback_url": 1})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            "POST",
            "/v1/continue_inspection",
            Some(json!({"inventory": 1})),
        )
        .await;
    assert_eq!(s, 400);
}

/// Heartbeats of a node waiting for inspection data (nothing to resume): the token is
/// checked, the agent URL is stored at once, the time in the next batch, and from 1.72
/// `agent_status` lands in driver_internal_info.
async fn heartbeats(api: &Api) {
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(
                json!({"driver": "fake-hardware", "name": "hb-node", "inspect_interface": "agent"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uuid = v["uuid"].as_str().unwrap().to_string();
    for (target, state) in [("manage", "manageable"), ("inspect", "inspect wait")] {
        let (s, v) = api.provision("hb-node", json!({"target": target})).await;
        assert_eq!(s, 202, "{v}");
        api.wait_state("hb-node", state).await;
    }
    let (s, v) = api.get(&format!("/v1/lookup?node_uuid={uuid}")).await;
    assert_eq!(s, 200, "{v}");
    let token = v["config"]["agent_token"].as_str().unwrap().to_string();
    let hb = |extra: Value| {
        let mut b = json!({"callback_url": "http://127.0.0.1:9", "agent_token": token, "agent_version": "t"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let path = format!("/v1/heartbeat/{uuid}");
    let (s, v) = api.call("POST", &path, Some(hb(json!({})))).await;
    assert_eq!(s, 202, "{v}");
    let dii = &api.node("hb-node").await["driver_internal_info"];
    assert_eq!(
        dii["agent_url"], "http://127.0.0.1:9",
        "the URL is written at once"
    );
    let first = dii["agent_last_heartbeat"].as_str().unwrap().to_string();
    // Later heartbeats with the same URL only note their time; it is written within ~1 s.
    wait_until(
        "agent_last_heartbeat to move on",
        Duration::from_secs(10),
        || async {
            let (s, _) = api.call("POST", &path, Some(hb(json!({})))).await;
            assert_eq!(s, 202);
            let n = api.node("hb-node").await;
            n["driver_internal_info"]["agent_last_heartbeat"].as_str() != Some(first.as_str())
        },
    )
    .await;
    // agent_status needs 1.72, and one of Ironic's three values.
    let status = json!({"agent_status": "start", "agent_status_message": "writing image: 5 MiB"});
    let (s, v) = api.call("POST", &path, Some(hb(status.clone()))).await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("1.72"), "{v}");
    let (s, v) = api
        .call_v(
            "1.72",
            "POST",
            &path,
            Some(hb(json!({"agent_status": "busy"}))),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("start,end,error"), "{v}");
    let (s, v) = api.call_v("1.72", "POST", &path, Some(hb(status))).await;
    assert_eq!(s, 202, "{v}");
    let dii = &api.node("hb-node").await["driver_internal_info"];
    assert_eq!(dii["agent_status"], "start");
    assert_eq!(dii["agent_status_message"], "writing image: 5 MiB");
    let (s, _) = api
        .call_v(
            "1.72",
            "POST",
            &path,
            Some(hb(json!({"agent_status": "end"}))),
        )
        .await;
    assert_eq!(s, 202);
    let dii = &api.node("hb-node").await["driver_internal_info"];
    assert_eq!(dii["agent_status"], "end");
    assert!(dii.get("agent_status_message").is_none(), "{dii}");
    // A wrong token is refused and records nothing.
    let before = api.node("hb-node").await["driver_internal_info"].clone();
    let mut bad = hb(json!({"agent_status": "error"}));
    bad["agent_token"] = json!("y".repeat(43));
    let (s, _) = api.call_v("1.72", "POST", &path, Some(bad)).await;
    assert_eq!(s, 403);
    assert_eq!(
        api.node("hb-node").await["driver_internal_info"]["agent_status"],
        before["agent_status"]
    );
    // Newer provision fields need their microversion; disable_ramdisk is refused.
    let (s, v) = api
        .provision(
            "hb-node",
            json!({"target": "clean", "clean_steps": [], "disable_ramdisk": false}),
        )
        .await;
    assert_eq!(s, 406, "{v}");
    let (s, v) = api
        .call_v(
            "1.70",
            "PUT",
            "/v1/nodes/hb-node/states/provision",
            Some(json!({"target": "clean", "clean_steps": [], "disable_ramdisk": true})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("disable_ramdisk"), "{v}");
    let (s, v) = api
        .provision("hb-node", json!({"target": "active", "deploy_steps": []}))
        .await;
    assert_eq!(s, 406, "{v}");
    assert_eq!(api.node("hb-node").await["provision_state"], "inspect wait");
    let (s, _) = api.provision("hb-node", json!({"target": "abort"})).await;
    assert_eq!(s, 202);
    api.wait_state("hb-node", "inspect failed").await;
}

async fn misc(api: &Api) {
    let (_, v) = api.get("/v1/drivers").await;
    assert_eq!(v["drivers"][0]["name"], "fake-hardware");
    let (_, v) = api.get("/v1/drivers/fake-hardware").await;
    assert_eq!(v["default_deploy_interface"], "fake");
    assert_eq!(api.get("/v1/drivers/ipmi9").await.0, 404);
    let (_, v) = api.get("/v1/conductors").await;
    assert_eq!(v["conductors"][0]["hostname"], "test-conductor");
    assert_eq!(v["conductors"][0]["alive"], true);
}

async fn suite(backend: Backend) {
    let server = Server::start(backend, |_| {}).await;
    let api = Api::new(&server.url);
    versions(&api).await;
    let uuids = crud_and_listing(&api).await;
    bad_node_input(&api).await;
    json_patch(&api).await;
    ports(&api, &uuids[0]).await;
    transitions(&api).await;
    agent_endpoints(&api).await;
    heartbeats(&api).await;
    misc(&api).await;
    assert_eq!(api.call("DELETE", "/v1/nodes/node-4", None).await.0, 204);
    assert_eq!(api.get("/v1/nodes/node-4").await.0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_postgres() {
    suite(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_htpasswd() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("admin:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let f2 = file.clone();
    let server = Server::start(Backend::Sqlite, move |c| c.htpasswd = Some(f2)).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v1/nodes", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = http
        .get(format!("{}/v1/nodes", server.url))
        .basic_auth("admin", Some("bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/nodes", server.url))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Discovery and agent endpoints stay open; the token guards heartbeats.
    assert_eq!(
        http.get(format!("{}/v1", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!(
            "{}/v1/lookup?addresses=52:54:00:00:00:01",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .status(),
        404
    );
    server.stop().await;
}

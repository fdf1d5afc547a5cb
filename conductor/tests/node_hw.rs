//! Node endpoints of optional hardware interfaces and microversions 1.73–1.86, through the
//! REST API on SQLite and PostgreSQL: BIOS, console, RAID, NMI, vendor passthru, firmware,
//! virtual media, boot mode changes, node history, shards, child nodes, driver `fields`,
//! and node fields hidden below their microversion — each answered as Ironic 39 answers
//! for the interfaces Ferrite has (`no-bios`, `no-console`, `no-raid`, `no-vendor`,
//! `no-firmware`, fake management).

mod common;

use common::{fault, Api, Backend, Server};
use serde_json::{json, Value};

const V: &str = "1.86";

async fn create(api: &Api, name: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "driver": "fake-hardware"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = api.call_v(V, "POST", "/v1/nodes", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["uuid"].as_str().unwrap().to_string()
}

async fn hardware_endpoints(api: &Api) {
    let uuid = create(api, "hw-1", json!({})).await;
    // BIOS: no settings, and a named one is not found; not there before 1.40.
    let (s, v) = api.call_v(V, "GET", "/v1/nodes/hw-1/bios", None).await;
    assert_eq!((s, v), (200, json!({"bios": []})));
    let (s, v) = api
        .call_v(V, "GET", "/v1/nodes/hw-1/bios?detail=true", None)
        .await;
    assert_eq!((s, v), (200, json!({"bios": []})));
    let (s, v) = api
        .call_v(V, "GET", "/v1/nodes/hw-1/bios/LogicalProc", None)
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(fault(&v).contains("LogicalProc"), "{v}");
    let (s, _) = api.call_v("1.39", "GET", "/v1/nodes/hw-1/bios", None).await;
    assert_eq!(s, 404);
    let (s, _) = api.call_v(V, "GET", "/v1/nodes/nope/bios", None).await;
    assert_eq!(s, 404);

    // Console: never enabled; enabling fails in the interface's validation.
    let (s, v) = api
        .call_v(V, "GET", "/v1/nodes/hw-1/states/console", None)
        .await;
    assert_eq!(
        (s, v),
        (200, json!({"console_enabled": false, "console_info": null}))
    );
    let (s, v) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/states/console",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        fault(&v),
        "Driver fake-hardware does not support console (disabled or not implemented)."
    );
    let (s, _) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/states/console",
            Some(json!({"enabled": "maybe"})),
        )
        .await;
    assert_eq!(s, 400);

    // RAID: an empty target is stored; a real one needs a RAID interface (404, as Ironic).
    let (s, v) = api
        .call_v(V, "PUT", "/v1/nodes/hw-1/states/raid", Some(json!({})))
        .await;
    assert_eq!(s, 204, "{v}");
    let raid = json!({"logical_disks": [{"size_gb": 100, "raid_level": "1"}]});
    let (s, v) = api
        .call_v(V, "PUT", "/v1/nodes/hw-1/states/raid", Some(raid.clone()))
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(fault(&v).contains("does not support raid"), "{v}");
    let (s, _) = api
        .call_v("1.11", "PUT", "/v1/nodes/hw-1/states/raid", Some(raid))
        .await;
    assert_eq!(s, 406);
    let (s, v) = api
        .call_v(V, "PUT", "/v1/nodes/hw-1/states/raid", Some(json!([1])))
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, states) = api.call_v(V, "GET", "/v1/nodes/hw-1/states", None).await;
    assert_eq!(states["target_raid_config"], json!({}));
    assert_eq!(states["console_enabled"], false);

    // NMI: the fake management interface has none (as in Ironic); 1.29 needed.
    let (s, v) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/management/inject_nmi",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        fault(&v),
        "Driver fake-hardware does not support inject_nmi (disabled or not implemented)."
    );
    let (s, _) = api
        .call_v(
            "1.28",
            "PUT",
            "/v1/nodes/hw-1/management/inject_nmi",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);

    // Vendor passthru: no methods, and no handler for any.
    for path in [
        "/v1/nodes/hw-1/vendor_passthru/methods",
        "/v1/drivers/fake-hardware/vendor_passthru/methods",
    ] {
        let (s, v) = api.call_v(V, "GET", path, None).await;
        assert_eq!((s, v), (200, json!({})), "{path}");
    }
    for path in [
        "/v1/nodes/hw-1/vendor_passthru?method=reboot",
        "/v1/drivers/fake-hardware/vendor_passthru?method=reboot",
    ] {
        let (s, v) = api.call_v(V, "POST", path, Some(json!({}))).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(fault(&v), "No handler for method reboot");
    }
    let (s, v) = api
        .call_v(V, "POST", "/v1/nodes/hw-1/vendor_passthru", Some(json!({})))
        .await;
    assert_eq!((s, fault(&v).as_str()), (400, "Method not specified"));
    let (s, _) = api
        .call_v(V, "GET", "/v1/drivers/nope/vendor_passthru/methods", None)
        .await;
    assert_eq!(s, 404);

    // Firmware (1.86): none cached.
    let (s, v) = api.call_v(V, "GET", "/v1/nodes/hw-1/firmware", None).await;
    assert_eq!((s, v), (200, json!({"firmware": []})));
    let (s, _) = api
        .call_v("1.85", "GET", "/v1/nodes/hw-1/firmware", None)
        .await;
    assert_eq!(s, 404);

    // Boot mode (1.76): accepted, and the interface's refusal lands in last_error.
    let (s, v) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/states/boot_mode",
            Some(json!({"target": "bios"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let node = api.node(&uuid).await;
    assert!(
        node["last_error"]
            .as_str()
            .unwrap()
            .contains("does not support set_boot_mode"),
        "{node}"
    );
    let (s, _) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/states/boot_mode",
            Some(json!({"target": "legacy"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call_v(
            V,
            "PUT",
            "/v1/nodes/hw-1/states/secure_boot",
            Some(json!({"target": "yes"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call_v(
            "1.75",
            "PUT",
            "/v1/nodes/hw-1/states/secure_boot",
            Some(json!({"target": true})),
        )
        .await;
    assert_eq!(s, 404);
}

async fn history(api: &Api) {
    create(api, "hist-1", json!({})).await;
    let (s, v) = api.call_v(V, "GET", "/v1/nodes/hist-1/history", None).await;
    assert_eq!((s, v), (200, json!({"history": []})));
    for (verb, state) in [
        ("manage", "manageable"),
        ("provide", "available"),
        ("active", "active"),
    ] {
        let (s, v) = api.provision("hist-1", json!({"target": verb})).await;
        assert_eq!(s, 202, "{verb}: {v}");
        api.wait_state("hist-1", state).await;
    }
    let (s, v) = api
        .call_v(V, "GET", "/v1/nodes/hist-1/history?detail=true", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let events = v["history"].as_array().unwrap();
    assert_eq!(events.len(), 3, "three verbs: {v}");
    for (e, verb) in events.iter().zip(["manage", "provide", "active"]) {
        assert_eq!(e["severity"], "INFO", "{e}");
        assert!(
            e["event"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{verb}\"")),
            "{e}"
        );
        assert_eq!(e["conductor"], "test-conductor");
    }
    assert_eq!(events[2]["event_type"], "deploy");
    assert!(events[0].get("state").is_none(), "state appears in 1.115");
    assert!(
        events[0].get("project").is_none(),
        "project appears in 1.113"
    );
    let one = events[2]["uuid"].as_str().unwrap();
    let (s, e) = api
        .call_v(V, "GET", &format!("/v1/nodes/hist-1/history/{one}"), None)
        .await;
    assert_eq!((s, &e["event"]), (200, &events[2]["event"]));
    let (s, v) = api
        .call_v(V, "GET", "/v1/nodes/hist-1/history?limit=1", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["history"].as_array().unwrap().len(), 1);
    assert!(v["next"].as_str().unwrap().contains("marker="), "{v}");
    assert_eq!(
        v["history"][0].as_object().unwrap().len(),
        5,
        "uuid, created_at, severity, event, links: {v}"
    );
    let (s, _) = api
        .call_v("1.77", "GET", "/v1/nodes/hist-1/history", None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call_v(V, "GET", "/v1/nodes/hist-1/history/nope", None)
        .await;
    assert_eq!(s, 404);
    // Virtual media (1.89) is above the advertised maximum: not there.
    let (s, _) = api
        .call_v(
            V,
            "POST",
            "/v1/nodes/hist-1/vmedia",
            Some(json!({"device_type": "cdrom", "image_url": "http://image"})),
        )
        .await;
    assert_eq!(s, 404);
}

async fn versions_and_fields(api: &Api) {
    let uuid = create(api, "ver-1", json!({"shard": "s1"})).await;
    create(api, "ver-2", json!({"shard": "s1", "parent_node": uuid})).await;
    create(api, "ver-3", json!({})).await;
    // Fields appear at their microversion and are not acceptable below it.
    let (_, n) = api.call_v(V, "GET", "/v1/nodes/ver-1", None).await;
    for f in ["boot_mode", "secure_boot", "firmware_interface", "shard"] {
        assert!(n.get(f).is_some(), "{f} at 1.86: {n}");
    }
    assert_eq!(n["firmware_interface"], "no-firmware");
    for f in ["instance_name", "health", "service_step"] {
        assert!(n.get(f).is_none(), "{f} is newer than 1.86: {n}");
    }
    let (_, n) = api.call_v("1.115", "GET", "/v1/nodes/ver-1", None).await;
    assert_eq!(n["service_step"], json!({}), "{n}");
    assert!(n["instance_name"].is_null() && n["health"].is_null(), "{n}");
    let (_, n) = api.call_v("1.74", "GET", "/v1/nodes/ver-1", None).await;
    assert!(
        n.get("boot_mode").is_none() && n.get("owner").is_some(),
        "{n}"
    );
    let (_, n) = api.call_v("1.45", "GET", "/v1/nodes/ver-1", None).await;
    assert!(n.get("conductor_group").is_none() && n.get("deploy_step").is_some());
    let (s, _) = api
        .call_v("1.81", "GET", "/v1/nodes/ver-1?fields=shard", None)
        .await;
    assert_eq!(s, 406);
    let (s, _) = api
        .call_v(
            "1.81",
            "PATCH",
            "/v1/nodes/ver-1",
            Some(json!([{"op": "replace", "path": "/shard", "value": "x"}])),
        )
        .await;
    assert_eq!(s, 406);

    // Child nodes are left out of lists unless asked for.
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with("ver-"))
            .collect();
        n.sort();
        n
    };
    let (_, v) = api.call_v(V, "GET", "/v1/nodes", None).await;
    assert_eq!(names(&v), ["ver-1", "ver-3"]);
    let (_, v) = api
        .call_v(V, "GET", "/v1/nodes?include_children=true", None)
        .await;
    assert_eq!(names(&v), ["ver-1", "ver-2", "ver-3"]);
    let (_, v) = api
        .call_v(V, "GET", "/v1/nodes?parent_node=ver-1", None)
        .await;
    assert_eq!(names(&v), ["ver-2"]);
    let (s, v) = api.call_v(V, "GET", "/v1/nodes/ver-1/children", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["children"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = api.call_v(V, "GET", "/v1/nodes?sharded=false", None).await;
    assert_eq!(names(&v), ["ver-3"]);
    let (s, v) = api.call_v(V, "GET", "/v1/shards", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"shards": [{"name": "s1", "count": 2}]}));
    let (s, _) = api.call_v("1.81", "GET", "/v1/shards", None).await;
    assert_eq!(s, 404);

    // deploy/undeploy are verbs from 1.73.
    let (s, v) = api
        .call_v(
            "1.72",
            "PUT",
            "/v1/nodes/ver-3/states/provision",
            Some(json!({"target": "deploy"})),
        )
        .await;
    assert_eq!(s, 406, "{v}");
    // Drivers take fields from 1.77.
    let (s, v) = api.call_v(V, "GET", "/v1/drivers?fields=name", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["drivers"][0].as_object().unwrap().len(),
        2,
        "name, links: {v}"
    );
    let (s, v) = api
        .call_v(
            V,
            "GET",
            "/v1/drivers/fake-hardware?fields=name,hosts",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_object().unwrap().len(), 3, "name, hosts, links: {v}");
    let (s, _) = api
        .call_v("1.76", "GET", "/v1/drivers?fields=name", None)
        .await;
    assert_eq!(s, 406);
}

async fn run(backend: Backend) {
    let server = Server::start(backend, |_| {}).await;
    let api = Api::new(&server.url);
    hardware_endpoints(&api).await;
    history(&api).await;
    versions_and_fields(&api).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hardware_endpoints_and_versions_on_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hardware_endpoints_and_versions_on_postgres() {
    run(Backend::Postgres).await;
}

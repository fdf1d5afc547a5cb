//! Issue 15's bad-input corpus against the conductor over a real socket (REST API and the
//! agent endpoints lookup/heartbeat/continue_inspection): every malformed or hostile
//! request is answered 4xx with a message (never 5xx, never a dropped connection), and
//! nothing is stored: the nodes and ports read back exactly as before.

mod common;

use common::{Api, Backend, Server};
use serde_json::{json, Value};

/// One request of the corpus: method, path, raw body (None: no body), extra header.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    header: Option<(&'static str, String)>,
}

fn case(method: &'static str, path: impl Into<String>, body: Option<Vec<u8>>) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        header: None,
    }
}

fn j(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

/// Hostile or broken bodies, each refused wherever a JSON object is expected.
fn bad_bodies() -> Vec<Vec<u8>> {
    let mut deep = String::new();
    for _ in 0..200 {
        deep.push('[');
    }
    vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"{\"driver\": ".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"a string\"".to_vec(),
        b"{\"driver\": \"fake-hardware\",}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"a\": 1e999999}".to_vec(),
        b"{\"driver\": \"fake-hardware\", \"driver\": 1}".to_vec(),
        deep.into_bytes(),
        b"{\"driver\": \"\\ud800\"}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"{\"name\": \"a\x00b\"}".to_vec(),
    ]
}

fn corpus(uuid: &str, port: &str) -> Vec<Case> {
    let mut c = Vec::new();
    // Every JSON-taking endpoint gets every broken body.
    let posts: Vec<(&'static str, String)> = vec![
        ("POST", "/v1/nodes".into()),
        ("PATCH", format!("/v1/nodes/{uuid}")),
        ("PUT", format!("/v1/nodes/{uuid}/states/provision")),
        ("PUT", format!("/v1/nodes/{uuid}/states/power")),
        ("POST", "/v1/ports".into()),
        ("PATCH", format!("/v1/ports/{port}")),
        ("POST", format!("/v1/heartbeat/{uuid}")),
        ("POST", "/v1/continue_inspection".into()),
        ("PUT", format!("/v1/nodes/{uuid}/states/console")),
        ("PUT", format!("/v1/nodes/{uuid}/states/raid")),
        ("PUT", format!("/v1/nodes/{uuid}/states/boot_mode")),
        ("PUT", format!("/v1/nodes/{uuid}/states/secure_boot")),
        ("PUT", format!("/v1/nodes/{uuid}/management/inject_nmi")),
        ("POST", "/v1/runbooks".into()),
        ("PATCH", "/v1/runbooks/no-such-runbook".into()),
        ("PUT", "/v1/runbooks/no-such-runbook/traits".into()),
        ("POST", "/v1/inspection_rules".into()),
    ];
    for (m, p) in &posts {
        for b in bad_bodies() {
            c.push(case(m, p.clone(), Some(b)));
        }
    }
    // Wrong shapes and values for node creation.
    for v in [
        json!({"name": "x"}),
        json!({"driver": "nope"}),
        json!({"driver": 7}),
        json!({"driver": "fake-hardware", "uuid": "not-a-uuid"}),
        json!({"driver": "fake-hardware", "uuid": uuid}),
        json!({"driver": "fake-hardware", "name": "has space"}),
        json!({"driver": "fake-hardware", "name": "x".repeat(300)}),
        json!({"driver": "fake-hardware", "driver_info": "string"}),
        json!({"driver": "fake-hardware", "properties": [1]}),
        json!({"driver": "fake-hardware", "provision_state": "active"}),
        json!({"driver": "fake-hardware", "deploy_interface": "warp"}),
        json!({"driver": "fake-hardware", "boot_interface": 1}),
        json!({"driver": "fake-hardware", "maintenance": "yes"}),
        json!({"driver": "fake-hardware", "unknown_field": 1}),
        json!({"driver": "fake-hardware", "extra": {"big": "x".repeat(2 << 20)}}),
    ] {
        c.push(case("POST", "/v1/nodes", j(v)));
    }
    // JSON Patch abuse.
    for ops in [
        json!([]),
        json!([{"op": "copy", "from": "/driver_info/ipmi_password", "path": "/extra/x"}]),
        json!([{"op": "move", "from": "/driver_info", "path": "/extra/x"}]),
        json!([{"op": "test", "path": "/name", "value": "n"}]),
        json!([{"op": "add", "path": "/uuid", "value": "x"}]),
        json!([{"op": "add", "path": "/provision_state", "value": "active"}]),
        json!([{"op": "add", "path": "no-slash", "value": 1}]),
        json!([{"op": "remove", "path": "/extra/missing"}]),
        json!([{"op": "replace", "path": "/missing", "value": 1}]),
        json!([{"op": "add", "path": "/extra/a/b/c", "value": 1}]),
        json!([{"op": "add", "path": "/extra/x"}]),
        json!([{"op": "add", "path": "/name", "value": 1}]),
        json!([{"op": "add", "path": "", "value": {}}]),
        json!([{"op": "add", "path": "/extra/x", "value": 1, "from": "/name"}]),
        json!([{"op": "add", "path": "/extra/x", "value": 1, "bogus": 1}]),
        json!([{"op": "add", "path": "/extra/x", "value": "x".repeat(300 * 1024)}]),
        json!({"op": "add", "path": "/extra/x", "value": 1}),
        json!([{"op": "add", "path": "/driver_info/deploy_kernel", "value": 5},
               {"op": "replace", "path": "/maintenance", "value": "maybe"}]),
    ] {
        c.push(case("PATCH", format!("/v1/nodes/{uuid}"), j(ops.clone())));
        c.push(case("PATCH", format!("/v1/ports/{port}"), j(ops)));
    }
    // Provision and power requests that make no sense.
    for v in [
        json!({"target": "fly"}),
        json!({"target": 1}),
        json!({"target": "active", "configdrive": 5}),
        json!({"target": "manage", "configdrive": "x"}),
        json!({"target": "clean"}),
        json!({"target": "clean", "clean_steps": "all"}),
        json!({"target": "clean", "clean_steps": [{"interface": "deploy"}]}),
        json!({"target": "active", "deploy_steps": [{"step": 1}]}),
        json!({"target": "inspect", "bogus": true}),
        // Servicing (1.87) and runbooks (1.92): wrong state, shapes, unknown runbook.
        json!({"target": "service"}),
        json!({"target": "service", "service_steps": "all"}),
        json!({"target": "service", "service_steps": [{"interface": "power", "step": "reboot"}]}),
        json!({"target": "service", "runbook": "no-such-runbook"}),
        json!({"target": "clean", "runbook": 5}),
        json!({"target": "manage", "runbook": "no-such-runbook"}),
        json!({"target": "manage", "service_steps": []}),
    ] {
        c.push(case(
            "PUT",
            format!("/v1/nodes/{uuid}/states/provision"),
            j(v),
        ));
    }
    for v in [
        json!({"target": "power maybe"}),
        json!({"target": null}),
        json!({"target": "power on", "timeout": -5}),
        json!({"target": "power on", "timeout": "soon"}),
    ] {
        c.push(case("PUT", format!("/v1/nodes/{uuid}/states/power"), j(v)));
    }
    // Hardware sub-resources with the wrong shapes.
    for (path, v) in [
        ("states/console", json!({"enabled": "maybe"})),
        ("states/console", json!({"enabled": true, "bogus": 1})),
        ("states/raid", json!({"logical_disks": "all"})),
        ("states/boot_mode", json!({"target": "legacy"})),
        ("states/boot_mode", json!({"target": null})),
        ("states/secure_boot", json!({"target": "on"})),
        ("management/inject_nmi", json!({"now": true})),
    ] {
        c.push(case("PUT", format!("/v1/nodes/{uuid}/{path}"), j(v)));
    }
    c.push(case(
        "PUT",
        "/v1/nodes/no-such-node/states/raid",
        j(json!({})),
    ));
    c.push(case(
        "PUT",
        "/v1/nodes/no-such-node/management/inject_nmi",
        j(json!({})),
    ));
    // Ports.
    for v in [
        json!({"address": "zz:zz", "node_uuid": uuid}),
        json!({"address": "52:54:00:aa:bb:cc"}),
        json!({"address": "52:54:00:aa:bb:cc", "node_uuid": "not-a-node"}),
        json!({"address": port_mac(), "node_uuid": uuid}),
        json!({"address": "52:54:00:aa:bb:cd", "node_uuid": uuid, "pxe_enabled": "yes"}),
        json!({"address": "52:54:00:aa:bb:ce", "node_uuid": uuid, "bogus": 1}),
        // The newer port fields (1.24–1.111) with wrong values.
        json!({"address": "52:54:00:aa:bb:cf", "node_uuid": uuid, "portgroup_uuid": "nope"}),
        json!({"address": "52:54:00:aa:bb:cf", "node_uuid": uuid, "name": uuid}),
        json!({"address": "52:54:00:aa:bb:cf", "node_uuid": uuid, "vendor": "v".repeat(40)}),
        json!({"address": "52:54:00:aa:bb:cf", "node_uuid": uuid, "is_smartnic": "perhaps"}),
        json!({"address": "52:54:00:aa:bb:cf", "node_ident": "no-such-node"}),
        json!({"address": "52:54:00:aa:bb:cf", "node_ident": "target", "node_uuid": uuid}),
    ] {
        c.push(case("POST", "/v1/ports", j(v)));
    }
    // Runbooks and inspection rules with wrong shapes.
    let step = json!({"interface": "power", "step": "reboot", "args": {}, "order": 1});
    for v in [
        json!({"name": "rb", "steps": []}),
        json!({"name": "rb", "steps": [{"interface": "power", "step": "reboot"}]}),
        json!({"name": "has space", "steps": [step]}),
        json!({"name": "rb", "steps": [step], "traits": ["CUSTOM_X"]}),
        json!({"name": "rb", "steps": [step], "public": "perhaps"}),
        json!({"steps": [step]}),
    ] {
        c.push(case("POST", "/v1/runbooks", j(v)));
    }
    for v in [
        json!({"actions": []}),
        json!({"actions": [{"op": "explode", "args": []}]}),
        json!({"actions": [{"op": "log", "args": ["x"]}], "phase": "later"}),
        json!({"actions": [{"op": "log", "args": ["x"]}], "priority": -1}),
        json!({"actions": [{"op": "log", "args": ["x"]}], "conditions": [{"op": "eq"}]}),
    ] {
        c.push(case("POST", "/v1/inspection_rules", j(v)));
    }
    c.push(case(
        "PUT",
        "/v1/runbooks/no-such-runbook/traits/CUSTOM_X",
        None,
    ));
    // Paths and query strings.
    for p in [
        "/v1/nodes/no-such-node".to_string(),
        "/v1/nodes/..%2F..%2Fetc%2Fpasswd".into(),
        format!("/v1/nodes/{}", "a".repeat(5000)),
        "/v1/nodes/%00".into(),
        "/v1/nodes?limit=-1".into(),
        "/v1/nodes?limit=abc".into(),
        "/v1/nodes?marker=not-a-node".into(),
        "/v1/nodes?sort_key=password".into(),
        "/v1/nodes?sort_dir=sideways".into(),
        "/v1/nodes?fields=uuid,bogus".into(),
        "/v1/nodes?provision_state=flying".into(),
        "/v1/nodes?maintenance=maybe".into(),
        "/v1/nodes?bogus=1".into(),
        "/v1/ports?node=no-such-node".into(),
        "/v1/ports?address=zz".into(),
        "/v1/ports?limit=0x10".into(),
        "/v1/ports/no-such-port".into(),
        format!("/v1/nodes/{uuid}?fields=driver_info,nope"),
        format!("/v1/nodes/{uuid}?other=1"),
        "/v1/drivers/no-such-driver".into(),
        "/v1/conductors/nobody".into(),
        "/v1/nothing-here".into(),
        "/v2/nodes".into(),
        "/boot/..%2F..%2Fferrite.db".into(),
        "/boot/%2e%2e/%2e%2e/etc/passwd".into(),
        format!("/boot/{uuid}/..%2F..%2Fferrite.db"),
        format!("/v1/nodes/{uuid}/inventory"),
        // Node sub-resources (1.12–1.86) on unknown nodes and with bad arguments.
        "/v1/nodes/no-such-node/bios".into(),
        format!("/v1/nodes/{uuid}/bios/NoSuchSetting"),
        format!("/v1/nodes/{uuid}/bios?bogus=1"),
        format!("/v1/nodes/{uuid}/bios?detail=maybe"),
        "/v1/nodes/no-such-node/states/console".into(),
        "/v1/nodes/no-such-node/history".into(),
        format!("/v1/nodes/{uuid}/history/no-such-event"),
        format!("/v1/nodes/{uuid}/history?limit=-3"),
        format!("/v1/nodes/{uuid}/history?marker=nope"),
        format!("/v1/nodes/{uuid}/history?sort_key=event"),
        "/v1/nodes/no-such-node/firmware".into(),
        "/v1/nodes/no-such-node/children".into(),
        "/v1/nodes/no-such-node/vendor_passthru/methods".into(),
        format!("/v1/nodes/{uuid}/vendor_passthru"),
        format!("/v1/nodes/{uuid}/vendor_passthru?method=nope"),
        "/v1/drivers/no-such-driver/vendor_passthru/methods".into(),
        "/v1/drivers/fake-hardware/vendor_passthru?method=".into(),
        "/v1/nodes?include_children=maybe".into(),
        "/v1/nodes?sharded=maybe".into(),
        "/v1/runbooks/no-such-runbook".into(),
        "/v1/runbooks/no-such-runbook/traits".into(),
        "/v1/runbooks?fields=bogus".into(),
        "/v1/inspection_rules/no-such-rule".into(),
        "/v1/inspection_rules?phase=main&bogus=1".into(),
        "/v1/ports?conductor_groups=g&node=target".into(),
        "/v1/portgroups?shard=s&bogus=1".into(),
        "/v1/portgroups/no-such-group/ports".into(),
        "/v1/ports?portgroup=no-such-group".into(),
        "/v1/drivers?fields=name&bogus=1".into(),
        // Agent lookups.
        "/v1/lookup".into(),
        "/v1/lookup?addresses=".into(),
        "/v1/lookup?addresses=garbage".into(),
        "/v1/lookup?addresses=52:54:00:00:00:99".into(),
        "/v1/lookup?node_uuid=not-a-uuid".into(),
        format!("/v1/lookup?node_uuid={uuid}"),
        "/v1/lookup?addresses=52:54:00:00:00:99&bogus=1".into(),
        format!("/v1/lookup?addresses={}", "52:54:00:00:00:01,".repeat(500)),
    ] {
        c.push(case("GET", p, None));
    }
    // Heartbeats: wrong token, wrong URL, missing fields, wrong node.
    let hb = |token: &str, url: &str| json!({"callback_url": url, "agent_token": token, "agent_version": "x"});
    let t43 = "t".repeat(43);
    for (path, body) in [
        (
            format!("/v1/heartbeat/{uuid}"),
            hb(&t43, "http://127.0.0.1:9"),
        ),
        (
            format!("/v1/heartbeat/{uuid}"),
            hb("", "http://127.0.0.1:9"),
        ),
        (
            format!("/v1/heartbeat/{uuid}"),
            hb(&t43, "ftp://127.0.0.1:9"),
        ),
        (format!("/v1/heartbeat/{uuid}"), hb(&t43, "not a url")),
        (
            format!("/v1/heartbeat/{uuid}"),
            json!({"callback_url": "http://x"}),
        ),
        (format!("/v1/heartbeat/{uuid}"), json!({"agent_token": t43})),
        (format!("/v1/heartbeat/{uuid}"), {
            let mut b = hb(&t43, "http://127.0.0.1:9");
            b["agent_status"] = json!("dancing");
            b
        }),
        (
            "/v1/heartbeat/no-such-node".into(),
            hb(&t43, "http://127.0.0.1:9"),
        ),
        ("/v1/heartbeat/%00".into(), hb(&t43, "http://127.0.0.1:9")),
    ] {
        c.push(case("POST", path, j(body)));
    }
    // Inspection data: no token, wrong types, unknown node, too much of everything.
    let inv = |nics: usize| {
        let mut inv = ferrite_proto::inventory::Inventory::default();
        for i in 0..nics {
            inv.interfaces.push(ferrite_proto::inventory::Interface {
                name: format!("eth{i}"),
                mac_address: Some(format!("52:54:00:02:{:02x}:{:02x}", i / 256, i % 256)),
                ..Default::default()
            });
        }
        serde_json::to_value(inv).unwrap()
    };
    for body in [
        json!({"inventory": 1}),
        json!({"inventory": inv(1)}),
        json!({"inventory": inv(1), "agent_token": t43}),
        json!({"inventory": inv(1), "boot_interface": port_mac()}),
        json!({"inventory": inv(1), "boot_interface": port_mac(), "agent_token": t43}),
        json!({"inventory": inv(300), "boot_interface": port_mac(), "agent_token": t43}),
        json!({"inventory": inv(1), "boot_interface": 5}),
        json!({"boot_interface": port_mac()}),
    ] {
        c.push(case("POST", "/v1/continue_inspection", j(body)));
    }
    // Headers: versions out of range or garbage.
    for v in ["1.116", "0.1", "one", "1.", "latest.1", "9999999999.1"] {
        c.push(Case {
            method: "GET",
            path: "/v1/nodes".into(),
            body: None,
            header: Some(("X-OpenStack-Ironic-API-Version", v.into())),
        });
    }
    // A body over the limit.
    c.push(case("POST", "/v1/nodes", Some(vec![b' '; 2 << 20])));
    c.push(case(
        "POST",
        "/v1/continue_inspection",
        Some(vec![b'['; 3 << 20]),
    ));
    // Methods a path does not have.
    c.push(case("DELETE", "/v1/drivers", None));
    c.push(case(
        "POST",
        format!("/v1/nodes/{uuid}/states"),
        j(json!({})),
    ));
    c
}

fn port_mac() -> &'static str {
    "52:54:00:00:20:01"
}

/// What a client can read back about the stored nodes and ports.
async fn snapshot(api: &Api) -> Value {
    let (_, nodes) = api.get("/v1/nodes/detail").await;
    let (_, ports) = api.get("/v1/ports/detail").await;
    json!({"nodes": nodes, "ports": ports})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_with_a_message_and_store_nothing() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "target",
                        "driver_info": {"ipmi_password": "secret"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uuid = v["uuid"].as_str().unwrap().to_string();
    let (s, p) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": port_mac(), "node_uuid": uuid})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let port = p["uuid"].as_str().unwrap().to_string();
    let before = snapshot(&api).await;

    let cases = corpus(&uuid, &port);
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    // Unpooled: a server refusing an oversized body may close the connection.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for c in &cases {
        let m = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut rb = http
            .request(m, format!("{}{}", server.url, c.path))
            .header("content-type", "application/json");
        rb = match &c.header {
            Some((k, v)) => rb.header(*k, v),
            None => rb.header("X-OpenStack-Ironic-API-Version", "1.115"),
        };
        if let Some(b) = &c.body {
            rb = rb.body(b.clone());
        }
        let what = format!(
            "{} {} {}",
            c.method,
            c.path.chars().take(120).collect::<String>(),
            c.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).to_string())
                .unwrap_or_default()
        );
        let r = match rb.send().await {
            Ok(r) => r,
            // An oversized body may be cut off mid-send; the server must still answer
            // the next request (checked below), so only those cases may end this way.
            Err(e) if c.body.as_ref().is_some_and(|b| b.len() > 1 << 20) => {
                eprintln!("{what}: connection closed while sending: {e}");
                continue;
            }
            Err(e) => {
                failures.push(format!("{what}: no answer: {e}"));
                continue;
            }
        };
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        if !(400..500).contains(&status) {
            failures.push(format!("{what}: status {status}: {text}"));
            continue;
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error_message"].as_str().map(str::to_string))
            .and_then(|m| serde_json::from_str::<Value>(&m).ok())
            .and_then(|m| {
                let text = m.get("faultstring").or_else(|| m.get("description"));
                text.and_then(Value::as_str).map(str::to_string)
            })
            // /boot/ answers iPXE, in plain text.
            .or_else(|| c.path.starts_with("/boot/").then(|| text.clone()))
            .unwrap_or_default();
        if message.trim().is_empty() {
            failures.push(format!("{what}: {status} without a message: {text:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests were not answered 4xx with a message:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&api).await,
        before,
        "a refused request changed stored state"
    );
    server.stop().await;
}

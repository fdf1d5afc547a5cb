//! python-ironicclient's `baremetal` CLI, unchanged, against a conductor started here: a
//! scripted walk through the command groups whose endpoints Ferrite serves (node, port,
//! port group, chassis, allocation, deploy template, runbook, inspection rule, volume
//! connector and target, driver, conductor; BIOS, console, vendor passthru, history and
//! servicing of a node), each answer read back
//! with `-f json` and checked. The CLI is what operators
//! type; it reaches the API through openstacksdk and ironicclient's own HTTP layer, with
//! their URL forms (trailing slashes, `?fields=`, `?detail=True`, JSON Patch).
//!
//! Needs the venv `target/clients-venv` that `cargo xtask deps` makes (pinned
//! python-ironicclient).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{Backend, Server};

fn baremetal() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/clients-venv/bin/baremetal");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask deps` (it installs python-ironicclient there)",
        bin.display()
    );
    bin
}

/// Runs `baremetal <args>` and returns its stdout; panics with stderr when it fails.
fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(baremetal())
        .args(args)
        .env("OS_AUTH_TYPE", "none")
        .env("OS_ENDPOINT", url)
        .env_remove("OS_CLOUD")
        .output()
        .expect("running baremetal");
    assert!(
        out.status.success(),
        "baremetal {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `baremetal <args> -f json`, parsed.
fn json(url: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    let text = cli(url, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("baremetal {args:?}: {e}: {text}"))
}

/// The values of `key` in a `list -f json` answer.
fn column(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|r| r[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn walk(url: &str) {
    // Node: create, list, show with fields, set/unset, traits, the provisioning verbs.
    let n = json(
        url,
        &[
            "node",
            "create",
            "--driver",
            "fake-hardware",
            "--name",
            "n1",
        ],
    );
    assert_eq!(n["provision_state"], "enroll", "{n}");
    let uuid = n["uuid"].as_str().unwrap().to_string();
    assert_eq!(column(&json(url, &["node", "list"]), "name"), ["n1"]);
    let n = json(url, &["node", "show", "n1", "--fields", "uuid", "name"]);
    assert_eq!(
        (n["uuid"].as_str(), n["name"].as_str()),
        (Some(&*uuid), Some("n1"))
    );
    assert!(n.get("driver").is_none(), "only the fields asked for: {n}");
    cli(
        url,
        &[
            "node",
            "set",
            "n1",
            "--extra",
            "rack=r1",
            "--description",
            "lab node",
        ],
    );
    let n = json(url, &["node", "show", "n1"]);
    assert_eq!(
        (&n["extra"]["rack"], &n["description"]),
        (&"r1".into(), &"lab node".into())
    );
    cli(url, &["node", "unset", "n1", "--extra", "rack"]);
    assert_eq!(
        json(url, &["node", "show", "n1"])["extra"],
        serde_json::json!({})
    );
    cli(
        url,
        &["node", "add", "trait", "n1", "CUSTOM_GPU", "CUSTOM_RAID"],
    );
    let traits = column(&json(url, &["node", "trait", "list", "n1"]), "traits");
    assert_eq!(traits, ["CUSTOM_GPU", "CUSTOM_RAID"]);
    cli(url, &["node", "remove", "trait", "n1", "CUSTOM_RAID"]);
    cli(url, &["node", "manage", "n1", "--wait", "60"]);
    cli(url, &["node", "provide", "n1", "--wait", "60"]);
    let n = json(url, &["node", "show", "n1"]);
    assert_eq!(n["provision_state"], "available", "{n}");
    assert_eq!(n["traits"], serde_json::json!(["CUSTOM_GPU"]));

    // The optional interfaces fake-hardware lacks answer as Ironic's do; history records
    // the verbs.
    assert_eq!(
        json(url, &["node", "bios", "setting", "list", "n1"]),
        serde_json::json!([])
    );
    assert_eq!(
        json(url, &["node", "console", "show", "n1"])["console_enabled"],
        false
    );
    assert_eq!(cli(url, &["node", "passthru", "list", "n1"]).trim(), "");
    let history = json(url, &["node", "history", "list", "n1"]);
    assert!(
        history.as_array().is_some_and(|h| h.len() >= 2),
        "manage and provide are in the node's history: {history}"
    );

    // Power and boot device, through the fake hardware type.
    cli(url, &["node", "power", "on", "n1"]);
    assert_eq!(
        json(url, &["node", "show", "n1"])["power_state"],
        "power on"
    );
    cli(
        url,
        &["node", "boot", "device", "set", "n1", "pxe", "--persistent"],
    );
    let b = json(url, &["node", "boot", "device", "show", "n1"]);
    assert_eq!(
        (&b["boot_device"], &b["persistent"]),
        (&"pxe".into(), &true.into()),
        "{b}"
    );
    let v = json(url, &["node", "validate", "n1"]);
    let power = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Interface"] == "power")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(power["Result"], true, "{v}");
    cli(
        url,
        &["node", "maintenance", "set", "n1", "--reason", "cabling"],
    );
    let n = json(url, &["node", "show", "n1"]);
    assert_eq!(
        (&n["maintenance"], &n["maintenance_reason"]),
        (&true.into(), &"cabling".into())
    );
    cli(url, &["node", "maintenance", "unset", "n1"]);

    // Ports and port groups, listed by node name (`/v1/ports/?node=n1`).
    let pg = json(
        url,
        &["port", "group", "create", "--node", "n1", "--name", "bond0"],
    );
    assert_eq!(pg["node_uuid"], uuid.as_str(), "{pg}");
    // The port joins the group (`portgroup_uuid`, 1.24) and carries the newer fields.
    let p = json(
        url,
        &[
            "port",
            "create",
            "52:54:00:aa:bb:cc",
            "--node",
            "n1",
            "--port-group",
            pg["uuid"].as_str().unwrap(),
            "--name",
            "eth0",
            "--description",
            "uplink",
            "--vendor",
            "acme",
            "--category",
            "data",
        ],
    );
    assert_eq!(p["node_uuid"], uuid.as_str(), "{p}");
    assert_eq!(p["portgroup_uuid"], pg["uuid"], "{p}");
    // (The CLI sends `--description` but does not print it.)
    assert_eq!(
        (&p["name"], &p["vendor"], &p["category"]),
        (&"eth0".into(), &"acme".into(), &"data".into()),
        "{p}"
    );
    cli(
        url,
        &[
            "port",
            "set",
            p["uuid"].as_str().unwrap(),
            "--vendor",
            "other",
        ],
    );
    assert_eq!(
        json(url, &["port", "show", p["uuid"].as_str().unwrap()])["vendor"],
        "other"
    );
    let ports = json(url, &["port", "list", "--node", "n1"]);
    assert_eq!(column(&ports, "address"), ["52:54:00:aa:bb:cc"]);
    assert_eq!(
        column(&json(url, &["port", "group", "list"]), "name"),
        ["bond0"]
    );
    let detail = json(url, &["port", "list", "--long"]);
    assert_eq!(detail[0]["node_uuid"], uuid.as_str(), "{detail}");

    // Chassis.
    let c = json(url, &["chassis", "create", "--description", "rack 1"]);
    let listed = json(url, &["chassis", "list"]);
    assert_eq!(column(&listed, "uuid"), [c["uuid"].as_str().unwrap()]);

    // Deploy templates, volume connectors and targets.
    let steps = r#"[{"interface": "deploy", "step": "write_image", "args": {}, "priority": 80}]"#;
    let t = json(
        url,
        &[
            "deploy",
            "template",
            "create",
            "CUSTOM_FAST",
            "--steps",
            steps,
        ],
    );
    assert_eq!(t["steps"][0]["step"], "write_image", "{t}");
    assert_eq!(
        column(&json(url, &["deploy", "template", "list"]), "name"),
        ["CUSTOM_FAST"]
    );
    let vc = json(
        url,
        &[
            "volume",
            "connector",
            "create",
            "--node",
            "n1",
            "--type",
            "iqn",
            "--connector-id",
            "iqn.2010-10.org.openstack:n1",
        ],
    );
    assert_eq!(vc["node_uuid"], uuid.as_str(), "{vc}");
    let vt = json(
        url,
        &[
            "volume",
            "target",
            "create",
            "--node",
            "n1",
            "--type",
            "iscsi",
            "--boot-index",
            "0",
            "--volume-id",
            "vol-1",
        ],
    );
    assert_eq!(vt["boot_index"], 0, "{vt}");
    assert_eq!(
        json(url, &["volume", "target", "list", "--node", "n1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Allocations: by resource class and trait, the node's trait matched.
    cli(url, &["node", "set", "n1", "--resource-class", "gpu"]);
    let a = json(
        url,
        &[
            "allocation",
            "create",
            "--resource-class",
            "gpu",
            "--trait",
            "CUSTOM_GPU",
            "--name",
            "job-1",
            "--wait",
            "60",
        ],
    );
    assert_eq!(
        (&a["state"], &a["node_uuid"]),
        (&"active".into(), &uuid.as_str().into()),
        "{a}"
    );
    assert_eq!(
        json(url, &["node", "show", "n1"])["allocation_uuid"],
        a["uuid"]
    );
    cli(url, &["allocation", "delete", "job-1"]);
    assert!(json(url, &["node", "show", "n1"])["allocation_uuid"].is_null());

    // Runbooks, and servicing the deployed node with one (1.87, 1.92, 1.112).
    let steps = r#"[{"interface": "power", "step": "power_off", "args": {}, "order": 1},
                    {"interface": "power", "step": "power_on", "args": {}, "order": 2}]"#;
    let rb = json(
        url,
        &[
            "runbook",
            "create",
            "--name",
            "power-cycle",
            "--steps",
            steps,
        ],
    );
    assert_eq!(rb["steps"][1]["step"], "power_on", "{rb}");
    cli(
        url,
        &["runbook", "trait", "add", "power-cycle", "CUSTOM_GPU"],
    );
    assert_eq!(
        column(
            &json(url, &["runbook", "trait", "list", "power-cycle"]),
            "traits"
        ),
        ["CUSTOM_GPU"]
    );
    cli(
        url,
        &["runbook", "set", "power-cycle", "--extra", "team=lab"],
    );
    assert_eq!(
        json(url, &["runbook", "show", "power-cycle"])["extra"]["team"],
        "lab"
    );
    assert_eq!(
        column(&json(url, &["runbook", "list"]), "name"),
        ["power-cycle"]
    );
    cli(url, &["node", "deploy", "n1", "--wait", "60"]);
    cli(
        url,
        &[
            "node",
            "service",
            "n1",
            "--runbook",
            "power-cycle",
            "--wait",
            "60",
        ],
    );
    let n = json(url, &["node", "show", "n1"]);
    assert_eq!(
        (&n["provision_state"], &n["power_state"]),
        (&"active".into(), &"power on".into()),
        "{n}"
    );
    cli(
        url,
        &[
            "node",
            "service",
            "n1",
            "--service-steps",
            r#"[{"interface": "power", "step": "reboot"}]"#,
            "--wait",
            "60",
        ],
    );
    cli(url, &["node", "undeploy", "n1", "--wait", "60"]);
    cli(url, &["runbook", "delete", "power-cycle"]);

    // Inspection rules (1.96): stored, listed, changed (evaluation: tests/lifecycle.rs).
    let rule = json(
        url,
        &[
            "inspection",
            "rule",
            "create",
            "--description",
            "big memory",
            "--priority",
            "10",
            "--actions",
            r#"[{"op": "add-trait", "args": ["CUSTOM_BIG"]}]"#,
            "--conditions",
            r#"[{"op": "gt", "args": ["{inventory[memory][physical_mb]}", 65536]}]"#,
        ],
    );
    let rule_id = rule["uuid"].as_str().unwrap().to_string();
    cli(
        url,
        &["inspection", "rule", "set", &rule_id, "--priority", "20"],
    );
    assert_eq!(
        json(url, &["inspection", "rule", "show", &rule_id])["priority"],
        20
    );
    assert_eq!(
        column(&json(url, &["inspection", "rule", "list"]), "uuid"),
        [rule_id.as_str()]
    );
    cli(url, &["inspection", "rule", "delete", &rule_id]);

    // Drivers and conductors.
    let drivers = column(&json(url, &["driver", "list"]), "name");
    assert!(drivers.iter().any(|d| d == "fake-hardware"), "{drivers:?}");
    assert!(drivers.iter().any(|d| d == "ipmi"), "{drivers:?}");
    let d = json(url, &["driver", "show", "ipmi"]);
    assert_eq!(d["name"], "ipmi", "{d}");
    let conductors = json(url, &["conductor", "list"]);
    assert_eq!(conductors[0]["alive"], true, "{conductors}");

    // Teardown through the CLI: every delete is honoured.
    cli(url, &["port", "delete", p["uuid"].as_str().unwrap()]);
    cli(url, &["port", "group", "delete", "bond0"]);
    cli(
        url,
        &[
            "volume",
            "connector",
            "delete",
            vc["uuid"].as_str().unwrap(),
        ],
    );
    cli(
        url,
        &["volume", "target", "delete", vt["uuid"].as_str().unwrap()],
    );
    cli(url, &["deploy", "template", "delete", "CUSTOM_FAST"]);
    cli(url, &["chassis", "delete", c["uuid"].as_str().unwrap()]);
    cli(url, &["node", "manage", "n1", "--wait", "60"]);
    cli(url, &["node", "delete", "n1"]);
    assert_eq!(json(url, &["node", "list"]), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baremetal_cli_walks_every_command_group() {
    baremetal();
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let url = server.url.clone();
    tokio::task::spawn_blocking(move || walk(&url))
        .await
        .unwrap();
    server.stop().await;
}

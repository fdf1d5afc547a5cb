//! The `ferrite` binary as a client drives the whole fake-hardware lifecycle against a
//! conductor on a real socket; API errors come out as one readable line.

mod common;

use std::process::Command;

use common::{Backend, Server};
use serde_json::Value;

fn ferrite(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env("FERRITE_URL", url)
        .output()
        .expect("running ferrite");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(url: &str, args: &[&str]) -> String {
    let (success, out, err) = ferrite(url, args);
    assert!(success, "ferrite {args:?} failed: {err}");
    out
}

fn json(url: &str, args: &[&str]) -> Value {
    let mut a = vec!["-f", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(url, &a)).expect("-f json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_the_fake_lifecycle() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let url = server.url.clone();
    tokio::task::spawn_blocking(move || {
        let n = json(
            &url,
            &[
                "node",
                "create",
                "--driver",
                "fake-hardware",
                "--name",
                "cli-1",
                "--driver-info",
                "ipmi_password=pw",
                "--property",
                "cpus=4",
            ],
        );
        assert_eq!(n["provision_state"], "enroll");
        assert_eq!(n["driver_info"]["ipmi_password"], "******");
        assert_eq!(n["properties"]["cpus"], 4);
        let p = json(
            &url,
            &["port", "create", "52:54:00:12:34:56", "--node", "cli-1"],
        );
        assert_eq!(p["node_uuid"], n["uuid"]);
        let table = ok(&url, &["node", "list"]);
        assert!(
            table.contains("| cli-1 ") && table.contains("Provisioning State"),
            "{table}"
        );
        for verb in ["manage", "inspect", "provide"] {
            let n = json(&url, &["node", verb, "cli-1", "--wait", "60"]);
            let want = if verb == "provide" {
                "available"
            } else {
                "manageable"
            };
            assert_eq!(n["provision_state"], want, "{verb}");
        }
        let n = json(
            &url,
            &[
                "node",
                "set",
                "cli-1",
                "--instance-info",
                "image_source=http://127.0.0.1/img",
                "--name",
                "cli-2",
            ],
        );
        assert_eq!(n["name"], "cli-2");
        let n = json(&url, &["node", "unset", "cli-2", "--property", "cpus"]);
        assert!(n["properties"].get("cpus").is_none());
        let n = json(
            &url,
            &[
                "node",
                "deploy",
                "cli-2",
                "--config-drive",
                "{\"meta_data\": {\"hostname\": \"h\"}}",
                "--wait",
            ],
        );
        assert_eq!(n["provision_state"], "active");
        let n = json(&url, &["node", "undeploy", "cli-2", "--wait", "60"]);
        assert_eq!(n["provision_state"], "available");
        ok(&url, &["node", "power", "on", "cli-2"]);
        ok(
            &url,
            &["node", "boot-device", "set", "cli-2", "pxe", "--persistent"],
        );
        let v = ok(&url, &["node", "validate", "cli-2"]);
        assert!(v.contains("| power "), "{v}");
        let ports = json(&url, &["port", "list", "--node", "cli-2"]);
        assert_eq!(ports.as_array().unwrap().len(), 1);
        let list = json(&url, &["node", "list"]);
        assert_eq!(list.as_array().unwrap().len(), 1);
        // Errors: one line, naming the problem, non-zero exit.
        let (success, _, err) = ferrite(&url, &["node", "show", "nope"]);
        assert!(!success);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("HTTP 404") && err.contains("could not be found"),
            "{err}"
        );
        let (success, _, err) = ferrite(&url, &["node", "inspect", "cli-2", "--wait"]);
        assert!(!success);
        assert!(err.contains("HTTP 400"), "{err}");
        let (success, _, err) = ferrite("http://127.0.0.1:9", &["node", "list"]);
        assert!(!success);
        assert!(err.contains("FERRITE_URL"), "{err}");
        ok(&url, &["node", "manage", "cli-2", "--wait"]);
        ok(&url, &["node", "delete", "cli-2"]);
        assert!(json(&url, &["node", "list"]).as_array().unwrap().is_empty());
    })
    .await
    .unwrap();
    server.stop().await;
}

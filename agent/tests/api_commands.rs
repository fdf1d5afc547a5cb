//! Agent commands over a real loopback socket: sync and async lifecycles, one async
//! command at a time (409), power hooks, steps, inventory, log collection, lockdown, TLS.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use common::{assert_fault, Agent};
use ferrite_agent::state::{AgentConfig, SystemAction};
use ferrite_testkit::wait_until_async;
use serde_json::{json, Value};

#[tokio::test]
async fn sync_command_lifecycle() {
    let agent = Agent::start().await;
    let (code, result) = agent.command("", "standby.sync", json!({})).await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["command_name"], "sync");
    assert_eq!(result["command_status"], "SUCCEEDED");
    assert_eq!(result["command_error"], Value::Null);
    assert!(
        result.get("command_params").is_none(),
        "params are not echoed"
    );
    assert_eq!(agent.hooks.calls(), [SystemAction::Sync]);

    let id = result["id"].as_str().unwrap();
    uuid::Uuid::parse_str(id).expect("ids are UUIDs");
    let (code, one) = agent.get(&format!("/v1/commands/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(one, result);
    let (code, list) = agent.get("/v1/commands").await;
    assert_eq!(code, 200);
    assert_eq!(list["commands"], json!([result]));
}

#[tokio::test]
async fn failing_sync_command_is_stored_as_failed() {
    let agent = Agent::start().await;
    agent.hooks.fail_on(SystemAction::Sync);
    let (code, result) = agent.command("", "standby.sync", json!({})).await;
    assert_eq!(code, 200, "IPA answers 200 with a FAILED result: {result}");
    assert_eq!(result["command_status"], "FAILED");
    let error = &result["command_error"];
    assert_eq!(error["type"], "CommandExecutionError");
    assert_eq!(error["code"], 500);
    assert_eq!(error["message"], "Command execution failed");
    assert_eq!(
        error["details"],
        "flushing file system buffers failed: sync file systems failed: injected failure"
    );
    agent.assert_serving().await;
}

#[tokio::test]
async fn async_command_lifecycle_and_409() {
    let agent = Agent::start().await;
    let (code, started) = agent
        .command("?wait=false", "test.block", json!({"n": 1}))
        .await;
    assert_eq!(code, 202, "{started}");
    assert_eq!(started["command_status"], "RUNNING");
    assert_eq!(started["command_result"], Value::Null);
    let id = started["id"].as_str().unwrap().to_string();

    // One command at a time: sync and async commands are refused while it runs.
    for name in ["standby.sync", "standby.power_off", "test.block"] {
        assert_fault(
            &agent.command("", name, json!({})).await,
            409,
            // IPA names the running command as its result does, without the extension.
            "Agent is busy: executing command block",
        );
    }
    assert!(agent.hooks.calls().is_empty());
    let (code, running) = agent.get(&format!("/v1/commands/{id}")).await;
    assert_eq!((code, &running["command_status"]), (202, &json!("RUNNING")));

    // A waiting reader is woken when the command finishes.
    let waiter = {
        let client = agent.client.clone();
        let url = agent.url(&format!("/v1/commands/{id}?wait=true"));
        tokio::spawn(async move { common::decode(client.get(url).send().await.unwrap()).await })
    };
    agent.release.notify_one();
    let (code, done) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("wait=true returns once the command finishes")
        .unwrap();
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["command_status"], "SUCCEEDED");
    assert_eq!(done["command_result"], json!({"n": 1}));

    // Polling without wait sees the same final state, and new commands are admitted.
    let polled = wait_until_async("the command to finish", Duration::from_secs(10), || async {
        let (_, r) = agent.get(&format!("/v1/commands/{id}")).await;
        (r["command_status"] != "RUNNING").then_some(r)
    })
    .await;
    assert_eq!(polled, done);
    assert_eq!(agent.command("", "standby.sync", json!({})).await.0, 200);
    let (_, list) = agent.get("/v1/commands/").await;
    let names: Vec<&str> = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["block", "sync"]);
}

#[tokio::test]
async fn post_with_wait_true_returns_the_final_result() {
    let agent = Agent::start().await;
    let post = {
        let client = agent.client.clone();
        let url = agent.url("/v1/commands?wait=TRUE");
        tokio::spawn(async move {
            let body = json!({"name": "test.block", "params": {}}).to_string();
            common::decode(client.post(url).body(body).send().await.unwrap()).await
        })
    };
    // Release only once the command is really running.
    wait_until_async("the command to run", Duration::from_secs(10), || async {
        agent.state.commands.running().map(|_| ())
    })
    .await;
    agent.release.notify_one();
    let (code, done) = post.await.unwrap();
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["command_status"], "SUCCEEDED");
}

#[tokio::test]
async fn power_commands_go_through_the_hooks() {
    let agent = Agent::start().await;
    for (name, action) in [
        ("standby.power_off", SystemAction::PowerOff),
        ("standby.run_image", SystemAction::Reboot),
    ] {
        let (code, r) = agent.command("?wait=true", name, json!({})).await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["command_status"], "SUCCEEDED");
        assert_eq!(agent.hooks.calls().last(), Some(&action));
    }
    agent.hooks.fail_on(SystemAction::Reboot);
    let (_, r) = agent
        .command("?wait=true", "standby.run_image", json!({}))
        .await;
    assert_eq!(r["command_status"], "FAILED");
    assert!(r["command_error"]["details"]
        .as_str()
        .unwrap()
        .starts_with("rebooting into the instance failed"));
}

#[tokio::test]
async fn a_panicking_command_fails_and_the_agent_keeps_serving() {
    let agent = Agent::start().await;
    let (code, r) = agent.command("?wait=true", "test.panic", json!({})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command_status"], "FAILED");
    assert!(r["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("ended abnormally"));
    assert_eq!(agent.command("", "standby.sync", json!({})).await.0, 200);
    agent.assert_serving().await;
}

#[tokio::test]
async fn clean_and_deploy_steps_in_ipa_shape() {
    let agent = Agent::start().await;
    let params = json!({"node": {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}, "ports": []});
    let (code, r) = agent
        .command("?wait=true", "clean.get_clean_steps", params.clone())
        .await;
    assert_eq!(code, 200, "{r}");
    let result = &r["command_result"];
    assert_eq!(
        result["hardware_manager_version"],
        json!({"generic_hardware_manager": "1.2"})
    );
    let steps = result["clean_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    let by_name = |n: &str| steps.iter().find(|s| s["step"] == n).unwrap().clone();
    assert_eq!(by_name("erase_devices_metadata")["priority"], 99);
    assert_eq!(by_name("erase_devices")["priority"], 10);
    assert_eq!(by_name("erase_devices")["interface"], "deploy");
    assert_eq!(by_name("erase_devices")["reboot_requested"], false);

    let (_, r) = agent.command("", "deploy.get_deploy_steps", params).await;
    let steps = &r["command_result"]["deploy_steps"]["GenericHardwareManager"];
    assert_eq!(steps[0]["step"], "write_image");
    assert_eq!(steps[0]["priority"], 80);

    // Executing a step nobody implements fails the command, naming the step.
    let (code, r) = agent
        .command(
            "?wait=true",
            "clean.execute_clean_step",
            json!({"step": {"step": "frobnicate", "interface": "deploy", "priority": 1},
                   "node": {}, "ports": [], "clean_version": {"generic_hardware_manager": "1.2"}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(r["command_status"], "FAILED");
    assert!(r["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("no hardware manager implements the clean step \"frobnicate\""));
    let (_, r) = agent
        .command(
            "?wait=true",
            "deploy.execute_deploy_step",
            json!({"step": {"step": "write_image"}, "node": {}, "ports": [],
                   "deploy_version": {"generic_hardware_manager": "0.9"}}),
        )
        .await;
    // IPA's VersionMismatch: its own status, which tells Ironic to restart the operation.
    assert_eq!(r["command_status"], "CLEAN_VERSION_MISMATCH", "{r}");
    assert_eq!(r["command_name"], "execute_deploy_step");
    assert_eq!(r["command_error"]["type"], "VersionMismatch");
    assert_eq!(r["command_error"]["code"], 409);
    assert!(r["command_error"]["details"].as_str().unwrap().starts_with(
        "Current versions: {\"generic_hardware_manager\":\"1.2\"}, versions used by ironic: "
    ));
}

fn fixture_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inventory/debian-vm")
}

#[tokio::test]
async fn hardware_info_is_the_inventory_of_the_configured_root() {
    let config = AgentConfig {
        root: fixture_root(),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let (code, r) = agent.command("", "poll.get_hardware_info", json!({})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let expected =
        serde_json::to_value(ferrite_agent::inventory::collect(&fixture_root()).unwrap()).unwrap();
    assert_eq!(r["command_result"], expected);
    assert!(r["command_result"]["cpu"]["count"].as_u64().unwrap() > 0);

    // A root that does not exist fails the command with a message naming it.
    let missing = Agent::start_with(
        AgentConfig {
            root: "/nonexistent/ferrite-root".into(),
            ..AgentConfig::default()
        },
        None,
        None,
    )
    .await;
    let (code, r) = missing
        .command("", "poll.get_hardware_info", json!({}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(r["command_status"], "FAILED");
    assert!(r["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/ferrite-root"));
}

/// Unpacks a .tar.gz with the system's GNU tar (proves the archive is standard).
fn untar(archive: &[u8]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::read::GzDecoder::new(archive);
    let mut tar_bytes = Vec::new();
    gz.read_to_end(&mut tar_bytes).unwrap();
    let tar_path = dir.path().join("logs.tar");
    std::fs::write(&tar_path, &tar_bytes).unwrap();
    let out_dir = dir.path().join("x");
    std::fs::create_dir(&out_dir).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xvf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&out_dir)
        .output()
        .expect("GNU tar is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (dir, names)
}

#[tokio::test]
async fn system_logs_are_a_base64_gzipped_tar() {
    use base64::Engine;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    std::fs::write(
        root.path().join("proc/cmdline"),
        "ipa-api-url=http://10.0.2.2:6385\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("dev/kmsg"),
        "6,1,1500000,-;Linux version 6.1.0\n SUBSYSTEM=x\n",
    )
    .unwrap();
    let log = root.path().join("agent.log");
    std::fs::write(&log, "agent started\n").unwrap();
    let config = AgentConfig {
        root: root.path().to_path_buf(),
        log_file: Some(log),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    agent.command("", "standby.sync", json!({})).await;
    let (code, r) = agent
        .command("", "log.collect_system_logs", json!({}))
        .await;
    assert_eq!(code, 200, "{r}");
    let b64 = r["command_result"]["system_logs"].as_str().unwrap();
    let archive = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let (dir, names) = untar(&archive);
    let x = dir.path().join("x");
    assert!(names.contains(&"dmesg.txt".to_string()), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(x.join("dmesg.txt")).unwrap(),
        "[    1.500000] Linux version 6.1.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(x.join("proc/cmdline")).unwrap(),
        "ipa-api-url=http://10.0.2.2:6385\n"
    );
    assert_eq!(
        std::fs::read_to_string(x.join("ferrite-agent.log")).unwrap(),
        "agent started\n"
    );
    let status: Value =
        serde_json::from_slice(&std::fs::read(x.join("ferrite-agent-status.json")).unwrap())
            .unwrap();
    assert_eq!(status["commands"][0]["command_name"], "sync");
    // The inventory of the same root is included, or its failure is noted (not fatal).
    match ferrite_agent::inventory::collect(root.path()) {
        Ok(inv) => {
            let got: Value =
                serde_json::from_slice(&std::fs::read(x.join("hardware_inventory.json")).unwrap())
                    .unwrap();
            assert_eq!(got, serde_json::to_value(inv).unwrap());
        }
        Err(_) => {
            let notes = std::fs::read_to_string(x.join("collection-notes.txt")).unwrap();
            assert!(notes.contains("hardware inventory"), "{notes}");
        }
    }
    assert!(
        !names.contains(&"proc/meminfo".to_string()),
        "absent files are skipped"
    );
}

/// Without a configured log file, the log the ramdisk's supervisor keeps is collected.
#[tokio::test]
async fn system_logs_include_the_supervisors_agent_log() {
    use base64::Engine;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("var/log")).unwrap();
    std::fs::write(
        root.path().join("var/log/ferrite-agent.log"),
        "supervised agent\n",
    )
    .unwrap();
    let config = AgentConfig {
        root: root.path().to_path_buf(),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let (code, r) = agent
        .command("", "log.collect_system_logs", json!({}))
        .await;
    assert_eq!(code, 200, "{r}");
    let archive = base64::engine::general_purpose::STANDARD
        .decode(r["command_result"]["system_logs"].as_str().unwrap())
        .unwrap();
    let (dir, names) = untar(&archive);
    assert!(
        names.contains(&"ferrite-agent.log".to_string()),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x/ferrite-agent.log")).unwrap(),
        "supervised agent\n"
    );
}

#[tokio::test]
async fn lockdown_refuses_commands_and_stops_serving() {
    let mut agent = Agent::start().await;
    let (code, r) = agent.command("", "system.lockdown", json!({})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command_status"], "SUCCEEDED");
    assert!(agent.state.is_locked_down());
    // Commands that race the shutdown are refused.
    let refused = ferrite_agent::commands::execute(
        agent.state.clone(),
        "standby.sync".into(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status_code(), 503);
    // The server stops by itself (no shutdown signal) and the port is closed.
    agent.join().await.expect("serve returns Ok after lockdown");
    assert!(tokio::net::TcpStream::connect(agent.addr).await.is_err());
    assert!(
        agent.hooks.calls().is_empty(),
        "lockdown itself powers nothing off"
    );
}

#[tokio::test]
async fn shutdown_future_stops_the_server() {
    let mut agent = Agent::start().await;
    agent.assert_serving().await;
    drop(agent.shutdown_sender());
    agent.join().await.unwrap();
    assert!(tokio::net::TcpStream::connect(agent.addr).await.is_err());
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, reqwest::Client) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (Arc::new(server), client)
}

#[tokio::test]
async fn tls_round_trip_with_a_self_signed_certificate() {
    let (server, client) = tls_pair();
    let agent = Agent::start_with(AgentConfig::default(), Some(server), Some(client)).await;
    agent.assert_serving().await;
    let (_, root) = agent.get("/").await;
    assert!(root["versions"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let (code, r) = agent.command("?wait=true", "standby.sync", json!({})).await;
    assert_eq!((code, &r["command_status"]), (200, &json!("SUCCEEDED")));

    // A plain-HTTP client and a client that does not trust the cert both fail…
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain
        .get(format!("http://{}/v1/status", agent.addr))
        .send()
        .await
        .is_err());
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(untrusting
        .get(agent.url("/v1/status"))
        .send()
        .await
        .is_err());
    // …and the server keeps serving TLS clients.
    agent.assert_serving().await;
    assert_fault(&agent.get("/nope").await, 404, "no such resource");
}

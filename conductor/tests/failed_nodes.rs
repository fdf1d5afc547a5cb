//! A node whose deploy or cleaning fails is powered off and its agent loses its token
//! (issue 15 finding 5), with `fake-hardware` and the real ferrite-agent library
//! in-process on loopback; `power_off_after_deploy_failure = false` keeps it on. Also the
//! cleaning defaults (finding 9): automated cleaning erases the disks in full, as Ironic
//! does, unless the conductor's erase_devices_priority is 0; metadata always.

mod common;

use std::time::Duration;

use common::agent::AgentBoot;
use common::{Api, Backend, Server};
use ferrite_agent::heartbeat::ConductorClient;
use ferrite_proto::lookup::Heartbeat;
use ferrite_testkit::http::{ImageServer, Mode};
use serde_json::{json, Value};

struct Lab {
    server: Server,
    api: Api,
    client: ConductorClient,
    root: std::path::PathBuf,
    disk: std::path::PathBuf,
    macs: Vec<String>,
    images: ImageServer,
}

impl Lab {
    async fn start(tweak: impl FnOnce(&mut ferrite_conductor::server::ConductorConfig)) -> Lab {
        let server = Server::start(Backend::Sqlite, tweak).await;
        let api = Api::new(&server.url);
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/inventory/qemu-q35");
        let inventory = ferrite_agent::inventory::collect(&root).expect("fixture inventory");
        let macs = vec![inventory.interfaces[0].mac_address.clone().unwrap()];
        let disk = server.dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let client = ConductorClient::new(server.url.parse().unwrap(), false, None).unwrap();
        let (s, n) = api
            .call(
                "POST",
                "/v1/nodes",
                Some(json!({"driver": "fake-hardware", "name": "n", "deploy_interface": "direct"})),
            )
            .await;
        assert_eq!(s, 201, "{n}");
        let port = json!({"address": macs[0], "node_uuid": "n"});
        assert_eq!(api.call("POST", "/v1/ports", Some(port)).await.0, 201);
        assert_eq!(api.provision("n", json!({"target": "manage"})).await.0, 202);
        api.wait_state("n", "manageable").await;
        Lab {
            server,
            api,
            client,
            root,
            disk,
            macs,
            images: ImageServer::start_on_current(),
        }
    }

    /// Plays the agent of one boot (lookup for a token, heartbeats) until the node leaves
    /// the waiting states; returns the node and the token that boot held.
    async fn agent_until_settled(&self) -> (Value, String) {
        let (n, token, _) = self.agent_steps_until_settled().await;
        (n, token)
    }

    /// [`Lab::agent_until_settled`], also returning the steps the agent ran, in order.
    async fn agent_steps_until_settled(&self) -> (Value, String, Vec<String>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut boot: Option<AgentBoot> = None;
        loop {
            let n = self.api.node("n").await;
            let state = n["provision_state"].as_str().unwrap_or("").to_string();
            let busy = !n["reservation"].is_null();
            if !busy
                && !["clean wait", "wait call-back", "cleaning", "deploying"]
                    .contains(&state.as_str())
            {
                let b = boot.as_ref().expect("an agent boot");
                let token = b.state.agent_token().unwrap().to_string();
                let steps = b
                    .state
                    .commands
                    .list()
                    .iter()
                    .filter_map(|c| c.command_params.get("step"))
                    .filter_map(|s| s["step"].as_str().map(String::from))
                    .collect();
                return (n, token, steps);
            }
            assert!(std::time::Instant::now() < deadline, "stuck in {state}");
            if ["clean wait", "wait call-back"].contains(&state.as_str()) {
                if boot.is_none() {
                    if let Ok(r) = self.client.lookup(&self.macs, None).await {
                        let b = AgentBoot::start(&self.root, &self.disk).await;
                        b.state
                            .set_agent_token(r.config.agent_token.as_deref().unwrap())
                            .unwrap();
                        boot = Some(b);
                    }
                }
                if let Some(b) = &boot {
                    let _ = self.client.heartbeat("n", &b.heartbeat()).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Points the node at an image whose checksum cannot match and deploys it.
    async fn deploy_bad_checksum(&self) {
        let url = self
            .images
            .put("disk.raw", vec![0x42; 1 << 20], Mode::NoRange);
        let patch = json!([{"op": "add", "path": "/instance_info", "value": {
            "image_source": url, "image_os_hash_algo": "sha256",
            "image_os_hash_value": "0".repeat(64), "image_disk_format": "raw"}}]);
        assert_eq!(
            self.api.call("PATCH", "/v1/nodes/n", Some(patch)).await.0,
            200
        );
        let (s, v) = self.api.provision("n", json!({"target": "active"})).await;
        assert_eq!(s, 202, "{v}");
    }
}

/// The failed node forgot its agent: no token, no URL, and the old token is refused.
async fn assert_agent_forgotten(lab: &Lab, node: &Value, token: &str) {
    let dii = &node["driver_internal_info"];
    assert!(dii.get("agent_secret_token").is_none(), "token kept: {dii}");
    assert!(dii.get("agent_url").is_none(), "agent URL kept: {dii}");
    let hb = Heartbeat {
        callback_url: "http://127.0.0.1:1".into(),
        agent_token: token.into(),
        agent_version: "in-process".into(),
        agent_verify_ca: None,
        agent_status: None,
        agent_status_message: None,
    };
    let refused = lab.client.heartbeat("n", &hb).await;
    assert!(
        refused.is_err(),
        "the failed boot's token is still accepted"
    );
    let n = lab.api.node("n").await;
    assert!(n["driver_internal_info"].get("agent_url").is_none(), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_powers_the_node_off_and_revokes_the_agent_token() {
    let lab = Lab::start(|_| {}).await;
    assert_eq!(
        lab.api.provision("n", json!({"target": "provide"})).await.0,
        202
    );
    let (n, _) = lab.agent_until_settled().await;
    assert_eq!(n["provision_state"], "available", "{}", n["last_error"]);

    lab.deploy_bad_checksum().await;
    let (n, token) = lab.agent_until_settled().await;
    assert_eq!(n["provision_state"], "deploy failed", "{n}");
    assert!(
        n["last_error"].as_str().unwrap().contains("checksum"),
        "{n}"
    );
    assert_eq!(n["power_state"], "power off", "{n}");
    assert_agent_forgotten(&lab, &n, &token).await;
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cleaning_powers_the_node_off_and_revokes_the_agent_token() {
    let lab = Lab::start(|_| {}).await;
    let steps = json!([{"interface": "deploy", "step": "no_such_step"}]);
    let (s, v) = lab
        .api
        .provision("n", json!({"target": "clean", "clean_steps": steps}))
        .await;
    assert_eq!(s, 202, "{v}");
    let (n, token) = lab.agent_until_settled().await;
    assert_eq!(n["provision_state"], "clean failed", "{n}");
    assert!(
        n["last_error"].as_str().unwrap().contains("no_such_step"),
        "{n}"
    );
    assert_eq!(n["power_state"], "power off", "{n}");
    assert_agent_forgotten(&lab, &n, &token).await;
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_off_after_deploy_failure_can_be_switched_off() {
    let lab = Lab::start(|c| {
        c.power_off_after_deploy_failure = Some(false);
        c.periodic_interval = Some(0.2);
    })
    .await;
    assert_eq!(
        lab.api.provision("n", json!({"target": "provide"})).await.0,
        202
    );
    let (n, _) = lab.agent_until_settled().await;
    assert_eq!(n["provision_state"], "available", "{}", n["last_error"]);
    lab.deploy_bad_checksum().await;
    let (n, token) = lab.agent_until_settled().await;
    assert_eq!(n["provision_state"], "deploy failed", "{n}");
    assert_eq!(n["power_state"], "power on", "{n}");
    assert_agent_forgotten(&lab, &n, &token).await;
    lab.server.stop().await;
}

/// Issue 15 finding 9: Ironic's default cleaning erases every disk in full
/// (erase_devices at the agent's priority 10) after the metadata (99).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_cleaning_erases_the_disks_by_default() {
    let lab = Lab::start(|_| {}).await;
    assert_eq!(
        lab.api.provision("n", json!({"target": "provide"})).await.0,
        202
    );
    let (n, _, steps) = lab.agent_steps_until_settled().await;
    assert_eq!(n["provision_state"], "available", "{}", n["last_error"]);
    assert_eq!(steps, ["erase_devices_metadata", "erase_devices"]);
    lab.server.stop().await;
}

/// `--erase-devices-priority 0` turns the full erase off; the metadata is still erased,
/// and a node's driver_info.erase_devices_priority still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_erase_can_be_turned_off_but_not_the_metadata_erase() {
    let lab = Lab::start(|c| c.erase_devices_priority = Some(0)).await;
    assert_eq!(
        lab.api.provision("n", json!({"target": "provide"})).await.0,
        202
    );
    let (n, _, steps) = lab.agent_steps_until_settled().await;
    assert_eq!(n["provision_state"], "available", "{}", n["last_error"]);
    assert_eq!(steps, ["erase_devices_metadata"]);

    let patch = json!([{"op": "add", "path": "/driver_info/erase_devices_priority", "value": 20}]);
    assert_eq!(
        lab.api.call("PATCH", "/v1/nodes/n", Some(patch)).await.0,
        200
    );
    assert_eq!(
        lab.api.provision("n", json!({"target": "manage"})).await.0,
        202
    );
    lab.api.wait_state("n", "manageable").await;
    assert_eq!(
        lab.api.provision("n", json!({"target": "provide"})).await.0,
        202
    );
    let (n, _, steps) = lab.agent_steps_until_settled().await;
    assert_eq!(n["provision_state"], "available", "{}", n["last_error"]);
    assert_eq!(steps, ["erase_devices_metadata", "erase_devices"]);
    lab.server.stop().await;
}

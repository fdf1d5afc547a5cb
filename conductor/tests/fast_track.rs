//! Fast track (Ironic's `[deploy]fast_track`, issue 18): the agent booted for cleaning keeps
//! running while the node is `available`, and the deploy goes through it without booting it
//! again. Counted here with the real agent library in-process (a boot = a lookup that got a
//! new token) and the node's step timeline (every power action the conductor took). An
//! agent that went quiet for longer than `--fast-track-timeout`, and a node whose
//! driver_info turns fast track off, take the ordinary path. A kexec the agent cannot do
//! falls back to a power cycle, saying why.

mod common;

use std::time::{Duration, Instant};

use common::agent::AgentBoot;
use common::{Api, Backend, Server};
use ferrite_agent::heartbeat::ConductorClient;
use ferrite_testkit::http::{ImageServer, Mode};
use serde_json::{json, Value};
use sha2::Digest;

fn image() -> Vec<u8> {
    let mut img = vec![0u8; 2 << 20];
    for (i, b) in img.iter_mut().enumerate().skip(1 << 20) {
        *b = (i % 251) as u8;
    }
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

/// A machine running the agent as a ramdisk would: it looks the node up when the
/// conductor waits for an agent (a real token is a new boot) and, once booted, heartbeats
/// every 100 ms whatever the node's state, until the conductor forgets it (403) or the
/// test pauses it.
struct Machine {
    boots: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    paused: tokio::sync::watch::Sender<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Machine {
    fn start(server: &Server, node: &str, mac: &str, disk: std::path::PathBuf) -> Machine {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/inventory/qemu-q35");
        let boots = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (paused, paused_rx) = tokio::sync::watch::channel(false);
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let (base, node, mac, counter) = (
            server.url.clone(),
            node.to_string(),
            mac.to_string(),
            boots.clone(),
        );
        let task = tokio::spawn(async move {
            let client = ConductorClient::new(base.parse().unwrap(), false, None).unwrap();
            let api = Api::new(&base);
            let mut boot: Option<AgentBoot> = None;
            while !*stop_rx.borrow() {
                let n = api.node(&node).await;
                let state = n["provision_state"].as_str().unwrap_or("");
                if boot.is_none() && ["clean wait", "wait call-back"].contains(&state) {
                    if let Ok(r) = client.lookup(std::slice::from_ref(&mac), None).await {
                        let token = r.config.agent_token.unwrap_or_default();
                        if token != ferrite_proto::MASKED_SECRET {
                            let b = AgentBoot::start(&root, &disk).await;
                            b.state.set_agent_token(&token).unwrap();
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            boot = Some(b);
                        }
                    }
                }
                if let Some(b) = &boot {
                    if !*paused_rx.borrow() {
                        let uuid = n["uuid"].as_str().unwrap_or_default();
                        if client.heartbeat(uuid, &b.heartbeat()).await.is_err() {
                            // The conductor forgot this agent (the node left the ramdisk).
                            boot = None;
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop_rx.changed() => {}
                }
            }
        });
        Machine {
            boots,
            paused,
            stop,
            task,
        }
    }

    fn boots(&self) -> usize {
        self.boots.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// The power actions on the node's timeline, in order.
async fn power_actions(api: &Api, node: &str) -> Vec<String> {
    let (s, tl) = api.get(&format!("/v1/nodes/{node}/timeline")).await;
    assert_eq!(s, 200, "{tl}");
    tl["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "power")
        .map(|e| e["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Enrolls `name` (fake-hardware, direct deploy) with `driver_info`, cleans it with the
/// machine's agent and deploys an image; the machine, the power actions of cleaning and
/// those of the deploy.
async fn clean_then_deploy(
    server: &Server,
    api: &Api,
    name: &str,
    driver_info: Value,
    before_deploy: impl AsyncFnOnce(&Machine),
) -> (Machine, Vec<String>, Vec<String>) {
    let mac = format!(
        "52:54:00:fa:57:{:02x}",
        name.bytes().map(u32::from).sum::<u32>() % 256
    );
    let disk = server.dir.path().join(format!("{name}.img"));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let body = json!({"driver": "fake-hardware", "name": name, "deploy_interface": "direct",
                      "driver_info": driver_info});
    let (s, n) = api.call("POST", "/v1/nodes", Some(body)).await;
    assert_eq!(s, 201, "{n}");
    let port = json!({"address": mac, "node_uuid": name});
    assert_eq!(api.call("POST", "/v1/ports", Some(port)).await.0, 201);
    assert_eq!(
        api.provision(name, json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state(name, "manageable").await;
    let machine = Machine::start(server, name, &mac, disk);
    assert_eq!(
        api.provision(name, json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state(name, "available").await;
    let cleaning = power_actions(api, name).await;

    let img = image();
    let images = ImageServer::start_on_current();
    let url = images.put("disk.raw", img.clone(), Mode::NoRange);
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let patch = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha}}]);
    assert_eq!(
        api.call("PATCH", &format!("/v1/nodes/{name}"), Some(patch))
            .await
            .0,
        200
    );
    before_deploy(&machine).await;
    assert_eq!(
        api.provision(name, json!({"target": "active"})).await.0,
        202
    );
    let n = api.wait_state(name, "active").await;
    assert!(n["last_error"].is_null(), "{n}");
    let all = power_actions(api, name).await;
    let deploy = all[cleaning.len()..].to_vec();
    (machine, cleaning, deploy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_track_deploys_through_the_agent_that_cleaned() {
    let server = Server::start(Backend::Sqlite, |c| {
        c.fast_track = Some(true);
        c.fast_track_timeout = Some(2.0);
    })
    .await;
    let api = Api::new(&server.url);

    // Fast track: one agent boot for cleaning and deploy; cleaning leaves it powered on.
    let t = Instant::now();
    let (m, cleaning, deploy) =
        clean_then_deploy(&server, &api, "fast", json!({}), async |_| {}).await;
    let fast_s = t.elapsed().as_secs_f64();
    assert_eq!(m.boots(), 1, "one agent boot for cleaning and deploy");
    assert_eq!(cleaning, ["power on"], "cleaning leaves the agent running");
    assert_eq!(
        deploy,
        ["power off", "power on"],
        "the deploy only reboots into the instance"
    );
    let n = api.node("fast").await;
    assert_eq!(n["power_state"], "power on", "{n}");
    // The timeline shows the deploy never waited for an agent boot.
    let (_, tl) = api.get("/v1/nodes/fast/timeline").await;
    let steps: Vec<&str> = tl["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "step")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(steps.ends_with(&[
        "deploy.deploy",
        "deploy.write_image",
        "deploy.prepare_instance_boot",
        "deploy.tear_down_agent",
        "deploy.boot_instance"
    ]));
    drop(m);

    // driver_info.fast_track=false overrides the conductor: the ordinary path, the agent
    // booted again for the deploy.
    let t = Instant::now();
    let (m, cleaning, deploy) = clean_then_deploy(
        &server,
        &api,
        "plain",
        json!({"fast_track": "false"}),
        async |_| {},
    )
    .await;
    let plain_s = t.elapsed().as_secs_f64();
    assert_eq!(m.boots(), 2, "an agent boot each for cleaning and deploy");
    assert_eq!(cleaning, ["power on", "power off"]);
    assert_eq!(deploy, ["power on", "power off", "power on"]);
    drop(m);

    // An agent silent for longer than --fast-track-timeout (2 s) is not trusted: the
    // deploy boots a new one.
    let (m, cleaning, deploy) =
        clean_then_deploy(&server, &api, "quiet", json!({}), async |m: &Machine| {
            m.paused.send(true).unwrap();
            let api = Api::new(&server.url);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let n = api.node("quiet").await;
                let last = n["driver_internal_info"]["agent_last_heartbeat"]
                    .as_str()
                    .and_then(ferrite_conductor::model::age_secs);
                if last.is_some_and(|age| age > 2.5) {
                    break;
                }
                assert!(Instant::now() < deadline, "heartbeat age: {last:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            m.paused.send(false).unwrap();
        })
        .await;
    assert_eq!(cleaning, ["power on"]);
    assert_eq!(
        deploy,
        ["power off", "power on", "power off", "power on"],
        "the quiet agent's node is power cycled into a new agent (off, then the old \
         agent's token is dropped again, then on)"
    );
    assert_eq!(m.boots(), 2);
    drop(m);

    // driver_info.ferrite_kexec: the conductor asks the agent to kexec into the written
    // OS. This agent's disk is a file without partitions the kernel knows of, so the agent
    // refuses, and the node is power cycled as usual, the reason kept on the node.
    let (m, _, deploy) = clean_then_deploy(
        &server,
        &api,
        "kexec",
        json!({"ferrite_kexec": true}),
        async |_| {},
    )
    .await;
    assert_eq!(m.boots(), 1);
    assert_eq!(deploy, ["power off", "power on"], "the fallback reboot");
    let n = api.node("kexec").await;
    let k = &n["driver_internal_info"]["ferrite_kexec"];
    assert_eq!(k["booted"], false, "{n}");
    assert!(
        k["detail"].as_str().unwrap_or("").contains("no partitions"),
        "{k}"
    );
    eprintln!("fast track {fast_s:.1} s, plain {plain_s:.1} s (in-process, nothing boots)");
}

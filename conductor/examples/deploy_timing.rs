//! Deploy timing for `cargo xtask bench iscsi`: an in-process conductor (SQLite,
//! fake-hardware) and the real agent library on loopback with a sparse file as its disk
//! deploy the same raw image with `deploy_interface=direct` (the agent streams it) and
//! `deploy_interface=iscsi` (the conductor writes it through the agent's iSCSI target),
//! alternating, ROUNDS times each. Prints one JSON object with the seconds per deploy.
//!
//! Usage: deploy_timing WORK_DIR IMAGE_MIB ROUNDS

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrite_agent::heartbeat::ConductorClient;
use ferrite_agent::state::{AgentConfig, AgentState};
use ferrite_agent::system::RecordingHooks;
use ferrite_conductor::server::ConductorConfig;
use ferrite_proto::lookup::Heartbeat;
use serde_json::{json, Value};
use sha2::Digest;

const H: &str = "X-OpenStack-Ironic-API-Version";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut rb = self
            .http
            .request(m, format!("{}{path}", self.base))
            .header(H, "1.68");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await?;
        let s = r.status().as_u16();
        let t = r.text().await.unwrap_or_default();
        Ok((s, serde_json::from_str(&t).unwrap_or(Value::Null)))
    }

    async fn expect(
        &self,
        method: &str,
        path: &str,
        body: Value,
        code: u16,
    ) -> anyhow::Result<Value> {
        // As python-ironicclient: a node still locked by the conductor's own work (a state
        // is reached before the task releases its lock) answers 409 "please retry".
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, v) = self.call(method, path, Some(body.clone())).await?;
            let locked = s == 409 && v.to_string().contains("is locked by");
            if locked && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if s != code {
                bail!("{method} {path}: HTTP {s} {v}");
            }
            return Ok(v);
        }
    }

    /// Polls the node until `state` (fails on a failed state or after 10 minutes).
    async fn wait_state(&self, node: &str, state: &str) -> anyhow::Result<Value> {
        let end = Instant::now() + Duration::from_secs(600);
        loop {
            let (_, n) = self.call("GET", &format!("/v1/nodes/{node}"), None).await?;
            let s = n["provision_state"].as_str().unwrap_or("");
            if s == state {
                return Ok(n);
            }
            if s.ends_with("failed") || Instant::now() > end {
                bail!("node {node} is {s:?}, not {state:?}: {}", n["last_error"]);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One agent boot: fresh state (token) and API server.
struct AgentBoot {
    url: String,
    state: Arc<AgentState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn boot_agent(root: &Path, disk: &Path) -> anyhow::Result<AgentBoot> {
    let state = Arc::new(AgentState::new(
        AgentConfig {
            root: root.to_path_buf(),
            target_disk: Some(disk.to_path_buf()),
            ..AgentConfig::default()
        },
        Arc::new(RecordingHooks::new()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ferrite_agent::api::serve(
        listener,
        None,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Ok(AgentBoot {
        url,
        state,
        _stop: tx,
    })
}

/// The agent side while the node waits: lookup (a new token is a new boot), heartbeats.
async fn agent_loop(base: String, node: String, mac: String, root: PathBuf, disk: PathBuf) {
    let Ok(client) = ConductorClient::new(base.parse().expect("url"), false, None) else {
        return;
    };
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    let mut boot: Option<AgentBoot> = None;
    loop {
        let Ok((_, n)) = api.call("GET", &format!("/v1/nodes/{node}"), None).await else {
            return;
        };
        let state = n["provision_state"].as_str().unwrap_or("");
        if ["clean wait", "wait call-back"].contains(&state) {
            if let Ok(r) = client.lookup(std::slice::from_ref(&mac), None).await {
                let token = r.config.agent_token.unwrap_or_default();
                if token != ferrite_proto::MASKED_SECRET {
                    if let Ok(b) = boot_agent(&root, &disk).await {
                        let _ = b.state.set_agent_token(&token);
                        boot = Some(b);
                    }
                }
            }
            if let Some(b) = &boot {
                let hb = Heartbeat {
                    callback_url: b.url.clone(),
                    agent_token: b.state.agent_token().unwrap_or_default().to_string(),
                    agent_version: "in-process".into(),
                    agent_verify_ca: None,
                    agent_status: None,
                    agent_status_message: None,
                };
                let _ = client.heartbeat(&node, &hb).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw whole-disk image: MBR with one partition, incompressible-ish data with a zero
/// run in every 8 MiB (as file systems leave), `mib` MiB.
fn image(mib: usize) -> Vec<u8> {
    let mut img = vec![0u8; mib << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, chunk) in img.chunks_mut(8).enumerate().skip(1 << 17) {
        if ((i * 8) >> 20) % 8 == 7 {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let e = 0x1BE;
    img[e + 4] = 0x83;
    img[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&(((mib as u32) << 11) - 2048).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

/// Enrolls a node for `mode`, cleans it to `available`; returns (name, disk path).
async fn enroll(
    api: &Api,
    dir: &Path,
    root: &Path,
    mode: &str,
    disk_mib: u64,
) -> anyhow::Result<(String, PathBuf)> {
    let name = format!("bench-{mode}");
    let mac = if mode == "iscsi" {
        "52:54:00:00:be:01"
    } else {
        "52:54:00:00:be:02"
    };
    let disk = dir.join(format!("{mode}-disk.img"));
    std::fs::File::create(&disk)?.set_len(disk_mib << 20)?;
    api.expect(
        "POST",
        "/v1/nodes",
        json!({"driver": "fake-hardware", "name": name,
        "deploy_interface": mode, "driver_info": {"ferrite_iscsi_port": 0}}),
        201,
    )
    .await?;
    api.expect(
        "POST",
        "/v1/ports",
        json!({"address": mac, "node_uuid": name}),
        201,
    )
    .await?;
    tokio::spawn(agent_loop(
        api.base.clone(),
        name.clone(),
        mac.into(),
        root.to_path_buf(),
        disk.clone(),
    ));
    api.expect(
        "PUT",
        &format!("/v1/nodes/{name}/states/provision"),
        json!({"target": "manage"}),
        202,
    )
    .await?;
    api.wait_state(&name, "manageable").await?;
    api.expect(
        "PUT",
        &format!("/v1/nodes/{name}/states/provision"),
        json!({"target": "provide"}),
        202,
    )
    .await?;
    api.wait_state(&name, "available").await?;
    Ok((name, disk))
}

/// One deploy to `active` and back to `available`; returns the deploy's seconds.
async fn deploy(
    api: &Api,
    name: &str,
    disk: &Path,
    img: &[u8],
    info: &Value,
) -> anyhow::Result<f64> {
    // Undeploy clears instance_info.
    let patch = json!([{"op": "add", "path": "/instance_info", "value": info}]);
    api.expect("PATCH", &format!("/v1/nodes/{name}"), patch, 200)
        .await?;
    let path = format!("/v1/nodes/{name}/states/provision");
    let t0 = Instant::now();
    api.expect("PUT", &path, json!({"target": "active"}), 202)
        .await?;
    let node = api.wait_state(name, "active").await?;
    let secs = t0.elapsed().as_secs_f64();
    if let Some(w) = node["driver_internal_info"].get("ferrite_iscsi_write") {
        eprintln!("deploy_timing: {name}: {w}");
    }
    let f = std::fs::File::open(disk)?;
    let mut got = vec![0u8; img.len()];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 0)?;
    if got != img {
        bail!("{name}: the disk does not hold the image after the deploy");
    }
    api.expect("PUT", &path, json!({"target": "deleted"}), 202)
        .await?;
    api.wait_state(name, "available").await?;
    Ok(secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        bail!("usage: deploy_timing WORK_DIR IMAGE_MIB ROUNDS");
    }
    let dir = PathBuf::from(&args[1]);
    let mib: usize = args[2].parse().context("IMAGE_MIB")?;
    let rounds: usize = args[3].parse().context("ROUNDS")?;
    std::fs::create_dir_all(&dir)?;
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inventory/qemu-q35");
    let state = tempfile::tempdir_in(&dir)?;
    let cfg = ConductorConfig {
        state_dir: Some(state.path().to_path_buf()),
        host: Some("bench-conductor".into()),
        periodic_interval: Some(0.2),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferrite_conductor::server::run(listener, cfg, async move {
        let _ = stopped.await;
    }));
    let api = Api {
        http: reqwest::Client::new(),
        base,
    };
    let img = image(mib);
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let images = ferrite_testkit::http::ImageServer::start_on_current();
    let url = images.put(
        "disk.raw",
        img.clone(),
        ferrite_testkit::http::Mode::NoRange,
    );
    let disk_mib = (mib as u64) * 2 + 128;
    let info =
        json!({"image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha});
    let mut nodes = vec![];
    for mode in ["direct", "iscsi"] {
        let (name, disk) = enroll(&api, &dir, &root, mode, disk_mib).await?;
        nodes.push((mode, name, disk));
    }
    let mut direct = vec![];
    let mut iscsi = vec![];
    for round in 0..rounds {
        for i in [round % 2, 1 - round % 2] {
            let (mode, name, disk) = &nodes[i];
            let s = deploy(&api, name, disk, &img, &info).await?;
            eprintln!("deploy_timing: round {} {mode} {s:.2} s", round + 1);
            if *mode == "iscsi" {
                iscsi.push(s)
            } else {
                direct.push(s)
            }
        }
    }
    for (_, _, disk) in &nodes {
        let _ = std::fs::remove_file(disk);
    }
    let _ = stop.send(());
    let _ = server.await;
    println!(
        "{}",
        json!({"image_mib": mib, "direct": direct, "iscsi": iscsi})
    );
    Ok(())
}

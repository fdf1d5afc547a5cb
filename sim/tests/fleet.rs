//! A real conductor (in-process, SQLite) drives 50 simulated servers through their IPMI
//! BMCs and agents: enroll → manage → inspect → provide (automated cleaning) → deploy,
//! all `active` and each written once; one agent dies mid-write (failure injection) and its
//! node ends `deploy failed` with a last_error instead of waiting for ever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrite_conductor::server::ConductorConfig;
use ferrite_sim::{Running, Sim, SimConfig};
use serde_json::{json, Value};

const NODES: usize = 50;
const DIES: usize = 7;
const VERSION: &str = "1.68";

struct Conductor {
    url: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Conductor {
    async fn start() -> Conductor {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConductorConfig {
            state_dir: Some(dir.path().to_path_buf()),
            host: Some("sim-test".into()),
            periodic_interval: Some(0.2),
            // A node whose agent went quiet fails after this long.
            callback_timeout: Some(4.0),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ferrite_conductor::server::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        let probe = reqwest::Client::new();
        ferrite_testkit::wait_until_async("the API answers", Duration::from_secs(30), || async {
            probe.get(format!("{url}/v1")).send().await.is_ok()
        })
        .await;
        Conductor {
            url,
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = http
        .request(m, url)
        .header("X-OpenStack-Ironic-API-Version", VERSION);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every node's (provision_state, last_error, reservation) by name.
async fn states(http: &reqwest::Client, base: &str) -> HashMap<String, (String, Value, Value)> {
    let (s, v) = call(
        http,
        "GET",
        format!("{base}/v1/nodes?detail=true&limit=1000"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                (
                    n["provision_state"].as_str().unwrap_or("").to_string(),
                    n["last_error"].clone(),
                    n["reservation"].clone(),
                ),
            )
        })
        .collect()
}

/// Sends `target` to every node in `names` at once, then waits until each is settled in
/// `want` (or, for the names in `fail_ok`, in a failed state); panics on any other failure.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    names: &[String],
    target: &str,
    want: &str,
    fail_ok: &[String],
    limit: Duration,
) -> HashMap<String, (String, Value, Value)> {
    let calls = names.iter().map(|n| {
        call(
            http,
            "PUT",
            format!("{base}/v1/nodes/{n}/states/provision"),
            Some(json!({"target": target})),
        )
    });
    for (s, v) in futures_util::future::join_all(calls).await {
        assert_eq!(s, 202, "{target}: {v}");
    }
    let deadline = Instant::now() + limit;
    loop {
        let all = states(http, base).await;
        let mut settled = 0;
        for n in names {
            let (state, err, reservation) = &all[n];
            let failed = state.ends_with(" failed");
            assert!(
                !failed || fail_ok.contains(n) || !reservation.is_null(),
                "{n} ended {state} on the way to {want}: {err}"
            );
            if reservation.is_null() && (state == want || (failed && fail_ok.contains(n))) {
                settled += 1;
            }
        }
        if settled == names.len() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{target}: {settled} of {} nodes settled after {limit:?}: {:?}",
            names.len(),
            names
                .iter()
                .map(|n| (n, &all[n].0))
                .filter(|(_, s)| *s != want)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_conductor_deploys_fifty_simulated_servers() {
    let started = Instant::now();
    let conductor = Conductor::start().await;
    let sim = Sim::start(SimConfig {
        nodes: NODES,
        conductor_url: conductor.url.clone(),
        boot_time: Duration::from_millis(300),
        image_size: 50 << 20,
        write_rate: 100 << 20,
        heartbeat_interval: Some(Duration::from_millis(500)),
        early_heartbeat_gap: Duration::ZERO,
        erase_time: Duration::from_millis(100),
        lookup_interval: Duration::from_millis(200),
        seed: 19,
        agent_death_nodes: vec![DIES],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let uuids = sim.enroll(16).await.unwrap();
    assert_eq!(uuids.len(), NODES);
    let http = reqwest::Client::new();
    let base = conductor.url.clone();
    let names: Vec<String> = sim.nodes().into_iter().map(|s| s.name).collect();
    let (s, ports) = call(&http, "GET", format!("{base}/v1/ports?limit=1000"), None).await;
    assert_eq!(s, 200);
    assert_eq!(ports["ports"].as_array().unwrap().len(), 2 * NODES);
    let limit = Duration::from_secs(40);

    drive(&http, &base, &names, "manage", "manageable", &[], limit).await;
    drive(&http, &base, &names, "inspect", "manageable", &[], limit).await;
    assert_eq!(sim.stats().inspections, NODES as u64);
    let (_, n) = call(&http, "GET", format!("{base}/v1/nodes/{}", names[3]), None).await;
    assert_eq!(n["properties"]["cpus"], 8, "{n}");
    assert_eq!(n["properties"]["memory_mb"], 32768, "{n}");
    assert_eq!(n["power_state"], "power off", "inspection ends powered off");

    drive(&http, &base, &names, "provide", "available", &[], limit).await;
    let cleaned = sim.stats();
    assert_eq!(cleaned.writes, 0, "cleaning writes no image");
    assert!(cleaned.commands >= 3 * NODES as u64, "{cleaned:?}");

    let patches = names.iter().map(|n| {
        let ii = json!([{"op": "add", "path": "/instance_info", "value": {
            "image_source": format!("http://images.invalid/{n}.raw"),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": "0".repeat(64),
            "image_disk_format": "raw"}}]);
        call(&http, "PATCH", format!("{base}/v1/nodes/{n}"), Some(ii))
    });
    for (s, v) in futures_util::future::join_all(patches).await {
        assert_eq!(s, 200, "{v}");
    }
    let dying = names[DIES].clone();
    let all = drive(
        &http,
        &base,
        &names,
        "active",
        "active",
        std::slice::from_ref(&dying),
        limit,
    )
    .await;

    let (state, err, _) = &all[&dying];
    assert_eq!(state, "deploy failed");
    let err = err.as_str().unwrap_or_default();
    assert!(
        err.contains("heartbeat") || err.contains("Timeout"),
        "{err}"
    );
    for n in names.iter().filter(|n| **n != dying) {
        assert_eq!(all[n].0, "active", "{n}");
    }
    let s = sim.stats();
    assert_eq!(s.writes, NODES as u64 - 1, "{s:?}");
    assert_eq!(s.max_writes_per_node, 1, "no node was written twice: {s:?}");
    assert_eq!(s.agent_deaths, 1, "{s:?}");
    for m in sim.fleet.machines.iter().filter(|m| m.index != DIES) {
        assert!(
            matches!(m.state().running, Running::Os),
            "node {} runs {}",
            m.index,
            m.state().running.name()
        );
    }
    assert_eq!(s.heartbeat_errors, 0, "{s:?}");
    eprintln!(
        "fleet of {NODES}: {:.1} s, {s:?}",
        started.elapsed().as_secs_f64()
    );
}

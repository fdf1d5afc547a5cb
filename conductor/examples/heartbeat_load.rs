//! Load generator for `cargo xtask bench conductor`: enrolls N nodes through the API,
//! brings them to `inspect wait` with fake power, looks each up for its agent token, then
//! runs simulated agents (tokio tasks over real HTTP on loopback) that heartbeat as fast as
//! the conductor answers. Prints one JSON object with the figures.
//!
//! `--mode ironic` prepares OpenStack Ironic (standalone, fake-hardware, fast track) the
//! same way for the baseline: nodes with the `direct` deploy interface are made
//! `manageable` and powered on (fake power), then looked up for a token; Ironic records
//! such a node's heartbeats (`agent_url`, `agent_last_heartbeat`) like Ferrite does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use serde_json::{json, Value};

const H: &str = "X-OpenStack-Ironic-API-Version";
/// Spoken to both servers: the newest version both understand for these calls.
const VERSION: &str = "1.72";

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut rb = http.request(method, &url).header(H, VERSION);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.with_context(|| format!("calling {url}"))?;
    let s = r.status().as_u16();
    let t = r.text().await.unwrap_or_default();
    Ok((s, serde_json::from_str(&t).unwrap_or(Value::Null)))
}

/// Waits until node `uuid` is in `state` and unlocked.
async fn wait_state(
    http: &reqwest::Client,
    base: &str,
    uuid: &str,
    state: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = call(
            http,
            reqwest::Method::GET,
            format!("{base}/v1/nodes/{uuid}?fields=provision_state,reservation"),
            None,
        )
        .await?;
        if v["provision_state"] == state && v["reservation"].is_null() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {uuid} stuck in {}", v["provision_state"]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Creates node `i` and brings it where an agent may heartbeat (Ferrite: `inspect wait`;
/// Ironic: `manageable`, powered on, fast track); returns (uuid, token).
async fn prepare(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    ironic: bool,
) -> anyhow::Result<(String, String)> {
    use reqwest::Method as M;
    let mut body = json!({
        "driver": "fake-hardware", "name": format!("bench-{i}"),
        "driver_info": {"ipmi_address": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)},
    });
    if ironic {
        body["deploy_interface"] = json!("direct");
    } else {
        body["inspect_interface"] = json!("agent");
    }
    let (s, n) = call(http, M::POST, format!("{base}/v1/nodes"), Some(body)).await?;
    if s != 201 {
        bail!("create node {i}: HTTP {s} {n}");
    }
    let uuid = n["uuid"].as_str().unwrap_or_default().to_string();
    let steps: &[(&str, &str)] = if ironic {
        &[("manage", "manageable")]
    } else {
        &[("manage", "manageable"), ("inspect", "inspect wait")]
    };
    for &(target, state) in steps {
        let (s, v) = call(
            http,
            M::PUT,
            format!("{base}/v1/nodes/{uuid}/states/provision"),
            Some(json!({"target": target})),
        )
        .await?;
        if s != 202 {
            bail!("{target} node {i}: HTTP {s} {v}");
        }
        wait_state(http, base, &uuid, state).await?;
    }
    if ironic {
        let (s, v) = call(
            http,
            M::PUT,
            format!("{base}/v1/nodes/{uuid}/states/power"),
            Some(json!({"target": "power on"})),
        )
        .await?;
        if s != 202 {
            bail!("power on node {i}: HTTP {s} {v}");
        }
        wait_power_on(http, base, &uuid).await?;
    }
    let mac = format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    );
    let (s, v) = call(
        http,
        M::GET,
        format!("{base}/v1/lookup?node_uuid={uuid}&addresses={mac}"),
        None,
    )
    .await?;
    if s != 200 {
        bail!("lookup node {i}: HTTP {s} {v}");
    }
    let token = v["config"]["agent_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((uuid, token))
}

async fn wait_power_on(http: &reqwest::Client, base: &str, uuid: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = call(
            http,
            reqwest::Method::GET,
            format!("{base}/v1/nodes/{uuid}?fields=power_state,reservation"),
            None,
        )
        .await?;
        if v["power_state"] == "power on" && v["reservation"].is_null() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {uuid} did not power on: {}", v["power_state"]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one heartbeat phase measured.
struct Phase {
    /// Latencies of accepted heartbeats in ms, sorted.
    lat: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: f64,
}

impl Phase {
    fn figures(&self, agents: usize) -> Value {
        json!({
            "agents": agents,
            "heartbeats": self.lat.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "heartbeats_per_s": self.lat.len() as f64 / self.elapsed,
            "p50_ms": percentile(&self.lat, 0.5),
            "p99_ms": percentile(&self.lat, 0.99),
        })
    }
}

/// `agents` simulated agents heartbeat as fast as answered for `secs`, cycling over the
/// prepared nodes.
async fn hammer(
    http: &reqwest::Client,
    base: &str,
    prepared: &Arc<Vec<(String, String)>>,
    agents: usize,
    secs: f64,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let tasks: Vec<_> = (0..agents)
        .map(|a| {
            let (http, base, stop, errors, prepared) = (http.clone(), base.to_string(), stop.clone(), errors.clone(), prepared.clone());
            let first_error = first_error.clone();
            tokio::spawn(async move {
                let mut lat = vec![];
                let mut k = a;
                while !stop.load(Ordering::Relaxed) {
                    let (uuid, token) = &prepared[k % prepared.len()];
                    k += agents;
                    let body = json!({"callback_url": "http://127.0.0.1:9999", "agent_token": token, "agent_version": "bench"});
                    let t = Instant::now();
                    let r = http.post(format!("{base}/v1/heartbeat/{uuid}")).header(H, VERSION).json(&body).send().await;
                    match r {
                        Ok(resp) if resp.status().as_u16() == 202 => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(resp) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            if first_error.lock().unwrap().is_none() {
                                let status = resp.status().as_u16();
                                let text = resp.text().await.unwrap_or_default();
                                first_error.lock().unwrap().get_or_insert(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()));
                            }
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(format!("{e}"));
                        }
                    }
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = vec![];
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let first_error = first_error.lock().unwrap().clone();
    Ok(Phase {
        lat,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: &str| -> String {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| d.into())
    };
    let base = get("--url", "http://127.0.0.1:6385");
    let nodes: usize = get("--nodes", "1000").parse()?;
    let secs: f64 = get("--seconds", "10").parse()?;
    let agents: usize = get("--concurrency", "64").parse()?;
    let ironic = match get("--mode", "ferrite").as_str() {
        "ferrite" => false,
        "ironic" => true,
        m => bail!("--mode {m:?}: use ferrite or ironic"),
    };
    // A lighter phase before the main one (0: none).
    let low_agents: usize = get("--low-concurrency", "0").parse()?;
    // Setup requests in flight at once (Ironic's API is slower to enroll).
    let setup_parallel: usize = get("--setup-concurrency", "64").parse()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    let setup = Instant::now();
    let mut prepared = Vec::with_capacity(nodes);
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(setup_parallel) {
        let r = join_all(chunk.iter().map(|&i| prepare(&http, &base, i, ironic))).await;
        for x in r {
            prepared.push(x?);
        }
    }
    let setup_s = setup.elapsed().as_secs_f64();

    let prepared = Arc::new(prepared);
    // The light phase first: a server saturated by the heavy one may still be working
    // off its backlog afterwards.
    let low = match low_agents {
        0 => Value::Null,
        n => hammer(&http, &base, &prepared, n, secs).await?.figures(n),
    };
    let main = hammer(&http, &base, &prepared, agents, secs).await?;

    // Listing latency: first page (1000 nodes) with detail, median of 5.
    let mut list = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let (s, v) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/nodes?detail=true"),
            None,
        )
        .await?;
        if s != 200 || v["nodes"].as_array().map(Vec::len).unwrap_or(0) == 0 {
            bail!("listing failed: HTTP {s}");
        }
        list.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    list.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{}",
        json!({
            "nodes": nodes,
            "setup_s": setup_s,
            "heartbeats": main.lat.len(),
            "errors": main.errors,
            "first_error": main.first_error,
            "heartbeats_per_s": main.lat.len() as f64 / main.elapsed,
            "p50_ms": percentile(&main.lat, 0.5),
            "p99_ms": percentile(&main.lat, 0.99),
            "low": low,
            "list_detail_ms": percentile(&list, 0.5),
        })
    );
    Ok(())
}

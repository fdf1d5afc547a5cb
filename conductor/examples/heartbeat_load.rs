//! Load generator for `cargo xtask bench conductor`: enrolls N nodes through the API,
//! brings them to `inspect wait` with fake power, looks each up for its agent token, then
//! runs simulated agents (tokio tasks over real HTTP on loopback) that heartbeat as fast as
//! the conductor answers. Prints one JSON object with the figures.
//!
//! `--mode ironic` prepares OpenStack Ironic (standalone, fake-hardware, fast track) the
//! same way for the baseline: nodes with the `direct` deploy interface are made
//! `manageable` and powered on (fake power), then looked up for a token; Ironic records
//! such a node's heartbeats (`agent_url`, `agent_last_heartbeat`) like Ferrite does.
//! With `--clone-in-db POSTGRES_URL` (Ironic only: its API enrols ~2 nodes/s here) one node
//! is prepared through the API and cloned N-1 times in Ironic's database; every clone
//! carries the prepared node's state and agent token.
//!
//! Between the phases the server is drained: the next phase starts once single heartbeats
//! are answered 202 five times in a row (a server still working off a backlog refuses or
//! delays them), and the time that took is reported.

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

/// Clones node `template` `copies` times in Ironic's `nodes` table (fresh uuid and name,
/// everything else as prepared); the uuids of all nodes.
async fn clone_in_db(db: &str, template: &str, copies: usize) -> anyhow::Result<Vec<String>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db)
        .await
        .with_context(|| format!("connecting to Ironic's database {db}"))?;
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = 'nodes' AND column_name <> 'id' ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await?;
    if !cols.iter().any(|c| c == "uuid") || !cols.iter().any(|c| c == "name") {
        bail!("Ironic's nodes table has no uuid or name column: {cols:?}");
    }
    let names: Vec<String> = cols.iter().map(|c| format!("\"{c}\"")).collect();
    let values: Vec<String> = cols
        .iter()
        .map(|c| match c.as_str() {
            "uuid" => "gen_random_uuid()::text".to_string(),
            "name" => "'bench-clone-' || g".to_string(),
            c => format!("n.\"{c}\""),
        })
        .collect();
    let sql = format!(
        "INSERT INTO nodes ({}) SELECT {} FROM nodes n, generate_series(1, $1) g WHERE n.uuid = $2",
        names.join(", "),
        values.join(", ")
    );
    // Built from the table's own column names, quoted; the values are bound.
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(copies as i32)
        .bind(template)
        .execute(&pool)
        .await
        .context("cloning the prepared node")?;
    if done.rows_affected() != copies as u64 {
        bail!("cloned {} nodes, wanted {copies}", done.rows_affected());
    }
    let uuids = sqlx::query_scalar("SELECT uuid::text FROM nodes ORDER BY id")
        .fetch_all(&pool)
        .await?;
    pool.close().await;
    Ok(uuids)
}

/// Waits until single heartbeats are accepted (202) five times in a row; seconds waited.
async fn drain(http: &reqwest::Client, base: &str, node: &(String, String)) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let mut in_a_row = 0;
    while in_a_row < 5 {
        let body = json!({"callback_url": "http://127.0.0.1:9999", "agent_token": node.1, "agent_version": "bench"});
        let r = http
            .post(format!("{base}/v1/heartbeat/{}", node.0))
            .header(H, VERSION)
            .json(&body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().as_u16() == 202 => in_a_row += 1,
            _ => {
                in_a_row = 0;
                if Instant::now() > deadline {
                    bail!("the server did not drain within 300 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
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

    let clone_db = args
        .iter()
        .position(|a| a == "--clone-in-db")
        .and_then(|i| args.get(i + 1))
        .cloned();
    if clone_db.is_some() && !ironic {
        bail!("--clone-in-db is for --mode ironic");
    }

    let setup = Instant::now();
    let mut prepared = Vec::with_capacity(nodes);
    if let Some(db) = &clone_db {
        let (uuid, token) = prepare(&http, &base, 0, ironic).await?;
        for u in clone_in_db(db, &uuid, nodes.saturating_sub(1)).await? {
            prepared.push((u, token.clone()));
        }
    } else {
        for chunk in (0..nodes).collect::<Vec<_>>().chunks(setup_parallel) {
            let r = join_all(chunk.iter().map(|&i| prepare(&http, &base, i, ironic))).await;
            for x in r {
                prepared.push(x?);
            }
        }
    }
    let setup_s = setup.elapsed().as_secs_f64();

    let prepared = Arc::new(prepared);
    let mut drained_s = vec![drain(&http, &base, &prepared[0]).await?];
    let low = match low_agents {
        0 => Value::Null,
        n => {
            let f = hammer(&http, &base, &prepared, n, secs).await?.figures(n);
            drained_s.push(drain(&http, &base, &prepared[0]).await?);
            f
        }
    };
    let main = hammer(&http, &base, &prepared, agents, secs).await?;
    drained_s.push(drain(&http, &base, &prepared[0]).await?);

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
            "enrolled_in_db": clone_db.is_some(),
            "drained_s": drained_s,
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

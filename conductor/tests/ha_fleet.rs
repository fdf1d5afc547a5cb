//! Issue 19's fleet kill test: three `ferrite conductor` processes on one PostgreSQL drive
//! 300 simulated servers (ferrite-sim: an IPMI BMC on UDP and a real-protocol agent each)
//! through enroll → manage → inspect → provide → deploy. While a third of the fleet is
//! mid-deploy on one conductor, that conductor is killed (SIGKILL). Every node must end
//! `active`, or `deploy failed` with a `last_error` naming the takeover; none stuck in a
//! transient state or still locked, and no image written twice.
//!
//! The agents all talk to c1 (one address, as behind a load balancer); c1 forwards each
//! call to the node's owner. The victim is c2 or c3, whichever owns more nodes mid-deploy.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::cluster::{alive, three};
use common::{Api, Postgres};
use ferrite_sim::{Sim, SimConfig};
use serde_json::{json, Value};

const N: usize = 300;
/// Longer than ha.rs's 3 s: 300 agents heartbeating through three debug-build conductors
/// load this 2-core machine, and a live conductor must not be taken for dead.
const DEAD_AFTER: f64 = 6.0;
/// The states a node passes through on the way; anything else it must not stop in.
const TRANSIENT: &[&str] = &[
    "deploying",
    "wait call-back",
    "cleaning",
    "clean wait",
    "inspecting",
    "inspect wait",
    "verifying",
];

#[derive(Debug, Clone)]
struct Seen {
    state: String,
    last_error: Value,
    reservation: Option<String>,
    conductor: Option<String>,
}

async fn fleet(api: &Api) -> HashMap<String, Seen> {
    let (s, v) = api
        .get("/v1/nodes?fields=name,provision_state,last_error,reservation,conductor&limit=1000")
        .await;
    assert_eq!(s, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                Seen {
                    state: n["provision_state"].as_str().unwrap_or("").to_string(),
                    last_error: n["last_error"].clone(),
                    reservation: n["reservation"].as_str().map(String::from),
                    conductor: n["conductor"].as_str().map(String::from),
                },
            )
        })
        .collect()
}

/// Sends `target` to every node at once (16 requests in flight), then waits until each is
/// unlocked in `want`; panics naming the nodes that failed or did not get there.
async fn drive(api: &Api, names: &[String], target: &str, want: &str, limit: Duration) {
    use futures_util::StreamExt;
    let results: Vec<(String, u16, Value)> = futures_util::stream::iter(names.iter().cloned())
        .map(|n| async move {
            let (s, v) = api.provision(&n, json!({"target": target})).await;
            (n, s, v)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (n, s, v) in results {
        assert_eq!(s, 202, "{target} {n}: {v}");
    }
    let deadline = Instant::now() + limit;
    loop {
        let all = fleet(api).await;
        let failed: Vec<_> = names
            .iter()
            .filter(|n| all[*n].state.ends_with(" failed") && all[*n].reservation.is_none())
            .map(|n| (n, &all[n].state, &all[n].last_error))
            .collect();
        assert!(failed.is_empty(), "{target}: {failed:?}");
        let behind: Vec<_> = names
            .iter()
            .filter(|n| !(all[*n].state == want && all[*n].reservation.is_none()))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target}: {} of {} nodes not {want} after {limit:?}, e.g. {:?}",
            behind.len(),
            names.len(),
            behind
                .iter()
                .take(5)
                .map(|n| (n, &all[*n]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conductor_killed_mid_deploy_loses_no_node_of_three_hundred() {
    let started = Instant::now();
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, apis) = three(dir.path(), &pg.url, DEAD_AFTER).await;
    let api = apis["c1"].clone();

    // A write takes 15 s (150 MiB at 10 MiB/s): long enough to catch a third of the fleet
    // mid-deploy on one conductor, even on a loaded machine. Heartbeats every 2 s.
    let sim = Sim::start(SimConfig {
        nodes: N,
        conductor_url: api.base.clone(),
        boot_time: Duration::from_millis(500),
        image_size: 150 << 20,
        write_rate: 10 << 20,
        heartbeat_interval: Some(Duration::from_secs(2)),
        early_heartbeat_gap: Duration::ZERO,
        erase_time: Duration::from_millis(200),
        lookup_interval: Duration::from_millis(300),
        seed: 300,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.enroll(16).await.unwrap().len(), N);
    let names: Vec<String> = sim.nodes().into_iter().map(|s| s.name).collect();
    eprintln!("enrolled {N} in {:.1} s", started.elapsed().as_secs_f64());
    let limit = Duration::from_secs(120);
    drive(&api, &names, "manage", "manageable", limit).await;
    drive(&api, &names, "inspect", "manageable", limit).await;
    assert_eq!(sim.stats().inspections, N as u64);
    drive(&api, &names, "provide", "available", limit).await;
    eprintln!("{N} available at {:.1} s", started.elapsed().as_secs_f64());

    for n in &names {
        let ii = json!([{"op": "add", "path": "/instance_info", "value": {
            "image_source": format!("http://images.invalid/{n}.raw"),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": "0".repeat(64),
            "image_disk_format": "raw"}}]);
        let (s, v) = api.call("PATCH", &format!("/v1/nodes/{n}"), Some(ii)).await;
        assert_eq!(s, 200, "{v}");
    }
    // The deploy requests go out in the background while the fleet is watched: on a
    // loaded machine sending them takes long enough for the first nodes to finish.
    let sending = {
        let (api, names) = (api.clone(), names.clone());
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let sent: Vec<(u16, Value)> = futures_util::stream::iter(names)
                .map(|n| {
                    let api = api.clone();
                    async move { api.provision(&n, json!({"target": "active"})).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            sent
        })
    };

    // Wait until c2 or c3 owns 80 or more nodes mid-deploy, then kill it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (victim, victims) = loop {
        let all = fleet(&api).await;
        let mut mid: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, n) in &all {
            if matches!(n.state.as_str(), "deploying" | "wait call-back") {
                if let Some(c) = &n.conductor {
                    mid.entry(c.clone()).or_default().push(name.clone());
                }
            }
        }
        let best = mid
            .iter()
            .filter(|(c, _)| *c != "c1")
            .max_by_key(|(_, v)| v.len())
            .map(|(c, v)| (c.clone(), v.clone()));
        // Killed only once every deploy request was answered: a request the victim (or a
        // conductor forwarding to it) held when it died has no defined answer — a node it
        // had locked answers 409 until the takeover breaks the lock. The writes last 15 s,
        // so 80 nodes are still mid-deploy after the last request.
        if let Some((c, v)) = best.filter(|(_, v)| v.len() >= 80 && sending.is_finished()) {
            break (c, v);
        }
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for n in all.values() {
            *states.entry(n.state.as_str()).or_default() += 1;
        }
        assert!(
            Instant::now() < deadline,
            "no conductor has 80 nodes mid-deploy: {:?}; states {states:?}",
            mid.iter().map(|(c, v)| (c, v.len())).collect::<Vec<_>>()
        );
        eprintln!(
            "{:.1} s: mid-deploy by conductor {:?}, states {states:?}",
            started.elapsed().as_secs_f64(),
            mid.iter().map(|(c, v)| (c, v.len())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let host: &'static str = apis.keys().find(|h| **h == victim).unwrap();
    drop(procs.remove(host));
    for (s, v) in sending.await.unwrap() {
        assert_eq!(s, 202, "{v}");
    }
    let killed = Instant::now();
    eprintln!(
        "killed {victim} with {} of its nodes mid-deploy at {:.1} s",
        victims.len(),
        started.elapsed().as_secs_f64()
    );

    // Takeover: within dead-after + 15 s nothing is locked by the victim or names it as
    // its conductor any more.
    let deadline = killed + Duration::from_secs_f64(DEAD_AFTER + 15.0);
    loop {
        let all = fleet(&api).await;
        let held = all
            .values()
            .filter(|n| {
                n.reservation.as_deref() == Some(&victim) || n.conductor.as_deref() == Some(&victim)
            })
            .count();
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} nodes still held by {victim} {:.1} s after the kill",
            killed.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed().as_secs_f64();
    eprintln!("takeover took {takeover:.1} s (dead-after {DEAD_AFTER} s)");
    // Requests for the victim's nodes ran on c1 while the victim could not be reached, so
    // its nodes may have moved before it counts as dead; it must be dead in time too.
    let deadline = killed + Duration::from_secs_f64(DEAD_AFTER + 15.0);
    while alive(&api).await[&victim] {
        assert!(Instant::now() < deadline, "{victim} still alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every node settles: active, or deploy failed naming the takeover. None stuck.
    let deadline = Instant::now() + Duration::from_secs(120);
    let all = loop {
        let all = fleet(&api).await;
        let unsettled = all
            .values()
            .filter(|n| n.reservation.is_some() || TRANSIENT.contains(&n.state.as_str()))
            .count();
        if unsettled == 0 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "{unsettled} nodes not settled 120 s after the takeover: {:?}",
            all.iter()
                .filter(|(_, n)| n.reservation.is_some() || TRANSIENT.contains(&n.state.as_str()))
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut failed = 0;
    for (name, n) in &all {
        match n.state.as_str() {
            "active" => assert!(n.last_error.is_null(), "{name}: {}", n.last_error),
            "deploy failed" => {
                failed += 1;
                let err = n.last_error.as_str().unwrap_or("");
                assert!(
                    victims.contains(name) && err.starts_with("Takeover:"),
                    "{name} failed for another reason: {err}"
                );
            }
            other => panic!("{name} ended {other}: {}", n.last_error),
        }
        assert_ne!(n.conductor.as_deref(), Some(victim.as_str()), "{name}");
    }
    let stats = sim.stats();
    assert!(
        stats.max_writes_per_node <= 1,
        "a node was written twice: {stats:?}"
    );
    // A node failed by the takeover may have had its write finish anyway.
    assert!(stats.writes >= (N - failed) as u64, "{stats:?}");
    eprintln!(
        "{N} nodes: {} active, {failed} failed naming the takeover; all settled {:.1} s after \
         the kill, {:.1} s in all; {stats:?}",
        N - failed,
        killed.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

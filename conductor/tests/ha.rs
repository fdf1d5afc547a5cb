//! Several conductors on one PostgreSQL: requests sent to one conductor are executed by
//! each node's owner (the hash ring), and when one conductor is killed (SIGKILL) in the
//! middle of deploys, the others break its locks and resume its nodes within
//! `--dead-after` + 15 s: nodes caught in a repeatable step end active, one caught in a
//! step that may not run twice fails naming the takeover, waiting nodes keep waiting.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::{alive, all_see_three, nodes, start, three};
use common::{wait_until, Api, Postgres};
use ferrite_testkit::Reaped;
use serde_json::{json, Value};

const DEAD_AFTER: f64 = 3.0;

async fn patch(api: &Api, node: &str, ops: Value) {
    let (s, v) = api
        .call("PATCH", &format!("/v1/nodes/{node}"), Some(ops))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Three conductors on one PostgreSQL with `n` nodes deploying slowly (deploy.deploy
/// powers on after 5 s) and one node (`waiting`) in `wait call-back` for an agent that
/// never comes; every request went to c1.
struct Cluster {
    pg: Postgres,
    dir: tempfile::TempDir,
    procs: BTreeMap<&'static str, Reaped>,
    apis: BTreeMap<&'static str, Api>,
    /// The nodes mid-step, by the conductor that holds their lock.
    by_holder: BTreeMap<String, HashSet<String>>,
    /// With `fragile`: who holds the node `fragile`, caught in `deploy.tear_down_agent`
    /// (a user deploy step here, run before deploy.deploy), which may not run twice.
    fragile: Option<String>,
}

async fn cluster(n: usize, dead_after: f64, fragile: bool) -> Cluster {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (procs, apis) = three(dir.path(), &pg.url, dead_after).await;
    let api = apis["c1"].clone();

    for i in 0..n {
        let body = json!({"driver": "fake-hardware", "name": format!("n{i}")});
        assert_eq!(api.call("POST", "/v1/nodes", Some(body)).await.0, 201);
    }
    let body = json!({"driver": "fake-hardware", "name": "waiting",
                      "instance_info": {"image_source": "http://127.0.0.1:9/image.raw"}});
    assert_eq!(api.call("POST", "/v1/nodes", Some(body)).await.0, 201);
    if fragile {
        let body = json!({"driver": "fake-hardware", "name": "fragile"});
        assert_eq!(api.call("POST", "/v1/nodes", Some(body)).await.0, 201);
    }
    let slow: Vec<String> = (0..n)
        .map(|i| format!("n{i}"))
        .chain(fragile.then(|| "fragile".to_string()))
        .collect();
    let all: Vec<String> = slow
        .iter()
        .cloned()
        .chain(["waiting".to_string()])
        .collect();
    for name in &all {
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
    }
    for name in &all {
        api.wait_state(name, "manageable").await;
        assert_eq!(
            api.provision(name, json!({"target": "provide"})).await.0,
            202
        );
    }
    for name in &all {
        api.wait_state(name, "available").await;
    }
    for name in &slow {
        patch(
            &api,
            name,
            json!([{"op": "add", "path": "/driver_info/fake_delay", "value": 5}]),
        )
        .await;
    }
    patch(
        &api,
        "waiting",
        json!([{"op": "replace", "path": "/deploy_interface", "value": "direct"}]),
    )
    .await;
    for name in &all {
        let mut body = json!({"target": "active"});
        if name == "fragile" {
            body["deploy_steps"] =
                json!([{"interface": "deploy", "step": "tear_down_agent", "priority": 200}]);
        }
        let (s, v) = api
            .call_v(
                "1.69",
                "PUT",
                &format!("/v1/nodes/{name}/states/provision"),
                Some(body),
            )
            .await;
        assert_eq!(s, 202, "{name}: {v}");
    }

    // Each owner runs its own nodes' work: all three hold locks, and the waiting node waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (by_holder, fragile) = loop {
        let mut by_holder: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        let mut fragile_holder = None;
        for node in nodes(&api).await {
            if node["name"] == "fragile" {
                if node["deploy_step"]["step"] == "tear_down_agent" {
                    fragile_holder = node["reservation"].as_str().map(String::from);
                }
                continue;
            }
            if node["provision_state"] == "deploying" && node["deploy_step"]["step"] == "deploy" {
                if let Some(h) = node["reservation"].as_str() {
                    by_holder
                        .entry(h.to_string())
                        .or_default()
                        .insert(node["name"].as_str().unwrap().to_string());
                }
            }
        }
        if by_holder.values().map(HashSet::len).sum::<usize>() == n
            && fragile_holder.is_some() == fragile
        {
            break (by_holder, fragile_holder);
        }
        assert!(
            Instant::now() < deadline,
            "not all nodes mid-step: {by_holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    api.wait_state("waiting", "wait call-back").await;
    Cluster {
        pg,
        dir,
        procs,
        apis,
        by_holder,
        fragile,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_conductor_nodes_are_taken_over_and_resumed() {
    const N: usize = 24;
    let Cluster {
        pg: _pg,
        dir: _dir,
        mut procs,
        apis,
        by_holder,
        fragile,
    } = cluster(N, DEAD_AFTER, true).await;
    let all: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    // All requests went to c1; the ring spread the nodes (a conductor without any of 24
    // has odds of 3 × (2/3)^24 ≈ 2e-4) and each owner runs its own.
    assert_eq!(
        by_holder.keys().map(String::as_str).collect::<Vec<_>>(),
        ["c1", "c2", "c3"],
        "{by_holder:?}"
    );

    // Kill the conductor running `fragile`'s non-repeatable step (and its share of the rest).
    let victim = fragile.unwrap();
    let victims = by_holder[&victim].clone();
    let survivor = apis
        .iter()
        .find(|(h, _)| **h != victim)
        .map(|(_, a)| a.clone())
        .unwrap();
    drop(procs.remove(victim.as_str()));
    let killed = Instant::now();
    eprintln!("killed {victim} holding {} nodes mid-deploy", victims.len());

    // Takeover: no node is locked by the victim any more, and each node it handled (the
    // ones it ran, `fragile`, `waiting` if it was the victim's) names a live conductor.
    wait_until(
        "the dead conductor's locks are broken and its nodes resumed",
        Duration::from_secs_f64(DEAD_AFTER + 15.0),
        || async {
            nodes(&survivor).await.iter().all(|n| {
                let name = n["name"].as_str().unwrap_or("");
                let handled = victims.contains(name) || name == "fragile" || name == "waiting";
                n["reservation"].as_str() != Some(victim.as_str())
                    && !(handled && n["conductor"].as_str() == Some(victim.as_str()))
            })
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "takeover took {:.1} s (dead-after {DEAD_AFTER} s)",
        takeover.as_secs_f64()
    );
    assert!(takeover.as_secs_f64() <= DEAD_AFTER + 15.0);
    assert!(!alive(&survivor).await[&victim], "{victim} still alive");

    // Every node ends active (deploy.deploy is idempotent: it ran again); none stuck,
    // none locked; the waiting node still waits, on a live conductor.
    for n in &all {
        let node = survivor.wait_state(n, "active").await;
        assert!(node["last_error"].is_null(), "{n}: {}", node["last_error"]);
        assert_ne!(node["conductor"], json!(victim), "{n}");
    }
    // The node's history says who took it over.
    let one = victims.iter().next().unwrap();
    let (s, h) = survivor
        .call_v(
            "1.78",
            "GET",
            &format!("/v1/nodes/{one}/history?detail=true"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{h}");
    let took = format!("took the node over from {victim}");
    assert!(
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"].as_str().is_some_and(|t| t.contains(&took))),
        "{h}"
    );
    // The step that may not run twice was not: the node failed, saying why.
    let f = survivor.wait_state("fragile", "deploy failed").await;
    let err = f["last_error"].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "Takeover: conductor {victim} stopped while deploy step deploy.tear_down_agent"
        )),
        "{err}"
    );
    let w = survivor.node("waiting").await;
    assert_eq!(w["provision_state"], "wait call-back", "{w}");
    assert!(w["reservation"].is_null(), "{w}");
    assert_ne!(w["conductor"], json!(victim), "{w}");
    eprintln!(
        "all {} nodes active {:.1} s after the kill",
        N,
        killed.elapsed().as_secs_f64()
    );

    // The agent's calls reach the owner through any conductor: a lookup and a heartbeat
    // sent to the other survivor come back from the owner.
    let owner = w["conductor"].as_str().unwrap();
    let uuid = w["uuid"].as_str().unwrap();
    let (other, _) = apis
        .iter()
        .find(|(h, _)| **h != victim && **h != owner)
        .unwrap();
    let (other, owner_url) = (&apis[other], &apis[owner].base);
    let r = other
        .http
        .get(format!("{}/v1/lookup?node_uuid={uuid}", other.base))
        .header("X-OpenStack-Ironic-API-Version", common::VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["X-Ferrite-Forwarded-To"], owner_url.as_str());
    let r = other
        .http
        .post(format!("{}/v1/heartbeat/{uuid}", other.base))
        .header("X-OpenStack-Ironic-API-Version", common::VERSION)
        .json(
            &json!({"callback_url": "http://127.0.0.1:9", "agent_token": "wrong",
                      "agent_version": "10.0.0"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the owner checked the token");
    assert_eq!(r.headers()["X-Ferrite-Forwarded-To"], owner_url.as_str());
}

/// A conductor killed and started again with the same hostname (before it is found dead)
/// takes its nodes back itself: the steps it was running run again and every deploy ends
/// active; no other conductor touches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_conductor_takes_its_nodes_back() {
    const N: usize = 12;
    // Long enough that the others cannot take over while it restarts.
    const SLOW_DEATH: f64 = 20.0;
    let Cluster {
        pg,
        dir,
        mut procs,
        apis,
        by_holder,
        ..
    } = cluster(N, SLOW_DEATH, false).await;
    let victim = by_holder
        .iter()
        .max_by_key(|(_, v)| v.len())
        .map(|(h, _)| h.clone())
        .unwrap();
    let victims = by_holder[&victim].clone();
    let host: &'static str = apis.keys().find(|h| **h == victim).unwrap();
    drop(procs.remove(host));
    let (api, _proc) = start(host, dir.path(), &pg.url, SLOW_DEATH).await;
    // Until every node is active: the victim's nodes are locked by nobody but the victim.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut relocked = HashSet::new();
    loop {
        let ns = nodes(&api).await;
        let mut active = 0;
        for n in &ns {
            let name = n["name"].as_str().unwrap_or("").to_string();
            if victims.contains(&name) {
                match n["reservation"].as_str() {
                    Some(h) if h == victim => {
                        relocked.insert(name.clone());
                    }
                    Some(h) => panic!("{name} ({}) was taken by {h}", n["uuid"]),
                    None => {}
                }
                assert!(
                    !n["provision_state"].as_str().unwrap().ends_with("failed"),
                    "{n}"
                );
            }
            if n["provision_state"] == "active" && n["reservation"].is_null() {
                active += 1;
            }
        }
        if active == N {
            break;
        }
        assert!(Instant::now() < deadline, "not all active: {ns:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        relocked, victims,
        "the restarted conductor ran its nodes' step again"
    );
    for n in &victims {
        let node = api.node(n).await;
        assert!(node["last_error"].is_null(), "{n}: {}", node["last_error"]);
        assert_eq!(node["conductor"], json!(victim), "{n}");
    }
    assert_eq!(
        api.node("waiting").await["provision_state"],
        "wait call-back"
    );
    assert!(alive(&api).await.values().all(|a| *a));
}

/// The conductor whose answer to a node's lookup does not come from another conductor:
/// its owner (the others forward, and say so in `X-Ferrite-Forwarded-To`).
async fn owner_of(apis: &BTreeMap<&'static str, Api>, uuid: &str) -> &'static str {
    for (host, api) in apis {
        let r = api
            .http
            .get(format!("{}/v1/lookup?node_uuid={uuid}", api.base))
            .send()
            .await
            .unwrap();
        if !r.headers().contains_key("X-Ferrite-Forwarded-To") {
            return host;
        }
    }
    panic!("every conductor forwarded the lookup of {uuid}");
}

/// A deploy waiting for its agent when its conductor is killed keeps waiting: the new
/// owner rebuilds its boot configuration, and the agent (the real ferrite-agent library,
/// in-process), talking to yet another conductor, is routed to the new owner, which
/// finishes the deploy: the image is on the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_deploy_continues_on_the_new_owner() {
    use common::agent::agent_loop;
    use ferrite_testkit::http::{ImageServer, Mode};
    use sha2::Digest;

    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut procs = BTreeMap::new();
    let mut apis = BTreeMap::new();
    for host in ["c1", "c2", "c3"] {
        let (api, proc) = start(host, dir.path(), &pg.url, DEAD_AFTER).await;
        procs.insert(host, proc);
        apis.insert(host, api);
    }
    all_see_three(&apis).await;
    let api = apis["c1"].clone();

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let inventory = ferrite_agent::inventory::collect(&root).expect("fixture inventory");
    let macs: Vec<String> = inventory
        .interfaces
        .iter()
        .filter_map(|i| i.mac_address.clone())
        .collect();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "a", "deploy_interface": "direct"})),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    let uuid = n["uuid"].as_str().unwrap().to_string();
    let port = json!({"address": macs[0], "node_uuid": "a"});
    assert_eq!(api.call("POST", "/v1/ports", Some(port)).await.0, 201);
    assert_eq!(api.provision("a", json!({"target": "manage"})).await.0, 202);
    api.wait_state("a", "manageable").await;

    // Cleaning through the agent, which talks to c1 only.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        api.base.clone(),
        "a".into(),
        macs.clone(),
        root.clone(),
        disk.clone(),
        stop_rx,
    ));
    assert_eq!(
        api.provision("a", json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state("a", "available").await;
    let _ = stop_tx.send(true);
    agent.await.unwrap();

    // Deploy; the agent is not up yet: the node waits in `wait call-back`.
    let img: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let images = ImageServer::start_on_current();
    let url = images.put("disk.raw", img.clone(), Mode::NoRange);
    let ii = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha,
        "image_disk_format": "raw"}}]);
    patch(&api, "a", ii).await;
    let owner = owner_of(&apis, &uuid).await;
    assert_eq!(api.provision("a", json!({"target": "active"})).await.0, 202);
    api.wait_state("a", "wait call-back").await;
    assert_eq!(api.node("a").await["conductor"], owner);

    drop(procs.remove(owner));
    let killed = Instant::now();
    let survivors: Vec<&'static str> = apis.keys().copied().filter(|h| *h != owner).collect();
    let watcher = apis[survivors[0]].clone();
    let new_owner = wait_until("the node taken over", Duration::from_secs(30), || async {
        let n = watcher.node("a").await;
        let c = n["conductor"].as_str().unwrap_or("").to_string();
        (c != owner && n["reservation"].is_null()).then_some(c)
    })
    .await;
    eprintln!(
        "{owner} killed; {new_owner} took the waiting node over after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(watcher.node("a").await["provision_state"], "wait call-back");

    // The agent boots now and talks to the survivor that is not the new owner.
    let other = survivors.iter().find(|h| **h != new_owner).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        apis[other].base.clone(),
        "a".into(),
        macs.clone(),
        root,
        disk.clone(),
        stop_rx,
    ));
    let node = watcher.wait_state("a", "active").await;
    assert!(node["last_error"].is_null(), "{}", node["last_error"]);
    // The new owner finished it, or, while the conductor the agent talks to still counted
    // the dead one alive (its snapshot lags up to a second), that conductor did.
    assert_ne!(node["conductor"], json!(owner));
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(&written[..img.len()], &img[..], "the image is on the disk");
    let _ = stop_tx.send(true);
    agent.await.unwrap();
}

//! What operators see of a fake-hardware node deployed by the in-process agent: its step
//! timeline (every state, step and power action, in order, with durations), printed by
//! `ferrite node history`; Ironic's history API keeping its shape; and `/metrics` parsed
//! as Prometheus text, its counters moving with the lifecycle.

mod common;

use std::time::Instant;

use common::agent::agent_loop;
use common::{Api, Backend, Server};
use ferrite_testkit::http::{ImageServer, Mode};
use serde_json::{json, Value};
use sha2::Digest;

/// A 4 MiB whole-disk image with an MBR and one partition.
fn image() -> Vec<u8> {
    let mut img = vec![0u8; 4 << 20];
    for (i, b) in img.iter_mut().enumerate().skip(1 << 20) {
        *b = (i % 251) as u8;
    }
    let e = 0x1BE;
    img[e + 4] = 0x83;
    img[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&4096u32.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

fn names(entries: &[Value], ty: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["type"] == ty)
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// How the deploy is asked for.
#[derive(Clone, Copy, PartialEq)]
enum Verb {
    Api,
    /// `ferrite node deploy NAME --wait`, from an image served slowly enough (1.6 s) for the
    /// agent to report progress; returns what the CLI printed on standard error.
    CliSlowImage,
    /// Through the API, with a checksum the image does not have: the agent fails the
    /// write; waits for `deploy failed`.
    ApiBadChecksum,
}

/// Enrolls `name` (fake-hardware, direct deploy), cleans it and deploys a small image with
/// the in-process agent; returns the deploy's wall time in seconds and the CLI's stderr.
async fn enroll_clean_deploy(server: &Server, api: &Api, name: &str, verb: Verb) -> (f64, String) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let inventory = ferrite_agent::inventory::collect(&root).expect("fixture inventory");
    let mac = inventory.interfaces[0].mac_address.clone().unwrap();
    let disk = server.dir.path().join(format!("{name}.img"));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": name, "deploy_interface": "direct"})),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    let (s, _) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": mac, "node_uuid": name})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        api.provision(name, json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state(name, "manageable").await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        server.url.clone(),
        name.into(),
        vec![mac.clone()],
        root.clone(),
        disk.clone(),
        stop_rx,
    ));
    assert_eq!(
        api.provision(name, json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state(name, "available").await;

    let img = image();
    let images = ImageServer::start_on_current();
    let mode = match verb {
        Verb::Api | Verb::ApiBadChecksum => Mode::NoRange,
        Verb::CliSlowImage => Mode::Slow(25),
    };
    let url = images.put("disk.raw", img.clone(), mode);
    let sha = match verb {
        Verb::ApiBadChecksum => "0".repeat(64),
        _ => hex::encode(sha2::Sha256::digest(&img)),
    };
    let patch = json!([{"op": "add", "path": "/instance_info", "value": {
        "image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": sha}}]);
    let path = format!("/v1/nodes/{name}");
    assert_eq!(api.call("PATCH", &path, Some(patch)).await.0, 200);
    let wall = Instant::now();
    let mut stderr = String::new();
    match verb {
        Verb::Api | Verb::ApiBadChecksum => {
            assert_eq!(
                api.provision(name, json!({"target": "active"})).await.0,
                202
            );
        }
        Verb::CliSlowImage => {
            let out = ferrite(&server.url, &["node", "deploy", name, "--wait", "60"]).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stderr = String::from_utf8(out.stderr).unwrap();
        }
    }
    if verb == Verb::ApiBadChecksum {
        common::wait_until(
            "deploy failed",
            std::time::Duration::from_secs(60),
            || async {
                let n = api.node(name).await;
                n["provision_state"] == "deploy failed" && n["reservation"].is_null()
            },
        )
        .await;
    } else {
        api.wait_state(name, "active").await;
    }
    let wall = wall.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    agent.await.unwrap();
    (wall, stderr)
}

/// Runs the `ferrite` CLI against `url`.
async fn ferrite(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(&args)
            .env("FERRITE_URL", &url)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_leaves_a_timeline_with_durations() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let (wall, wait_log) = enroll_clean_deploy(&server, &api, "tl", Verb::CliSlowImage).await;
    // `--wait` without a terminal prints a line when something changes, the agent's
    // progress of the image write among them.
    assert!(
        wait_log.contains("tl: wait call-back step deploy.write_image wrote "),
        "{wait_log}"
    );
    assert!(wait_log.contains("MiB/s"), "{wait_log}");

    let (s, tl) = api.get("/v1/nodes/tl/timeline").await;
    assert_eq!(s, 200, "{tl}");
    assert_eq!(tl["provision_state"], "active");
    let entries = tl["timeline"].as_array().unwrap().clone();
    let states = names(&entries, "state");
    let expect = [
        "verifying",
        "manageable",
        "cleaning",
        "clean wait",
        "available",
        "deploying",
        "wait call-back",
        "active",
    ];
    let mut at = 0;
    for want in expect {
        at += states[at..]
            .iter()
            .position(|s| s == want)
            .unwrap_or_else(|| panic!("state {want} missing or out of order in {states:?}"));
    }
    // Only the state the node is in is still open.
    let open: Vec<&Value> = entries.iter().filter(|e| e["running"] == true).collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["name"], "active");

    let steps = names(&entries, "step");
    let deploy_steps = [
        "deploy.deploy",
        "deploy.write_image",
        "deploy.prepare_instance_boot",
        "deploy.tear_down_agent",
        "deploy.boot_instance",
    ];
    let first = steps.iter().position(|s| s == "deploy.deploy").unwrap();
    assert_eq!(&steps[first..], &deploy_steps, "{steps:?}");
    assert!(
        steps[..first]
            .iter()
            .any(|s| s == "deploy.erase_devices_metadata"),
        "cleaning's steps are there too: {steps:?}"
    );
    let mut step_sum = 0.0;
    for e in entries.iter().filter(|e| e["type"] == "step") {
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["driver"], "fake-hardware", "{e}");
        let d = e["duration_s"].as_f64().unwrap();
        assert!(d >= 0.0, "{e}");
        if deploy_steps.contains(&e["name"].as_str().unwrap()) {
            step_sum += d;
        }
    }
    let write = entries
        .iter()
        .find(|e| e["name"] == "deploy.write_image")
        .unwrap();
    assert!(
        write["progress"]["bytes_done"].as_u64().unwrap() > 0,
        "the agent's progress is kept on the step: {write}"
    );
    assert!(write["progress"]["rate_bytes_per_s"].as_f64().unwrap() > 0.0);
    for slow in ["deploy.deploy", "deploy.write_image"] {
        let e = entries.iter().find(|e| e["name"] == slow).unwrap();
        assert!(e["duration_s"].as_f64().unwrap() > 0.0, "{e}");
    }
    assert!(
        step_sum <= wall + 0.5,
        "the deploy steps ({step_sum} s) fit in the deploy's wall time ({wall} s)"
    );
    // States between the verb and `active` add up to the wall time too.
    let deploying = entries
        .iter()
        .rposition(|e| e["name"] == "deploying")
        .unwrap();
    let state_sum: f64 = entries[deploying..]
        .iter()
        .filter(|e| e["type"] == "state" && e["running"] == false)
        .map(|e| e["duration_s"].as_f64().unwrap())
        .sum();
    assert!(
        state_sum > 0.0 && state_sum <= wall + 0.5,
        "{state_sum} vs {wall}"
    );
    // Power actions carry their BMC latency.
    let power: Vec<&Value> = entries.iter().filter(|e| e["type"] == "power").collect();
    assert!(
        power
            .iter()
            .any(|e| e["name"] == "power on" || e["name"] == "rebooting"),
        "{power:?}"
    );
    assert!(power.iter().all(|e| e["interface"] == "fake"
        && e["outcome"] == "ok"
        && e["duration_s"].as_f64().is_some()));

    // Ironic's history keeps its shape (1.78), next to the timeline.
    let (s, h) = api
        .call_v("1.78", "GET", "/v1/nodes/tl/history", None)
        .await;
    assert_eq!(s, 200, "{h}");
    let ev = &h["history"][0];
    let keys: Vec<&String> = ev.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["created_at", "event", "links", "severity", "uuid"]);

    // The CLI prints the timeline with durations.
    let out = ferrite(&server.url, &["node", "history", "tl"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| Start "), "{table}");
    assert!(table.contains("| Duration "), "{table}");
    assert!(table.contains("|   deploy.write_image "), "{table}");
    assert!(table.contains("| state | active "), "{table}");
    let out = ferrite(&server.url, &["node", "history", "tl", "--events"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = String::from_utf8(out.stdout).unwrap();
    assert!(
        events.contains("Provision verb \\\"active\\\"")
            || events.contains("Provision verb \"active\""),
        "{events}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_closed_as_failed() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "bad"})),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    assert_eq!(
        api.provision("bad", json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state("bad", "manageable").await;
    assert_eq!(
        api.provision("bad", json!({"target": "provide"})).await.0,
        202
    );
    api.wait_state("bad", "available").await;
    // The BMC fails from now on: deploy.deploy (power on) fails.
    let patch = json!([{"op": "add", "path": "/driver_info/fake_fail", "value": "power"}]);
    assert_eq!(api.call("PATCH", "/v1/nodes/bad", Some(patch)).await.0, 200);
    assert_eq!(
        api.provision("bad", json!({"target": "active"})).await.0,
        202
    );
    api.wait_state("bad", "deploy failed").await;
    let (_, tl) = api.get("/v1/nodes/bad/timeline").await;
    let entries = tl["timeline"].as_array().unwrap();
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .collect();
    let step = failed
        .iter()
        .find(|e| e["type"] == "step")
        .unwrap_or_else(|| panic!("no failed step in {entries:?}"));
    assert_eq!(step["name"], "deploy.deploy");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("fake power failure"),
        "{step}"
    );
    assert!(
        failed
            .iter()
            .any(|e| e["type"] == "state" && e["name"] == "deploying"),
        "the state the failure ended is closed as failed: {failed:?}"
    );
    let last = entries.last().unwrap();
    assert_eq!(last["name"], "deploy failed");
    assert_eq!(last["running"], true);
    for action in ["power on", "power off"] {
        assert!(
            failed.iter().any(|e| e["type"] == "power"
                && e["name"] == action
                && e["detail"].as_str().unwrap().contains("fake power failure")),
            "the BMC's {action} failure is on the timeline: {entries:?}"
        );
    }
    server.stop().await;
}

/// `/metrics` in Prometheus text format, parsed: (name, labels, value) of every sample,
/// histograms by their `_count` and `_sum`.
async fn scrape(api: &Api) -> Vec<prometheus_parse::Sample> {
    let r = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .expect("Prometheus text format")
        .samples
}

/// The sum of a counter's (or a histogram's count's) samples whose labels include `with`.
fn total(samples: &[prometheus_parse::Sample], metric: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_through_a_lifecycle() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let before = scrape(&api).await;
    assert_eq!(total(&before, "ferrite_heartbeats_total", &[]), 0.0);
    assert_eq!(total(&before, "ferrite_nodes", &[]), 0.0);
    assert!(total(&before, "ferrite_db_pool_connections", &[("state", "max")]) >= 1.0);

    enroll_clean_deploy(&server, &api, "m1", Verb::Api).await;
    let after = scrape(&api).await;
    assert_eq!(
        total(
            &after,
            "ferrite_nodes",
            &[("provision_state", "active"), ("power_state", "power on")]
        ),
        1.0
    );
    assert!(total(&after, "ferrite_heartbeats_total", &[]) >= 2.0);
    for (from, to) in [
        ("enroll", "verifying"),
        ("available", "deploying"),
        ("wait call-back", "deploying"),
        ("deploying", "active"),
    ] {
        assert!(
            total(
                &after,
                "ferrite_provision_transitions_total",
                &[("from", from), ("to", to)]
            ) >= 1.0,
            "transition {from} -> {to}"
        );
    }
    for step in [
        "deploy.deploy",
        "deploy.write_image",
        "deploy.erase_devices_metadata",
    ] {
        assert!(
            total(
                &after,
                "ferrite_step_duration_seconds_count",
                &[
                    ("step", step),
                    ("driver", "fake-hardware"),
                    ("outcome", "ok")
                ]
            ) >= 1.0,
            "step {step}"
        );
    }
    assert!(
        total(
            &after,
            "ferrite_bmc_call_duration_seconds_count",
            &[("interface", "fake")]
        ) >= 3.0
    );
    assert!(
        total(
            &after,
            "ferrite_api_request_duration_seconds_count",
            &[
                ("route", "/v1/nodes/:node"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 1.0,
        "requests are counted by route, not by node: {:?}",
        after
            .iter()
            .filter(|s| s.metric == "ferrite_api_request_duration_seconds_count")
            .map(|s| format!("{:?}", s.labels))
            .collect::<Vec<_>>()
    );
    assert!(
        total(
            &after,
            "ferrite_api_request_duration_seconds_count",
            &[("route", "/v1/heartbeat/:node"), ("status", "202")]
        ) >= 2.0
    );
    // Histograms, with the step buckets (up to an hour).
    assert!(after
        .iter()
        .any(|s| s.metric == "ferrite_step_duration_seconds"
            && matches!(&s.value, prometheus_parse::Value::Histogram(h)
                    if h.iter().any(|b| b.less_than == 3600.0))));

    // A BMC that fails is counted.
    let patch = json!([{"op": "add", "path": "/driver_info/fake_fail", "value": "power"}]);
    assert_eq!(api.call("PATCH", "/v1/nodes/m1", Some(patch)).await.0, 200);
    let (s, _) = api
        .call(
            "PUT",
            "/v1/nodes/m1/states/power",
            Some(json!({"target": "power off"})),
        )
        .await;
    assert_eq!(s, 202);
    common::wait_until(
        "the failed power call is counted",
        std::time::Duration::from_secs(30),
        || async {
            let m = scrape(&api).await;
            total(
                &m,
                "ferrite_bmc_call_failures_total",
                &[("interface", "fake"), ("action", "power off")],
            ) >= 1.0
        },
    )
    .await;
    server.stop().await;
}

/// `ferrite node watch` follows several nodes until they settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watch_follows_several_nodes() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    for name in ["w1", "w2"] {
        let (s, n) = api
            .call(
                "POST",
                "/v1/nodes",
                Some(json!({"driver": "fake-hardware", "name": name,
                            "driver_info": {"fake_delay": 0.3}})),
            )
            .await;
        assert_eq!(s, 201, "{n}");
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        api.wait_state(name, "manageable").await;
        assert_eq!(
            api.provision(name, json!({"target": "provide"})).await.0,
            202
        );
        api.wait_state(name, "available").await;
        assert_eq!(
            api.provision(name, json!({"target": "active"})).await.0,
            202
        );
    }
    // Without names: every node with work going on.
    let out = ferrite(&server.url, &["node", "watch", "--interval", "0.1"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8(out.stderr).unwrap();
    for name in ["w1", "w2"] {
        assert!(log.contains(&format!("{name}: active")), "{log}");
        assert_eq!(api.node(name).await["provision_state"], "active");
    }
    // Named nodes that are settled: one look, and done.
    let out = ferrite(&server.url, &["node", "watch", "w1", "w2"]).await;
    assert!(out.status.success());
    let log = String::from_utf8(out.stderr).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    server.stop().await;
}

/// A deploy that fails in the agent leaves the agent's logs, named in last_error and
/// printed by `ferrite node logs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_keeps_the_agents_logs() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    enroll_clean_deploy(&server, &api, "lg", Verb::ApiBadChecksum).await;
    let node = api.node("lg").await;
    let uuid = node["uuid"].as_str().unwrap();
    let last_error = node["last_error"].as_str().unwrap();
    assert!(last_error.contains("deploy.write_image"), "{last_error}");
    assert!(
        last_error.contains(&format!("Deploy logs: ferrite node logs {uuid} (archive ")),
        "{last_error}"
    );
    let (s, listing) = api.get("/v1/nodes/lg/deploy_logs").await;
    assert_eq!(s, 200, "{listing}");
    let archives = listing["deploy_logs"].as_array().unwrap();
    assert_eq!(archives.len(), 1, "{listing}");
    let name = archives[0]["name"].as_str().unwrap();
    assert!(name.ends_with("_deploy-failed.tar.gz"), "{name}");
    assert!(last_error.contains(name), "{last_error}");
    // Kept in the state dir, one directory per node.
    assert!(server
        .dir
        .path()
        .join("deploy-logs")
        .join(uuid)
        .join(name)
        .is_file());

    let out = ferrite(&server.url, &["node", "logs", "lg"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("==> hardware_inventory.json <=="), "{text}");
    assert!(text.contains("==> ferrite-agent-status.json <=="), "{text}");
    assert!(
        text.contains("\"command_status\": \"FAILED\""),
        "the agent's failed command: {text}"
    );
    let out = ferrite(&server.url, &["node", "logs", "lg", "--list"]).await;
    assert!(String::from_utf8(out.stdout).unwrap().contains(name));
    let out = ferrite(
        &server.url,
        &["node", "logs", "lg", "--file", "ferrite-agent-status.json"],
    )
    .await;
    let one = String::from_utf8(out.stdout).unwrap();
    assert!(!one.contains("hardware_inventory"), "{one}");
    // A name that is not an archive of the node is refused.
    let (s, _) = api
        .get("/v1/nodes/lg/deploy_logs/..%2F..%2Fferrite.db")
        .await;
    assert_eq!(s, 404);
    server.stop().await;
}

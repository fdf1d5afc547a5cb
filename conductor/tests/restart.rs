//! Kill the conductor process (SIGKILL) during deploys, start it again with the same
//! hostname, and check that it takes its nodes back: a node caught mid-step in an
//! idempotent step resumes and ends active, a waiting node keeps waiting (and here times
//! out), on SQLite and on PostgreSQL.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{listening, wait_until, Api, Postgres};
use ferrite_testkit::{free_tcp_port, with_free_port, Reaped};
use serde_json::json;

/// Starts `ferrite conductor` (killed and reaped on drop) and waits until it listens. It
/// must be told its port: one that another process takes first makes it exit ("address in
/// use"), and it starts again on another. Returns its API.
async fn start(dir: &std::path::Path, db: Option<&str>, extra: &[&str]) -> (Api, Reaped) {
    let (dir, db) = (dir.to_path_buf(), db.map(str::to_string));
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let (port, proc) = tokio::task::spawn_blocking(move || {
        with_free_port("ferrite conductor", free_tcp_port, |port| {
            let mut proc = spawn(port, &dir, db.as_deref(), &extra);
            listening(&mut proc.0, port, "ferrite conductor").map(|()| (port, proc))
        })
    })
    .await
    .unwrap();
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    wait_until("the conductor answers", Duration::from_secs(30), || async {
        api.http
            .get(format!("{}/v1", api.base))
            .send()
            .await
            .is_ok()
    })
    .await;
    (api, proc)
}

fn spawn(port: u16, dir: &std::path::Path, db: Option<&str>, extra: &[String]) -> Reaped {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    cmd.args([
        "conductor",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--host",
        "restart-test",
        "--periodic-interval",
        "0.2",
    ])
    .arg("--state-dir")
    .arg(dir)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(url) = db {
        cmd.args(["--database-url", url]);
    }
    Reaped(cmd.spawn().expect("starting ferrite conductor"))
}

async fn scenario(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let (api, proc) = start(dir.path(), db, &[]).await;
    let nodes = [
        ("quick", json!({})),
        ("slow", json!({})),
        (
            "waiting",
            json!({"image_source": "http://127.0.0.1:9/image.raw"}),
        ),
    ];
    for (name, ii) in &nodes {
        let mut body = json!({"driver": "fake-hardware", "name": name, "instance_info": ii});
        if *name == "waiting" {
            body["deploy_interface"] = json!("direct");
        }
        assert_eq!(api.call("POST", "/v1/nodes", Some(body)).await.0, 201);
        assert_eq!(
            api.provision(name, json!({"target": "manage"})).await.0,
            202
        );
        api.wait_state(name, "manageable").await;
    }
    // `waiting` uses the agent deploy interface, so it would clean through an agent:
    // provide the two fake ones, move `waiting` through a fake-deploy provide.
    assert_eq!(
        api.call(
            "PATCH",
            "/v1/nodes/waiting",
            Some(json!([{"op": "replace", "path": "/deploy_interface", "value": "fake"}]))
        )
        .await
        .0,
        200
    );
    for (name, _) in &nodes {
        assert_eq!(
            api.provision(name, json!({"target": "provide"})).await.0,
            202
        );
        api.wait_state(name, "available").await;
    }
    assert_eq!(
        api.call(
            "PATCH",
            "/v1/nodes/waiting",
            Some(json!([{"op": "replace", "path": "/deploy_interface", "value": "direct"}]))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.call(
            "PATCH",
            "/v1/nodes/slow",
            Some(json!([{"op": "add", "path": "/driver_info/fake_delay", "value": 3}]))
        )
        .await
        .0,
        200
    );
    for (name, _) in &nodes {
        let (s, v) = api.provision(name, json!({"target": "active"})).await;
        assert_eq!(s, 202, "{name}: {v}");
    }
    api.wait_state("quick", "active").await;
    wait_until(
        "slow is mid-step and waiting is waiting",
        Duration::from_secs(30),
        || async {
            let slow = api.node("slow").await;
            let waiting = api.node("waiting").await;
            slow["provision_state"] == "deploying"
                && slow["deploy_step"]["step"] == "deploy"
                && waiting["provision_state"] == "wait call-back"
        },
    )
    .await;
    drop(proc); // SIGKILL: no graceful shutdown
                // The same state on a fresh port: nothing in this test calls back to the first URL.
    let (api, _proc) = start(dir.path(), db, &["--callback-timeout", "1"]).await;
    // deploy.deploy is idempotent (takeover::STEPS): it runs again and the deploy ends.
    let slow = api.wait_state("slow", "active").await;
    assert!(slow["last_error"].is_null(), "{}", slow["last_error"]);
    let waiting = api.wait_state("waiting", "deploy failed").await;
    assert!(
        waiting["last_error"].as_str().unwrap().contains("Timeout"),
        "{}",
        waiting["last_error"]
    );
    let quick = api.node("quick").await;
    assert_eq!(quick["provision_state"], "active");
    for (name, _) in &nodes {
        let n = api.node(name).await;
        assert!(n["reservation"].is_null(), "{name} still locked");
        assert_eq!(n["conductor"], "restart-test", "{name}");
    }
    let (s, v) = api.get("/v1/conductors").await;
    assert_eq!(s, 200);
    assert_eq!(v["conductors"][0]["hostname"], "restart-test", "{v}");
    assert_eq!(v["conductors"][0]["alive"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_postgres() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    scenario(Some(&pg.url)).await;
}

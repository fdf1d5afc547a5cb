//! Several `ferrite conductor` processes on one PostgreSQL (the multi-conductor tests):
//! start one with a hostname, see who is alive, list nodes with their owner and lock.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrite_testkit::{free_tcp_port, with_free_port, Reaped};
use serde_json::Value;

use super::{listening, wait_until, Api};

/// Starts `ferrite conductor --host HOST` on PostgreSQL (killed and reaped on drop), its
/// state in `dir/HOST`.
pub async fn start(host: &str, dir: &std::path::Path, db: &str, dead_after: f64) -> (Api, Reaped) {
    let (host, dir, db) = (host.to_string(), dir.to_path_buf(), db.to_string());
    let (port, proc) = tokio::task::spawn_blocking(move || {
        with_free_port("ferrite conductor", free_tcp_port, |port| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite"));
            cmd.args([
                "conductor",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--host",
                &host,
                "--database-url",
                &db,
                "--periodic-interval",
                "0.2",
                "--heartbeat-interval",
                "0.5",
                "--dead-after",
                &dead_after.to_string(),
                "--power-sync-interval",
                "0",
            ])
            .arg("--state-dir")
            .arg(dir.join(&host))
            .stdout(Stdio::null())
            .stderr(match std::env::var_os("HA_DEBUG_LOGS") {
                Some(d) => Stdio::from(
                    std::fs::File::create(
                        std::path::Path::new(&d).join(format!("{host}-{port}.log")),
                    )
                    .unwrap(),
                ),
                None => Stdio::null(),
            });
            let mut proc = Reaped(cmd.spawn().expect("starting ferrite conductor"));
            listening(&mut proc.0, port, "ferrite conductor").map(|()| (port, proc))
        })
    })
    .await
    .unwrap();
    (Api::new(&format!("http://127.0.0.1:{port}")), proc)
}

pub async fn alive(api: &Api) -> BTreeMap<String, bool> {
    let (s, v) = api.get("/v1/conductors").await;
    assert_eq!(s, 200, "{v}");
    v["conductors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_string(),
                c["alive"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Waits until every conductor sees all three alive. `/v1/conductors` also refreshes the
/// conductor's membership snapshot, so from then on all three rings agree.
pub async fn all_see_three(apis: &BTreeMap<&'static str, Api>) {
    for api in apis.values() {
        wait_until(
            "three conductors alive",
            Duration::from_secs(20),
            || async { alive(api).await.values().filter(|a| **a).count() == 3 },
        )
        .await;
    }
}

pub async fn nodes(api: &Api) -> Vec<Value> {
    let (s, v) = api
        .get("/v1/nodes?fields=uuid,name,provision_state,reservation,conductor,last_error,deploy_step")
        .await;
    assert_eq!(s, 200, "{v}");
    v["nodes"].as_array().unwrap().clone()
}

/// Starts c1, c2 and c3 on `db` (state under `dir`) and waits until each sees all three
/// alive: the processes (killed and reaped on drop) and their APIs, by hostname.
pub async fn three(
    dir: &std::path::Path,
    db: &str,
    dead_after: f64,
) -> (BTreeMap<&'static str, Reaped>, BTreeMap<&'static str, Api>) {
    let mut procs = BTreeMap::new();
    let mut apis = BTreeMap::new();
    for host in ["c1", "c2", "c3"] {
        let (api, proc) = start(host, dir, db, dead_after).await;
        procs.insert(host, proc);
        apis.insert(host, api);
    }
    all_see_three(&apis).await;
    (procs, apis)
}

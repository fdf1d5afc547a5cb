//! The conductor's log carries no ANSI colour codes when stderr is a pipe or a file (the
//! demo's conductor.log, a process manager's journal): colour is for terminals only.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn log_to_a_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["conductor", "--listen", "127.0.0.1:0", "--host", "log-test"])
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ferrite conductor");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let serving = line.contains("ferrite conductor serving");
                seen.push(line);
                if serving {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no 'serving' log line within 60 s; got {seen:?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("INFO")),
        "log lines carry their level: {seen:?}"
    );
}

/// `--log-format json`: one JSON object a line; a request's lines carry its request id
/// and the node it names, and the work it starts carries the node.
#[test]
fn json_log_lines_carry_request_id_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["conductor", "--listen", "127.0.0.1:0", "--host", "log-test"])
        .args(["--log-format", "json"])
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ferrite conductor");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _child = Reap(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> serde_json::Value {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a log line within 60 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let addr = loop {
        let v = next();
        if v["fields"]["message"] == "ferrite conductor serving" {
            break v["fields"]["local"].as_str().unwrap().to_string();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = format!("req-{}", uuid::Uuid::new_v4());
    rt.block_on(async {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-OpenStack-Ironic-API-Version", "1.68".parse().unwrap());
        let http = reqwest::Client::builder()
            .default_headers(h)
            .build()
            .unwrap();
        let base = format!("http://{addr}");
        let r = http
            .post(format!("{base}/v1/nodes"))
            .json(&serde_json::json!({"driver": "fake-hardware", "name": "logged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .put(format!("{base}/v1/nodes/logged/states/provision"))
            .header("X-OpenStack-Request-Id", &id)
            .json(&serde_json::json!({"target": "manage"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    });
    let transition = loop {
        let v = next();
        if v["fields"]["message"] == "transition" && v["fields"]["event"] == "manage" {
            break v;
        }
    };
    let spans = transition["spans"].as_array().expect("span list");
    let request = spans
        .iter()
        .find(|s| s["name"] == "request")
        .unwrap_or_else(|| panic!("no request span: {transition}"));
    assert_eq!(request["request_id"], id.as_str(), "{transition}");
    assert_eq!(request["node"], "logged", "{transition}");
    // The verification that follows runs in the background, under the node's span.
    let done = loop {
        let v = next();
        if v["fields"]["message"] == "transition" && v["fields"]["event"] == "done" {
            break v;
        }
    };
    let work = done["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "work"))
        .unwrap_or_else(|| panic!("no work span: {done}"));
    assert!(work["node"].as_str().unwrap().len() == 36, "{done}");
}

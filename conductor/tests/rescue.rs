//! Rescue (API 1.38) end to end with the in-process ferrite-agent: an active fake-hardware
//! node is rescued through the `agent` rescue interface (the ramdisk boots, the agent gets
//! `rescue.finalize_rescue` with the password's hash and writes the rescue user), then
//! unrescued back to `active`. The password never shows in the API nor in the database.
//! Also: `rescue wait` timing out into `rescue failed`, the fake rescue interface, and the
//! requests Ironic refuses.

mod common;

use std::time::Duration;

use common::agent::{agent_loop, rescue_root};
use common::{fault, Api, Backend, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Tr0ub4dor&3 rescue";

/// Enrolls `name` (fake-hardware, direct deploy, the given rescue interface) with a port,
/// and brings it to `active` by adoption. Returns its MAC.
async fn active_node(api: &Api, name: &str, rescue_interface: &str) -> String {
    let mac = format!("52:54:00:12:34:{:02x}", name.len());
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(
                json!({"driver": "fake-hardware", "name": name, "deploy_interface": "direct",
                        "rescue_interface": rescue_interface}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    assert_eq!(n["rescue_interface"], rescue_interface);
    let (s, p) = api
        .call(
            "POST",
            "/v1/ports",
            Some(json!({"address": mac, "node_uuid": name})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        api.provision(name, json!({"target": "manage"})).await.0,
        202
    );
    api.wait_state(name, "manageable").await;
    assert_eq!(api.provision(name, json!({"target": "adopt"})).await.0, 202);
    api.wait_state(name, "active").await;
    mac
}

/// Every byte of the conductor's database files (SQLite and its journal).
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The salt of a `$6$<salt>$<hash>` string as the bytes `sha512_crypt` maps to it.
fn salt_bytes(hash: &str) -> [u8; 16] {
    const ALPHA: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let salt = hash.split('$').nth(2).expect("a $6$salt$hash string");
    let mut out = [0u8; 16];
    assert_eq!(salt.len(), 16, "{hash}");
    for (b, c) in out.iter_mut().zip(salt.bytes()) {
        *b = ALPHA.iter().position(|a| *a == c).unwrap() as u8;
    }
    out
}

/// Runs the `ferrite` CLI against `url`, with `FERRITE_RESCUE_PASSWORD` when given.
async fn ferrite(url: &str, args: &[&str], password: Option<&str>) -> std::process::Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let password = password.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"));
        c.args(&args)
            .env("FERRITE_URL", &url)
            .env_remove("FERRITE_RESCUE_PASSWORD");
        if let Some(p) = password {
            c.env("FERRITE_RESCUE_PASSWORD", p);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescue_through_the_agent_and_unrescue_back_to_active() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    let mac = active_node(&api, "rsc", "no-rescue").await;
    let out = ferrite(
        &server.url,
        &["node", "set", "rsc", "--rescue-interface", "agent"],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.node("rsc").await["rescue_interface"], "agent");
    let disk = server.dir.path().join("rsc.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/inventory/qemu-q35");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent_loop(
        server.url.clone(),
        "rsc".into(),
        vec![mac],
        fixture,
        disk.clone(),
        stop_rx,
    ));

    let (s, v) = api
        .provision(
            "rsc",
            json!({"target": "rescue", "rescue_password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // While it waits (or right after), the API shows no password and no hash.
    let n = api.node("rsc").await;
    let text = n.to_string();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("$6$"), "{text}");
    if let Some(h) = n["instance_info"].get("hashed_rescue_password") {
        assert_eq!(h, "******");
    }

    let n = api.wait_state("rsc", "rescue").await;
    assert_eq!(n["target_provision_state"], Value::Null);
    assert_eq!(n["last_error"], Value::Null);
    assert!(
        n["instance_info"].get("hashed_rescue_password").is_none(),
        "{}",
        n["instance_info"]
    );
    // The agent got finalize_rescue: the rescue user's hash is of this password.
    let root = rescue_root(&disk);
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).expect("shadow written");
    let line = shadow
        .lines()
        .find(|l| l.starts_with("rescue:"))
        .unwrap_or_else(|| panic!("no rescue user in {shadow}"));
    let hash = line.split(':').nth(1).unwrap();
    assert!(hash.starts_with("$6$"), "{line}");
    assert_eq!(
        ferrite_proto::crypt::sha512_crypt(PASSWORD, &salt_bytes(hash)),
        hash
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("rescue:x:"), "{passwd}");

    // The history tells what happened, without the password.
    let (s, h) = api
        .call_v("1.78", "GET", "/v1/nodes/rsc/history", None)
        .await;
    assert_eq!(s, 200, "{h}");
    assert!(h.to_string().contains("rescue"), "{h}");
    assert!(!h.to_string().contains(PASSWORD));

    // Unrescue from `rescue` is allowed, `rescue` again too; `active` is not.
    let (s, v) = api.provision("rsc", json!({"target": "active"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.provision("rsc", json!({"target": "unrescue"})).await;
    assert_eq!(s, 202, "{v}");
    let n = api.wait_state("rsc", "active").await;
    assert_eq!(n["power_state"], "power on");
    assert!(n["instance_info"].get("hashed_rescue_password").is_none());

    let _ = stop_tx.send(true);
    agent.await.unwrap();
    // Neither the conductor's database nor its journal holds the password.
    let db = database_bytes(server.dir.path());
    assert!(!db.is_empty());
    assert!(!contains(&db, PASSWORD), "the password is in the database");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescue_wait_times_out_into_rescue_failed() {
    let server = Server::start(Backend::Sqlite, |c| {
        c.rescue_callback_timeout = Some(1.0);
    })
    .await;
    let api = Api::new(&server.url);
    active_node(&api, "quiet", "agent").await;
    // No agent ever boots.
    let (s, v) = api
        .provision(
            "quiet",
            json!({"target": "rescue", "rescue_password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    api.wait_state("quiet", "rescue wait").await;
    common::wait_until("rescue failed", Duration::from_secs(30), || async {
        let n = api.node("quiet").await;
        n["provision_state"] == "rescue failed" && n["reservation"].is_null()
    })
    .await;
    let n = api.node("quiet").await;
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("Timeout reached while waiting for rescue ramdisk callback"),
        "{err}"
    );
    assert_eq!(n["target_provision_state"], "rescue");
    assert!(n["instance_info"].get("hashed_rescue_password").is_none());
    // From `rescue failed`, unrescue returns the node to its instance.
    assert_eq!(
        api.provision("quiet", json!({"target": "unrescue"}))
            .await
            .0,
        202
    );
    let n = api.wait_state("quiet", "active").await;
    assert_eq!(n["last_error"], Value::Null);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_rescue_and_bad_requests() {
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);

    // fake-hardware's fake rescue interface: rescued at once, as Ironic's FakeRescue;
    // through the CLI, which takes the password from the environment.
    active_node(&api, "fk", "fake").await;
    let out = ferrite(
        &server.url,
        &["node", "rescue", "fk", "--wait", "30"],
        Some(PASSWORD),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node fk is rescue"));
    let n = api.wait_state("fk", "rescue").await;
    assert!(n["instance_info"].get("hashed_rescue_password").is_none());
    let (s, v) = api.call("GET", "/v1/nodes/fk/validate", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["rescue"]["result"], true, "{v}");
    let out = ferrite(
        &server.url,
        &["node", "unrescue", "fk", "--wait", "30"],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api.wait_state("fk", "active").await;
    // Without a password the CLI refuses before asking the conductor.
    let out = ferrite(&server.url, &["node", "rescue", "fk"], None).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Missing or blank password: Ironic's message.
    for body in [
        json!({"target": "rescue"}),
        json!({"target": "rescue", "rescue_password": "   "}),
    ] {
        let (s, v) = api.provision("fk", body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(
            fault(&v),
            "A non-empty \"rescue_password\" is required when setting target provision \
             state to rescue"
        );
    }
    // A password with another verb.
    let (s, v) = api
        .provision("fk", json!({"target": "rebuild", "rescue_password": "x"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        fault(&v).contains("\"rescue_password\" is only valid when setting target"),
        "{v}"
    );
    // Before 1.38 the verbs do not exist.
    let (s, v) = api
        .call_v(
            "1.37",
            "PUT",
            "/v1/nodes/fk/states/provision",
            Some(json!({"target": "rescue", "rescue_password": "x"})),
        )
        .await;
    assert_eq!(s, 406, "{v}");
    // Unrescue of an active node, rescue of a manageable one: Ironic's message.
    let (s, v) = api.provision("fk", json!({"target": "unrescue"})).await;
    assert_eq!(s, 400, "{v}");
    let uuid = api.node("fk").await["uuid"].as_str().unwrap().to_string();
    assert!(
        fault(&v).starts_with(&format!(
            "The requested action \"unrescue\" can not be performed on node \"{uuid}\" while \
             it is in state \"active\"."
        )),
        "{v}"
    );
    let (s, n) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "idle", "rescue_interface": "agent"})),
        )
        .await;
    assert_eq!(s, 201, "{n}");
    let (s, v) = api
        .provision("idle", json!({"target": "rescue", "rescue_password": "x"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        fault(&v).contains("can not be performed on node")
            && fault(&v).contains("while it is in state \"enroll\""),
        "{v}"
    );
    // A node without a rescue interface.
    active_node(&api, "none", "no-rescue").await;
    let (s, v) = api
        .provision("none", json!({"target": "rescue", "rescue_password": "x"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        fault(&v).contains("Driver fake-hardware does not support rescue"),
        "{v}"
    );
    assert_eq!(api.node("none").await["provision_state"], "active");
    // An unknown rescue interface is refused at enrollment.
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "rescue_interface": "magic"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    server.stop().await;
}

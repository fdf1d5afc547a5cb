//! The ramdisk run mode end to end on loopback: kernel command line → API with automatic
//! TLS → inspection → lookup → heartbeats, against the conductor double; the conductor's
//! side of the TLS pin done for real; and the real `ferrite-agent` binary.

mod double;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use double::{Double, Reply, Script, NODE, TOKEN};
use ferrite_agent::run::{run_with_hooks, RunConfig};
use ferrite_agent::state::{RecordingHooks, SystemAction};
use serde_json::Value;
use tokio::sync::Notify;

const BOOTIF_MAC: &str = "52:54:00:aa:bb:01";

fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inventory/debian-vm")
}

fn double_script() -> Script {
    Script {
        lookup_default: Reply::found(Some(TOKEN), 1.0),
        ..Script::default()
    }
}

/// A client that trusts only the PEM the agent sent (what the conductor does).
fn pinned_client(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// The whole agent in-process, with recording system hooks (never the host's).
fn run(
    config: RunConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> impl std::future::Future<Output = anyhow::Result<()>> {
    run_with_hooks(config, Arc::new(RecordingHooks::new()), shutdown)
}

struct Agent {
    stop: Arc<Notify>,
    hooks: Arc<RecordingHooks>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    fn start(cmdline: String, root: PathBuf, standalone: bool) -> Agent {
        let stop = Arc::new(Notify::new());
        let config = RunConfig {
            cmdline: Some(cmdline),
            root,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            standalone,
            rescue_root: None,
        };
        let hooks = Arc::new(RecordingHooks::new());
        let task = tokio::spawn({
            let stop = stop.clone();
            let hooks = hooks.clone();
            async move { run_with_hooks(config, hooks, async move { stop.notified().await }).await }
        });
        Agent { stop, hooks, task }
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.notify_one();
        (&mut self.task).await.unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramdisk_agent_looks_up_heartbeats_and_serves_pinned_tls() {
    let d = Double::start(double_script()).await;
    let line = format!(
        "console=ttyS0 ipa-api-url={} BOOTIF=01-52-54-00-AA-BB-01 ipa-lookup-interval=0.05 foo=bar",
        d.url()
    );
    let agent = Agent::start(line, fixture_root(), false);
    d.wait_until("two heartbeats", Duration::from_secs(20), |s| {
        s.iter().filter(|r| r.is_heartbeat()).count() >= 2
    })
    .await;

    let lookup = &d.lookups()[0];
    let addresses: Vec<&str> = lookup.query["addresses"].split(',').collect();
    assert_eq!(addresses[0], BOOTIF_MAC, "BOOTIF goes first");
    // The double speaks 1.99: the agent settles on its own newest, 1.72.
    assert_eq!(lookup.headers["x-openstack-ironic-api-version"], "1.72");
    if let Ok(inv) = ferrite_agent::inventory::collect(&fixture_root()) {
        for i in inv
            .interfaces
            .iter()
            .filter_map(|i| i.mac_address.as_deref())
        {
            assert!(
                addresses.contains(&i),
                "{i} from the inventory in {addresses:?}"
            );
        }
    }

    let beat = d.heartbeats()[0].body.clone();
    assert_eq!(d.heartbeats()[0].path, format!("/v1/heartbeat/{NODE}"));
    assert_eq!(beat["agent_token"], TOKEN);
    assert_eq!(beat["agent_version"], env!("CARGO_PKG_VERSION"));
    let callback = beat["callback_url"].as_str().unwrap().to_string();
    assert!(
        callback.starts_with("https://127.0.0.1:"),
        "route source towards 127.0.0.1: {callback}"
    );
    let pem = beat["agent_verify_ca"]
        .as_str()
        .expect("agent_verify_ca sent")
        .to_string();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    for h in d.heartbeats() {
        assert_eq!(
            h.body["agent_verify_ca"].as_str(),
            Some(pem.as_str()),
            "same cert every heartbeat"
        );
    }

    // The conductor's side: pin the PEM and call the agent back at callback_url.
    let client = pinned_client(&pem);
    let status: Value = client
        .get(format!("{callback}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    // The token from the lookup now guards the commands.
    let no_token = client
        .get(format!("{callback}/v1/commands/"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let with_token = client
        .get(format!("{callback}/v1/commands/?agent_token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    // Without the pin the certificate is not trusted.
    let unpinned = reqwest::Client::new()
        .get(format!("{callback}/v1/status"))
        .send()
        .await;
    assert!(
        unpinned.is_err(),
        "a self-signed cert must not pass public roots"
    );
    // Another agent's certificate does not open this one.
    let other = ferrite_agent::tls::generate("127.0.0.1").unwrap();
    assert!(pinned_client(&other.cert_pem)
        .get(format!("{callback}/v1/status"))
        .send()
        .await
        .is_err());

    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_is_posted_and_its_uuid_used_in_lookup() {
    let d = Double::start(double_script()).await;
    let line = format!(
        "ipa-api-url={url} ipa-inspection-callback-url={url}/v1/continue_inspection \
         ipa-advertise-host=192.0.2.44 ipa-advertise-port=4444 ferrite-auto-tls=0 \
         BOOTIF=01-52-54-00-AA-BB-01",
        url = d.url()
    );
    let agent = Agent::start(line, fixture_root(), false);
    d.wait_until("a heartbeat", Duration::from_secs(20), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    agent.stop().await.unwrap();

    let seen = d.seen();
    let post = seen
        .iter()
        .find(|r| r.path == "/v1/continue_inspection")
        .expect("inventory posted");
    assert_eq!(post.method, "POST");
    assert_eq!(post.body["boot_interface"], BOOTIF_MAC);
    let expected = ferrite_agent::inventory::collect(&fixture_root()).unwrap();
    assert_eq!(
        serde_json::from_value::<ferrite_proto::inventory::Inventory>(
            post.body["inventory"].clone()
        )
        .unwrap(),
        expected
    );
    let order: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    let pos = |p: &str| order.iter().position(|x| *x == p).unwrap();
    assert!(
        pos("/v1/continue_inspection") < pos("/v1/lookup"),
        "{order:?}"
    );
    assert_eq!(d.lookups()[0].query["node_uuid"], NODE);
    let beat = &d.heartbeats()[0].body;
    assert_eq!(beat["callback_url"], "http://192.0.2.44:4444");
    assert!(
        beat.get("agent_verify_ca").is_none(),
        "no TLS, no CA: {beat}"
    );
}

/// A port nothing listens on now. `run` binds its `listen` address itself (that is the
/// agent's `--listen`, under test here), and only once it holds a token: its port must stay
/// closed until then, which a listener bound beforehand and handed in would not be. So these
/// tests must name a port. If another process
/// took it in between, `run` fails with "address in use" and the test fails loudly; it
/// cannot pass by talking to someone else's server, because the checks need our token.
fn free_port() -> u16 {
    ferrite_testkit::free_tcp_port()
}

/// Polls `url` until it answers, or panics at the deadline.
async fn first_answer(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let what = format!("an answer from {url}");
    ferrite_testkit::wait_until_async(&what, Duration::from_secs(10), || async {
        client.get(url).send().await.ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_the_pre_shared_token_only_and_talks_to_no_conductor() {
    let d = Double::start(double_script()).await;
    let line = format!("ipa-api-url={} ipa-agent-token={TOKEN}", d.url());
    let port = free_port();
    let stop = Arc::new(Notify::new());
    let config = RunConfig {
        cmdline: Some(line),
        root: fixture_root(),
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        standalone: true,
        rescue_root: None,
    };
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { run(config, async move { stop.notified().await }).await }
    });
    let http = reqwest::Client::new();
    let status = first_answer(&http, &format!("http://127.0.0.1:{port}/v1/status")).await;
    assert_eq!(status.status(), 200);
    let commands = format!("http://127.0.0.1:{port}/v1/commands/");
    assert_eq!(http.get(&commands).send().await.unwrap().status(), 401);
    let with = format!("{commands}?agent_token={TOKEN}");
    assert_eq!(http.get(&with).send().await.unwrap().status(), 200);
    stop.notify_one();
    task.await.unwrap().unwrap();
    assert!(
        d.seen().is_empty(),
        "standalone must not call the conductor: {:?}",
        d.seen()
    );
}

/// Issue 15 finding 1: standalone without `ipa-agent-token` would serve nobody; it says so.
#[tokio::test]
async fn standalone_without_a_pre_shared_token_refuses_to_start() {
    let port = free_port();
    let err = run(
        RunConfig {
            cmdline: Some(String::new()),
            root: fixture_root(),
            listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            standalone: true,
            rescue_root: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("ipa-agent-token"), "{err:#}");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}

#[tokio::test]
async fn bad_command_line_stops_the_agent_with_the_key_named() {
    let err = run(
        RunConfig {
            cmdline: Some("ipa-api-url=http://127.0.0.1:1 ipa-advertise-port=eighty".into()),
            root: fixture_root(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            standalone: false,
            rescue_root: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("ipa-advertise-port"), "{err:#}");
}

/// Issue 15 finding 1: while no lookup has handed this agent a token, its API port is
/// closed, and the agent keeps looking up past `ipa-lookup-timeout` (through 404s and a
/// masked token it never saw) instead of giving up or serving; once the conductor hands out
/// a token the API opens, for that token only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_until_a_lookup_hands_out_a_token_and_lookup_never_gives_up() {
    let d = Double::start(Script {
        lookup_default: Reply::status(404),
        ..Script::default()
    })
    .await;
    let port = free_port();
    let line = format!(
        "ipa-api-url={} BOOTIF=01-52-54-00-AA-BB-01 ipa-lookup-timeout=0.3 \
         ipa-lookup-interval=0.05 ferrite-auto-tls=0 ipa-advertise-host=127.0.0.1",
        d.url()
    );
    let stop = Arc::new(Notify::new());
    let config = RunConfig {
        cmdline: Some(line),
        root: fixture_root(),
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        standalone: false,
        rescue_root: None,
    };
    let mut task = tokio::spawn({
        let stop = stop.clone();
        async move { run(config, async move { stop.notified().await }).await }
    });
    let closed = || async {
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "the agent API accepts connections before it holds a token"
        );
    };
    // Well past two lookup timeouts of 404s: still looking, still closed.
    d.wait_until("lookups for 1 s", Duration::from_secs(20), |s| {
        let l: Vec<_> = s.iter().filter(|r| r.is_lookup()).collect();
        l.len() >= 2 && l[l.len() - 1].at.duration_since(l[0].at) > Duration::from_secs(1)
    })
    .await;
    assert!(!task.is_finished(), "the agent gave up looking up");
    closed().await;

    // A masked token we never saw: no token, still closed, still looking.
    d.script.lock().unwrap().lookup_default = Reply::found(Some(ferrite_proto::MASKED_SECRET), 1.0);
    let before = d.lookups().len();
    d.wait_until("three masked lookups", Duration::from_secs(20), |s| {
        s.iter().filter(|r| r.is_lookup()).count() >= before + 3
    })
    .await;
    assert!(
        !task.is_finished(),
        "the agent gave up after a masked token"
    );
    assert!(d.heartbeats().is_empty(), "heartbeat without a token");
    closed().await;

    // A real token: the API opens, for that token only.
    d.script.lock().unwrap().lookup_default = Reply::found(Some(TOKEN), 1.0);
    d.wait_until("a heartbeat", Duration::from_secs(20), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    let http = reqwest::Client::new();
    let commands = format!("http://127.0.0.1:{port}/v1/commands/");
    let refused = first_answer(&http, &commands).await;
    assert_eq!(refused.status(), 401);
    let wrong = format!("{commands}?agent_token={}", "x".repeat(TOKEN.len()));
    assert_eq!(http.get(&wrong).send().await.unwrap().status(), 401);
    let with = format!("{commands}?agent_token={TOKEN}");
    assert_eq!(http.get(&with).send().await.unwrap().status(), 200);
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(10), &mut task)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
}

fn sigterm(pid: u32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inspection_still_goes_on_to_the_lookup() {
    let d = Double::start(Script {
        inspection: Reply::status(500),
        ..double_script()
    })
    .await;
    let line = format!(
        "ipa-api-url={url} ipa-inspection-callback-url={url}/v1/continue_inspection \
         ferrite-auto-tls=0 BOOTIF=01-52-54-00-AA-BB-01",
        url = d.url()
    );
    let agent = Agent::start(line, fixture_root(), false);
    d.wait_until("a heartbeat", Duration::from_secs(20), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    agent.stop().await.unwrap();
    assert_eq!(
        d.seen()[1].path,
        "/v1/continue_inspection",
        "{:?}",
        d.seen()
    );
    assert!(!d.lookups()[0].query.contains_key("node_uuid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_stops_heartbeats_and_the_agent() {
    let d = Double::start(double_script()).await;
    let line = format!("ipa-api-url={} BOOTIF=01-52-54-00-AA-BB-01", d.url());
    let mut agent = Agent::start(line, fixture_root(), false);
    d.wait_until("a heartbeat", Duration::from_secs(20), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    let beat = d.heartbeats()[0].body.clone();
    let callback = beat["callback_url"].as_str().unwrap();
    let client = pinned_client(beat["agent_verify_ca"].as_str().unwrap());
    let res = client
        .post(format!(
            "{callback}/v1/commands/?wait=true&agent_token={TOKEN}"
        ))
        .json(&serde_json::json!({"name": "system.lockdown", "params": {}}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    tokio::time::timeout(Duration::from_secs(15), &mut agent.task)
        .await
        .expect("the agent ends after lockdown")
        .unwrap()
        .unwrap();
    assert!(agent.hooks.calls().contains(&SystemAction::LockdownNetwork));
    // The loop is gone: no heartbeat can follow.
    let before = d.heartbeats().len();
    assert!(
        client
            .get(format!("{callback}/v1/status"))
            .send()
            .await
            .is_err(),
        "API stopped"
    );
    assert_eq!(d.heartbeats().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_rescue_stops_heartbeats_and_keeps_the_api() {
    let d = Double::start(double_script()).await;
    let rescue = tempfile::tempdir().unwrap();
    let config = RunConfig {
        cmdline: Some(format!(
            "ipa-api-url={} BOOTIF=01-52-54-00-AA-BB-01",
            d.url()
        )),
        root: fixture_root(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        standalone: false,
        rescue_root: Some(rescue.path().to_path_buf()),
    };
    let stop = Arc::new(Notify::new());
    let mut task = tokio::spawn({
        let stop = stop.clone();
        async move { run(config, async move { stop.notified().await }).await }
    });
    d.wait_until("a heartbeat", Duration::from_secs(20), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    let beat = d.heartbeats()[0].body.clone();
    let callback = beat["callback_url"].as_str().unwrap().to_string();
    let client = pinned_client(beat["agent_verify_ca"].as_str().unwrap());
    let hash = ferrite_proto::crypt::sha512_crypt("pw", &[3; 16]);
    let res = client
        .post(format!(
            "{callback}/v1/commands/?wait=true&agent_token={TOKEN}"
        ))
        .json(&serde_json::json!({"name": "rescue.finalize_rescue",
                                  "params": {"rescue_password": hash, "hashed": true}}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["command_name"], "finalize_rescue", "{r}");
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(r["command_result"], Value::Null, "{r}");
    // The command list never shows the password (nor its hash) back.
    let listed: Value = client
        .get(format!("{callback}/v1/commands/?agent_token={TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed.to_string().contains(&hash), "{listed}");
    assert_eq!(listed["commands"][0]["command_name"], "finalize_rescue");
    let shadow = std::fs::read_to_string(rescue.path().join("etc/shadow")).unwrap();
    assert!(shadow.contains(&format!("rescue:{hash}:")), "{shadow}");
    // No heartbeat follows (the double asks for one every second), the API still answers.
    let before = d.heartbeats().len();
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < quiet_until {
        assert!(d.heartbeats().len() <= before + 1, "heartbeats went on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = client
        .get(format!("{callback}/v1/status"))
        .send()
        .await
        .unwrap();
    assert!(status.status().is_success());
    assert!(!task.is_finished(), "the agent keeps running");
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(15), &mut task)
        .await
        .expect("the agent stops when asked")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_looks_up_and_heartbeats() {
    let d = Double::start(double_script()).await;
    let dir = tempfile::tempdir().unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        format!(
            "BOOT_IMAGE=/vmlinuz ipa-api-url={} BOOTIF=01-52-54-00-AA-BB-01\n",
            d.url()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferrite-agent"))
        .arg("--cmdline")
        .arg(&cmdline)
        .arg("--root")
        .arg(fixture_root())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = ferrite_testkit::Reaped(child);
    d.wait_until(
        "a heartbeat from the binary",
        Duration::from_secs(20),
        |s| s.iter().any(|r| r.is_heartbeat()),
    )
    .await;
    assert!(agent.0.try_wait().unwrap().is_none(), "still running");
    assert!(d.lookups()[0].query["addresses"].starts_with(BOOTIF_MAC));
    let beat = &d.heartbeats()[0].body;
    let callback = beat["callback_url"].as_str().unwrap();
    let pem = beat["agent_verify_ca"].as_str().unwrap();
    let status = pinned_client(pem)
        .get(format!("{callback}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    // SIGTERM stops it cleanly.
    sigterm(agent.0.id());
    let status = ferrite_testkit::wait_until_async(
        "the agent to exit on SIGTERM",
        Duration::from_secs(15),
        || std::future::ready(agent.0.try_wait().unwrap()),
    )
    .await;
    assert!(status.success(), "{status}");
}

#[test]
fn the_real_binary_refuses_a_bad_command_line_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite-agent"))
        .args([
            "--cmdline",
            "quiet ipa-api-url=http://127.0.0.1:1 ipa-lookup-timeout=forever",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ipa-lookup-timeout") && stderr.contains("seconds"),
        "{stderr}"
    );
}

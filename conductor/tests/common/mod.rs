//! Test support: a conductor on a real loopback socket over a real SQLite file or a
//! throwaway PostgreSQL (Debian's binaries, run as `postgres`), and small HTTP helpers.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_conductor::server::ConductorConfig;

pub mod agent;
pub mod cluster;
use serde_json::Value;

pub const VERSION: &str = "1.68";

/// Polls an async condition until it holds or the deadline passes (never a bare sleep).
pub use ferrite_testkit::wait_until_async as wait_until;

fn pg_bin() -> PathBuf {
    for v in ["17", "16", "15"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if p.join("postgres").exists() {
            return p;
        }
    }
    panic!("PostgreSQL server binaries not found under /usr/lib/postgresql: run `cargo xtask deps` (Debian package postgresql)");
}

fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&"postgres") && f.len() > 3 {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no postgres user: install the Debian package postgresql");
}

/// A throwaway PostgreSQL server in a temp dir on a free port; stopped on drop.
pub struct Postgres {
    child: Signalled,
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        let (uid, gid) = postgres_ids();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let bin = pg_bin();
        let out = Command::new(bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // postgres must be told its port: one that another process takes before postgres
        // binds it makes postgres exit, and it starts again on another.
        let (port, child) =
            ferrite_testkit::with_free_port("postgres", ferrite_testkit::free_tcp_port, |port| {
                let child = Command::new(bin.join("postgres"))
                    .arg("-D")
                    .arg(&data)
                    .args([
                        "-p",
                        &port.to_string(),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "fsync=off",
                    ])
                    .arg("-k")
                    .arg(dir.path())
                    .uid(uid)
                    .gid(gid)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting postgres");
                let mut pg = Signalled(child, libc::SIGQUIT);
                listening(&mut pg.0, port, "postgres").map(|()| (port, pg))
            });
        Postgres {
            child,
            _dir: dir,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        }
    }
}

/// A child process stopped on drop with its signal, then reaped (postgres: SIGQUIT, an
/// immediate shutdown; the data is thrown away anyway).
pub struct Signalled(pub Child, pub i32);

impl Drop for Signalled {
    fn drop(&mut self) {
        unsafe_kill(self.0.id(), self.1);
        let _ = self.0.wait();
    }
}

/// Waits until `child` accepts TCP connections on 127.0.0.1:`port`; an error if it exits
/// first (for a server told a port, usually because another process took it).
pub fn listening(child: &mut Child, port: u16, what: &str) -> Result<(), String> {
    ferrite_testkit::wait_until(
        &format!("{what} to listen on port {port}"),
        Duration::from_secs(30),
        || match child.try_wait() {
            Ok(Some(status)) => Some(Err(format!("{what} exited: {status}"))),
            _ => std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(Ok(())),
        },
    )
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this process spawned and has not reaped yet.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An in-process conductor on 127.0.0.1:<free port>; shut down on drop.
pub struct Server {
    pub url: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _pg: Option<Postgres>,
}

impl Server {
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut ConductorConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(tokio::task::spawn_blocking(Postgres::start).await.unwrap()),
        };
        let mut cfg = ConductorConfig {
            state_dir: Some(dir.path().to_path_buf()),
            database_url: pg.as_ref().map(|p| p.url.clone()),
            host: Some("test-conductor".into()),
            periodic_interval: Some(0.2),
            ..Default::default()
        };
        tweak(&mut cfg);
        let https = cfg.tls_cert.is_some();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if https { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ferrite_conductor::server::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        let s = Server {
            url,
            dir,
            stop: Some(tx),
            task: Some(task),
            _pg: pg,
        };
        // Only whether it answers; the TLS tests check its certificate themselves.
        let probe = reqwest::Client::builder()
            .danger_accept_invalid_certs(https)
            .build()
            .unwrap();
        wait_until("the API answers", Duration::from_secs(30), || async {
            probe.get(format!("{}/v1", s.url)).send().await.is_ok()
        })
        .await;
        s
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A small API client that sends the microversion header.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.into(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_v(VERSION, method, path, body).await
    }

    /// [`Api::call`] with another microversion.
    pub async fn call_v(
        &self,
        version: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", version);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // A server refusing an oversized body may close the connection while the client
        // is still writing it; the answer is read on a retry.
        // Its own unpooled client: a connection the server closed after refusing a body
        // must not be reused by the next request.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut tries = 0;
        let r = loop {
            let sent = http
                .request(m.clone(), format!("{}{path}", self.base))
                .header("X-OpenStack-Ironic-API-Version", VERSION)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) => break r,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("retrying after transport error: {e}");
                }
                Err(e) => panic!("{method} {path}: {e}"),
            }
        };
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn node(&self, ident: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/nodes/{ident}")).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn provision(&self, ident: &str, body: Value) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/v1/nodes/{ident}/states/provision"),
            Some(body),
        )
        .await
    }

    /// Waits until the node reaches `state`; panics (with last_error) at once when it lands
    /// in a failure state instead (the deploy will not go on), else after 60 s.
    pub async fn wait_state(&self, ident: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = self.node(ident).await;
            let now = n["provision_state"].as_str().unwrap_or("");
            if now == state && n["reservation"].is_null() {
                return n;
            }
            assert!(
                !(now.ends_with(" failed") && n["reservation"].is_null()),
                "node {ident} stopped in {now:?} waiting for {state:?} (last_error {})",
                n["last_error"]
            );
            assert!(
                Instant::now() < deadline,
                "node {ident} did not reach {state}: {} (last_error {})",
                n["provision_state"],
                n["last_error"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The message inside Ironic's error body, asserting the format on the way: a
/// faultstring, or webob's description (version negotiation's 406).
pub fn fault(v: &Value) -> String {
    let inner = v["error_message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an Ironic error: {v}"));
    let inner: Value = serde_json::from_str(inner).expect("error_message holds JSON");
    if let Some(d) = inner.get("description") {
        assert!(
            inner.get("code").is_some() && inner.get("title").is_some(),
            "{inner}"
        );
        return d.as_str().unwrap().to_string();
    }
    assert!(inner.get("faultcode").is_some(), "{inner}");
    inner["faultstring"].as_str().unwrap().to_string()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

//! The dashboard in a real browser: headless Debian Chromium driven by chromedriver over the
//! WebDriver protocol (plain JSON over HTTP with reqwest). A conductor with fake-hardware
//! nodes in several states: the fleet view lists and counts them and filters; a node view
//! shows its timeline chart, ports and last error; clicking a verb changes the node's
//! state on the page; the browser logs no JavaScript error. Screenshots go to
//! `target/ui-screenshots/`. Skipped (with a message) only when chromium is absent and
//! FERRITE_REQUIRE_BROWSER is unset; `cargo xtask test` sets it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{Api, Backend, Server};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session.
struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: Driver,
}

impl Browser {
    async fn start() -> Browser {
        // chromedriver cannot bind port 0 and say which it got ("on port 0"): take a free
        // port from the kernel and hand it over (a race only with another such grab).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--log-level=WARNING".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Driver {
            child,
            url: String::new(),
            _profile: profile,
        };
        driver.url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        common::wait_until("chromedriver answers", Duration::from_secs(20), || async {
            http.get(format!("{}/status", driver.url))
                .send()
                .await
                .is_ok()
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]},
        }}});
        let r: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Browser {
            http,
            base: format!("{}/session/{id}", driver.url),
            _driver: driver,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// A WebDriver command; its error object when it failed.
    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r: Value = rb.send().await.unwrap().json().await.unwrap();
        match r["value"].get("error") {
            Some(_) => Err(r["value"].clone()),
            None => Ok(r["value"].clone()),
        }
    }

    /// Runs `action` (a path under `/element/{id}`) on the element `css` selects. The page
    /// replaces its live parts every 2 s, so an element found a moment ago may be gone
    /// ("stale element reference"): it is found again.
    async fn on_element(&self, css: &str, method: reqwest::Method, action: &str) -> Value {
        for _ in 0..20 {
            let e = self.find(css).await;
            let body = (method == reqwest::Method::POST).then(|| json!({}));
            match self
                .try_cmd(method.clone(), &format!("/element/{e}/{action}"), body)
                .await
            {
                Ok(v) => return v,
                Err(err) if err["error"] == "stale element reference" => continue,
                Err(err) => panic!("WebDriver {css} {action}: {err}"),
            }
        }
        panic!("{css} went stale 20 times in a row")
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "text")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// The browser's console entries of level SEVERE (JavaScript errors, failed loads).
    async fn severe_logs(&self) -> Vec<Value> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }

    /// Polls `css`'s text until `want` holds (the page refreshes itself every 2 s).
    async fn wait_text(&self, css: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text(css).await;
            if want(&t) {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{css} still reads {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn browser_present() -> bool {
    std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists()
}

/// Enrolls `name` and moves it to `target` with fake hardware.
async fn node_in(api: &Api, name: &str, extra: Value, steps: &[(&str, &str)]) -> Value {
    let mut body = json!({"driver": "fake-hardware", "name": name});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (s, n) = api.call("POST", "/v1/nodes", Some(body)).await;
    assert_eq!(s, 201, "{n}");
    for (verb, state) in steps {
        assert_eq!(api.provision(name, json!({"target": verb})).await.0, 202);
        common::wait_until(state, Duration::from_secs(20), || async {
            let n = api.node(name).await;
            n["provision_state"] == *state && n["reservation"].is_null()
        })
        .await;
    }
    api.node(name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    if !browser_present() {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_BROWSER").is_none(),
            "FERRITE_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing: \
             run `cargo xtask deps` (Debian packages chromium and chromium-driver)"
        );
        eprintln!(
            "SKIPPED the_dashboard_in_a_browser: {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let server = Server::start(Backend::Sqlite, |_| {}).await;
    let api = Api::new(&server.url);
    node_in(&api, "new-1", json!({}), &[]).await;
    node_in(
        &api,
        "ready-1",
        json!({}),
        &[("manage", "manageable"), ("provide", "available")],
    )
    .await;
    node_in(
        &api,
        "prod-1",
        json!({}),
        &[
            ("manage", "manageable"),
            ("provide", "available"),
            ("active", "active"),
        ],
    )
    .await;
    let broken = node_in(
        &api,
        "broken-1",
        json!({}),
        &[("manage", "manageable"), ("provide", "available")],
    )
    .await;
    let patch = json!([{"op": "add", "path": "/driver_info/fake_fail", "value": "power"}]);
    assert_eq!(
        api.call("PATCH", "/v1/nodes/broken-1", Some(patch)).await.0,
        200
    );
    assert_eq!(
        api.provision("broken-1", json!({"target": "active"}))
            .await
            .0,
        202
    );
    common::wait_until("deploy failed", Duration::from_secs(20), || async {
        api.node("broken-1").await["provision_state"] == "deploy failed"
    })
    .await;

    let b = Browser::start().await;
    // Fleet: every node, counts by state, the failure's message.
    b.go(&format!("{}/ui/", server.url)).await;
    let table = b.text("#fleet").await;
    for name in ["new-1", "ready-1", "prod-1", "broken-1"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(table.contains("fake power failure"), "{table}");
    let counts = b.text(".counts").await;
    assert!(counts.contains("all 4"), "{counts}");
    assert!(counts.contains("deploy failed 1"), "{counts}");
    b.screenshot("fleet.png").await;
    // The filter hides what does not match.
    b.js(
        "var f = document.getElementById('filter'); f.value = 'broken'; \
          f.dispatchEvent(new Event('input'));",
    )
    .await;
    let visible = b
        .js(
            "return Array.from(document.querySelectorAll('#fleet tbody tr'))\
             .filter(function (r) { return !r.hidden; }).length;",
        )
        .await;
    assert_eq!(visible, 1);

    // A failed node: its last error and its timeline chart.
    b.go(&format!("{}/ui/nodes/broken-1", server.url)).await;
    let err = b.text("#last-error").await;
    assert!(err.contains("fake power failure"), "{err}");
    let bars = b
        .js("return document.querySelectorAll('svg.gantt rect').length;")
        .await;
    assert!(bars.as_u64().unwrap() >= 5, "{bars}");
    let failed_bars = b
        .js("return document.querySelectorAll('svg.gantt g.failed').length;")
        .await;
    assert!(failed_bars.as_u64().unwrap() >= 1);
    assert!(b
        .text(".summary")
        .await
        .contains(broken["uuid"].as_str().unwrap()));
    b.screenshot("node-failed.png").await;

    // Click a verb: ready-1 is deployed (fake deploy) and the page follows.
    b.go(&format!("{}/ui/nodes/ready-1", server.url)).await;
    assert_eq!(b.text("#state").await, "available");
    b.on_element("button[data-verb='active']", reqwest::Method::POST, "click")
        .await;
    b.wait_text("#state", |t| t == "active").await;
    assert_eq!(api.node("ready-1").await["provision_state"], "active");
    // Once active the timeline shows the deploy's steps.
    let chart = b.text("svg.gantt").await;
    assert!(chart.contains("deploy.deploy"), "{chart}");
    b.screenshot("node.png").await;

    let errors = b.severe_logs().await;
    assert!(errors.is_empty(), "browser console errors: {errors:?}");
    // The session ends with chromedriver, killed by its guard.
    drop(b);
    server.stop().await;
}

/// With `--htpasswd`, `/ui/` asks for credentials like the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_needs_the_apis_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("ops:{hash}\n")).unwrap();
    let server = Server::start(Backend::Sqlite, |c| c.htpasswd = Some(htpasswd)).await;
    let http = reqwest::Client::new();
    for path in ["/ui/", "/ui/static/app.js", "/metrics"] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = http
            .get(format!("{}{path}", server.url))
            .basic_auth("ops", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    server.stop().await;
}

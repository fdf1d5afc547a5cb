//! Issue 15 finding 3: the conductor's own TLS (`--tls-cert`/`--tls-key`) and
//! `--require-tls`, over real sockets: the API answers HTTPS with the operator's
//! certificate, plain HTTP gets no API, a stalled handshake holds up no one, the `ferrite`
//! CLI trusts a private CA with `--cacert`, and bad files are refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fault, Api, Backend, Server};
use ferrite_conductor::server::ConductorConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;

/// A private CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`: (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ferrite test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn trusting(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_https_with_the_operators_certificate() {
    let keys = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(keys.path());
    let server = Server::start(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // A client trusting the private CA gets the API.
    let api = Api {
        base: server.url.clone(),
        http: trusting(&ca),
    };
    let (s, v) = api.get("/v1/").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "tls-node"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    // A client that does not trust it refuses the connection, naming the certificate.
    let e = reqwest::get(format!("{}/v1/", server.url))
        .await
        .expect_err("an unknown issuer must not be accepted");
    let why = ferrite_conductor::error_chain(&e).to_lowercase();
    assert!(why.contains("certificate"), "{why}");

    // Plain HTTP to the TLS port gets no API answer.
    let plain = server.url.replacen("https://", "http://", 1);
    match reqwest::get(format!("{plain}/v1/")).await {
        Err(_) => {}
        Ok(r) => panic!("plain HTTP was answered: {}", r.status()),
    }

    // A client that connects and never starts its handshake holds up no one.
    let addr = server.url.trim_start_matches("https://").to_string();
    let _stalled: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let answered = tokio::time::timeout(Duration::from_secs(5), api.get("/v1/nodes")).await;
    let (s, v) = answered.expect("stalled handshakes blocked the API");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1, "{v}");

    // The CLI: with --cacert it works; without, it fails and says what to pass.
    let ferrite = env!("CARGO_BIN_EXE_ferrite");
    let url = server.url.clone();
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        let run = |extra: &[&str]| {
            std::process::Command::new(ferrite)
                .args(["--url", &url, "-f", "json"])
                .args(extra)
                .args(["node", "list"])
                .env_remove("FERRITE_CACERT")
                .output()
                .unwrap()
        };
        (run(&["--cacert", ca.to_str().unwrap()]), run(&[]))
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("tls-node"), "{out}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success(),
        "an untrusted certificate was accepted"
    );
    assert!(err.contains("--cacert"), "{err}");
    server.stop().await;
}

async fn start_fails(tweak: impl FnOnce(&mut ConductorConfig)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ConductorConfig {
        state_dir: Some(dir.path().to_path_buf()),
        host: Some("tls-refusal".into()),
        ..Default::default()
    };
    tweak(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        ferrite_conductor::server::run(listener, cfg, std::future::pending()),
    )
    .await
    .expect("the conductor started instead of refusing");
    format!(
        "{:#}",
        r.expect_err("the conductor started instead of refusing")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_are_refused_by_name() {
    let keys = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(keys.path());
    let junk = keys.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = private_ca(other.path());

    let e = start_fails(|c| {
        c.tls_cert = Some(junk.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(e.contains("--tls-cert") && e.contains("junk.pem"), "{e}");
    let e = start_fails(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(ca.clone());
    })
    .await;
    assert!(e.contains("--tls-key") && e.contains("ca.pem"), "{e}");
    let e = start_fails(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(other_key.clone());
    })
    .await;
    assert!(e.contains("does not fit"), "{e}");
    let e = start_fails(|c| c.tls_cert = Some(cert.clone())).await;
    assert!(e.contains("go together"), "{e}");
    let e = start_fails(|c| {
        c.tls_cert = Some(keys.path().join("missing.pem"));
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(e.contains("--tls-cert") && e.contains("missing.pem"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_plain_http_off_loopback_and_http_agents() {
    // Off loopback without a certificate: refused before serving (checked on the address
    // alone: the test binds nothing off loopback).
    let dir = tempfile::tempdir().unwrap();
    let cfg = ConductorConfig {
        state_dir: Some(dir.path().to_path_buf()),
        require_tls: Some(true),
        ..Default::default()
    };
    let e = format!(
        "{:#}",
        cfg.tls_config("192.0.2.10:6385".parse().unwrap())
            .expect_err("plain HTTP off loopback with --require-tls")
    );
    assert!(
        e.contains("--require-tls") && e.contains("--tls-cert"),
        "{e}"
    );
    assert!(cfg
        .tls_config("127.0.0.1:6385".parse().unwrap())
        .unwrap()
        .is_none());

    // Agents: a heartbeat naming an http:// callback is refused, https:// is taken.
    let server = Server::start(Backend::Sqlite, |c| c.require_tls = Some(true)).await;
    let api = Api::new(&server.url);
    let (s, v) = api
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"driver": "fake-hardware", "name": "rt", "inspect_interface": "agent"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uuid = v["uuid"].as_str().unwrap().to_string();
    for (target, state) in [("manage", "manageable"), ("inspect", "inspect wait")] {
        assert_eq!(api.provision("rt", json!({"target": target})).await.0, 202);
        api.wait_state("rt", state).await;
    }
    let (s, v) = api.get(&format!("/v1/lookup?node_uuid={uuid}")).await;
    assert_eq!(s, 200, "{v}");
    let token = v["config"]["agent_token"].as_str().unwrap().to_string();
    let path = format!("/v1/heartbeat/{uuid}");
    let hb = |url: &str| json!({"callback_url": url, "agent_token": token, "agent_version": "t"});
    let (s, v) = api
        .call("POST", &path, Some(hb("http://10.0.0.5:9999")))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(fault(&v).contains("--require-tls"), "{}", fault(&v));
    let node = api.node("rt").await;
    assert!(
        node["driver_internal_info"]["agent_url"].is_null(),
        "a refused heartbeat recorded its URL: {node}"
    );
    let (s, v) = api
        .call("POST", &path, Some(hb("https://10.0.0.5:9999")))
        .await;
    assert_eq!(s, 202, "{v}");
    server.stop().await;
}

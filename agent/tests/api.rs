//! Agent API over a real loopback socket: routes, status codes, token rules, body
//! limits and malformed input; after every bad request the server keeps serving.

mod common;

use common::{assert_fault, Agent, TOKEN};
use ferrite_agent::state::AgentConfig;
use serde_json::json;

#[tokio::test]
async fn versions_and_status() {
    let agent = Agent::start().await;
    let (code, root) = agent.get("/").await;
    assert_eq!(code, 200);
    assert_eq!(root["versions"][0]["id"], "v1");
    assert_eq!(root["default_version"]["id"], "v1");
    let self_link = root["versions"][0]["links"][0]["href"].as_str().unwrap();
    assert_eq!(self_link, format!("http://{}/v1/", agent.addr));

    for path in ["/v1/", "/v1"] {
        let (code, v1) = agent.get(path).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(v1["id"], "v1");
        assert!(v1["commands"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/v1/commands"));
        assert_eq!(v1["media_types"][0]["base"], "application/json");
    }

    for path in ["/v1/status", "/v1/status/", "/status"] {
        let (code, status) = agent.get(path).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
        let started = status["started_at"].as_f64().unwrap();
        assert!((started - agent.state.started_at()).abs() < 1e-6);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(started <= now && now - started < 600.0);
    }
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405() {
    let agent = Agent::start().await;
    for path in [
        "/v2/",
        "/v1/nodes",
        "/v1/commands/abc/extra",
        "/favicon.ico",
    ] {
        assert_fault(&agent.get(path).await, 404, "no such resource");
    }
    let resp = agent
        .client
        .delete(agent.url("/v1/commands/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("allow").unwrap().to_str().unwrap(),
        "GET, POST"
    );
    assert_fault(&common::decode(resp).await, 405, "allowed: GET, POST");
    assert_fault(&agent.post_raw("/v1/status", "{}").await, 405, "GET");
    assert_fault(&agent.post_raw("/", "{}").await, 405, "GET");
    let head = agent
        .client
        .head(agent.url("/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    let put = agent
        .client
        .put(agent.url("/v1/commands/some-id"))
        .send()
        .await
        .unwrap();
    assert_fault(&common::decode(put).await, 405, "GET");
    agent.assert_serving().await;
}

/// Issue 15 finding 1: an agent nobody handed a token obeys nobody, whatever is offered.
#[tokio::test]
async fn without_a_token_no_command_is_accepted() {
    let agent = Agent::start_without_token().await;
    for path in ["/v1/commands/", "/v1/commands/some-id"] {
        for query in ["", "?agent_token=", &format!("?agent_token={TOKEN}")] {
            assert_fault(
                &agent.get(&format!("{path}{query}")).await,
                401,
                "has no token yet",
            );
        }
    }
    for query in ["?wait=true", &format!("?wait=true&agent_token={TOKEN}")] {
        for name in [
            "standby.sync",
            "standby.prepare_image",
            "iscsi.start_iscsi_target",
        ] {
            let body = json!({"name": name, "params": {}}).to_string();
            assert_fault(
                &agent.post_raw(&format!("/v1/commands/{query}"), body).await,
                401,
                "has no token yet",
            );
        }
    }
    assert!(agent.hooks.calls().is_empty(), "a refused command ran");
    assert!(
        agent.state.commands.list().is_empty(),
        "a refused command was stored"
    );
    agent.assert_serving().await;
}

#[tokio::test]
async fn token_is_required_once_set() {
    let agent = Agent::start_without_token().await;
    agent.state.set_agent_token(TOKEN).unwrap();

    for path in ["/v1/commands", "/v1/commands/", "/v1/commands/some-id"] {
        assert_fault(&agent.get(path).await, 401, "Token invalid");
        assert_fault(
            &agent.get(&format!("{path}?agent_token=wrong")).await,
            401,
            "does not match",
        );
        // One character short, and the right token with one character changed.
        let short = &TOKEN[..TOKEN.len() - 1];
        assert_fault(
            &agent.get(&format!("{path}?agent_token={short}")).await,
            401,
            "Token invalid",
        );
        let mut flipped = TOKEN.to_string();
        flipped.replace_range(0..1, "S");
        assert_fault(
            &agent.get(&format!("{path}?agent_token={flipped}")).await,
            401,
            "Token invalid",
        );
    }
    let body = json!({"name": "standby.sync", "params": {}}).to_string();
    assert_fault(
        &agent.post_raw("/v1/commands/", body.clone()).await,
        401,
        "Token invalid",
    );
    assert!(
        agent.hooks.calls().is_empty(),
        "a refused command must not run"
    );

    let (code, list) = agent
        .get(&format!("/v1/commands/?agent_token={TOKEN}"))
        .await;
    assert_eq!(code, 200, "{list}");
    let (code, result) = agent
        .post_raw(
            &format!("/v1/commands/?wait=true&agent_token={TOKEN}"),
            body,
        )
        .await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["command_status"], "SUCCEEDED");
    // Percent-encoding in the query is decoded.
    let encoded = TOKEN.replace('-', "%2D");
    let (code, _) = agent
        .get(&format!("/v1/commands?agent_token={encoded}"))
        .await;
    assert_eq!(code, 200);
    // Status and versions need no token.
    agent.assert_serving().await;
    assert_eq!(agent.get("/").await.0, 200);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let config = AgentConfig {
        max_body_bytes: 1024,
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let big = json!({"name": "standby.sync", "params": {"pad": "x".repeat(2048)}}).to_string();
    assert_fault(
        &agent.post_raw("/v1/commands/", big.clone()).await,
        413,
        "limit of 1024 bytes",
    );

    // Chunked (no Content-Length): the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    assert_fault(
        &agent
            .post_raw("/v1/commands/", reqwest::Body::wrap_stream(stream))
            .await,
        413,
        "limit",
    );

    // A huge declared length is refused before any body byte is read.
    let answer = agent
        .raw(
            b"POST /v1/commands/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\
              Connection: close\r\n\r\n",
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"faultcode\":\"Client\""), "{answer}");

    // At the limit is fine.
    let ok = json!({"name": "standby.sync", "params": {}}).to_string();
    assert_eq!(agent.post_raw("/v1/commands/", ok).await.0, 200);
    assert!(agent.hooks.calls().len() == 1);
    agent.assert_serving().await;
}

#[tokio::test]
async fn bodies_in_memory_at_once_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = AgentConfig {
        max_body_bytes: 4096,
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let budget = agent.state.body_budget_available_kib();
    assert_eq!(budget, 8, "twice the limit, in KiB");

    // Two clients declare 4 KiB bodies and send only part: they hold the whole budget.
    let body = json!({"name": "standby.sync", "params": {"pad": "x".repeat(3900)}}).to_string();
    let body = format!("{body:<4096}");
    let head = format!(
        "POST /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\
         Connection: close\r\n\r\n"
    );
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body.as_bytes()[..100]).await.unwrap();
        slow.push(conn);
    }
    ferrite_testkit::wait_until_async(
        "the body budget to run out",
        std::time::Duration::from_secs(10),
        || async { (agent.state.body_budget_available_kib() == 0).then_some(()) },
    )
    .await;

    // A third body waits for budget instead of adding to memory…
    let third = {
        let client = agent.client.clone();
        let url = agent.url("/v1/commands/");
        tokio::spawn(async move {
            let body = json!({"name": "poll.get_hardware_info", "params": {"x": 1}}).to_string();
            common::decode(client.post(url).body(body).send().await.unwrap()).await
        })
    };
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), &mut third)
            .await
            .is_err(),
        "the third body must wait while the budget is used up"
    );
    // …and proceeds once a slow client finishes (its unknown param gives 400).
    for conn in &mut slow {
        conn.write_all(&body.as_bytes()[100..]).await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("`pad`"), "{answer}");
    }
    assert_fault(&third.await.unwrap(), 400, "`x`");
    assert_eq!(
        agent.state.body_budget_available_kib(),
        budget,
        "all budget returned"
    );
    agent.assert_serving().await;
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_field() {
    let agent = Agent::start().await;
    let cases: &[(&str, &str)] = &[
        ("", "not valid JSON"),
        ("{\"name\": \"standby.sync\",", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("\"standby.sync\"", "must be a JSON object"),
        ("{\"params\": {}}", "missing field `name`"),
        (
            "{\"name\": 7, \"params\": {}}",
            "field `name` must be a string",
        ),
        ("{\"name\": \"standby.sync\"}", "missing field `params`"),
        (
            "{\"name\": \"standby.sync\", \"params\": []}",
            "field `params` must be a JSON object, got an array",
        ),
        (
            "{\"name\": \"standby.sync\", \"params\": \"x\"}",
            "field `params` must be a JSON object, got a string",
        ),
        (
            "{\"name\": \"standby.sync\", \"params\": {}, \"extra\": 1}",
            "unknown field `extra`",
        ),
        (
            "{\"name\": \"standby\", \"params\": {}}",
            "<extension>.<command>",
        ),
    ];
    for (body, needle) in cases {
        assert_fault(
            &agent.post_raw("/v1/commands/", body.to_string()).await,
            400,
            needle,
        );
    }

    // Unknown command: the answer lists the known ones.
    let got = agent.command("", "standby.fly", json!({})).await;
    assert_fault(&got, 400, "unknown command \"standby.fly\"");
    for known in [
        "standby.sync",
        "poll.get_hardware_info",
        "system.lockdown",
        "log.collect_system_logs",
    ] {
        assert!(got.1["faultstring"].as_str().unwrap().contains(known));
    }

    // Unknown and mistyped params name the field.
    assert_fault(
        &agent
            .command("", "standby.sync", json!({"force": true}))
            .await,
        400,
        "`force`",
    );
    assert_fault(
        &agent
            .command(
                "",
                "clean.get_clean_steps",
                json!({"node": "n1", "ports": []}),
            )
            .await,
        400,
        "parameter `node`: invalid type: string",
    );
    assert_fault(
        &agent
            .command("", "clean.get_clean_steps", json!({"node": {}}))
            .await,
        400,
        "parameter `ports`: missing field",
    );
    assert_fault(
        &agent
            .command(
                "",
                "clean.get_clean_steps",
                json!({"node": {}, "ports": [], "bogus": 1}),
            )
            .await,
        400,
        "`bogus`",
    );
    assert_fault(
        &agent
            .command("?wait=maybe", "standby.sync", json!({}))
            .await,
        400,
        "query parameter `wait` must be true or false",
    );
    assert!(
        agent.hooks.calls().is_empty(),
        "no refused command may have run"
    );
    let (code, list) = agent.get("/v1/commands/").await;
    assert_eq!(code, 200);
    assert_eq!(
        list["commands"],
        json!([]),
        "refused commands are not stored"
    );

    // Garbage that is not HTTP: hyper answers 400 and closes; we keep serving.
    let answer = agent.raw(b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer:?}"
    );
    let answer = agent
        .raw(b"POST /v1/commands/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    agent.assert_serving().await;
}

#[tokio::test]
async fn unknown_command_ids_404() {
    let agent = Agent::start().await;
    assert_fault(
        &agent
            .get("/v1/commands/0b7c1f5e-0000-4000-8000-000000000000")
            .await,
        404,
        "not found",
    );
    assert_fault(
        &agent.get("/v1/commands/nope?wait=true").await,
        404,
        "not found",
    );
    agent.assert_serving().await;
}

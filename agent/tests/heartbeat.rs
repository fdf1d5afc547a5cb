//! Lookup and heartbeat against a test double of the conductor on loopback (CONTRACT.md §2).

mod double;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use double::{gaps, Double, Reply, Script, NODE, TOKEN};
use ferrite_agent::heartbeat::heartbeat::{HeartbeatTiming, Heartbeater};
use ferrite_agent::heartbeat::lookup::{lookup, LookupError, LookupTiming};
use ferrite_agent::heartbeat::token::TokenStore;
use ferrite_agent::heartbeat::{AgentLink, ConductorClient};
use reqwest::Url;
use tokio::sync::Notify;

const MAC: &str = "52:54:00:12:34:56";

#[derive(Default)]
struct TestLink {
    tokens: Mutex<Vec<String>>,
    status: Mutex<(Option<String>, Option<String>)>,
    wake: Notify,
}

impl AgentLink for TestLink {
    fn set_token(&self, token: &str) {
        self.tokens.lock().unwrap().push(token.into());
    }
    fn agent_status(&self) -> (Option<String>, Option<String>) {
        self.status.lock().unwrap().clone()
    }
    fn heartbeat_requested(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wake.notified())
    }
}

fn client(d: &Double) -> ConductorClient {
    ConductorClient::new(Url::parse(&d.url()).unwrap(), false, None).unwrap()
}

fn fast_lookup() -> LookupTiming {
    LookupTiming {
        timeout: Duration::from_secs(10),
        start: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        conflict_pauses: [60, 120, 240].map(Duration::from_millis).to_vec(),
    }
}

fn fast_heartbeat() -> HeartbeatTiming {
    HeartbeatTiming {
        jitter: (0.3, 0.6),
        error_delay: Duration::from_millis(50),
        min_forced_gap: Duration::from_millis(50),
    }
}

/// Looks up through the double and starts a heartbeater on the answer.
async fn heartbeater(d: &Double, pinned: Option<&str>, link: Arc<TestLink>) -> Heartbeater {
    let mut c = client(d);
    c.negotiate_version().await.unwrap();
    let found = lookup(&c, &[MAC.into()], None, &fast_lookup())
        .await
        .unwrap();
    let mut hb = Heartbeater {
        client: c,
        node_uuid: String::new(),
        heartbeat_timeout: Duration::ZERO,
        tokens: TokenStore::new(pinned.map(str::to_string)),
        callback_url: "https://127.0.0.1:9999".into(),
        verify_ca: Some("PEM".into()),
        agent_version: "test".into(),
        timing: fast_heartbeat(),
        macs: vec![MAC.into()],
        lookup_timing: fast_lookup(),
        link,
    };
    hb.absorb_lookup(&found);
    hb
}

#[tokio::test]
async fn lookup_404_then_success_with_growing_randomised_backoff() {
    let d = Double::start(Script {
        lookup: [404, 404, 404, 404].map(Reply::status).into(),
        ..Script::default()
    })
    .await;
    let c = client(&d);
    let found = lookup(
        &c,
        &[MAC.into(), "52:54:00:00:00:02".into()],
        Some("node-x"),
        &fast_lookup(),
    )
    .await
    .unwrap();
    assert_eq!(found.node.uuid, NODE);
    assert_eq!(found.config.agent_token.as_deref(), Some(TOKEN));
    let lookups = d.lookups();
    assert_eq!(lookups.len(), 5, "four 404s then the success");
    for l in &lookups {
        assert_eq!(l.query["addresses"], format!("{MAC},52:54:00:00:00:02"));
        assert_eq!(l.query["node_uuid"], "node-x");
        assert_eq!(l.headers["x-openstack-ironic-api-version"], "1.68");
    }
    // n-th wait is in [start, min(cap, start·2^(n-1))] = [20ms, 20/40/80/160ms].
    for (n, gap) in gaps(&lookups).iter().enumerate() {
        let high = (20u64 << n).min(200);
        assert!(*gap >= Duration::from_millis(19), "wait {n}: {gap:?}");
        assert!(
            *gap <= Duration::from_millis(high + 150),
            "wait {n}: {gap:?} > {high}ms"
        );
    }
}

#[tokio::test]
async fn lookup_409_pauses_5_10_30_scaled() {
    let d = Double::start(Script {
        lookup: [409, 409, 409, 409].map(Reply::status).into(),
        ..Script::default()
    })
    .await;
    let found = lookup(&client(&d), &[MAC.into()], None, &fast_lookup())
        .await
        .unwrap();
    assert_eq!(found.node.uuid, NODE);
    let g = gaps(&d.lookups());
    assert_eq!(g.len(), 4);
    for (gap, want) in g.iter().zip([60, 120, 240, 240]) {
        assert!(
            *gap >= Duration::from_millis(want - 1),
            "{gap:?} < {want}ms"
        );
        assert!(
            *gap <= Duration::from_millis(want + 150),
            "{gap:?} ≫ {want}ms"
        );
    }
    assert!(!d.lookups()[0].query.contains_key("node_uuid"));
}

#[tokio::test]
async fn lookup_gives_up_at_the_timeout_with_a_clear_error() {
    let d = Double::start(Script {
        lookup_default: Reply::status(404),
        ..Script::default()
    })
    .await;
    let timing = LookupTiming {
        timeout: Duration::from_millis(300),
        ..fast_lookup()
    };
    let t0 = std::time::Instant::now();
    let err = lookup(&client(&d), &[MAC.into()], None, &timing)
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, LookupError::TimedOut { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(MAC) && msg.contains("ipa-lookup-timeout"),
        "{msg}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(d.lookups().len() >= 3);
}

#[tokio::test]
async fn lookup_without_any_address_is_refused_up_front() {
    let d = Double::start(Script::default()).await;
    let err = lookup(&client(&d), &[], None, &fast_lookup())
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::NothingToLookUp), "{err}");
    assert!(d.seen().is_empty());
}

#[tokio::test]
async fn token_is_taken_once_and_masked_answers_keep_it() {
    // The heartbeat after the first says "node unknown": the agent looks up again and
    // this time the conductor masks the token.
    let d = Double::start(Script {
        heartbeat: [
            Reply {
                status: 202,
                body: serde_json::Value::Null,
            },
            Reply::status(404),
        ]
        .into(),
        lookup_default: Reply::found(Some(TOKEN), 1.0),
        ..Script::default()
    })
    .await;
    let link = Arc::new(TestLink::default());
    let hb = heartbeater(&d, None, link.clone()).await;
    d.script.lock().unwrap().lookup_default = Reply::found(Some("******"), 1.0);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { hb.run(async move { stop.notified().await }).await }
    });
    d.wait_until("4 heartbeats", Duration::from_secs(10), |s| {
        s.iter().filter(|r| r.is_heartbeat()).count() >= 4
    })
    .await;
    stop.notify_one();
    task.await.unwrap().unwrap();

    assert_eq!(
        d.lookups().len(),
        2,
        "the 404 heartbeat triggered a fresh lookup"
    );
    for h in d.heartbeats() {
        assert_eq!(h.body["agent_token"], TOKEN, "{:?}", h.body);
        assert_eq!(h.path, format!("/v1/heartbeat/{NODE}"));
    }
    assert_eq!(*link.tokens.lock().unwrap(), vec![TOKEN.to_string()]);
}

#[tokio::test]
async fn command_line_token_wins_over_the_lookup() {
    let pinned = "cmdline-token-0123456789abcdef0123456789";
    let d = Double::start(Script::default()).await;
    let link = Arc::new(TestLink::default());
    let mut hb = heartbeater(&d, Some(pinned), link.clone()).await;
    hb.beat().await.unwrap();
    assert_eq!(d.heartbeats()[0].body["agent_token"], pinned);
    assert!(
        link.tokens.lock().unwrap().is_empty(),
        "the API keeps the pre-shared token"
    );
}

#[tokio::test]
async fn heartbeat_interval_is_timeout_times_0_3_to_0_6() {
    let d = Double::start(Script {
        lookup_default: Reply::found(Some(TOKEN), 1.0),
        ..Script::default()
    })
    .await;
    let link = Arc::new(TestLink::default());
    *link.status.lock().unwrap() = (Some("deploying".into()), Some("writing image".into()));
    let hb = heartbeater(&d, None, link).await;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { hb.run(async move { stop.notified().await }).await }
    });
    d.wait_until("7 heartbeats", Duration::from_secs(10), |s| {
        s.iter().filter(|r| r.is_heartbeat()).count() >= 7
    })
    .await;
    stop.notify_one();
    task.await.unwrap().unwrap();

    let beats = d.heartbeats();
    let g = gaps(&beats);
    for gap in &g {
        assert!(*gap >= Duration::from_millis(295), "{gap:?} < 0.3 × 1 s");
        assert!(*gap <= Duration::from_millis(800), "{gap:?} ≫ 0.6 × 1 s");
    }
    // Jittered, not fixed.
    let spread = g.iter().max().unwrap().as_millis() - g.iter().min().unwrap().as_millis();
    assert!(spread > 5, "{g:?}");
    let b = &beats[0].body;
    assert_eq!(b["callback_url"], "https://127.0.0.1:9999");
    assert_eq!(b["agent_verify_ca"], "PEM");
    assert_eq!(b["agent_version"], "test");
    assert_eq!(b["agent_status"], "deploying");
    assert_eq!(b["agent_status_message"], "writing image");
    assert_eq!(beats[0].headers["x-openstack-ironic-api-version"], "1.72");
}

#[tokio::test]
async fn heartbeat_errors_are_retried_after_the_error_delay() {
    let d = Double::start(Script {
        heartbeat: [500, 409, 401].map(Reply::status).into(),
        ..Script::default()
    })
    .await;
    let hb = heartbeater(&d, None, Arc::new(TestLink::default())).await;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { hb.run(async move { stop.notified().await }).await }
    });
    d.wait_until("4 heartbeats", Duration::from_secs(10), |s| {
        s.iter().filter(|r| r.is_heartbeat()).count() >= 4
    })
    .await;
    stop.notify_one();
    task.await.unwrap().unwrap();
    // error_delay 50 ms × U(1, 2); the success after them would wait 300 s × 0.3+.
    for gap in gaps(&d.heartbeats()).iter().take(3) {
        assert!(
            *gap >= Duration::from_millis(49) && *gap <= Duration::from_millis(300),
            "{gap:?}"
        );
    }
    assert_eq!(d.heartbeats().len(), 4);
}

#[tokio::test]
async fn a_requested_heartbeat_goes_out_early() {
    let d = Double::start(Script::default()).await; // heartbeat_timeout 300 s
    let link = Arc::new(TestLink::default());
    let hb = heartbeater(&d, None, link.clone()).await;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { hb.run(async move { stop.notified().await }).await }
    });
    d.wait_until("first heartbeat", Duration::from_secs(5), |s| {
        s.iter().any(|r| r.is_heartbeat())
    })
    .await;
    link.wake.notify_one();
    d.wait_until("forced heartbeat", Duration::from_secs(5), |s| {
        s.iter().filter(|r| r.is_heartbeat()).count() >= 2
    })
    .await;
    stop.notify_one();
    task.await.unwrap().unwrap();
    let g = gaps(&d.heartbeats());
    assert!(
        g[0] >= Duration::from_millis(49),
        "rate limit honoured: {g:?}"
    );
}

#[tokio::test]
async fn version_negotiation_takes_the_lower_of_both() {
    let d = Double::start(Script {
        max_version: "1.46".into(),
        ..Script::default()
    })
    .await;
    let mut c = client(&d);
    assert_eq!(c.negotiate_version().await.unwrap(), (1, 46));
    assert_eq!(c.api_version(), (1, 46));
    d.script.lock().unwrap().max_version = "1.99".into();
    assert_eq!(c.negotiate_version().await.unwrap(), (1, 72));
    c.lookup(&[MAC.into()], None).await.unwrap();
    assert_eq!(
        d.lookups()[0].headers["x-openstack-ironic-api-version"],
        "1.72"
    );
}

#[tokio::test]
async fn status_is_left_out_for_conductors_before_1_72() {
    let d = Double::start(Script {
        max_version: "1.68".into(),
        ..Script::default()
    })
    .await;
    let link = Arc::new(TestLink::default());
    *link.status.lock().unwrap() = (Some("deploying".into()), Some("writing image".into()));
    let mut hb = heartbeater(&d, None, link).await;
    hb.beat().await.unwrap();
    let beat = &d.heartbeats()[0];
    assert_eq!(beat.headers["x-openstack-ironic-api-version"], "1.68");
    assert!(beat.body.get("agent_status").is_none(), "{}", beat.body);
    assert!(beat.body.get("agent_status_message").is_none());
    assert_eq!(
        beat.body["agent_verify_ca"], "PEM",
        "1.68 still takes the CA"
    );
}

#[tokio::test]
async fn global_request_id_is_sent_with_every_call() {
    let d = Double::start(Script::default()).await;
    let id = "req-1b2c3d4e-1111-2222-3333-444455556666";
    let c = ConductorClient::new(Url::parse(&d.url()).unwrap(), false, Some(id.into())).unwrap();
    c.lookup(&[MAC.into()], None).await.unwrap();
    assert_eq!(d.lookups()[0].headers["x-openstack-request-id"], id);
    assert_eq!(d.lookups()[0].headers["accept"], "application/json");
}

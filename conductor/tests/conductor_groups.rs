//! Conductor groups: two conductors on one PostgreSQL, one in group `rack1`. A node of
//! `rack1` is owned by the `rack1` conductor and a node without a group by the other,
//! whichever conductor the request reaches; `/v1/conductors` shows the groups.

mod common;

use std::time::Duration;

use common::{wait_until, Api, Backend, Postgres, Server};
use serde_json::json;

const FORWARDED_TO: &str = "X-Ferrite-Forwarded-To";

/// `PUT …/states/provision` through `via`; the status and the conductor that answered.
async fn manage(via: &Api, node: &str) -> (u16, Option<String>) {
    let r = via
        .http
        .put(format!("{}/v1/nodes/{node}/states/provision", via.base))
        .header("X-OpenStack-Ironic-API-Version", common::VERSION)
        .json(&json!({"target": "manage"}))
        .send()
        .await
        .unwrap();
    let to = r
        .headers()
        .get(FORWARDED_TO)
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_go_to_the_conductors_of_their_group() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let db = pg.url.clone();
    let plain = Server::start(Backend::Sqlite, |c| {
        c.database_url = Some(db.clone());
        c.host = Some("plain".into());
    })
    .await;
    let rack = Server::start(Backend::Sqlite, |c| {
        c.database_url = Some(db.clone());
        c.host = Some("rack".into());
        c.conductor_group = Some("Rack1".into());
    })
    .await;
    let (a, b) = (Api::new(&plain.url), Api::new(&rack.url));
    for api in [&a, &b] {
        // Also refreshes each conductor's view of the other.
        wait_until("both conductors alive", Duration::from_secs(20), || async {
            let (_, v) = api.get("/v1/conductors").await;
            v["conductors"]
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["alive"] == true))
        })
        .await;
    }
    let (_, v) = a.get("/v1/conductors/rack").await;
    assert_eq!(v["conductor_group"], "rack1", "stored lower-case: {v}");
    assert_eq!(a.get("/v1/conductors/plain").await.1["conductor_group"], "");

    for (name, group) in [("in-rack", json!("rack1")), ("loose", json!(null))] {
        let mut body = json!({"driver": "fake-hardware", "name": name});
        if !group.is_null() {
            body["conductor_group"] = group;
        }
        let (s, v) = a.call_v("1.46", "POST", "/v1/nodes", Some(body)).await;
        assert_eq!(s, 201, "{v}");
    }
    // Sent to the other conductor, the request is forwarded to the group's; sent to the
    // group's, it runs there.
    assert_eq!(manage(&a, "in-rack").await, (202, Some(rack.url.clone())));
    assert_eq!(manage(&b, "loose").await, (202, Some(plain.url.clone())));
    for (api, name, host) in [(&a, "in-rack", "rack"), (&b, "loose", "plain")] {
        api.wait_state(name, "manageable").await;
        // The owner records itself in `conductor` (a takeover pass, every 0.2 s here).
        wait_until(
            "the owner in `conductor`",
            Duration::from_secs(10),
            || async { api.node(name).await["conductor"] == host },
        )
        .await;
    }
    // iPXE's per-MAC script comes from the owner too.
    let port = json!({"address": "52:54:00:aa:bb:cc", "node_uuid": "in-rack"});
    assert_eq!(a.call("POST", "/v1/ports", Some(port)).await.0, 201);
    let r = a
        .http
        .get(format!("{}/boot/52-54-00-aa-bb-cc.ipxe", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[FORWARDED_TO], rack.url.as_str());
    assert!(r.text().await.unwrap().starts_with("#!ipxe"));
    // A group without a live conductor: nobody owns the node; the request runs where
    // it arrives.
    let body = json!([{"op": "replace", "path": "/conductor_group", "value": "rack2"}]);
    let (s, v) = a
        .call_v("1.46", "PATCH", "/v1/nodes/loose", Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    let r = a
        .http
        .put(format!("{}/v1/nodes/loose/states/provision", a.base))
        .header("X-OpenStack-Ironic-API-Version", common::VERSION)
        .json(&json!({"target": "provide"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(!r.headers().contains_key(FORWARDED_TO));
    a.wait_state("loose", "available").await;
    plain.stop().await;
    rack.stop().await;
}

//! Behaviours sushy-emulator cannot show, against tiny in-test servers: a BMC that answers
//! 500 before 200, one that never recovers, one that is down, sessions that expire, and
//! task monitors of asynchronous actions.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferrite_redfish::{AuthType, Client, ClientConfig, RedfishError, ResetType};
use serde_json::{json, Value};

fn root(sessions: bool) -> Value {
    let mut r = json!({"@odata.id": "/redfish/v1/", "RedfishVersion": "1.11.0",
        "Systems": {"@odata.id": "/redfish/v1/Systems"}});
    if sessions {
        r["Links"] = json!({"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}});
    }
    r
}

fn systems() -> Value {
    json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})
}

fn system(state: &str) -> Value {
    json!({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": state,
        "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}})
}

#[tokio::test]
async fn a_bmc_answering_500_then_200_is_retried() {
    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route("/redfish/v1/", get(|| async { Json(root(false)) }))
        .route(
            "/redfish/v1/Systems",
            get(|State(hits): State<Arc<AtomicU32>>| async move {
                if hits.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "busy").into_response()
                } else {
                    Json(systems()).into_response()
                }
            }),
        )
        .with_state(hits.clone());
    let url = common::serve(app).await;
    let c = common::client(&url, "admin", "pw");
    assert_eq!(c.systems().await.unwrap(), vec!["/redfish/v1/Systems/1"]);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_bmc_that_keeps_failing_gives_up_after_the_bounded_attempts() {
    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route("/redfish/v1/", get(|| async { Json(root(false)) }))
        .route(
            "/redfish/v1/Systems",
            get(|State(hits): State<Arc<AtomicU32>>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": {"message": "BMC is restarting"}})),
                )
            }),
        )
        .with_state(hits.clone());
    let url = common::serve(app).await;
    let c = common::client(&url, "admin", "pw");
    let e = c.systems().await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    match &e {
        RedfishError::ServerError { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert!(
                last.contains("503") && last.contains("BMC is restarting"),
                "{last}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(e.is_transient());
    assert!(e.to_string().contains("retry later"), "{e}");
}

#[tokio::test]
async fn an_unreachable_bmc_is_reported_after_bounded_attempts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: the port is closed.
    let c = common::client(&format!("http://127.0.0.1:{port}"), "admin", "pw");
    let t = Instant::now();
    let e = c.find_system(None).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    match &e {
        RedfishError::Unreachable { attempts, url, .. } => {
            assert_eq!(*attempts, 3);
            assert!(url.contains(&port.to_string()));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("redfish_address"), "{e}");
}

/// A BMC with sessions: each login issues a new token; `expire` invalidates all of them.
#[derive(Default)]
struct Sessions {
    logins: AtomicU32,
    valid: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
    basic_seen: AtomicU32,
}

async fn login(State(s): State<Arc<Sessions>>, Json(body): Json<Value>) -> Response {
    if body["UserName"] != "admin" || body["Password"] != "pw" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "bad creds"}})),
        )
            .into_response();
    }
    let n = s.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("token-{n}");
    s.valid.lock().unwrap().push(token.clone());
    let uri = format!("/redfish/v1/SessionService/Sessions/{n}");
    (
        StatusCode::CREATED,
        [("X-Auth-Token", token), ("Location", uri.clone())],
        Json(json!({"@odata.id": uri})),
    )
        .into_response()
}

fn authorized(s: &Sessions, h: &HeaderMap) -> bool {
    if h.contains_key("authorization") {
        s.basic_seen.fetch_add(1, Ordering::SeqCst);
    }
    h.get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| s.valid.lock().unwrap().iter().any(|v| v == t))
}

fn session_bmc(s: Arc<Sessions>) -> Router {
    Router::new()
        .route("/redfish/v1/", get(|| async { Json(root(true)) }))
        .route("/redfish/v1/SessionService/Sessions", post(login))
        .route(
            "/redfish/v1/SessionService/Sessions/{id}",
            axum::routing::delete(
                |State(s): State<Arc<Sessions>>,
                 axum::extract::Path(id): axum::extract::Path<String>| async move {
                    s.deleted.lock().unwrap().push(id);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/redfish/v1/Systems",
            get(|State(s): State<Arc<Sessions>>, h: HeaderMap| async move {
                if authorized(&s, &h) {
                    Json(systems()).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        )
        .with_state(s)
}

#[tokio::test]
async fn sessions_are_used_renewed_after_expiry_and_closed() {
    let s = Arc::new(Sessions::default());
    let url = common::serve(session_bmc(s.clone())).await;
    let c = common::client(&url, "admin", "pw");
    c.systems().await.unwrap();
    c.systems().await.unwrap();
    assert!(c.uses_session().await);
    assert_eq!(s.logins.load(Ordering::SeqCst), 1, "one session, reused");
    // The BMC forgets its sessions (expiry, restart): the next call logs in again.
    s.valid.lock().unwrap().clear();
    c.systems().await.unwrap();
    assert_eq!(s.logins.load(Ordering::SeqCst), 2);
    assert_eq!(
        s.basic_seen.load(Ordering::SeqCst),
        0,
        "no basic auth when sessions work"
    );
    c.logout().await.unwrap();
    assert_eq!(*s.deleted.lock().unwrap(), vec!["2".to_string()]);

    let bad = common::client(&url, "admin", "wrong");
    let e = bad.systems().await.unwrap_err();
    assert!(matches!(e, RedfishError::Unauthorized { .. }), "{e}");

    // Basic auth on request: no session is created (and this BMC refuses basic).
    let mut cfg = ClientConfig::new(url.parse().unwrap(), "admin", "pw");
    cfg.auth = AuthType::Basic;
    cfg.retry = common::quick_retry(1);
    let basic = Client::new(cfg).unwrap();
    assert!(matches!(
        basic.systems().await.unwrap_err(),
        RedfishError::Unauthorized { .. }
    ));
    assert_eq!(s.logins.load(Ordering::SeqCst), 2);
    assert!(s.basic_seen.load(Ordering::SeqCst) >= 1);
}

/// A reset that answers 202 with a task monitor; the monitor says "running" `polls`
/// times, then the task's final state.
fn task_bmc(final_state: &'static str, polls: u32) -> (Router, Arc<AtomicU32>) {
    let seen = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route("/redfish/v1/", get(|| async { Json(root(false)) }))
        .route("/redfish/v1/Systems", get(|| async { Json(systems()) }))
        .route(
            "/redfish/v1/Systems/1",
            get(|| async { Json(system("On")) }),
        )
        .route(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            post(|| async { (StatusCode::ACCEPTED, [("Location", "/taskmon/7")]) }),
        )
        .route(
            "/taskmon/7",
            get(move |State(seen): State<Arc<AtomicU32>>| async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if n < polls {
                    (
                        StatusCode::ACCEPTED,
                        Json(json!({"Id": "7", "TaskState": "Running", "PercentComplete": n * 10})),
                    )
                } else {
                    (
                        StatusCode::OK,
                        Json(json!({"Id": "7", "TaskState": final_state,
                            "Messages": [{"Message": "the power supply said no"}]})),
                    )
                }
            }),
        )
        .with_state(seen.clone());
    (app, seen)
}

#[tokio::test]
async fn task_monitors_are_polled_until_the_task_ends() {
    let (app, seen) = task_bmc("Completed", 2);
    let url = common::serve(app).await;
    let c = common::client(&url, "", "");
    let sys = c.find_system(Some("1")).await.unwrap();
    c.reset(&sys, ResetType::ForceRestart).await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    let (app, _) = task_bmc("Exception", 1);
    let url = common::serve(app).await;
    let c = common::client(&url, "", "");
    let sys = c.find_system(None).await.unwrap();
    let e = c.reset(&sys, ResetType::On).await.unwrap_err();
    assert!(matches!(e, RedfishError::TaskFailed { .. }), "{e}");
    assert!(e.to_string().contains("the power supply said no"), "{e}");

    let (app, _) = task_bmc("Completed", 1000);
    let url = common::serve(app).await;
    let c = common::client(&url, "", "");
    let e = c
        .wait_task("/taskmon/7", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e, RedfishError::TaskTimeout { .. }), "{e}");
}

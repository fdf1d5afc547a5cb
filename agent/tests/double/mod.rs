//! A scriptable test double of the conductor's agent endpoints (`GET /`, `GET /v1/lookup`,
//! `POST /v1/heartbeat/{node}`, `POST /v1/continue_inspection`) on a loopback port, which
//! records every request with its arrival time.

#![allow(dead_code)] // each test binary uses its own part of this

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const TOKEN: &str = "tok-0123456789abcdef0123456789abcdef";
pub const NODE: &str = "5b8f7a3e-1111-4c2d-9e8f-0123456789ab";

/// One answer the double gives.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: json!({"error_message": json!({"faultstring": format!("scripted {status}"), "faultcode": "Client"}).to_string()}),
        }
    }

    /// A 200 lookup answer for [`NODE`].
    pub fn found(token: Option<&str>, heartbeat_timeout: f64) -> Reply {
        let mut config = json!({"heartbeat_timeout": heartbeat_timeout});
        if let Some(t) = token {
            config["agent_token"] = t.into();
        }
        Reply {
            status: 200,
            body: json!({
                "node": {"uuid": NODE, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
                "config": config,
            }),
        }
    }
}

/// What the double answers: scripted replies first, then the default.
#[derive(Debug)]
pub struct Script {
    pub lookup: VecDeque<Reply>,
    pub lookup_default: Reply,
    pub heartbeat: VecDeque<Reply>,
    pub heartbeat_default: Reply,
    pub inspection: Reply,
    pub max_version: String,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            lookup: VecDeque::new(),
            lookup_default: Reply::found(Some(TOKEN), 300.0),
            heartbeat: VecDeque::new(),
            heartbeat_default: Reply {
                status: 202,
                body: Value::Null,
            },
            inspection: Reply {
                status: 200,
                body: json!({"uuid": NODE}),
            },
            max_version: "1.99".into(),
        }
    }
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Seen {
    pub fn is_lookup(&self) -> bool {
        self.path == "/v1/lookup"
    }
    pub fn is_heartbeat(&self) -> bool {
        self.path.starts_with("/v1/heartbeat/")
    }
}

pub struct Double {
    pub addr: SocketAddr,
    pub script: Arc<Mutex<Script>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Double {
    pub async fn start(script: Script) -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s2, seen2) = (script.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, seen) = (s2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, script.clone(), seen.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Double {
            addr,
            script,
            seen,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn lookups(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_lookup).collect()
    }

    pub fn heartbeats(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_heartbeat).collect()
    }

    /// Polls until `cond` holds over the recorded requests, or panics at the deadline.
    pub async fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.seen()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; saw {:#?}",
                    self.seen()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let reply = {
        let mut s = script.lock().unwrap();
        match (method.as_str(), path.as_str()) {
            ("GET", "/") => Reply {
                status: 200,
                body: json!({"name": "double", "default_version": {"id": "v1", "version": s.max_version, "min_version": "1.1"}}),
            },
            ("GET", "/v1/lookup") => s
                .lookup
                .pop_front()
                .unwrap_or_else(|| s.lookup_default.clone()),
            ("POST", p) if p.starts_with("/v1/heartbeat/") => s
                .heartbeat
                .pop_front()
                .unwrap_or_else(|| s.heartbeat_default.clone()),
            ("POST", "/v1/continue_inspection") => s.inspection.clone(),
            _ => Reply::status(404),
        }
    };
    seen.lock().unwrap().push(Seen {
        at,
        method,
        path,
        query,
        headers,
        body,
    });
    let body = if reply.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(reply.body.to_string())
    };
    Ok(Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap())
}

/// Gaps between consecutive requests.
pub fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

//! Request routing and handlers of the agent API: versions, status, commands; token
//! check, body limit, request validation and IPA fault bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrite_proto::agent::{AgentStatus, CommandList, CommandResult, CommandStatus, Fault};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{json, Value};

use super::body::parse_command_body;
use crate::commands::{self, CommandError, Mode};
use crate::state::AgentState;

/// A request body must arrive within this time (a config drive can be ~90 MB).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(300);
const MEDIA_TYPE: &str = "application/vnd.openstack.ironic-python-agent.v1+json";

/// Whether the server speaks TLS (for the links in `GET /`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

type Resp = Response<Full<Bytes>>;

/// Answer one request. Never panics on client input; every error is an IPA fault body.
pub async fn handle<B>(req: Request<B>, state: Arc<AgentState>, scheme: Scheme) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // The query is not logged: it carries the agent token.
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = route(req, state, scheme).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "agent API request");
    resp
}

async fn route<B>(req: Request<B>, state: Arc<AgentState>, scheme: Scheme) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path.as_str()
    };
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    // IPA also serves `/status` and `/commands` without the version prefix.
    let route: &[&str] = match segments.as_slice() {
        ["v1", rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    // HEAD is answered like GET; hyper leaves the body out.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    match (segments.as_slice(), route) {
        ([""], _) => only(&method, &[Method::GET], || root(&req, scheme)),
        (["v1"], _) => only(&method, &[Method::GET], || v1(&req, scheme)),
        (_, ["status"]) => only(&method, &[Method::GET], || status(&state)),
        (_, ["commands"]) => {
            if method == Method::GET {
                with_token(&req, &state, |_| list_commands(&state))
            } else if method == Method::POST {
                match authorize(&req, &state) {
                    Ok(query) => run_command(req, state, query).await,
                    Err(resp) => *resp,
                }
            } else {
                method_not_allowed(&[Method::GET, Method::POST])
            }
        }
        (_, ["commands", id]) => {
            if method != Method::GET {
                return method_not_allowed(&[Method::GET]);
            }
            let id = id.to_string();
            match authorize(&req, &state) {
                Ok(query) => get_command(&state, &id, query).await,
                Err(resp) => *resp,
            }
        }
        _ => fault(
            StatusCode::NOT_FOUND,
            format!(
                "no such resource {path:?}; the agent serves /, /v1/, /v1/status and \
                 /v1/commands/"
            ),
        ),
    }
}

fn only(method: &Method, allowed: &[Method], f: impl FnOnce() -> Resp) -> Resp {
    if allowed.contains(method) {
        f()
    } else {
        method_not_allowed(allowed)
    }
}

fn url_root<B>(req: &Request<B>, scheme: Scheme) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    format!("{scheme}://{host}")
}

fn link(href: String, rel: &str) -> Value {
    json!({"href": href, "rel": rel})
}

fn version(root: &str) -> Value {
    json!({
        "id": "v1",
        "links": [
            link(format!("{root}/v1/"), "self"),
            {"href": "https://docs.openstack.org/ironic-python-agent", "rel": "describedby",
             "type": "text/html"},
        ],
    })
}

fn root<B>(req: &Request<B>, scheme: Scheme) -> Resp {
    let root = url_root(req, scheme);
    json_response(
        StatusCode::OK,
        &json!({
            "name": "Ferrite Agent API",
            "description": "Ferrite's deploy agent, compatible with the Ironic Python Agent API",
            "versions": [version(&root)],
            "default_version": version(&root),
        }),
    )
}

fn v1<B>(req: &Request<B>, scheme: Scheme) -> Resp {
    let root = url_root(req, scheme);
    let mut body = version(&root);
    if let Value::Object(map) = &mut body {
        for name in ["commands", "status"] {
            map.insert(
                name.to_string(),
                json!([
                    link(format!("{root}/v1/{name}"), "self"),
                    link(format!("{root}/{name}"), "bookmark"),
                ]),
            );
        }
        map.insert(
            "media_types".to_string(),
            json!([{"base": "application/json", "type": MEDIA_TYPE}]),
        );
    }
    json_response(StatusCode::OK, &body)
}

fn status(state: &AgentState) -> Resp {
    json_response(
        StatusCode::OK,
        &AgentStatus {
            started_at: state.started_at(),
            version: state.version().to_string(),
        },
    )
}

/// Query parameters of `/v1/commands` requests.
#[derive(Debug, Default)]
struct CommandQuery {
    wait: bool,
}

/// Checks `?agent_token=` and parses `?wait=`; the error is the response to send.
fn authorize<B>(req: &Request<B>, state: &AgentState) -> Result<CommandQuery, Box<Resp>> {
    let mut token = None;
    let mut wait = None;
    for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "agent_token" if token.is_none() => token = Some(value.into_owned()),
            "wait" if wait.is_none() => wait = Some(value.into_owned()),
            _ => {}
        }
    }
    if !state.token_allows(token.as_deref()) {
        return Err(Box::new(fault(
            StatusCode::UNAUTHORIZED,
            if state.agent_token().is_none() {
                "Token invalid: this agent has no token yet (none from lookup or \
                 ipa-agent-token), so it accepts no command"
            } else if token.is_none() {
                "Token invalid: this agent requires its token; pass the token from lookup \
                 as the query parameter agent_token"
            } else {
                "Token invalid: the given token does not match the one from lookup"
            },
        )));
    }
    let wait = match wait.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Box::new(fault(
                StatusCode::BAD_REQUEST,
                format!("query parameter `wait` must be true or false, got {other:?}"),
            )))
        }
    };
    Ok(CommandQuery { wait })
}

fn with_token<B>(
    req: &Request<B>,
    state: &AgentState,
    f: impl FnOnce(CommandQuery) -> Resp,
) -> Resp {
    match authorize(req, state) {
        Ok(q) => f(q),
        Err(resp) => *resp,
    }
}

fn list_commands(state: &AgentState) -> Resp {
    json_response(
        StatusCode::OK,
        &CommandList {
            commands: state.commands.list(),
        },
    )
}

async fn get_command(state: &AgentState, id: &str, query: CommandQuery) -> Resp {
    let Some(entry) = state.commands.get(id) else {
        return fault(
            StatusCode::NOT_FOUND,
            format!("Not found: command with id {id} not found; GET /v1/commands/ lists them"),
        );
    };
    let result = if query.wait {
        entry.wait().await
    } else {
        entry.snapshot()
    };
    result_response(&result)
}

async fn run_command<B>(req: Request<B>, state: Arc<AgentState>, query: CommandQuery) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    // Bounded memory: bodies being read at once share a budget of twice the limit;
    // a request reserves its declared length (the full limit when it is chunked).
    let budget = match tokio::time::timeout_at(
        deadline,
        state.reserve_body(declared.unwrap_or(limit as u64)),
    )
    .await
    {
        Ok(Some(permit)) => permit,
        Ok(None) | Err(_) => {
            return fault(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is busy receiving other large requests; retry later",
            )
        }
    };
    let body =
        match tokio::time::timeout_at(deadline, Limited::new(req.into_body(), limit).collect())
            .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return too_large(limit)
            }
            Ok(Err(e)) => {
                return fault(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                )
            }
            Err(_) => {
                return fault(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            }
        };
    let (name, params) = match parse_command_body(&body) {
        Ok(parsed) => parsed,
        Err(message) => return fault(StatusCode::BAD_REQUEST, message),
    };
    drop(body);
    drop(budget);
    match commands::execute(state, name, params).await {
        Ok(started) => {
            let result = if query.wait && started.mode == Mode::Async {
                started.entry.wait().await
            } else {
                started.snapshot()
            };
            result_response(&result)
        }
        Err(e) => command_fault(&e),
    }
}

fn result_response(result: &CommandResult) -> Resp {
    let status = if result.command_status == CommandStatus::Running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    json_response(status, result)
}

fn command_fault(e: &CommandError) -> Resp {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    fault(status, e.faultstring())
}

fn too_large(limit: usize) -> Resp {
    fault(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than the agent's limit of {limit} bytes"),
    )
}

fn method_not_allowed(allowed: &[Method]) -> Resp {
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut resp = fault(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; allowed: {list}"),
    );
    if let Ok(v) = HeaderValue::from_str(&list) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// IPA's fault body: `faultcode` "Client" for 4xx, "Server" for 5xx.
pub(crate) fn fault(status: StatusCode, message: impl Into<String>) -> Resp {
    let body = Fault {
        faultcode: if status.is_server_error() {
            "Server"
        } else {
            "Client"
        }
        .to_string(),
        faultstring: message.into(),
    };
    json_response(status, &body)
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random methods, paths, queries and bodies: always an answer with a JSON fault or
    /// result, never a panic, and nothing outside the documented status codes.
    #[tokio::test]
    async fn random_requests_never_panic() {
        use rand::{Rng, SeedableRng};
        let state = Arc::new(AgentState::new(
            crate::state::AgentConfig {
                max_body_bytes: 512,
                ..Default::default()
            },
            Arc::new(crate::state::RecordingHooks::new()),
        ));
        let token = "0123456789abcdef0123456789abcdef";
        state.set_agent_token(token).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let pieces = [
            "",
            "?agent_token=0123456789abcdef0123456789abcdef",
            "&agent_token=0123456789abcdef0123456789abcdef",
            "/",
            "v1",
            "commands",
            "status",
            "%00",
            "..",
            "?",
            "&",
            "=",
            "wait",
            "agent_token",
            "true",
            "x",
            "%C3%A9",
        ];
        let bodies = [
            r#"{"name":"standby.sync","params":{}}"#,
            "{",
            "[]",
            "null",
            r#"{"name":"a.b","params":{"k":[1,{"z":null}]}}"#,
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::HEAD,
        ];
        for _ in 0..1500 {
            let mut path = String::from("/");
            for _ in 0..rng.random_range(0..6) {
                path.push_str(pieces[rng.random_range(0..pieces.len())]);
                if rng.random_bool(0.5) {
                    path.push('/');
                }
            }
            let Ok(uri) = path.parse::<http::Uri>() else {
                continue;
            };
            let mut body = bodies[rng.random_range(0..bodies.len())]
                .as_bytes()
                .to_vec();
            if rng.random_bool(0.3) {
                let at = rng.random_range(0..=body.len());
                body.insert(at, rng.random());
            }
            if rng.random_bool(0.05) {
                body = vec![b'x'; 600];
            }
            let req = Request::builder()
                .method(methods[rng.random_range(0..methods.len())].clone())
                .uri(uri)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = handle(req, state.clone(), Scheme::Http).await;
            let code = resp.status().as_u16();
            assert!(
                [200, 202, 400, 401, 404, 405, 409, 413].contains(&code),
                "{path}: {code}"
            );
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
            if code >= 400 {
                assert!(v["faultstring"].is_string(), "{path}: {v}");
            }
        }
    }
}

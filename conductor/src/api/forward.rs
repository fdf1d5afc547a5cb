//! Requests that start work on a node are executed by the conductor that owns it (the
//! hash ring, `engine::membership`): provision and power changes, boot device, agent
//! lookup and heartbeat, and the `/boot/` files its iPXE and virtual media fetch. Any
//! other conductor forwards them over plain HTTP to the owner's `--internal-url`, headers
//! (authentication included) and body unchanged, plus [`FORWARDED_BY`]; the owner's answer
//! goes back as it is, plus [`FORWARDED_TO`]. A request carrying [`FORWARDED_BY`] is never forwarded again. The
//! header grants nothing: the owner checks authentication and agent tokens itself, and a
//! request executed on a conductor that is not the owner is still correct (node locks in
//! the database serialise all work); ownership only keeps work, and boot files, in one
//! place. When the owner cannot be reached, the membership is read again and a new owner
//! tried once; failing that (the owner may be dead and not yet timed out) the request is
//! executed here.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};
use crate::model::normalize_mac;

/// Marks a request one conductor forwarded to another; its value names the sender.
pub const FORWARDED_BY: &str = "X-Ferrite-Forwarded-By";
/// On an answer that came from another conductor: the URL of that conductor.
pub const FORWARDED_TO: &str = "X-Ferrite-Forwarded-To";

/// Which node a request is for, as its path or query names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node UUID or name.
    Node(String),
    /// The node with a port of one of these MACs.
    Macs(Vec<String>),
}

/// The node a forwardable request is for; `None` for every other request.
pub fn target(method: &Method, path: &str, query: Option<&str>) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::PUT, ["v1", "nodes", node, "states", "provision" | "power"])
        | (&Method::PUT, ["v1", "nodes", node, "management", "boot_device"])
        | (&Method::POST, ["v1", "heartbeat", node])
        | (&Method::GET, ["boot", node, _]) => Some(Target::Node(node.to_string())),
        (&Method::GET, ["boot", file]) if file.ends_with(".ipxe") && *file != "boot.ipxe" => {
            let mac = normalize_mac(file.trim_end_matches(".ipxe")).ok()?;
            Some(Target::Macs(vec![mac]))
        }
        (&Method::GET, ["v1", "lookup"]) => {
            let mut macs = vec![];
            for (k, v) in url_pairs(query.unwrap_or("")) {
                match k.as_str() {
                    "node_uuid" => return Some(Target::Node(v)),
                    "addresses" => {
                        for a in v.split(',').filter(|a| !a.is_empty()) {
                            macs.push(normalize_mac(a).ok()?);
                        }
                    }
                    _ => {}
                }
            }
            (!macs.is_empty()).then_some(Target::Macs(macs))
        }
        _ => None,
    }
}

/// `k=v` pairs of a query string, percent-decoded.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Headers not passed on (hop-by-hop, or recomputed by the HTTP stack).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "upgrade" | "content-length"
    )
}

/// The middleware: forwards a request to its node's owner, or runs it here.
pub async fn forward(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(FORWARDED_BY) {
        return next.run(req).await;
    }
    let Some(target) = target(req.method(), req.uri().path(), req.uri().query()) else {
        return next.run(req).await;
    };
    let owner = match state.engine.owner_url(&target, false).await {
        Ok(Some(url)) => url,
        Ok(None) => return next.run(req).await,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot find the node's owner; running here");
            return next.run(req).await;
        }
    };
    let (parts, body) = req.into_parts();
    // The limits the routes apply: only provision requests carry config drives.
    let limit = if parts.uri.path().ends_with("/states/provision") {
        super::PROVISION_BODY_LIMIT
    } else {
        super::BODY_LIMIT
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body is too large: the limit is 1 MiB (64 MiB for config drives)",
            )
            .into_response()
        }
    };
    let mut owner = owner;
    for attempt in 0..2 {
        match send(&state, &owner, &parts, bytes.clone()).await {
            Ok(resp) => return resp,
            Err(e) => {
                tracing::warn!(owner = %owner, path = %parts.uri.path(),
                               error = %crate::error_chain(&e), "the node's owner cannot be reached");
            }
        }
        // The cached membership may be a second old: read it again, and try the owner it
        // names if that is another conductor.
        match state.engine.owner_url(&target, true).await {
            Ok(Some(next)) if next != owner && attempt == 0 => owner = next,
            _ => break,
        }
    }
    tracing::warn!(path = %parts.uri.path(), "running the request here");
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Sends the request to `owner` and turns its answer into ours.
async fn send(
    state: &Shared,
    owner: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<Response, reqwest::Error> {
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut rb = client().request(parts.method.clone(), format!("{owner}{path_q}"));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            rb = rb.header(name, value);
        }
    }
    let resp = rb
        .header(FORWARDED_BY, state.engine.cfg.host.as_str())
        .body(body)
        .send()
        .await?;
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    out = out.header(FORWARDED_TO, owner);
    Ok(out
        .body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_on_a_node_is_forwarded() {
        let t = |m: Method, p: &str, q: Option<&str>| target(&m, p, q);
        let node = |n: &str| Some(Target::Node(n.into()));
        assert_eq!(
            t(Method::PUT, "/v1/nodes/n1/states/provision", None),
            node("n1")
        );
        assert_eq!(
            t(Method::PUT, "/v1/nodes/n1/states/power", None),
            node("n1")
        );
        assert_eq!(
            t(Method::PUT, "/v1/nodes/n1/management/boot_device", None),
            node("n1")
        );
        assert_eq!(t(Method::POST, "/v1/heartbeat/u1", None), node("u1"));
        assert_eq!(t(Method::GET, "/boot/u1/deploy_kernel", None), node("u1"));
        assert_eq!(
            t(Method::GET, "/boot/52-54-00-12-34-56.ipxe", None),
            Some(Target::Macs(vec!["52:54:00:12:34:56".into()]))
        );
        assert_eq!(
            t(
                Method::GET,
                "/v1/lookup",
                Some("addresses=52:54:00:12:34:56%2C52:54:00:12:34:57")
            ),
            Some(Target::Macs(vec![
                "52:54:00:12:34:56".into(),
                "52:54:00:12:34:57".into()
            ]))
        );
        assert_eq!(
            t(Method::GET, "/v1/lookup", Some("node_uuid=u2")),
            node("u2")
        );
        for (m, p) in [
            (Method::GET, "/v1/nodes/n1"),
            (Method::PATCH, "/v1/nodes/n1"),
            (Method::GET, "/v1/nodes/n1/states"),
            (Method::GET, "/boot/boot.ipxe"),
            (Method::GET, "/v1/lookup"),
            (Method::POST, "/v1/continue_inspection"),
        ] {
            assert_eq!(t(m.clone(), p, None), None, "{m} {p}");
        }
    }
}
